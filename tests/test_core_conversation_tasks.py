"""`run_each`: the one scheduler behind `aloe eval`'s free schedule and `aloe generate`'s free schedule."""

from __future__ import annotations

import asyncio

import pytest

from aloe_bench.core.schedule import run_each


class ClosingBackend:
    """Counts `aclose` calls (all `run_each` asks of a backend)."""

    def __init__(self):
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1


def test_one_failure_stops_alone_the_others_finish_then_it_is_raised():
    finished, backend = [], ClosingBackend()

    async def conversation(name: str, delay: float, fail: bool = False) -> None:
        await asyncio.sleep(delay)
        if fail:
            raise ValueError(f"{name} broke")
        finished.append(name)

    with pytest.raises(ValueError, match="b broke"):
        asyncio.run(run_each([conversation("a", 0.05), conversation("b", 0.0, fail=True), conversation("c", 0.02)],
                             [backend, backend]))
    assert sorted(finished) == ["a", "c"]
    assert backend.closed == 1  # a backend two roles share is closed once


def test_cancelling_cancels_every_conversation_and_still_closes_the_backends():
    started, cancelled, backend = [], [], ClosingBackend()

    async def conversation(name: str) -> None:
        started.append(name)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(name)
            raise

    async def main() -> None:
        outer = asyncio.create_task(run_each((conversation(n) for n in "xyz"), [backend]))
        while len(started) < 3:
            await asyncio.sleep(0)
        outer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await outer

    asyncio.run(main())
    assert sorted(cancelled) == ["x", "y", "z"]
    assert backend.closed == 1
