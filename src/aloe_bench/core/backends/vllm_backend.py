"""vLLM engine for local models on GPUs: requests go to vLLM's own async engine as they come.

vLLM schedules them with continuous batching and reuses shared prompt prefixes (`enable_prefix_caching`), so
both the lockstep loop (a whole list at once) and one task per conversation (single awaitable requests)
keep it busy. The engine lives on a private event-loop thread (its output handler is bound to the loop it
starts on); callers on any loop or thread hand their requests to it. Prompts are the model's own chat template,
rendered and left-truncated by the project exactly as for the transformers backend, and sent as token ids.

`vllm` is imported only when a backend is built (`engine="vllm"`); it is not needed anywhere else.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time
import uuid
from concurrent.futures import wait

from .base import BackendError, ChatBackend, Completion, GenerationConfig, Messages, OptionScores
from .prompting import ChatTemplatePrompts

#: engine options that reach `vllm.AsyncEngineArgs` (None: vLLM's own default)
ENGINE_OPTIONS = ("tensor_parallel_size", "gpu_memory_utilization", "max_model_len", "enable_prefix_caching",
                  "dtype", "max_num_seqs")
LOGPROBS_TOP = 20


class VLLMBackend(ChatTemplatePrompts, ChatBackend):
    """A local model served by vLLM's async engine (GPU); built by `build_backend` for `engine="vllm"`, which
    checks first that the `vllm` extra is installed."""

    def __init__(self, spec, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9,
                 max_model_len: int | None = None, enable_prefix_caching: bool = True, dtype: str | None = None,
                 batch_size: int | None = None):
        super().__init__(spec)
        import vllm
        from transformers import AutoTokenizer

        from ..embedded import embedded_model_dir

        source = str(embedded_model_dir()) if spec.kind == "embedded" else spec.name
        self._vllm = vllm
        self.tokenizer = AutoTokenizer.from_pretrained(source, revision=spec.revision)
        if getattr(self.tokenizer, "chat_template", None) is None:
            raise BackendError(f"model {spec.label!r} has no chat template")
        self.engine_args = {
            "model": source, "revision": spec.revision, "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization, "max_model_len": max_model_len,
            "enable_prefix_caching": enable_prefix_caching,
            "dtype": None if dtype in (None, "auto") else dtype, "max_num_seqs": batch_size,
        }
        self.engine_args = {k: v for k, v in self.engine_args.items() if v is not None}
        self.max_context = max_model_len or self._tokenizer_context()
        self._tokenizer_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._id_prefix = uuid.uuid4().hex[:8]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="aloe-vllm-engine", daemon=True)
        self._thread.start()
        try:
            self.engine = self._on_engine_loop(self._start_engine()).result()
            self.model_sampling = self._model_sampling_defaults()
        except Exception as exc:
            self.close()
            raise BackendError(f"cannot start vLLM for {spec.label!r}: {type(exc).__name__}: {exc}") from exc

    async def _start_engine(self):
        args = self._vllm.AsyncEngineArgs(**self.engine_args)
        return self._vllm.AsyncLLMEngine.from_engine_args(args)

    def _model_sampling_defaults(self) -> dict:
        """The sampling settings of the model's own generation config, as vLLM reads them (the settings a request
        with temperature None runs with: "the model's own", as the paper's protocol asks)."""
        model_config = getattr(self.engine, "model_config", None)
        if model_config is None:  # engines that only answer it asynchronously
            model_config = self._on_engine_loop(self.engine.get_model_config()).result()
        return dict(model_config.get_diff_sampling_param())

    def _on_engine_loop(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def _tokenizer_context(self) -> int:
        limit = self.tokenizer.model_max_length
        return limit if isinstance(limit, int) and limit < 1_000_000 else 4096

    def close(self) -> None:
        """Shut the engine down and stop its loop thread."""
        engine = getattr(self, "engine", None)
        if engine is not None and hasattr(engine, "shutdown"):
            engine.shutdown()
        self._loop.call_soon_threadsafe(self._loop.stop)

    @property
    def chat_template(self) -> str | None:
        return self.tokenizer.chat_template

    def describe(self) -> dict:
        info = super().describe()
        info.update(engine_args={k: v for k, v in self.engine_args.items() if k != "model"},
                    max_context=self.max_context)
        return info

    # -- requests on the engine loop -----------------------------------------------------------------
    def _params(self, config: GenerationConfig, **extra):
        if config.temperature is None:  # the model's own generation_config, as vLLM reads it
            sampling = dict(self.model_sampling)
        else:
            sampling = dict(temperature=config.temperature, top_p=1.0 if config.top_p is None else config.top_p)
        return self._vllm.SamplingParams(max_tokens=config.max_new_tokens, seed=config.seed, **sampling, **extra)

    async def _final_output(self, prompt_ids: list[int], params):
        """Run one request to completion on the engine; cancelling the caller aborts it inside vLLM."""
        request_id = f"aloe-{self._id_prefix}-{next(self._ids)}"
        final = None
        async for output in self.engine.generate(self._vllm.TokensPrompt(prompt_token_ids=prompt_ids), params,
                                                 request_id):
            final = output
        if final is None:
            raise BackendError(f"vLLM returned nothing for request {request_id}")
        return final

    def _completion(self, output, began: float) -> Completion:
        choice = output.outputs[0]
        return Completion(text=choice.text.strip(), tokens=len(choice.token_ids), latency_s=time.perf_counter() - began)

    def _scores(self, output, options: list[str], option_ids: list[int]) -> OptionScores:
        choice = output.outputs[0]
        top = choice.logprobs[0] if choice.logprobs else {}
        probs = {option: math.exp(top[token].logprob) for option, token in zip(options, option_ids) if token in top}
        mass = sum(probs.values())
        if mass <= 0:
            return OptionScores(error=f"none of the options among the top {LOGPROBS_TOP} logprobs")
        return OptionScores(probs={o: probs.get(o, 0.0) / mass for o in options}, mass=mass)

    # -- single awaitable requests ----------------------------------------------------------------------
    async def _submit(self, prompt_ids: list[int], params):
        return await asyncio.wrap_future(self._on_engine_loop(self._final_output(prompt_ids, params)))

    async def agenerate(self, messages: Messages, config: GenerationConfig) -> Completion:
        began = time.perf_counter()
        try:
            output = await self._submit(self.encode_prompt(messages, config.max_new_tokens), self._params(config))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # this request's failure only
            return Completion(None, latency_s=time.perf_counter() - began, error=f"{type(exc).__name__}: {exc}")
        return self._completion(output, began)

    async def ascore_options(self, messages: Messages, options: list[str]) -> OptionScores:
        option_ids = self.option_token_ids(options)
        try:
            output = await self._submit(self.encode_prompt(messages, 1), self._score_params())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return OptionScores(error=f"{type(exc).__name__}: {exc}")
        return self._scores(output, options, option_ids)

    def _score_params(self):
        return self._params(GenerationConfig(max_new_tokens=1), logprobs=LOGPROBS_TOP)

    # -- a caller's list, all at once (the engine batches them) -----------------------------------------
    def _all(self, prompts: list[list[int]], params) -> list:
        futures = [self._on_engine_loop(self._final_output(p, params)) for p in prompts]
        wait(futures)
        return [f.exception() or f.result() for f in futures]

    def _generate_batch(self, conversations: list[Messages], config: GenerationConfig) -> list[Completion]:
        began = time.perf_counter()
        prompts = [self.encode_prompt(m, config.max_new_tokens) for m in conversations]
        results = []
        for output in self._all(prompts, self._params(config)):
            if isinstance(output, BaseException):
                results.append(Completion(None, latency_s=time.perf_counter() - began,
                                          error=f"{type(output).__name__}: {output}"))
            else:
                results.append(self._completion(output, began))
        return results

    def _score_options_batch(self, conversations: list[Messages], options: list[str]) -> list[OptionScores]:
        option_ids = self.option_token_ids(options)
        prompts = [self.encode_prompt(m, 1) for m in conversations]
        return [OptionScores(error=f"{type(o).__name__}: {o}") if isinstance(o, BaseException)
                else self._scores(o, options, option_ids) for o in self._all(prompts, self._score_params())]
