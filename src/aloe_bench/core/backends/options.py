"""`BackendOptions`: every option of every backend kind, declared once.

A command parses this dataclass beside its own (flags and recipe keys), so eval, generate, personas grow,
rescore, the benchmarks and the Space take the same options under the same names. Each field says which backend
kinds read it (`kinds` in its metadata); `build_backend` hands a backend exactly those of its kind, so a new
option is one field here plus its use in the backend that reads it. `role_options` overrides any of them for one
role of a run (say the judge on another GPU, or a slower endpoint's timeout).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from ..errors import ConfigError

TRANSFORMERS, VLLM, OPENAI = "transformers", "vllm", "openai"
ENGINES = (TRANSFORMERS, VLLM)


def _option(default, help: str, *kinds: str):
    return field(default=default, metadata={"help": help, "kinds": kinds})


@dataclass
class BackendOptions:
    """How the backends of a run are built. None leaves a setting to the backend's own default."""

    api_key_env: str = field(default="OPENAI_API_KEY", metadata={
        "help": "Env var holding the API key of OpenAI-compatible endpoints (never logged)."})
    engine: str = field(default=TRANSFORMERS, metadata={"help": "Engine of local models: transformers or vllm."})
    batch_size: int | None = _option(None, "Local micro-batch size (default 16 CPU, 64 GPU; vLLM: max_num_seqs).",
                                     TRANSFORMERS, VLLM)
    device: str | None = _option(None, "cpu, cuda, cuda:1, mps (default: best available).", TRANSFORMERS)
    dtype: str | None = _option(None, "bfloat16, float16, float32 (default: bf16 on GPU).", TRANSFORMERS, VLLM)
    max_concurrency: int = _option(16, "Concurrent requests per OpenAI-compatible endpoint.", OPENAI)
    requests_per_minute: float | None = _option(None, "Rate limit per endpoint.", OPENAI)
    request_timeout_s: float = _option(120.0, "Timeout of one request to an endpoint.", OPENAI)
    request_max_retries: int = _option(4, "Retries (with backoff) of a failed endpoint request before it is "
                                          "recorded as failed.", OPENAI)
    kv_cache_mb: int | None = _option(
        None, "Transformers: memory bound (MB) of the cache of prompt prefixes' keys and values that later turns "
              "reuse (least recently used evicted first); 0 turns it off. Default 3072: 16 conversations x 3 roles "
              "at turn 10 on SmolLM2-135M (about 45 KB a token in fp32) need about 2.2 GB.", TRANSFORMERS)
    tensor_parallel_size: int | None = _option(None, "vLLM: GPUs per model.", VLLM)
    gpu_memory_utilization: float | None = _option(None, "vLLM: share of GPU memory.", VLLM)
    max_model_len: int | None = _option(None, "vLLM: context length.", VLLM)
    enable_prefix_caching: bool | None = _option(None, "vLLM: reuse shared prompt prefixes.", VLLM)
    role_options: dict | None = field(default=None, metadata={
        "help": "Per-role overrides, e.g. {\"judge\": {\"device\": \"cuda:1\"}} (a JSON object on the command line, "
                "a mapping in a recipe)."})

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise ConfigError(f"engine {self.engine!r}: choose one of {', '.join(ENGINES)}")
        if isinstance(self.role_options, str):  # a JSON object given as a flag
            import json

            try:
                self.role_options = json.loads(self.role_options)
            except ValueError as exc:
                raise ConfigError(f"role_options: not a JSON object ({exc})") from None
        names = option_names()
        for role, overrides in (self.role_options or {}).items():
            if not isinstance(overrides, dict):
                raise ConfigError(f"role_options.{role}: expected a mapping of backend options, got {overrides!r}")
            for name in overrides:
                if name not in names:
                    raise ConfigError(f"role_options.{role}.{name}: not a backend option; choose from "
                                      f"{', '.join(sorted(names))}")

    def check_roles(self, roles: tuple[str, ...] | list[str]) -> None:
        """Refuse overrides for a role the command does not have (a typo would otherwise be ignored)."""
        for role in self.role_options or {}:
            if role not in roles:
                raise ConfigError(f"role_options.{role}: no such role here; the roles are {', '.join(roles)}")

    def for_role(self, role: str) -> "BackendOptions":
        """These options with `role`'s overrides applied (and no overrides left)."""
        return replace(self, role_options=None, **(self.role_options or {}).get(role, {}))

    def for_kind(self, kind: str) -> dict:
        """The constructor keywords a backend of `kind` takes: the fields tagged with it that are not None."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if kind in f.metadata.get("kinds", ()) and getattr(self, f.name) is not None}


def option_names() -> set[str]:
    """Every field that `role_options` may override."""
    return {f.name for f in fields(BackendOptions) if f.name != "role_options"}


def kind_options(kind: str) -> tuple[str, ...]:
    """The option names backends of `kind` read, in declaration order."""
    return tuple(f.name for f in fields(BackendOptions) if kind in f.metadata.get("kinds", ()))
