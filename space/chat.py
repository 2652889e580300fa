"""The steps of a chat the person drives: send a message (replies stream), stop, score, read what was revealed.

Each step works on a `ChatSession` under its lock and on the models of `SpaceRoles`; a failure leaves the
earlier conversation as it was and raises a SpaceError the page shows.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from aloe_bench.core.backends import BackendError, GenerationConfig
from aloe_bench.core.induction import induction_messages, parse_induction_lenient
from aloe_bench.core.judge import JudgeItem

from .cache_scope import session_scoped
from .errors import SpaceError
from .redact import redact
from .roles import SpaceRoles
from .session import ChatSession, Turn
from .space_config import SpaceConfig


def check_message(session: ChatSession, text: str, config: SpaceConfig) -> str:
    """The message to send, or a SpaceError saying why it cannot be sent."""
    text = (text or "").strip()
    if session.persona is None:
        raise SpaceError("choose a persona first (you chat as that user)")
    if not text:
        raise SpaceError("the message is empty")
    if len(text) > config.max_input_chars:
        raise SpaceError(f"the message has {len(text)} characters; the limit is {config.max_input_chars}")
    if session.n_turns >= config.max_turns:
        raise SpaceError(f"this conversation reached the limit of {config.max_turns} turns: press Reset")
    return text


@session_scoped
def stream_turn(session: ChatSession, roles: SpaceRoles, text: str) -> Iterator[ChatSession]:
    """Add the user's message to every lane and stream each lane's reply; yields as text grows.

    A backend error removes the unfinished turn from every lane (so lanes stay aligned), then raises
    SpaceError: the earlier conversation is untouched and the message can be sent again.
    """
    text = check_message(session, text, roles.config)
    config = roles.reply_config()
    with session.lock:
        backends = [roles.assistant(lane.model) for lane in session.lanes]
        index = session.n_turns
        created = [Turn(user=text) for _ in session.lanes]
        for lane, turn in zip(session.lanes, created):
            lane.turns.append(turn)

    def drop_unfinished():  # by identity: a cancelled stream may be closed late, after newer turns exist
        with session.lock:
            for lane, turn in zip(session.lanes, created):
                lane.turns[:] = [t for t in lane.turns if t is not turn]

    yield session
    try:
        for lane, backend, turn in zip(session.lanes, backends, created):
            started = time.perf_counter()
            messages = lane.history(index) + [{"role": "user", "content": text}]
            for partial in backend.stream(messages, config):
                turn.reply = partial
                yield session
            turn.latency_s = round(time.perf_counter() - started, 3)
            if not turn.reply.strip():
                raise BackendError(f"{lane.model} returned an empty reply")
            turn.done = True
    except GeneratorExit:  # stopped by the person: drop the unfinished turn
        drop_unfinished()
        raise
    except Exception as exc:
        drop_unfinished()
        raise SpaceError(f"the assistant failed: {exc}") from None
    yield session


def stop(session: ChatSession) -> int:
    """After Stop: drop turns whose reply had not finished in every lane; returns how many were dropped."""
    with session.lock:
        unfinished = {i for lane in session.lanes for i, turn in enumerate(lane.turns) if not turn.done}
        for lane in session.lanes:
            lane.turns[:] = [t for i, t in enumerate(lane.turns) if i not in unfinished]
    return len(unfinished)


@session_scoped
def score_pending(session: ChatSession, roles: SpaceRoles) -> int:
    """Judge every reply that has no verdict yet (all lanes in one batch); returns how many were judged."""
    with session.lock:
        if session.persona is None:
            return 0
        todo = [(lane, i) for lane in session.lanes for i, turn in enumerate(lane.turns)
                if turn.judge == "pending" and turn.done]
        items = [JudgeItem(session.persona, lane.turns[i].user, lane.turns[i].reply, lane.history(i))
                 for lane, i in todo]
    if not todo:
        return 0
    judge = roles.judge()
    error = None
    try:
        verdicts = judge.score(items)
    except Exception as exc:  # a dead judge marks the turns failed; it never invents a score
        verdicts = None
        error = redact(f"judge error: {exc}")
    with session.lock:
        for n, (lane, i) in enumerate(todo):
            if i >= len(lane.turns):  # the conversation was reset meanwhile
                continue
            lane.turns[i].record_verdict(None if verdicts is None else verdicts[n], error)
    return len(todo)


@session_scoped
def induce(session: ChatSession, roles: SpaceRoles) -> str | None:
    """Ask the induction model what the user has revealed so far (from the first lane's conversation).

    The request and the reading of the answer are data generation's (`aloe_bench.core.induction`), read
    leniently: the labelled facts as `Profile: ...` / `Personality: ...` lines, an unlabelled answer as it came.
    """
    with session.lock:
        lane = session.lanes[0]
        if not lane.turns:
            return None
        history = lane.history()
        n_turns = len(lane.turns)
        persona = session.persona
    if persona is None:
        return None
    backend = roles.induction()
    config = GenerationConfig(max_new_tokens=roles.config.induction_max_new_tokens)
    completion = backend.generate([induction_messages(roles.prompts, persona, history)], config)[0]
    if not completion.ok:
        raise SpaceError(f"the induction model failed: {completion.error}")
    parsed = parse_induction_lenient(completion.text)
    if parsed is None:
        raise SpaceError("the induction model gave an empty answer")
    profile, personality, unlabelled = parsed
    revealed = profile if unlabelled else f"Profile: {profile}\nPersonality: {personality}"
    with session.lock:
        session.revealed, session.revealed_turns = revealed, n_turns
    return revealed
