"""Chat backends and `load_backend`, which turns a model spec into one shared backend instance."""

from __future__ import annotations

import hashlib
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


def _token_key(token: "str | bool | None") -> "str | bool | None":
    """How a token takes part in the cache key: a digest, so the key never holds the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()[:16] if isinstance(token, str) else token


def load_backend(spec: "str | ModelSpec", token: "str | bool | None" = None, **options) -> ChatBackend:
    """Build (or reuse) the backend for `spec`; the same model serves every role that names it.

    `token` says whose credentials the backend may use. None (the default): the environment's, i.e. the
    operator's own (HF_TOKEN or the stored login for Hub downloads; `api_key_env` and OPENAI_BASE_URL for
    endpoints). False: none at all (a Hub model loads anonymously). A string: that Hub token, e.g. a signed-in
    Space visitor's. An endpoint (`openai:`) has no credentials but the environment's, so with any token other
    than None it is refused rather than run on the operator's key (see `OpenAIBackend`); vLLM reads HF_TOKEN
    from the environment itself and is refused likewise. Backends are shared per spec, options and token.

    `options` may hold every backend kind's options: OpenAI-compatible endpoints take `max_concurrency`,
    `requests_per_minute`, `timeout_s`, `max_retries`; transformers takes `device`, `dtype`, `batch_size`,
    `max_context`, `score_max_padding`; vLLM takes `tensor_parallel_size`, `gpu_memory_utilization`,
    `max_model_len` (or `max_context`), `enable_prefix_caching`, `dtype` and `batch_size` (its `max_num_seqs`).
    """
    spec = ModelSpec.parse(spec)
    chosen = backend_options(spec, options)
    if token is True:
        raise ValueError("token=True: pass None (the environment's credentials), False (none) or a token string")
    key = (spec, tuple(sorted(chosen.items())), _token_key(token))
    with _LOCK:
        if key not in _LOADED:
            if spec.kind == "openai":
                from .openai_backend import OpenAIBackend

                _LOADED[key] = OpenAIBackend(spec, env_credentials=token is None, **chosen)
            elif spec.engine == "vllm":
                from .vllm_backend import VLLMBackend

                if token is not None:
                    raise BackendError(f"{spec.label}: the vLLM engine reads HF_TOKEN from the environment; "
                                       "it cannot load a model without the operator's credentials")
                _LOADED[key] = VLLMBackend(spec, **chosen)
            else:
                from .hf import TransformersBackend

                _LOADED[key] = TransformersBackend(spec, token=token, **chosen)
        return _LOADED[key]


__all__ = ["BackendError", "ChatBackend", "Completion", "GenerationConfig", "Messages", "OptionScores",
           "ModelSpec", "backend_options", "load_backend"]
