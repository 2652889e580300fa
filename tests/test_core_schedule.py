"""`run_turns`: groups played turn by turn, each turn's finishing step delivered in turn order, in the background
or at once; `groups_of` cuts the conversations into groups."""

from __future__ import annotations

import threading
import time

import pytest

from aloe_bench.core.schedule import groups_of, run_turns


def test_groups_of_keeps_order_and_leaves_a_smaller_last_group():
    assert groups_of([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    assert groups_of([1, 2], 5) == [[1, 2]] and groups_of([], 3) == []


@pytest.mark.parametrize("background", [False, True])
def test_groups_run_one_after_the_other_and_deliver_in_turn_order(background):
    events, delivered, finishing_threads = [], [], set()

    def play_turn(group, turn):
        events.append(("play", tuple(group), turn))

        def finish():
            finishing_threads.add(threading.get_ident())
            time.sleep(0.01 if turn == 1 else 0.0)  # a slower first finish must still be delivered first
            return (tuple(group), turn)

        return finish

    run_turns([["a", "b"], ["c"]], 3, play_turn, delivered.append, first_turn=lambda group: 2 if group == ["c"] else 1,
              finish_in_background=background, on_turn=lambda turn: events.append(("turn", turn)))
    assert [e for e in events if e[0] == "play"] == [("play", ("a", "b"), 1), ("play", ("a", "b"), 2),
                                                     ("play", ("a", "b"), 3), ("play", ("c",), 2),
                                                     ("play", ("c",), 3)]
    assert [e for e in events if e[0] == "turn"] == [("turn", 1), ("turn", 2), ("turn", 3), ("turn", 2), ("turn", 3)]
    assert delivered == [(("a", "b"), 1), (("a", "b"), 2), (("a", "b"), 3), (("c",), 2), (("c",), 3)]
    assert (threading.get_ident() in finishing_threads) is not background


def test_in_the_background_turn_k_finishes_while_turn_k_plus_1_is_played():
    order = []

    def play_turn(group, turn):
        order.append(f"play {turn}")

        def finish():
            time.sleep(0.05)
            order.append(f"finished {turn}")
            return turn

        return finish

    run_turns([["a"]], 2, play_turn, lambda turn: order.append(f"delivered {turn}"), finish_in_background=True)
    assert order.index("play 2") < order.index("finished 1") < order.index("delivered 1") < order.index("delivered 2")


def test_a_failing_finishing_step_raises_after_the_worker_is_shut_down():
    def play_turn(group, turn):
        def finish():
            raise RuntimeError(f"judge failed at turn {turn}")

        return finish

    with pytest.raises(RuntimeError, match="turn 1"):
        run_turns([["a"]], 3, play_turn, lambda _: None, finish_in_background=True)
