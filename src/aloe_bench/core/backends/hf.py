"""Local transformers backend: batched, left-padded generation with the model's own chat template."""

from __future__ import annotations

import hashlib
import inspect
import threading
import time
from pathlib import Path

import torch

from .base import BackendError, ChatBackend, Completion, GenerationConfig, Messages, OptionScores


def pick_device(requested: str | None = None) -> str:
    """`cuda` when available, then `mps`, else `cpu`; an explicit choice wins."""
    if requested and requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(device: str, requested: str | None = None) -> torch.dtype:
    """bf16 on GPUs that support it (fp16 otherwise), fp32 on CPU; an explicit choice wins."""
    if requested and requested != "auto":
        return getattr(torch, requested)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


def folder_revision(folder: Path) -> str:
    """A content fingerprint for a local model folder: config plus weight file names and sizes."""
    digest = hashlib.sha256()
    config = folder / "config.json"
    if config.exists():
        digest.update(config.read_bytes())
    for weight in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        digest.update(f"{weight.name}:{weight.stat().st_size}".encode())
    return "local-sha256:" + digest.hexdigest()[:16]


def _sampling_kwargs(config: GenerationConfig) -> dict:
    """`generate` kwargs for `config`: none when temperature is None (the model's generation_config decides)."""
    if config.temperature is None:
        return {}
    if config.temperature > 0:
        return dict(do_sample=True, temperature=config.temperature,
                    **({} if config.top_p is None else {"top_p": config.top_p}))
    return dict(do_sample=False, temperature=None, top_p=None, top_k=None)


class TransformersBackend(ChatBackend):
    """Runs a causal LM in-process. One instance per model serves every role that uses it."""

    def __init__(
        self,
        spec,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int | None = None,
        max_context: int | None = None,
    ):
        super().__init__(spec)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ..embedded import embedded_model_dir, embedded_revision

        if spec.kind == "embedded":
            source, revision = embedded_model_dir(), None
            self._revision = embedded_revision(source)
        else:
            source, revision = spec.name, spec.revision
            self._revision = None
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device, dtype)
        multi_gpu = self.device == "cuda" and torch.cuda.device_count() > 1
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
            self.model = AutoModelForCausalLM.from_pretrained(
                source,
                revision=revision,
                dtype=self.dtype,
                device_map="auto" if multi_gpu else None,
            )
        except OSError as exc:
            raise BackendError(f"cannot load model {spec.label!r}: {exc}") from exc
        if not multi_gpu:
            self.model.to(self.device)
        self.model.eval()
        if self.tokenizer.chat_template is None:
            raise BackendError(
                f"model {spec.label!r} has no chat template (tokenizer_config.json / chat_template.jinja); "
                "ALOE needs a chat model"
            )
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self._revision is None:
            folder = Path(str(source))
            if folder.is_dir():
                self._revision = folder_revision(folder)
            else:
                self._revision = getattr(self.model.config, "_commit_hash", None) or revision
        self.max_context = max_context or self._context_length()
        self.batch_size = batch_size or (64 if self.device == "cuda" else 16)
        self._lock = threading.Lock()
        # Models whose forward takes `logits_to_keep` (all current causal LMs) skip the LM head on earlier positions.
        accepts = "logits_to_keep" in inspect.signature(self.model.forward).parameters
        self._last_logits_only = {"logits_to_keep": 1} if accepts else {}

    # -- identity ---------------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        if self.spec.kind == "embedded":
            from ..embedded import EMBEDDED_MODEL_ID

            return f"embedded:{EMBEDDED_MODEL_ID}"
        return self.spec.name

    @property
    def resolved_revision(self) -> str | None:
        return self._revision

    @property
    def chat_template(self) -> str | None:
        return self.tokenizer.chat_template

    def describe(self) -> dict:
        info = super().describe()
        info.update(device=self.device, dtype=str(self.dtype).removeprefix("torch."), max_context=self.max_context)
        return info

    def _context_length(self) -> int:
        for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            value = getattr(self.model.config, attr, None)
            if isinstance(value, int) and value > 0:
                return value
        limit = self.tokenizer.model_max_length
        return limit if isinstance(limit, int) and limit < 1_000_000 else 4096

    # -- prompt building ----------------------------------------------------------------------------
    def _render(self, messages: Messages) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode_prompt(self, messages: Messages, reserve: int) -> list[int]:
        """Token ids for `messages` plus the generation prompt, left-truncated to fit the context.

        Whole old turns are dropped first (keeping any system message) so the template stays intact;
        only a single over-long message is cut token-wise from the left.
        """
        budget = max(self.max_context - reserve, 1)
        ids = self._render(messages)
        if len(ids) <= budget:
            return ids
        head = [m for m in messages[:1] if m["role"] == "system"]
        body = list(messages[len(head):])
        while len(body) > 1 and len(ids) > budget:
            body = body[2:] if len(body) > 2 else body[1:]
            ids = self._render(head + body)
        return ids[-budget:] if len(ids) > budget else ids

    def _pad_batch(self, prompts: list[list[int]]) -> dict:
        batch = self.tokenizer.pad({"input_ids": prompts}, padding=True, return_tensors="pt")
        return {k: v.to(self.model.device) for k, v in batch.items()}

    # -- work ---------------------------------------------------------------------------------------
    def _generate_batch(self, conversations: list[Messages], config: GenerationConfig) -> list[Completion]:
        prompts = [self.encode_prompt(m, config.max_new_tokens) for m in conversations]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[Completion | None] = [None] * len(prompts)
        stop_ids = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id}
        gen_eos = self.model.generation_config.eos_token_id
        stop_ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos])
        stop_ids.discard(None)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            inputs = self._pad_batch([prompts[i] for i in chunk])
            kwargs = dict(max_new_tokens=config.max_new_tokens, pad_token_id=self.tokenizer.pad_token_id,
                          **_sampling_kwargs(config))
            began = time.perf_counter()
            with self._lock, torch.inference_mode():
                torch.manual_seed(config.seed + start)
                output = self.model.generate(**inputs, **kwargs)
            elapsed = time.perf_counter() - began
            new_tokens = output[:, inputs["input_ids"].shape[1]:].tolist()
            for row, index in zip(new_tokens, chunk):
                length = next((j for j, tok in enumerate(row) if tok in stop_ids), len(row))
                text = self.tokenizer.decode(row[:length], skip_special_tokens=True).strip()
                results[index] = Completion(text=text, tokens=length, latency_s=elapsed)
        return results  # type: ignore[return-value]

    def option_token_ids(self, options: list[str]) -> list[int]:
        ids = []
        for option in options:
            encoded = self.tokenizer.encode(option, add_special_tokens=False)
            if len(encoded) != 1:
                raise BackendError(f"option {option!r} is {len(encoded)} tokens for {self.model_id}; need exactly 1")
            ids.append(encoded[0])
        return ids

    def _score_options_batch(self, conversations: list[Messages], options: list[str]) -> list[OptionScores]:
        option_ids = torch.tensor(self.option_token_ids(options))
        prompts = [self.encode_prompt(m, 1) for m in conversations]
        scores: list[OptionScores] = []
        for start in range(0, len(prompts), self.batch_size):
            inputs = self._pad_batch(prompts[start:start + self.batch_size])
            with self._lock, torch.inference_mode():
                # Only the last position's logits are needed: skipping the LM head elsewhere saves a quarter
                # of the judge's compute and a (batch x length x vocab) tensor.
                logits = self.model(**inputs, **self._last_logits_only).logits[:, -1, :].float()
            probs = torch.softmax(logits, dim=-1)[:, option_ids.to(logits.device)].cpu()
            for row in probs:
                mass = float(row.sum())
                normalised = (row / mass).tolist()
                scores.append(OptionScores(probs=dict(zip(options, normalised)), mass=mass))
        return scores

    def stream(self, messages: Messages, config: GenerationConfig):
        from transformers import TextIteratorStreamer

        prompt = self.encode_prompt(messages, config.max_new_tokens)
        inputs = self._pad_batch([prompt])
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = dict(max_new_tokens=config.max_new_tokens, streamer=streamer,
                      pad_token_id=self.tokenizer.pad_token_id, **_sampling_kwargs(config))
        errors: list[BaseException] = []

        def run():
            try:
                with self._lock, torch.inference_mode():
                    torch.manual_seed(config.seed)
                    self.model.generate(**inputs, **kwargs)
            except BaseException as exc:  # surfaced to the caller below
                errors.append(exc)
                streamer.end()

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        text = ""
        for piece in streamer:
            text += piece
            yield text
        worker.join()
        if errors:
            raise BackendError(f"{self.model_id}: {errors[0]}") from errors[0]

