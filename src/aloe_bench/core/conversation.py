"""One ALOE conversation as its own asyncio task: user message -> reply -> next turn, each turn judged alongside.

The evaluation loop (`aloe eval`, free schedule) runs one `converse` task per persona (through
`core.schedule.run_each`) and writes a result row from each judged turn; the Space's auto-play runs the same task
for the conversation in the browser, streaming replies through the `reply` hook. The batched schedules
(`core.schedule.run_turns`) advance the same `ConversationState` with `ConversationState.advance`, so a turn is
recorded the same way whichever schedule produced it. A conversation's requests share one prefix-cache scope
(`prefix_cache.conversation_scope`), released on every backend when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .backends import ChatBackend, Completion, GenerationConfig
from .backends.prefix_cache import conversation_scope
from .judge import Judge, JudgeItem, Verdict
from .personas import Persona
from .schedule import run_each
from .simulator import UserSimulator


@dataclass
class ConversationRoles:
    """Who takes part: the evaluated model, the role-play user, the judge, and the model's sampling settings.
    (`judge` may be None for a caller that scores turns itself, through `converse`'s `score` hook.)"""

    model: ChatBackend
    user: UserSimulator
    judge: Judge | None
    reply_config: GenerationConfig

    def backends(self) -> list[ChatBackend]:
        """Each distinct backend once (two roles may share one model)."""
        roles = (self.model, self.user.backend, *([] if self.judge is None else self.judge.backends()))
        return list({id(b): b for b in roles}.values())


@dataclass
class TurnRecord:
    """One simulated turn: the user's message, the model's reply (None when the user message failed), the
    conversation before the turn, and the judge's verdict once known (None while pending or when not judged)."""

    turn: int
    user: Completion
    reply: Completion | None
    history: list[dict]
    verdict: Verdict | None = None

    @property
    def error(self) -> str | None:
        """Why the turn stopped the conversation (a failed user message or reply), or None."""
        if not self.user.ok:
            return f"user simulator: {self.user.error}"
        if self.reply is not None and not self.reply.ok:
            return f"model: {self.reply.error}"
        return None

    def judge_item(self, persona: Persona) -> JudgeItem:
        return JudgeItem(persona, self.user.text, self.reply.text, self.history)


@dataclass
class ConversationState:
    """What a conversation task advances: the persona, the conversation so far (as the evaluated model sees
    it), how many turns are done, and why it stopped (a failed turn ends a conversation)."""

    persona: Persona
    history: list[dict] = field(default_factory=list)
    turns_done: int = 0
    stopped: str | None = None

    def request(self, message: str) -> list[dict]:
        """What the evaluated model is asked at this point: the conversation so far plus the new user message."""
        return self.history + [{"role": "user", "content": message}]

    def advance(self, turn: int, user: Completion, reply: Completion | None) -> TurnRecord:
        """Record turn `turn`: extend the history with the exchange, or stop the conversation on an error."""
        record = TurnRecord(turn, user, reply, list(self.history))
        if record.error is None:
            self.history += [{"role": "user", "content": user.text}, {"role": "assistant", "content": reply.text}]
        else:
            self.stopped = record.error
        self.turns_done = turn
        return record


Reply = Callable[[ConversationState, str], Awaitable[Completion]]
Score = Callable[[ConversationState, TurnRecord], Awaitable[Verdict | None]]


async def converse(state: ConversationState, turns: int, roles: ConversationRoles,
                   on_judged: Callable[[TurnRecord], object], *, reply: Reply | None = None,
                   score: Score | None = None) -> None:
    """Play `state` on to `turns` turns as one task; `on_judged(record)` gets every turn once it is judged.

    The next user message does not wait for this turn's judge: each judge runs as a task of its own. Turns are
    still reported in turn order (each report waits for the previous turn's), so a caller writing them resumes
    cleanly. Cancelling the task cancels the judges in flight; a turn that was not reported is simply not there.
    `reply(state, message)` replaces the default answer (the model on `state.request(message)`), e.g. to stream
    it; `score(state, record)` replaces the default judge call. A turn whose user message or reply failed is
    reported unjudged and stops the conversation.
    """
    with conversation_scope(roles.backends()):
        await _converse(state, turns, roles, on_judged, reply, score)


async def _converse(state: ConversationState, turns: int, roles: ConversationRoles,
                    on_judged: Callable[[TurnRecord], object], reply: Reply | None, score: Score | None) -> None:
    previous: asyncio.Task | None = None

    async def judge_then_report(record: TurnRecord, before: asyncio.Task | None) -> None:
        if record.error is None:
            record.verdict = await (score(state, record) if score is not None
                                    else roles.judge.ascore(record.judge_item(state.persona)))
        if before is not None:
            await before
        on_judged(record)

    try:
        # Between its replies the model may hold a small batch for this conversation (when it asks for them itself).
        with roles.model.expecting() if reply is None else contextlib.nullcontext():
            for turn in range(state.turns_done + 1, turns + 1):
                if state.stopped is not None:
                    break
                user = await roles.user.anext_message(state.persona, state.history)
                answer = None
                if user.ok:
                    answer = await (reply(state, user.text) if reply is not None
                                    else roles.model.agenerate(state.request(user.text), roles.reply_config))
                previous = asyncio.create_task(judge_then_report(state.advance(turn, user, answer), previous))
        if previous is not None:
            await previous
    except BaseException:
        if previous is not None and not previous.done():
            previous.cancel()
        raise


async def converse_all(states: list[ConversationState], turns: int, roles: ConversationRoles,
                       on_judged: Callable[[ConversationState, TurnRecord], object]) -> None:
    """Every unfinished conversation at once, each its own `converse` task, run by `run_each`."""
    await run_each((converse(s, turns, roles, lambda record, s=s: on_judged(s, record))
                    for s in states if s.stopped is None and s.turns_done < turns), roles.backends())
