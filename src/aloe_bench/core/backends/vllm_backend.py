"""vLLM engine for local models: the seam for users who outgrow transformers on GPUs.

Same interface as the transformers backend; `LLM.chat` takes the whole lockstep batch at once and
vLLM schedules it with continuous batching. Imported only when a spec asks for `engine="vllm"`.
"""

from __future__ import annotations

import time

from .base import BackendError, ChatBackend, Completion, GenerationConfig, Messages, OptionScores


class VLLMBackend(ChatBackend):
    def __init__(self, spec, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9,
                 max_context: int | None = None, **_ignored):
        super().__init__(spec)
        try:
            import vllm
        except ImportError as exc:
            raise BackendError("engine 'vllm' needs `pip install aloe-bench[vllm]` on a GPU machine") from exc
        from ..embedded import embedded_model_dir

        source = str(embedded_model_dir()) if spec.kind == "embedded" else spec.name
        self._vllm = vllm
        self.llm = vllm.LLM(model=source, revision=spec.revision, tensor_parallel_size=tensor_parallel_size,
                            gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_context)
        self.tokenizer = self.llm.get_tokenizer()
        if getattr(self.tokenizer, "chat_template", None) is None:
            raise BackendError(f"model {spec.label!r} has no chat template")

    @property
    def chat_template(self) -> str | None:
        return self.tokenizer.chat_template

    def _params(self, config: GenerationConfig, **extra):
        if config.temperature is None:  # the model's own generation_config, as vLLM reads it
            defaults = self.llm.get_default_sampling_params()
            sampling = dict(temperature=defaults.temperature, top_p=defaults.top_p, top_k=defaults.top_k)
        else:
            sampling = dict(temperature=config.temperature, top_p=1.0 if config.top_p is None else config.top_p)
        return self._vllm.SamplingParams(max_tokens=config.max_new_tokens, seed=config.seed, **sampling, **extra)

    def _generate_batch(self, conversations: list[Messages], config: GenerationConfig) -> list[Completion]:
        began = time.perf_counter()
        outputs = self.llm.chat(conversations, self._params(config), use_tqdm=False)
        elapsed = time.perf_counter() - began
        return [Completion(text=o.outputs[0].text.strip(), tokens=len(o.outputs[0].token_ids), latency_s=elapsed)
                for o in outputs]

    def _score_options_batch(self, conversations: list[Messages], options: list[str]) -> list[OptionScores]:
        import math

        params = self._params(GenerationConfig(max_new_tokens=1), logprobs=20)
        scores = []
        for output in self.llm.chat(conversations, params, use_tqdm=False):
            top = output.outputs[0].logprobs[0] if output.outputs[0].logprobs else {}
            probs: dict[str, float] = {}
            for entry in top.values():
                token = (entry.decoded_token or "").strip()
                if token in options:
                    probs[token] = probs.get(token, 0.0) + math.exp(entry.logprob)
            mass = sum(probs.values())
            if mass <= 0:
                scores.append(OptionScores(error="none of the options among the top logprobs"))
            else:
                scores.append(OptionScores(probs={o: probs.get(o, 0.0) / mass for o in options}, mass=mass))
        return scores
