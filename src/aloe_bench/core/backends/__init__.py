"""Chat backends and `load_backend`, which turns a model spec into one shared backend instance."""

from __future__ import annotations

import threading

from ..specs import ModelSpec
from .base import BackendError, ChatBackend, Completion, GenerationConfig, Messages, OptionScores

_LOADED: dict[tuple, ChatBackend] = {}
_LOCK = threading.Lock()

#: the options each kind of backend takes; others are dropped (a run's options serve every role's backend)
REMOTE_OPTIONS = ("max_concurrency", "requests_per_minute", "timeout_s", "max_retries")
TRANSFORMERS_OPTIONS = ("device", "dtype", "batch_size", "max_context", "score_max_padding")
VLLM_OPTIONS = ("dtype", "batch_size", "max_context", "tensor_parallel_size", "gpu_memory_utilization",
                "max_model_len", "enable_prefix_caching")


def backend_options(spec: "str | ModelSpec", options: dict) -> dict:
    """The subset of `options` (None values dropped) that the backend for `spec` takes."""
    spec = ModelSpec.parse(spec)
    if spec.kind == "openai":
        allowed = REMOTE_OPTIONS
    else:
        allowed = VLLM_OPTIONS if spec.engine == "vllm" else TRANSFORMERS_OPTIONS
    return {k: v for k, v in options.items() if k in allowed and v is not None}


def load_backend(spec: "str | ModelSpec", **options) -> ChatBackend:
    """Build (or reuse) the backend for `spec`; the same model serves every role that names it.

    `options` may hold every backend kind's options: OpenAI-compatible endpoints take `max_concurrency`,
    `requests_per_minute`, `timeout_s`, `max_retries`; transformers takes `device`, `dtype`, `batch_size`,
    `max_context`, `score_max_padding`; vLLM takes `tensor_parallel_size`, `gpu_memory_utilization`,
    `max_model_len` (or `max_context`), `enable_prefix_caching`, `dtype` and `batch_size` (its `max_num_seqs`).
    """
    spec = ModelSpec.parse(spec)
    chosen = backend_options(spec, options)
    key = (spec, tuple(sorted(chosen.items())))
    with _LOCK:
        if key not in _LOADED:
            if spec.kind == "openai":
                from .openai_backend import OpenAIBackend

                _LOADED[key] = OpenAIBackend(spec, **chosen)
            elif spec.engine == "vllm":
                from .vllm_backend import VLLMBackend

                _LOADED[key] = VLLMBackend(spec, **chosen)
            else:
                from .hf import TransformersBackend

                _LOADED[key] = TransformersBackend(spec, **chosen)
        return _LOADED[key]


__all__ = ["BackendError", "ChatBackend", "Completion", "GenerationConfig", "Messages", "OptionScores",
           "ModelSpec", "backend_options", "load_backend"]
