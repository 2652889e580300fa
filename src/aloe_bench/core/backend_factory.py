"""One place that turns a model spec and its run options into a backend, for every command and the Space.

`load_backend` keeps one backend per spec and the options that backend kind takes, so two roles naming the same
model share it; this module only gathers the options a run carries (`BackendOptions`) and parses the spec.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .backends import ChatBackend, load_backend
from .specs import ModelSpec


@dataclass
class BackendOptions:
    """Options of the backends of a run; None means the backend's own default. Each backend kind takes only
    its own: endpoints `max_concurrency`, `requests_per_minute`, `timeout_s`, `max_retries`; transformers
    `batch_size`, `device`, `dtype`; vLLM also `tensor_parallel_size`, `gpu_memory_utilization`,
    `max_model_len`, `enable_prefix_caching`."""

    api_key_env: str = "OPENAI_API_KEY"
    engine: str = "transformers"
    batch_size: int | None = None
    device: str | None = None
    dtype: str | None = None
    max_concurrency: int | None = None
    requests_per_minute: float | None = None
    timeout_s: float | None = None
    max_retries: int | None = None
    tensor_parallel_size: int | None = None
    gpu_memory_utilization: float | None = None
    max_model_len: int | None = None
    enable_prefix_caching: bool | None = None

    def backend_kwargs(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None and k not in ("api_key_env", "engine")}


def build_backend(spec: str | ModelSpec, options: BackendOptions | None = None, base_url: str | None = None,
                  revision: str | None = None, token: str | bool | None = None) -> ChatBackend:
    """The backend for `spec` (a spec text or a parsed `ModelSpec`) with `options`; shared per spec and options.

    `token`: whose credentials it may use (see `load_backend`): None the environment's, False none, or a Hub token.
    """
    options = options or BackendOptions()
    if not isinstance(spec, ModelSpec):
        spec = ModelSpec.parse(spec, revision=revision, base_url=base_url, api_key_env=options.api_key_env,
                               engine=options.engine)
    kwargs = options.backend_kwargs()
    if spec.is_remote:
        kwargs = {k: v for k, v in kwargs.items() if k in ("max_concurrency", "requests_per_minute", "timeout_s",
                                                           "max_retries")}
    else:
        kwargs = {k: v for k, v in kwargs.items() if k not in ("max_concurrency", "requests_per_minute", "timeout_s",
                                                               "max_retries")}
    return load_backend(spec, token=token, **kwargs)
