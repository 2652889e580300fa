"""Auto-play: the simulated user plays the persona for a few turns while the page watches each step.

`_AutoPlay` runs the core's conversation task on an event loop of its own thread and hands each visible
change (a turn added, a reply grown, a score in) to gradio's generator handler.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, InvalidStateError

from aloe_bench.core.backends import ChatBackend, Completion, GenerationConfig
from aloe_bench.core.conversation import ConversationRoles, ConversationState, TurnRecord, converse
from aloe_bench.core.judge import JudgeItem, Verdict

from .cache_scope import session_scoped
from .errors import SpaceError
from .redact import redact
from .roles import SpaceRoles
from .session import ChatSession, Lane, Turn


@session_scoped
def autoplay(session: ChatSession, roles: SpaceRoles, n_turns: int) -> Iterator[ChatSession]:
    """Let the simulated user play the persona for `n_turns`; yields as each reply grows and each score lands.

    The turns run on the core's conversation task (`aloe_bench.core.conversation.converse`, as `aloe eval`
    does): the next user message is written while the judge scores the last reply. Each lane's reply streams
    (the first lane's continues the conversation); a turn appears once the previous one is scored.
    """
    n_turns = max(1, min(int(n_turns), roles.config.max_autoplay_turns))
    if session.persona is None:
        raise SpaceError("choose a persona first: the simulated user plays it")
    play = min(n_turns, roles.config.max_turns - session.n_turns)
    if play > 0:
        yield from _AutoPlay(session, roles).run(play)
    if play < n_turns:
        session.notice = f"stopped: the conversation reached {roles.config.max_turns} turns"


_DONE = object()


class _AutoPlay:
    """Runs `converse` on an event loop of its own thread and hands control to the caller's generator at every
    visible change (a turn added, a reply grown, a score in): the task waits until the caller asks for more, so
    the page sees each step, and closing the generator (Stop) cancels the task and drops the unfinished turn."""

    def __init__(self, session: ChatSession, roles: SpaceRoles):
        self.session, self.roles = session, roles
        self.events: queue.Queue = queue.Queue()
        self.closed = False
        self.made: dict[int, list[tuple[Lane, Turn]]] = {}  # turn number -> each lane's Turn
        self.judged: dict[int, asyncio.Event] = {}
        self.failure: str | None = None

    # -- hand-over points --------------------------------------------------------------------------
    def _handover(self) -> None:
        """From a worker thread: show the change, wait until the caller asks for the next one."""
        if not self.closed:
            done = Future()
            self.events.put(done)
            done.result()

    async def _ahandover(self) -> None:
        if not self.closed:
            done = Future()
            self.events.put(done)
            await asyncio.wrap_future(done)

    @staticmethod
    def _release(done: Future) -> None:
        try:
            done.set_result(None)
        except InvalidStateError:  # its waiter was cancelled
            pass

    # -- the hooks the conversation task calls -------------------------------------------------------
    async def _reply(self, state: ConversationState, message: str) -> Completion:
        turn_no = state.turns_done + 1
        if turn_no - 1 in self.judged:  # show turns in order: the last one's score first
            await self.judged[turn_no - 1].wait()
        session, config = self.session, self.roles.reply_config()
        with session.lock:
            index = session.n_turns
            made = [(lane, Turn(user=message)) for lane in session.lanes]
            for lane, turn in made:
                lane.turns.append(turn)
        self.made[turn_no] = made
        self.judged[turn_no] = asyncio.Event()
        await self._ahandover()
        for (lane, turn), backend in zip(made, self.backends):
            started = time.perf_counter()
            messages = lane.history(index) + [{"role": "user", "content": message}]
            error = await asyncio.to_thread(self._stream, backend, messages, config, turn)
            turn.latency_s = round(time.perf_counter() - started, 3)
            if error is None and not turn.reply.strip():
                error = f"{lane.model} returned an empty reply"
            if error is not None:
                return Completion(None, error=error)
            turn.done = True
        first = made[0][1]
        return Completion(first.reply, latency_s=first.latency_s)

    def _stream(self, backend: ChatBackend, messages: list[dict], config: GenerationConfig, turn: Turn) -> str | None:
        """One lane's reply, streamed into `turn` (in a worker thread); returns an error, or None."""
        parts = backend.stream(messages, config)
        try:
            for partial in parts:
                if self.closed:
                    return "stopped"
                turn.reply = partial
                self._handover()
        except Exception as exc:  # reported as the assistant's failure, with the earlier turns untouched
            return str(exc)
        finally:
            parts.close()
        return None

    async def _score(self, state: ConversationState, record: TurnRecord) -> Verdict | None:
        """Judge this turn in every lane at once; a dead judge marks the turns failed, it never invents a score."""
        session, made = self.session, self.made[record.turn]
        with session.lock:
            todo = [(turn, lane.history(lane.turns.index(turn))) for lane, turn in made
                    if any(t is turn for t in lane.turns)]  # a reset or Stop may have dropped it meanwhile
        verdicts, error = None, None
        try:
            judge = self.roles.judge()
            verdicts = await asyncio.gather(*(judge.ascore(JudgeItem(state.persona, t.user, t.reply, history))
                                              for t, history in todo))
        except Exception as exc:
            error = redact(f"judge error: {exc}")
        with session.lock:
            for n, (turn, _) in enumerate(todo):
                turn.record_verdict(None if verdicts is None else verdicts[n], error)
        await self._ahandover()
        return verdicts[0] if verdicts else None

    def _judged(self, record: TurnRecord) -> None:
        if record.turn in self.judged:
            self.judged[record.turn].set()
        if record.error is not None and self.failure is None:
            self.failure = (f"the user simulator failed: {record.user.error}" if not record.user.ok
                            else f"the assistant failed: {record.reply.error}")

    # -- the task and its driver -----------------------------------------------------------------------
    async def _main(self, turns: int, started: Future) -> None:
        session = self.session
        state = ConversationState(session.persona, session.lanes[0].history(), turns_done=session.n_turns)
        conversation = ConversationRoles(self.backends[0], self.user, None, self.roles.reply_config())
        task = asyncio.create_task(converse(state, state.turns_done + turns, conversation, self._judged,
                                            reply=self._reply, score=self._score))
        started.set_result((asyncio.get_running_loop(), task))
        try:
            await task
        finally:
            for backend in {id(b): b for b in (*self.backends, self.user.backend)}.values():
                await backend.aclose()

    def run(self, turns: int) -> Iterator[ChatSession]:
        with self.session.lock:
            self.backends = [self.roles.assistant(lane.model) for lane in self.session.lanes]
        self.user = self.roles.simulator()
        started: Future = Future()
        outcome: list[BaseException] = []

        def thread_main():
            try:
                asyncio.run(self._main(turns, started))
            except BaseException as exc:  # handed to the caller's thread
                outcome.append(exc)
            finally:
                self.events.put(_DONE)

        worker = threading.Thread(target=contextvars.copy_context().run, args=(thread_main,),  # the session's scope
                                  name="aloe-space-autoplay", daemon=True)
        worker.start()
        item = None
        try:
            while (item := self.events.get()) is not _DONE:
                yield self.session
                self._release(item)
        except BaseException:  # closed (Stop, a dropped connection) or failed: cancel the task, drop the half turn
            self.closed = True
            if started.done():
                loop, task = started.result()
                loop.call_soon_threadsafe(task.cancel)
            while item is not _DONE:
                if item is not None:
                    self._release(item)
                item = self.events.get()
            worker.join()
            self._drop_unfinished()
            raise
        worker.join()
        self._drop_unfinished()
        errors = [e for e in outcome if not isinstance(e, asyncio.CancelledError)]
        if errors:
            raise errors[0]
        if self.failure is not None:
            raise SpaceError(self.failure)

    def _drop_unfinished(self) -> None:
        """Remove every turn this auto-play added whose reply did not finish in every lane (lanes stay aligned)."""
        with self.session.lock:
            for made in self.made.values():
                if all(turn.done for _, turn in made):
                    continue
                for lane, _ in made:
                    lane.turns[:] = [t for t in lane.turns if not any(t is turn for _, turn in made)]

