"""Chat backends and `load_backend`, which turns a model spec into one shared backend instance."""

from __future__ import annotations

import threading

from ..specs import ModelSpec
from .base import BackendError, ChatBackend, Completion, GenerationConfig, Messages, OptionScores

_LOADED: dict[tuple, ChatBackend] = {}
_LOCK = threading.Lock()


def load_backend(spec: "str | ModelSpec", **options) -> ChatBackend:
    """Build (or reuse) the backend for `spec`; the same model serves every role that names it."""
    spec = ModelSpec.parse(spec)
    key = (spec, tuple(sorted(options.items())))
    with _LOCK:
        if key not in _LOADED:
            if spec.kind == "openai":
                from .openai_backend import OpenAIBackend

                allowed = {"max_concurrency", "requests_per_minute", "timeout_s", "max_retries"}
                _LOADED[key] = OpenAIBackend(spec, **{k: v for k, v in options.items() if k in allowed})
            else:
                allowed = {"device", "dtype", "batch_size", "max_context"}
                local = {k: v for k, v in options.items() if k in allowed}
                if spec.engine == "vllm":
                    from .vllm_backend import VLLMBackend

                    _LOADED[key] = VLLMBackend(spec, **local)
                else:
                    from .hf import TransformersBackend

                    _LOADED[key] = TransformersBackend(spec, **local)
        return _LOADED[key]


__all__ = ["BackendError", "ChatBackend", "Completion", "GenerationConfig", "Messages", "OptionScores",
           "ModelSpec", "load_backend"]
