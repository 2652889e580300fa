"""Ask a model, parse its answer, and re-ask (sampled, new seed) until it parses or the attempts run out.

One helper for every role that parses what a model wrote: the user simulator, the judges and the data
generator's steps. Every call records what the last attempt returned, why it failed, and how many attempts
it took, so a failure is kept as a failure and never turned into a value.

The re-ask rule: attempt k > 0 samples at `max(temperature, retry_temperature)` with seed
`seed + RESEED_STEP * k`. The step is a prime far above any turn count, so a re-ask never draws with the seed
another turn or another run seed uses for its first attempt (the per-turn seeds are `seed * 1000 + turn`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

from .backends import ChatBackend, Completion, GenerationConfig
from .errors import AloeError

RESEED_STEP = 7919
RETRY_TEMPERATURE = 0.7
UNPARSABLE = "unparsable answer"


class Unparsable(AloeError, ValueError):
    """Raised by a parse function to reject an answer with its own reason (returning None uses the default); the
    re-ask loop records it as the attempt's error, so it only reaches a user inside a recorded failure."""


@dataclass
class Answer:
    """The outcome of one request after its re-asks; `value` is None exactly when `error` is set."""

    value: Any = None
    raw: str | None = None  # text of the last attempt that produced text
    attempts: int = 0
    error: str | None = "not run"
    latency_s: float = 0.0
    tokens: int = 0  # generated (cache hits count 0)
    last: Completion | None = None  # the last completion, as the backend returned it

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_tuple(self) -> tuple:
        return self.value, self.raw, self.attempts, self.error


def attempt_config(config: GenerationConfig, attempt: int,
                   retry_temperature: float = RETRY_TEMPERATURE) -> GenerationConfig:
    """The generation settings of attempt `attempt` (0: `config` as given)."""
    if attempt == 0:
        return config
    return replace(config, temperature=max(config.temperature or 0.0, retry_temperature),
                   seed=(config.seed or 0) + RESEED_STEP * attempt)


def _strip_or_none(text: str) -> str | None:
    return text.strip() or None


def fold(answer: Answer, completion: Completion, attempt: int, parse: Callable, unparsable: str = UNPARSABLE) -> bool:
    """Record one attempt's completion in `answer`; True when it parsed (no re-ask needed)."""
    answer.attempts = attempt + 1
    answer.latency_s += completion.latency_s
    answer.tokens += 0 if completion.cached else completion.tokens
    answer.last = completion
    if not completion.ok:
        answer.error = f"backend: {completion.error}"
        return False
    answer.raw = completion.text
    reason = unparsable
    try:
        value = parse(completion.text)
    except Unparsable as exc:
        value, reason = None, str(exc) or unparsable
    if value is None:
        answer.error = reason
        return False
    answer.value, answer.error = value, None
    return True


@dataclass(frozen=True)
class Reasker:
    """How many times to re-ask and how hot; `ask` batches requests, `aask` is one awaitable request."""

    max_retries: int = 2
    retry_temperature: float = RETRY_TEMPERATURE

    def ask(self, backend: ChatBackend, requests: list[list[dict]], config: GenerationConfig,
            parse: Callable | list[Callable] = _strip_or_none, unparsable: str = UNPARSABLE) -> list[Answer]:
        """Each attempt sends every still-failing request in one batch. `parse` is one function for all
        requests, or a list with one per request (e.g. a judge's echo check depends on what each was shown)."""
        parsers = parse if isinstance(parse, (list, tuple)) else [parse] * len(requests)
        answers = [Answer() for _ in requests]
        pending = list(range(len(requests)))
        for attempt in range(self.max_retries + 1):
            if not pending:
                break
            completions = backend.generate([requests[i] for i in pending],
                                           attempt_config(config, attempt, self.retry_temperature))
            pending = [i for i, completion in zip(pending, completions)
                       if not fold(answers[i], completion, attempt, parsers[i], unparsable)]
        return answers

    async def aask(self, backend: ChatBackend, request: list[dict], config: GenerationConfig,
                   parse: Callable = _strip_or_none, unparsable: str = UNPARSABLE) -> Answer:
        """`ask` for one request: the same settings per attempt, so both schedules record the same answers."""
        answer = Answer()
        for attempt in range(self.max_retries + 1):
            completion = await backend.agenerate(request, attempt_config(config, attempt, self.retry_temperature))
            if fold(answer, completion, attempt, parse, unparsable):
                break
        return answer
