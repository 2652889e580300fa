"""The conversation schedules that `aloe eval` and `aloe generate` share.

`free` runs every conversation as its own asyncio task (`run_each`); `lockstep` and `sequential` play groups of
conversations turn by turn (`run_turns`), each turn one batched step for the whole group, with an optional
finishing step (judging, building rows) that may run in a worker thread while the next turn is played. The
callers keep what a turn is; this module only decides what runs when.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from .backends import ChatBackend
from .backends.prefix_cache import conversation_scope

Conversation = TypeVar("Conversation")
Finished = TypeVar("Finished")


async def run_each(conversations: Iterable[Coroutine[object, object, None]], backends: Iterable[ChatBackend]) -> None:
    """Run every conversation coroutine as its own task. One that raises stops alone: the others finish first,
    then the first error is raised. Cancelling this cancels them all (a conversation cut short is simply not
    reported). Each distinct backend in `backends` is closed for this event loop at the end."""
    tasks = [asyncio.create_task(c) for c in conversations]
    try:
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for task in tasks:
            task.cancel()
        for backend in {id(b): b for b in backends}.values():
            await backend.aclose()
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    if errors:
        raise errors[0]


def groups_of(conversations: Sequence[Conversation], size: int) -> list[list[Conversation]]:
    """`conversations` cut into consecutive groups of `size` (the last may be smaller)."""
    return [list(conversations[start:start + size]) for start in range(0, len(conversations), size)]


def run_turns(groups: Iterable[list[Conversation]], last_turn: int,
              play_turn: Callable[[list[Conversation], int], Callable[[], Finished]],
              deliver: Callable[[Finished], object], *,
              first_turn: Callable[[list[Conversation]], int] = lambda group: 1,
              finish_in_background: bool = False, on_turn: Callable[[int], object] | None = None,
              backends: Iterable[ChatBackend] = ()) -> None:
    """Play each group, one after the other, turn by turn from `first_turn(group)` to `last_turn`.

    `play_turn(group, turn)` plays one turn of the whole group and returns its finishing step; what that step
    returns goes to `deliver`, on the calling thread and in turn order. With `finish_in_background`, turn k's
    finishing step runs in a worker thread while turn k+1 is played (worth it when the finishing step waits on
    the network); otherwise it runs at once. `on_turn(turn)` is called before each turn is played. A group's
    requests share one prefix-cache scope, released on `backends` when the group is done.
    """
    worker = ThreadPoolExecutor(max_workers=1) if finish_in_background else None
    try:
        for group in groups:
            with conversation_scope(backends, "group"):
                pending: Future | None = None
                for turn in range(first_turn(group), last_turn + 1):
                    if on_turn is not None:
                        on_turn(turn)
                    finish = play_turn(group, turn)
                    if pending is not None:
                        deliver(pending.result())
                    if worker is not None:  # in this thread's context: the finishing step keeps the group's scope
                        pending = worker.submit(contextvars.copy_context().run, finish)
                    else:
                        deliver(finish())
                if pending is not None:
                    deliver(pending.result())
    finally:
        if worker is not None:
            worker.shutdown(wait=True)
