"""A backend wrapper that counts what one role asks of a model: calls, prompt tokens, generated tokens, seconds.

Benchmarks wrap each role with it to show where the time goes (prompt processing versus decoding).
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass

from .base import ChatBackend, Completion, GenerationConfig, Messages, OptionScores


@dataclass
class RoleProfile:
    """Totals for one role over a run."""

    calls: int = 0
    requests: int = 0
    prompt_tokens: int | None = 0  # None when the backend cannot count them (remote endpoints)
    generated_tokens: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["seconds"] = round(self.seconds, 3)
        return out


class ProfiledBackend(ChatBackend):
    """Delegates every call to `inner` and adds its cost to `profile`; results are untouched."""

    def __init__(self, inner: ChatBackend, profile: RoleProfile | None = None):
        super().__init__(inner.spec)
        self.inner = inner
        self.profile = profile or RoleProfile()
        self.is_remote = inner.is_remote
        self._lock = threading.Lock()

    model_id = property(lambda self: self.inner.model_id)
    resolved_revision = property(lambda self: self.inner.resolved_revision)
    chat_template = property(lambda self: self.inner.chat_template)

    def describe(self) -> dict:
        return self.inner.describe()

    def stream(self, messages, config):
        return self.inner.stream(messages, config)

    def _prompt_tokens(self, conversations: list[Messages], reserve: int) -> int | None:
        encode = getattr(self.inner, "encode_prompt", None)
        if encode is None:
            return None
        return sum(len(encode(m, reserve)) for m in conversations)

    def _record(self, conversations, reserve, began, generated) -> None:
        seconds = time.perf_counter() - began
        prompt = self._prompt_tokens(conversations, reserve)  # counted after the clock stopped
        with self._lock:
            p = self.profile
            p.calls += 1
            p.requests += len(conversations)
            p.seconds += seconds
            p.generated_tokens += generated
            p.prompt_tokens = None if prompt is None or p.prompt_tokens is None else p.prompt_tokens + prompt

    def _generate_batch(self, conversations: list[Messages], config: GenerationConfig) -> list[Completion]:
        began = time.perf_counter()
        out = self.inner.generate(conversations, config)
        self._record(conversations, config.max_new_tokens, began, sum(c.tokens for c in out if not c.cached))
        return out

    def _score_options_batch(self, conversations: list[Messages], options: list[str]) -> list[OptionScores]:
        began = time.perf_counter()
        out = self.inner.score_options(conversations, options)
        self._record(conversations, 1, began, 0)
        return out


__all__ = ["ProfiledBackend", "RoleProfile"]
