"""One browser session's state: the persona, one or two assistant lanes of turns, and what the user revealed.

Pure Python (no gradio): the handlers mutate a session and the UI only renders it. A session is a mutable
object guarded by a lock, so a scoring step that finishes after the next message was sent writes its score
into the right turn instead of overwriting the newer conversation.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field

from aloe_bench.core.judge import Verdict
from aloe_bench.core.personas import Persona

from .cache_scope import fresh_scope, release_session
from .redact import redact
from .space_config import SpaceConfig


@dataclass
class Turn:
    """One user message and one lane's reply to it, with the judge's verdict once it is known."""

    user: str
    reply: str = ""
    score: float | None = None
    judge: str = "pending"  # pending | scored | failed
    judge_error: str | None = None
    distribution: dict | None = None
    latency_s: float = 0.0
    done: bool = False  # the reply finished streaming

    def record_verdict(self, verdict: Verdict | None, error: str | None) -> None:
        """Store the judge's verdict, or mark the turn failed with `error` when the judge call itself failed."""
        if verdict is None:
            self.judge, self.judge_error = "failed", error
            return
        self.score, self.distribution = verdict.score, verdict.distribution
        self.judge = "failed" if verdict.failed else "scored"
        self.judge_error = redact(verdict.error)


@dataclass
class Lane:
    """One assistant model's side of the conversation."""

    model: str
    turns: list[Turn] = field(default_factory=list)

    def history(self, upto: int | None = None) -> list[dict]:
        """The conversation as chat messages (assistant's point of view), turns before `upto`."""
        messages = []
        for turn in self.turns[:upto]:
            messages.append({"role": "user", "content": turn.user})
            if turn.reply:
                messages.append({"role": "assistant", "content": turn.reply})
        return messages

    def scores(self) -> list[float | None]:
        return [turn.score for turn in self.turns]


# Every ChatSession alive in this process, weakly held (it never keeps one alive): what the load test counts.
_LIVE: weakref.WeakSet[ChatSession] = weakref.WeakSet()


def live_sessions() -> int:
    """How many ChatSession objects exist right now (the UI's template included)."""
    return len(_LIVE)


class ChatSession:
    """Everything one browser session holds. Mutated in place under `lock`.

    A plain class, not a dataclass: gradio would try to serialise a dataclass State value (and its lock).
    The module keeps no registry of sessions (only the weak `_LIVE` set): gradio's per-session state owns them,
    and drops them after the idle time-to-live or beyond the session capacity (see ui.py).
    """

    def __init__(self, models: list[str], persona: Persona | None = None):
        self.models = list(models)
        self.persona = persona
        self.lanes = [Lane(model) for model in self.models]
        self.revealed: str | None = None
        self.revealed_turns = 0
        self.notice = ""
        self.lock = threading.RLock()
        self.cache_scope = fresh_scope()  # prompt-prefix cache scope of this visitor (space/cache_scope.py)
        _LIVE.add(self)

    def close(self) -> None:
        """Free the conversation (gradio calls this when the session's state expires)."""
        with self.lock:
            self.lanes = [Lane(model) for model in self.models]
            self.persona, self.revealed, self.revealed_turns, self.notice = None, None, 0, ""
            release_session(self)

    def __deepcopy__(self, memo):  # gradio copies a State's initial value per browser session
        return ChatSession(self.models, self.persona)

    @property
    def n_turns(self) -> int:
        return len(self.lanes[0].turns)

    def reset(self, persona: Persona | None = None, models: list[str] | None = None) -> None:
        with self.lock:
            if models is not None:
                self.models = list(models)
            if persona is not None:
                self.persona = persona
            self.lanes = [Lane(model) for model in self.models]
            self.revealed, self.revealed_turns, self.notice = None, 0, ""
            release_session(self)


def new_session(config: SpaceConfig) -> ChatSession:
    """A session with one lane per configured assistant (the compared model's too, when there is one)."""
    models = [config.model] + ([config.compare_model] if config.compare_model else [])
    return ChatSession(models)
