"""A backend wrapper that counts what one role asks of a model: calls, prompt tokens, generated tokens, seconds.

Benchmarks wrap each role with it to show where the time goes (prompt processing versus decoding).
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from .base import Completion, GenerationConfig, Messages, OptionScores
from .delegating import DelegatingBackend


@dataclass
class RoleProfile:
    """Totals for one role over a run.

    `seconds` is the time this role had at least one request in flight (overlapping requests count once);
    `request_seconds` sums each request's own wait, so with concurrent requests it exceeds `seconds`.
    """

    calls: int = 0
    requests: int = 0
    prompt_tokens: int | None = 0  # None when the backend cannot count them (remote endpoints)
    generated_tokens: int = 0
    seconds: float = 0.0
    request_seconds: float = 0.0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["seconds"] = round(self.seconds, 3)
        out["request_seconds"] = round(self.request_seconds, 3)
        return out


class ProfiledBackend(DelegatingBackend):
    """Delegates every call to `inner` and adds its cost to `profile`; results are untouched."""

    def __init__(self, inner, profile: RoleProfile | None = None):
        super().__init__(inner)
        self.profile = profile or RoleProfile()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._busy_since = 0.0

    def _prompt_tokens(self, conversations: list[Messages], reserve: int) -> int | None:
        encode = getattr(self.inner, "encode_prompt", None)
        if encode is None:
            return None
        return sum(len(encode(m, reserve)) for m in conversations)

    def _start(self) -> float:
        now = time.perf_counter()
        with self._lock:
            if self._in_flight == 0:
                self._busy_since = now
            self._in_flight += 1
        return now

    @contextmanager
    def _call(self):
        """Time one call to `inner` (yields its start); a call that raises is recorded as a call that did nothing."""
        began = self._start()
        try:
            yield began
        except BaseException:
            self._record([], 0, began, 0)
            raise

    def _record(self, conversations, reserve, began, generated) -> None:
        now = time.perf_counter()
        prompt = self._prompt_tokens(conversations, reserve)  # counted after the clock stopped
        with self._lock:
            self._in_flight -= 1
            p = self.profile
            if self._in_flight == 0:
                p.seconds += now - self._busy_since
            p.calls += 1
            p.requests += len(conversations)
            p.request_seconds += (now - began) * len(conversations)
            p.generated_tokens += generated
            p.prompt_tokens = None if prompt is None or p.prompt_tokens is None else p.prompt_tokens + prompt

    def _generate_batch(self, conversations: list[Messages], config: GenerationConfig) -> list[Completion]:
        with self._call() as began:
            out = self.inner.generate(conversations, config)
        self._record(conversations, config.max_new_tokens, began, sum(c.tokens for c in out if not c.cached))
        return out

    def _score_options_batch(self, conversations: list[Messages], options: list[str]) -> list[OptionScores]:
        with self._call() as began:
            out = self.inner.score_options(conversations, options)
        self._record(conversations, 1, began, 0)
        return out

    async def agenerate(self, messages: Messages, config: GenerationConfig) -> Completion:
        with self._call() as began:
            out = await self.inner.agenerate(messages, config)
        self._record([messages], config.max_new_tokens, began, 0 if out.cached else out.tokens)
        return out

    async def ascore_options(self, messages: Messages, options: list[str]) -> OptionScores:
        with self._call() as began:
            out = await self.inner.ascore_options(messages, options)
        self._record([messages], 1, began, 0)
        return out


__all__ = ["ProfiledBackend", "RoleProfile"]
