"""The Space's leaderboard: built from harness result files; bad files are named and skipped."""

from __future__ import annotations

import json

import pytest
from aloe_bench.space.leaderboard import COLUMNS, LeaderboardError, from_folder, load_leaderboard, row_from_result


def result(model, al_avg, ir, n_ir=0.5, interval=(2.0, 3.0), judge="embedded (smoke)", created="2026-11-02T10:00:00Z"):
    return {"model": model, "judge": judge, "created": created, "counts": {"conversations": 4},
            "metrics": {"AL": [2.0, 2.5], "AL_avg": al_avg, "IR": ir, "N_IR": n_ir, "R2": 1.0, "N_R2": 1.0,
                        "intervals": {"AL_avg": list(interval), "IR": [0.0, 1.0]}}}


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))


def test_folder_rows_sorted_with_intervals_and_problems_named(tmp_path):
    write(tmp_path / "base" / "results_20261102-1000.json", result("HuggingFaceTB/SmolLM2-135M-Instruct", 2.2, 0.01))
    write(tmp_path / "dpo" / "results_20261103-1000.json", result("./runs/dpo", 2.9, 0.12, n_ir=None,
                                                                 created="2026-11-03T09:00:00Z"))
    write(tmp_path / "broken" / "results_1.json", '{"model": "x",\n "judge": ')
    write(tmp_path / "bad" / "results_2.json", result("y", "high", 0.1))
    write(tmp_path / "samples_1.jsonl", "not a result file")
    board = from_folder(tmp_path)
    assert [r["model"] for r in board.rows] == ["./runs/dpo", "HuggingFaceTB/SmolLM2-135M-Instruct"]
    top = dict(zip(COLUMNS, board.table()[0]))
    assert top == {"model": "./runs/dpo", "AL_avg": 2.9, "AL_avg interval": "[2.00, 3.00]", "IR": 0.12,
                   "N_IR": None, "AL_style": None, "AL_content": None, "AL_human": None,
                   "judge": "embedded (smoke)", "date": "2026-11-03", "run": ""}
    assert len(board.problems) == 2
    assert any("broken/results_1.json: line 2: invalid JSON" in p for p in board.problems)
    assert any("bad/results_2.json: metrics.AL_avg must be a number, got 'high'" in p for p in board.problems)


def test_missing_fields_are_reported():
    record = result("m", 2.0, 0.0)
    del record["created"]
    with pytest.raises(ValueError, match="r.json: missing field 'created'"):
        row_from_result(record, "r.json")
    record = result("m", 2.0, 0.0, interval=(None, None))
    assert row_from_result(record, "r.json")["AL_avg interval"] == "—"


def test_missing_folder_and_unreachable_hub_are_clear_errors(tmp_path):
    with pytest.raises(LeaderboardError, match="not found"):
        load_leaderboard(str(tmp_path / "nowhere"))
    with pytest.raises(LeaderboardError, match="Hub results dataset 'someone/aloe-results' could not be read"):
        load_leaderboard("hub:someone/aloe-results")  # HF_HUB_OFFLINE=1 in the tests
