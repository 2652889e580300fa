"""The chat-backend interface every role (user simulator, evaluated model, judge, responders) talks to.

Backends take *batches* of conversations (`generate`, `score_options`: local engines turn a batch into
length-sorted left-padded calls, remote ones into concurrent requests: the lockstep loop) and single awaitable
requests (`agenerate`, `ascore_options`: one task per conversation; local engines gather the requests that
arrive together into batches, remote ones send them concurrently under a per-backend limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import ContextManager
from dataclasses import asdict, dataclass, field

from ..errors import AloeError

Messages = list[dict]


@dataclass(frozen=True)
class GenerationConfig:
    """Sampling settings for one role. `temperature == 0` means greedy decoding; `temperature`/`top_p` None mean
    the model's own defaults (a local model's generation_config, a server's defaults): nothing is overridden."""

    max_new_tokens: int = 128
    temperature: float | None = 0.0
    top_p: float | None = 1.0
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Completion:
    """One generated message, or the error that prevented it (text is then None)."""

    text: str | None
    tokens: int = 0
    latency_s: float = 0.0
    error: str | None = None
    cached: bool = False
    hidden: str | None = None  # a block cut out of the text before anyone read it (`core.hidden_block`)

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


@dataclass
class OptionScores:
    """A next-token probability distribution restricted to a few options (e.g. the digits 1-5)."""

    probs: dict[str, float] = field(default_factory=dict)
    mass: float | None = None  # total probability the options had before renormalising
    error: str | None = None
    cached: bool = False


class BackendError(AloeError, RuntimeError):
    """A backend could not be built or used (bad model, missing chat template, unreachable server)."""


class ChatBackend(ABC):
    """Base class. Subclasses implement `_generate_batch` and, when they can, `_score_options_batch`."""

    #: remote backends wait on the network, so the harness overlaps their calls with other work
    is_remote: bool = False

    def __init__(self, spec):
        self.spec = spec

    # -- identity ---------------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        return self.spec.label

    @property
    def resolved_revision(self) -> str | None:
        return self.spec.revision

    @property
    def chat_template(self) -> str | None:
        return None

    @property
    def chat_template_hash(self) -> str | None:
        template = self.chat_template
        return hashlib.sha256(template.encode()).hexdigest()[:16] if template else None

    def describe(self) -> dict:
        """What a result file records about this backend (no secrets)."""
        return {
            "spec": self.spec.to_dict(),
            "model_id": self.model_id,
            "resolved_revision": self.resolved_revision,
            "chat_template_sha256": self.chat_template_hash,
            "engine": type(self).__name__,
        }

    # -- work ---------------------------------------------------------------------------------------
    def generate(self, conversations: list[Messages], config: GenerationConfig) -> list[Completion]:
        """Generate one assistant message for each conversation, in order."""
        if not conversations:
            return []
        return self._generate_batch(conversations, config)

    def score_options(self, conversations: list[Messages], options: list[str]) -> list[OptionScores]:
        """Probability of each option as the first token of the assistant's next message."""
        if not conversations:
            return []
        return self._score_options_batch(conversations, options)

    async def agenerate(self, messages: Messages, config: GenerationConfig) -> Completion:
        """One request, awaitable. The default runs a batch of one in a worker thread; batching backends override it."""
        return (await asyncio.to_thread(self.generate, [messages], config))[0]

    async def ascore_options(self, messages: Messages, options: list[str]) -> OptionScores:
        """`score_options` for one conversation, awaitable (same default as `agenerate`)."""
        return (await asyncio.to_thread(self.score_options, [messages], options))[0]

    def expecting(self) -> ContextManager:
        """Context for a caller that keeps sending this backend generation requests (a conversation): whenever it
        has none in the backend it is on its way back, and a batching backend may hold a small batch open for it.
        A no-op by default."""
        return contextlib.nullcontext()

    def release_prefixes(self, scope: str) -> int:
        """Drop what the backend keeps for the conversations of prefix-cache `scope` (`prefix_cache.prefix_scope`):
        called when a conversation ends (finished, stopped, cancelled) and when a Space session is reset or expires.
        Returns how many cache entries went; a no-op (0) for backends without a prefix cache."""
        return 0

    async def aclose(self) -> None:
        """Release what the backend holds for the running event loop (e.g. an HTTP client); a no-op by default."""

    def stream(self, messages: Messages, config: GenerationConfig) -> Iterator[str]:
        """Yield the reply's text as it grows; backends without streaming yield it once."""
        completion = self.generate([messages], config)[0]
        if not completion.ok:
            raise BackendError(completion.error or "generation failed")
        yield completion.text

    @abstractmethod
    def _generate_batch(self, conversations: list[Messages], config: GenerationConfig) -> list[Completion]:
        ...

    def _score_options_batch(self, conversations: list[Messages], options: list[str]) -> list[OptionScores]:
        raise BackendError(f"{type(self).__name__} cannot score options from probabilities")
