"""Local transformers backend: batched, left-padded generation with the model's own chat template.

One worker thread owns the model (`batching.ModelWorker`). A caller's list (`generate`, `score_options`) runs as
one job in length-sorted micro-batches, as the lockstep loop wants; single awaitable requests (`agenerate`,
`ascore_options`) from concurrent conversation tasks are gathered into padded batches as they come. Prompts reuse
the key/value tensors of the longest cached prefix of their own scope (`prefix_cache`, bounded by `kv_cache_mb`);
`prefix_rows` turns rows with different cached lengths into one batched cache for `generate`.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import threading
import time
from pathlib import Path

import torch

from .base import BackendError, ChatBackend, Completion, GenerationConfig, Messages, OptionScores
from .batching import ModelWorker, length_buckets
from .prefix_cache import PrefixCache, current_scope
from .prefix_rows import PrefixRows
from .prompting import ChatTemplatePrompts

#: the default bound of the prompt-prefix cache (MB): the working set of 16 conversations x 3 roles at turn 10 on
#: SmolLM2-135M (about 45 KB a token in fp32, some 50k tokens: about 2.2 GB) with room for superseded entries
DEFAULT_KV_CACHE_MB = 3072


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


_FILE_DIGESTS: dict[tuple, str] = {}


def _file_digest(path: Path) -> str:
    """sha256 of a file's contents, cached by (path, size, mtime): a retrained checkpoint changes it, a re-read is free."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_DIGESTS:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
        _FILE_DIGESTS[key] = digest.hexdigest()
    return _FILE_DIGESTS[key]


def folder_revision(folder: Path) -> str:
    """A content fingerprint for a local model folder: its config plus the contents of every weight file, so a
    checkpoint retrained into the same folder gets a new revision (the request cache and eval resume see it)."""
    digest = hashlib.sha256()
    config = folder / "config.json"
    if config.exists():
        digest.update(config.read_bytes())
    for weight in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        digest.update(f"{weight.name}:{_file_digest(weight)}".encode())
    return "local-sha256:" + digest.hexdigest()[:16]


def _sampling_kwargs(config: GenerationConfig) -> dict:
    """Sampling kwargs of `generate`: none when temperature is None (the model's own generation_config decides)."""
    if config.temperature is None:
        return {}
    if config.temperature > 0:
        return dict(do_sample=True, temperature=config.temperature,
                    **({} if config.top_p is None else {"top_p": config.top_p}))
    return dict(do_sample=False, temperature=None, top_p=None, top_k=None)


class TransformersBackend(ChatTemplatePrompts, ChatBackend):
    """Runs a causal LM in-process. One instance per model serves every role that uses it."""

    def __init__(
        self,
        spec,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int | None = None,
        max_context: int | None = None,
        score_max_padding: float | None = None,
        kv_cache_mb: int | None = None,
        token: str | bool | None = None,
    ):
        """`token` is huggingface_hub's: None uses HF_TOKEN or the stored login, False none, a string that one."""
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
            self.tokenizer = AutoTokenizer.from_pretrained(source, revision=revision, token=token)
            self.model = AutoModelForCausalLM.from_pretrained(
                source,
                revision=revision,
                token=token,
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
        # Prompt-only passes (the judge's option scores) gain little from batching on a CPU, so padding is pure
        # waste there: length-sorted micro-batches close before padding exceeds this fraction of real tokens.
        self.score_max_padding = score_max_padding if score_max_padding is not None else (
            0.1 if self.device == "cpu" else 0.5)
        self._tokenizer_lock = threading.Lock()  # the caller's thread encodes while the worker decodes
        self.worker = ModelWorker(self._serve_batch, self._failed, self.batch_size, plan=self._plan,
                                  name=f"aloe-model-{spec.label}", kind_of=lambda key: key[0])
        # Models whose forward takes `logits_to_keep` (all current causal LMs) skip the LM head on earlier positions.
        accepts = "logits_to_keep" in inspect.signature(self.model.forward).parameters
        self._last_logits_only = {"logits_to_keep": 1} if accepts else {}
        budget = DEFAULT_KV_CACHE_MB if kv_cache_mb is None else kv_cache_mb
        self.prefix_cache = PrefixCache(budget * 2**20) if budget > 0 and PrefixRows.supports(self.model) else None
        self._rows = PrefixRows(self.model, self.prefix_cache, self._last_logits_only,
                                buffered=PrefixRows.supports(self.model))

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
    def _pad_batch(self, prompts: list[list[int]]) -> dict:
        with self._tokenizer_lock:
            batch = self.tokenizer.pad({"input_ids": prompts}, padding=True, return_tensors="pt")
        return {k: v.to(self.model.device) for k, v in batch.items()}

    # -- work ---------------------------------------------------------------------------------------
    def _stop_ids(self) -> set[int]:
        stop_ids = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id}
        gen_eos = self.model.generation_config.eos_token_id
        stop_ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos])
        stop_ids.discard(None)
        return stop_ids

    def _sampling_kwargs(self, config: GenerationConfig) -> dict:
        return dict(max_new_tokens=config.max_new_tokens, pad_token_id=self.tokenizer.pad_token_id,
                    **_sampling_kwargs(config))

    def _generate_padded(self, prompts: list[list[int]], config: GenerationConfig, seed: int,
                         scopes: list[str] | None = None, streamer=None) -> list[Completion]:
        """One left-padded `generate` call (on the worker thread), on top of the rows' cached prefixes if any."""
        scopes = scopes or [current_scope()] * len(prompts)
        inputs = self._pad_batch(prompts)
        began = time.perf_counter()
        with torch.inference_mode():
            cache = self._rows.prefill_for_generate(prompts, scopes, inputs["input_ids"].shape[1],
                                                    config.max_new_tokens)
            torch.manual_seed(seed)
            output = self.model.generate(**inputs, **self._sampling_kwargs(config), **cache,
                                         **({} if streamer is None else {"streamer": streamer}),
                                         return_dict_in_generate=True)
            stop_ids = self._stop_ids()
            results, lengths = [], []
            for row in output.sequences[:, inputs["input_ids"].shape[1]:].tolist():
                length = next((j for j, tok in enumerate(row) if tok in stop_ids), len(row))
                with self._tokenizer_lock:
                    text = self.tokenizer.decode(row[:length], skip_special_tokens=True).strip()
                results.append(Completion(text=text, tokens=length))
                lengths.append(min(length + 1, len(row)))  # the stop token too: the next prompt has it
            self._rows.keep_generated(prompts, scopes, output.sequences, inputs["input_ids"].shape[1], lengths,
                                      output.cache)
        elapsed = time.perf_counter() - began
        for completion in results:
            completion.latency_s = elapsed
        return results

    def _score_padded(self, prompts: list[list[int]], options: list[str],
                      scopes: list[str] | None = None) -> list[OptionScores]:
        """The options' probabilities as the next token (on the worker thread): one left-padded forward pass, or
        each row's uncached suffix on top of its cached prefix."""
        scopes = scopes or [current_scope()] * len(prompts)
        option_ids = torch.tensor(self.option_token_ids(options))
        with torch.inference_mode():
            logits = self._rows.last_logits(prompts, scopes)
            if logits is None:
                inputs = self._pad_batch(prompts)
                # Only the last position's logits are needed: skipping the LM head elsewhere saves a quarter
                # of the judge's compute and a (batch x length x vocab) tensor.
                out = self.model(**inputs, **self._rows.positions(inputs["attention_mask"]), **self._last_logits_only)
                logits = out.logits[:, -1, :].float()
                self._rows.keep_prompts(prompts, scopes, out.cache)
        probs = torch.softmax(logits.float(), dim=-1)[:, option_ids.to(logits.device)].cpu()
        scores = []
        for row in probs:
            mass = float(row.sum())
            scores.append(OptionScores(probs=dict(zip(options, (row / mass).tolist())), mass=mass))
        return scores

    def _generate_batch(self, conversations: list[Messages], config: GenerationConfig) -> list[Completion]:
        prompts = [self.encode_prompt(m, config.max_new_tokens) for m in conversations]
        scope = current_scope()  # read here: the job runs on the worker thread

        def job() -> list[Completion]:
            order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
            results: list[Completion | None] = [None] * len(prompts)
            for start in range(0, len(order), self.batch_size):
                chunk = order[start:start + self.batch_size]
                for index, completion in zip(chunk, self._generate_padded([prompts[i] for i in chunk], config,
                                                                           config.seed + start, [scope] * len(chunk))):
                    results[index] = completion
            return results  # type: ignore[return-value]

        return self.worker.call(job)

    def _score_options_batch(self, conversations: list[Messages], options: list[str]) -> list[OptionScores]:
        self.option_token_ids(options)  # a bad option is the caller's error, raised here
        prompts = [self.encode_prompt(m, 1) for m in conversations]
        scope = current_scope()

        def job() -> list[OptionScores]:
            scores: list[OptionScores | None] = [None] * len(prompts)
            for bucket in length_buckets([len(p) for p in prompts], self.batch_size, self.score_max_padding):
                for index, score in zip(bucket, self._score_padded([prompts[i] for i in bucket], options,
                                                                   [scope] * len(bucket))):
                    scores[index] = score
            return scores  # type: ignore[return-value]

        return self.worker.call(job)

    # -- single requests, batched as they come --------------------------------------------------------
    async def agenerate(self, messages: Messages, config: GenerationConfig) -> Completion:
        try:
            prompt = self.encode_prompt(messages, config.max_new_tokens)
        except Exception as exc:  # a message the chat template rejects fails this request only
            return Completion(None, error=f"{type(exc).__name__}: {exc}")
        return await asyncio.wrap_future(self.worker.submit(("generate", config), len(prompt),
                                                            (current_scope(), prompt)))

    async def ascore_options(self, messages: Messages, options: list[str]) -> OptionScores:
        self.option_token_ids(options)
        try:
            prompt = self.encode_prompt(messages, 1)
        except Exception as exc:
            return OptionScores(error=f"{type(exc).__name__}: {exc}")
        return await asyncio.wrap_future(self.worker.submit(("options", tuple(options)), len(prompt),
                                                            (current_scope(), prompt)))

    def expecting(self):
        return self.worker.expecting("generate")

    def _plan(self, key, lengths: list[int]) -> list[list[int]] | None:
        if key[0] == "options":
            return length_buckets(lengths, self.batch_size, self.score_max_padding)
        return []  # generation: the worker's own windows by length

    def release_prefixes(self, scope: str) -> int:
        if self.prefix_cache is None:
            return 0
        return self.prefix_cache.release(scope)

    def _serve_batch(self, key, requests: list[tuple[str, list[int]]]) -> list:
        kind, settings = key
        scopes, prompts = [s for s, _ in requests], [p for _, p in requests]
        if kind == "generate":
            return self._generate_padded(prompts, settings, settings.seed, scopes)
        return self._score_padded(prompts, list(settings), scopes)

    @staticmethod
    def _failed(key, _prompt, exc: Exception):
        error = f"{type(exc).__name__}: {exc}"
        return Completion(None, error=error) if key[0] == "generate" else OptionScores(error=error)

    def stream(self, messages: Messages, config: GenerationConfig):
        from transformers import TextIteratorStreamer

        prompt = self.encode_prompt(messages, config.max_new_tokens)
        scope = current_scope()  # read here, in the caller's context: the generation runs on the worker thread
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        errors: list[BaseException] = []

        def run():
            try:
                self._generate_padded([prompt], config, config.seed, [scope], streamer=streamer)
            except BaseException as exc:  # surfaced to the caller below
                errors.append(exc)
                streamer.end()

        done = self.worker.submit_job(run)  # queued behind whatever the model is doing
        text = ""
        for piece in streamer:
            text += piece
            yield text
        done.result()
        if errors:
            raise BackendError(f"{self.model_id}: {errors[0]}") from errors[0]
