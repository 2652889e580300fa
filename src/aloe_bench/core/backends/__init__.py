"""Chat backends, and `build_backend`: the one way from a model spec to a (shared) backend instance.

Each backend kind (transformers, vLLM, OpenAI-compatible endpoints) is registered in `BACKEND_KINDS` with a lazily
imported factory, the packages it needs and whether it may run on someone else's credentials. Its options are the
fields of `BackendOptions` tagged with its name. `build_backend` parses the spec, applies the credentials rule,
checks the kind's packages, and shares one instance per spec, options and token, so roles naming the same model
share it.
"""

from __future__ import annotations

import hashlib
import importlib
import threading
from dataclasses import dataclass
from pathlib import Path

from ..extras import require_extra
from ..specs import ModelSpec, looks_local
from .base import BackendError, ChatBackend, Completion, GenerationConfig, Messages, OptionScores
from .options import OPENAI, TRANSFORMERS, VLLM, BackendOptions, kind_options


@dataclass(frozen=True)
class BackendKind:
    """One kind of backend: where its class lives (imported only when one is built) and what it needs."""

    name: str
    factory: str  # "module:attribute", relative to this package
    requires: tuple[str, ...] = ()  # modules that must be importable (their extra is named when missing)
    visitor_tokens: bool = False  # may it load a model with someone else's token (a Space visitor's)?

    @property
    def options(self) -> tuple[str, ...]:
        """The `BackendOptions` fields this kind reads."""
        return kind_options(self.name)

    def load(self):
        """The backend class (its module is imported now, not before)."""
        module, _, attribute = self.factory.partition(":")
        return getattr(importlib.import_module(module, __name__), attribute)

    def create(self, spec: ModelSpec, options: dict, token: "str | bool | None") -> ChatBackend:
        require_extra(*self.requires, who=f"the {self.name} backend ({spec.label})")
        factory = self.load()
        return factory(spec, token=token, **options) if self.visitor_tokens else factory(spec, **options)


BACKEND_KINDS: dict[str, BackendKind] = {}


def register_backend(kind: BackendKind) -> BackendKind:
    """Add a backend kind (its options are the `BackendOptions` fields tagged with its name)."""
    BACKEND_KINDS[kind.name] = kind
    return kind


register_backend(BackendKind(TRANSFORMERS, ".hf:TransformersBackend", visitor_tokens=True))
register_backend(BackendKind(VLLM, ".vllm_backend:VLLMBackend", requires=("vllm",)))
register_backend(BackendKind(OPENAI, ".openai_backend:OpenAIBackend", requires=("openai",)))

_LOADED: dict[tuple, ChatBackend] = {}
_LOCK = threading.Lock()


def kind_of(spec: ModelSpec) -> BackendKind:
    """The registered kind that serves `spec`: endpoints by their protocol, local models by their engine."""
    return BACKEND_KINDS[OPENAI if spec.kind == "openai" else spec.engine]


def _token_key(token: "str | bool | None") -> "str | bool | None":
    """How a token takes part in the cache key: a digest, so the key never holds the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()[:16] if isinstance(token, str) else token


def build_backend(spec: "str | ModelSpec", options: BackendOptions | None = None, *, base_url: str | None = None,
                  revision: str | None = None, token: "str | bool | None" = None) -> ChatBackend:
    """The backend for `spec` (a spec text or a parsed `ModelSpec`) built with `options`; shared per spec,
    options and token.

    `token` says whose credentials the backend may use. None (the default): the environment's, i.e. the
    operator's own (HF_TOKEN or the stored login for Hub downloads; `api_key_env` and OPENAI_BASE_URL for
    endpoints). False: none at all (a Hub model loads anonymously). A string: that Hub token, e.g. a signed-in
    Space visitor's. With any token but None the model is someone else's choice, so:
    - only kinds that take a token may serve it: an endpoint has no credentials but the operator's environment
      (a keyless client falls back to the same variables), and vLLM reads HF_TOKEN itself;
    - it must be a Hub id the Hub confirms that token may read (`hub_access_check`): a folder on this machine,
      or a gated model the operator once downloaded (huggingface_hub serves cached files when the Hub says no),
      is the operator's.
    """
    if token is True:
        raise ValueError("token=True: pass None (the environment's credentials), False (none) or a token string")
    if token is not None and isinstance(spec, str) and looks_local(spec):
        raise _not_yours(spec.strip())  # before parsing: its errors would tell what exists on this disk
    options = options or BackendOptions()
    spec = ModelSpec.parse(spec, revision=revision, base_url=base_url, api_key_env=options.api_key_env,
                           engine=options.engine)
    kind = kind_of(spec)
    chosen = options.for_kind(kind.name)
    key = (spec, tuple(sorted(chosen.items())), _token_key(token))
    if token is not None and key not in _LOADED:
        if not kind.visitor_tokens:
            raise BackendError(f"{spec.label}: the {kind.name} backend runs only on the operator's own "
                               "credentials; it cannot be loaded for someone else's choice of model")
        if spec.kind == "hf":
            if Path(spec.name).is_absolute():
                raise _not_yours(spec.name)
            hub_access_check(spec, token)
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = kind.create(spec, chosen, token)
        return _LOADED[key]


def release_everywhere(scope: str) -> int:
    """`release_prefixes(scope)` on every backend `build_backend` has built (for a caller that does not hold its
    backends, e.g. a Space session being reset); returns how many cache entries went."""
    with _LOCK:
        backends = list(_LOADED.values())
    return sum(backend.release_prefixes(scope) for backend in backends)


def forget(backend: ChatBackend) -> int:
    """Drop `backend` from the cache `build_backend` keeps, so its weights can be freed once its holders let go of it
    (`aloe train online` does this with each round's rollout policy before training on the same GPU); the next
    `build_backend` of its spec loads afresh. Returns how many cache entries held it."""
    with _LOCK:
        keys = [key for key, value in _LOADED.items() if value is backend]
        for key in keys:
            del _LOADED[key]
    return len(keys)


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


__all__ = ["BACKEND_KINDS", "BackendError", "BackendKind", "BackendOptions", "ChatBackend", "Completion",
           "GenerationConfig", "Messages", "ModelSpec", "OptionScores", "build_backend", "forget", "kind_of",
           "register_backend", "release_everywhere"]
