"""The Rate tab's handlers: blind rows, seeded order per rater, durable per-rater files, back and re-rate."""

from __future__ import annotations

import pytest

from aloe_bench.core.ratings import latest_ratings, read_ratings
from aloe_bench.space.space_config import SpaceConfig
from aloe_bench.space.rate import RateSession, RateTab, load_items, shuffled
from rate_fixtures import RUN_ID, write_run


@pytest.fixture
def tab(tmp_path):
    write_run(tmp_path / "runs" / "some-model")  # the per-model layout
    return RateTab(SpaceConfig(ratings_dir=str(tmp_path / "ratings"), results=str(tmp_path / "runs")))


def test_rows_are_blind_and_carry_their_history(tmp_path, tab):
    items = load_items(str(tmp_path / "runs"))
    assert len(items) == 6
    third = next(i for i in items if i.turn == 3)
    assert [u for u, _ in third.history] == [f"message 1 of {third.persona_id}", f"message 2 of {third.persona_id}"]
    md, status, _ = tab.on_start(str(tmp_path / "runs"), "", "ann", RateSession())
    assert "REPLY-" in md and "Profile" in md
    for hidden in ("secret-model-name", "JUDGE", "4.75"):
        assert hidden not in md and hidden not in status


def test_ratings_append_at_once_and_last_rating_wins(tmp_path, tab):
    state = RateSession()
    tab.on_start(str(tmp_path / "runs"), "", "ann", state)
    shown = [state.items[i] for i in state.order]
    tab.on_rate(2, state)
    path = tmp_path / "ratings" / "ratings-ann.jsonl"
    assert len(read_ratings(path)) == 1  # on disk before the next event
    tab.on_rate(None, state)  # skip
    tab.on_back(state)
    tab.on_rate(5, state)  # re-rates the skipped row
    records = read_ratings(path)
    assert [(r["persona_id"], r["turn"], r["score"]) for r in records] == [
        (shown[0].persona_id, shown[0].turn, 2), (shown[1].persona_id, shown[1].turn, None),
        (shown[1].persona_id, shown[1].turn, 5)]
    latest = latest_ratings(records)
    assert latest[("ann", RUN_ID, shown[1].persona_id, shown[1].turn)]["score"] == 5 and len(latest) == 2


def test_order_is_seeded_per_rater_and_files_are_separate(tmp_path, tab):
    assert shuffled(50, "ann", RUN_ID) == shuffled(50, "ann", RUN_ID) != shuffled(50, "bob", RUN_ID)
    a, b = RateSession(), RateSession()
    tab.on_start(str(tmp_path / "runs"), "", "ann", a)
    tab.on_start(str(tmp_path / "runs"), "", "bob", b)
    for _ in range(3):
        tab.on_rate(3, a)
        tab.on_rate(1, b)
    assert {r["score"] for r in read_ratings(tmp_path / "ratings" / "ratings-ann.jsonl")} == {3}
    assert {r["score"] for r in read_ratings(tmp_path / "ratings" / "ratings-bob.jsonl")} == {1}


def test_bad_input_is_a_message_not_a_crash(tmp_path, tab):
    _, status, _ = tab.on_start(str(tmp_path / "nowhere"), "", "ann", RateSession())
    assert "⚠️" in status and "nowhere" in status
    _, status, _ = tab.on_start(str(tmp_path / "runs"), "", "../etc", RateSession())
    assert "⚠️" in status and "rater id" in status
    _, status, _ = tab.on_rate(3, RateSession())
    assert "load a run first" in status
    write_run(tmp_path / "runs" / "other", model="m2")
    (tmp_path / "runs" / "other" / f"samples_{RUN_ID}.jsonl").rename(tmp_path / "runs" / "other" / "samples_x.jsonl")
    _, status, _ = tab.on_start(str(tmp_path / "runs"), "", "ann", RateSession())
    assert "give a run id" in status


def test_a_results_dataset_folder_loads_like_the_run(tmp_path):
    import json

    from publish_helpers import build_results_folder

    rows = write_run(tmp_path / "run")
    results = json.loads((tmp_path / "run" / f"results_{RUN_ID}.json").read_text())
    results.update(metrics={"AL": [4.75, 4.75, 4.75], "AL_avg": 4.75, "IR": 0.0, "N_IR": None, "R2": None,
                            "N_R2": None, "intervals": {k: [None, None] for k in ("AL_avg", "IR", "N_IR", "R2", "N_R2")}},
                   counts={k: 0 for k in ("conversations", "turns", "rows", "scored", "judge_failures",
                                          "generation_failures", "stopped_conversations")})
    folder = build_results_folder(rows, results, tmp_path / "hub", "org/results")
    from_dataset = load_items(str(folder))
    from_files = load_items(str(tmp_path / "run"))
    assert from_dataset == from_files and len(from_dataset) == 6


def test_two_gradio_client_sessions_rate_at_once_into_separate_complete_files(tmp_path):
    """Two raters over loopback at the same time (each its own gradio session): no mixing, nothing lost."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client

    from aloe_bench.space.ui import build_demo
    from test_space_ui import free_port

    rows = write_run(tmp_path / "runs" / "m", personas=3, turns=2)
    port = free_port()
    demo = build_demo(SpaceConfig(port=port, results=str(tmp_path / "runs"), ratings_dir=str(tmp_path / "ratings")))
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    barrier = threading.Barrier(2, timeout=60)

    def rater(name_score):
        name, score = name_score
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        client.predict(str(tmp_path / "runs"), "", name, api_name="/rate_start")
        barrier.wait()
        shown = []
        for _ in rows:
            shown.append(client.predict(api_name=f"/rate_{score}"))
        client.close()
        return shown

    try:
        with ThreadPoolExecutor(2) as pool:
            statuses = list(pool.map(rater, [("eve", 2), ("fay", 4)]))
    finally:
        demo.close()
    for shown in statuses:
        md, status = shown[-1]
        assert "All rows done" in md and f"{len(rows)} saved to" in status
        assert all("REPLY-" in m for m, _ in shown[:-1])
    for name, score in (("eve", 2), ("fay", 4)):
        records = read_ratings(tmp_path / "ratings" / f"ratings-{name}.jsonl")
        assert {r["rater"] for r in records} == {name} and {r["score"] for r in records} == {score}
        assert sorted((r["persona_id"], r["turn"]) for r in records) == sorted(
            (r["persona_id"], r["turn"]) for r in rows)
