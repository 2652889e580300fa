"""Fake chat backends (no model involved): `ScriptedBackend` for unit tests of the loop logic, and `EchoBackend`,
a deterministic backend per role that the Space load test (`aloe bench space`) and the Space's tests run on."""

from __future__ import annotations

import re
import time

from aloe_bench.core.backends.base import BackendError, ChatBackend, Completion, OptionScores
from aloe_bench.core.prompts import load_prompts
from aloe_bench.core.specs import ModelSpec


class ScriptedBackend(ChatBackend):
    """Answers from a list of texts (cycled), or from a function of the messages; records every call
    (`record=False` keeps nothing, for long runs)."""

    def __init__(self, answers=None, fn=None, options=None, kind="hf", name="fake/model", record=True):
        super().__init__(ModelSpec(kind, name))
        self.answers = list(answers or [])
        self.fn = fn
        self.options = options
        self.record = record
        self.calls: list[tuple[list, object]] = []

    def _generate_batch(self, conversations, config):
        if self.record:
            self.calls.append((conversations, config))
        out = []
        for messages in conversations:
            if self.fn is not None:
                text = self.fn(messages, config)
            else:
                text = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
            if isinstance(text, Exception):
                out.append(Completion(None, error=str(text)))
            else:
                out.append(Completion(text, tokens=len(text.split())))
        return out

    def _score_options_batch(self, conversations, options):
        if self.record:
            self.calls.append((conversations, options))
        if self.options is None:
            return [OptionScores(error="no distribution") for _ in conversations]
        return [OptionScores(probs=dict(self.options), mass=1.0) for _ in conversations]


# -- the echo backend ------------------------------------------------------------------------------------
MARKER = re.compile(r"mk[0-9a-f]{6}s\d{3}")
ECHO_SPECS = {"assistant": "loadtest/echo", "user": "loadtest/user", "judge": "loadtest/judge"}


def marker_score(marker: str) -> int:
    """The echo judge's score for a reply carrying `marker` (1..5, from the session index)."""
    return 1 + int(marker[-3:]) % 5


class EchoBackend(ScriptedBackend):
    """A deterministic backend for load tests: the assistant echoes, the judge scores by the marker it sees.

    - assistant: "echo <last user message>", streamed word by word (`delay_s` per word);
    - judge: the score `marker_score(m)` when the prompt holds exactly one marker m; otherwise an answer
      without a digit, so a judge prompt mixing two sessions becomes a judge failure that the test sees;
    - induction (same backend as the judge, told apart by the prompt): the markers it read;
    - user simulator: a fixed line.
    It keeps no record of its calls (a load test's memory figures must be the Space's own).
    """

    def __init__(self, role: str, delay_s: float = 0.0):
        super().__init__(fn=lambda messages, config: self.answer(messages), name=ECHO_SPECS[role], record=False)
        self.role = role
        self.delay_s = delay_s
        self.induction_system = load_prompts()["induction"]["system"]

    def answer(self, messages) -> str:
        if self.role == "assistant":
            return f"echo {messages[-1]['content']}"
        if self.role == "user":
            return "tell me something"
        markers = sorted(set(MARKER.findall(" ".join(str(m.get("content", "")) for m in messages))))
        if messages and messages[0].get("content") == self.induction_system:
            return "Revealed: " + (" ".join(markers) or "None")
        return str(marker_score(markers[0])) if len(markers) == 1 else f"no verdict: saw {len(markers)} markers"

    def stream(self, messages, config):
        text = ""
        for word in self.answer(messages).split():
            if self.delay_s:
                time.sleep(self.delay_s)
            text = f"{text} {word}".strip()
            yield text


def echo_loader(delay_s: float = 0.0):
    """A Space `loader`: one EchoBackend per role, found by its spec (`ECHO_SPECS`)."""
    backends = {spec: EchoBackend(role, delay_s) for role, spec in ECHO_SPECS.items()}

    def load(spec: str) -> ChatBackend:
        if spec not in backends:
            raise BackendError(f"the load test's echo loader has no model {spec!r}")
        return backends[spec]
    return load
