"""Chat backends and `load_backend`, which turns a model spec into one shared backend instance."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from ..specs import ModelSpec, looks_local
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
    from the environment itself and is refused likewise. With a token other than None a model is someone else's
    choice and must be a Hub id the Hub confirms that token may read (`hub_access_check`): a folder on this
    machine, or a gated model the operator once downloaded (huggingface_hub serves cached files when the Hub says
    no), is the operator's. Backends are shared per spec, options and token.

    `options` may hold every backend kind's options: OpenAI-compatible endpoints take `max_concurrency`,
    `requests_per_minute`, `timeout_s`, `max_retries`; transformers takes `device`, `dtype`, `batch_size`,
    `max_context`, `score_max_padding`; vLLM takes `tensor_parallel_size`, `gpu_memory_utilization`,
    `max_model_len` (or `max_context`), `enable_prefix_caching`, `dtype` and `batch_size` (its `max_num_seqs`).
    """
    if token is True:
        raise ValueError("token=True: pass None (the environment's credentials), False (none) or a token string")
    if token is not None and isinstance(spec, str) and looks_local(spec):
        raise _not_yours(spec.strip())  # before parsing: its errors would tell what exists on this disk
    spec = ModelSpec.parse(spec)
    chosen = backend_options(spec, options)
    key = (spec, tuple(sorted(chosen.items())), _token_key(token))
    if token is not None and spec.kind == "hf" and key not in _LOADED:
        if Path(spec.name).is_absolute():
            raise _not_yours(spec.name)
        hub_access_check(spec, token)
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


def _not_yours(name: str) -> BackendError:
    return BackendError(f"{name!r} is a folder on this machine: it loads only with the operator's own credentials; "
                        "someone else's choice of model must be a Hub id (ORG/NAME)")


def hub_access_check(spec: ModelSpec, token: "str | bool") -> None:
    """Refuse a Hub model that `token` (False: none) may not read, asking the Hub itself (`auth_check`).

    Loading alone would not do: when the Hub answers 401/403 for a gated or private repo, huggingface_hub falls
    back to the files in the local cache, which may be the operator's download of that very model."""
    from huggingface_hub import auth_check

    try:
        auth_check(spec.name, token=token)
    except Exception as exc:  # gated, private, missing, or the Hub unreachable: the model stays unloaded
        whose = "the signed-in visitor's token" if isinstance(token, str) else "no token (anonymous)"
        raise BackendError(f"{spec.label}: the Hub does not confirm that {whose} may read this model "
                           f"({type(exc).__name__}); it is not loaded") from None


__all__ = ["BackendError", "ChatBackend", "Completion", "GenerationConfig", "Messages", "OptionScores",
           "ModelSpec", "backend_options", "load_backend"]
