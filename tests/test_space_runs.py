"""The Runs tab's reading and views without a browser: runs from a folder, a results dataset folder and a Hub id
(whose token is the visitor's), one persona's turns with every score, two runs side by side, the leaderboard's
link, the public Space's refusal of typed paths, and the score plot's spec."""

from __future__ import annotations

import json

import pytest

from aloe_bench.space.leaderboard import COLUMNS, load_leaderboard
from aloe_bench.space.runs import RunsError, conversation, list_runs, load_rows, turn_markdown
from aloe_bench.space.runs_tab import RunsSession, RunsTab
from aloe_bench.space.score_plot import ScorePlot, plot_spec
from aloe_bench.space.space_config import SpaceConfig
from aloe_bench.space.views import score_curve
from runs_fixtures import PERSONAS, write_two_runs


@pytest.fixture
def runs_dir(tmp_path):
    write_two_runs(tmp_path / "runs")
    return tmp_path / "runs"


def tab(runs_dir, **kw):
    return RunsTab(SpaceConfig(results=str(runs_dir), **kw)), RunsSession()


def test_a_folder_lists_its_runs_newest_first_and_reads_a_persona(runs_dir):
    entries = list_runs(str(runs_dir))
    assert [e.run_id for e in entries] == ["20261202T000000", "20261201T000000"]
    rows = conversation(load_rows(entries[1], 100), PERSONAS[0])
    assert [r["turn"] for r in rows] == [1, 2]
    text = turn_markdown(rows[0])
    for shown in ("USER-evp01__evq01-1", "REPLY-A-evp01__evq01-1", "score 3.00", "style 2.00", "content 4.00",
                  "human 3.00", "RAW-A-1", "judge-one", "ONE-SAID-3", "judge-two", "no integer in the answer",
                  "simulator flags:* leak"):
        assert shown in text, shown
    assert "role_break" not in text  # a flag that is off is not shown


def test_rows_are_capped_and_texts_clipped(runs_dir, tmp_path):
    entry = list_runs(str(runs_dir))[1]
    assert len(load_rows(entry, 3)) == 3
    long = {"persona_id": "p", "turn": 1, "user_message": "u" * 5000, "reply": "r" * 5000, "score": 3.0}
    text = turn_markdown(long)
    assert len(text) < 4000 and "characters cut" in text


def test_two_runs_side_by_side_on_one_persona(runs_dir):
    runs_tab, state = tab(runs_dir)
    labels = runs_tab.load(str(runs_dir), state)
    base, tuned = (next(lb for lb in labels if m in lb) for m in ("base/model", "tuned/model"))
    summary_a, plot_a, turns_a, summary_b, plot_b, turns_b, status = runs_tab.show(base, tuned, PERSONAS[0], state)
    assert "base/model" in summary_a and "tuned/model" in summary_b and status == ""
    assert "AL_avg per criterion: style 3.50" in summary_a and "simulator: leaks 1" in summary_a
    assert "REPLY-A-evp01__evq01-2" in turns_a and "REPLY-B-evp01__evq01-2" in turns_b
    assert "JUDGE-TIMEOUT" in turns_b and "score —" in turns_b
    assert set(plot_a["series"]) == {"score", "trend", "style", "content", "human"}
    assert list(plot_b[plot_b.series == "score"]["turn"]) == [1]  # turn 2 has no score
    *_, status = runs_tab.show(base, tuned, PERSONAS[1], state)
    assert "has no persona `evp02__evq02`" in status


def test_a_results_dataset_folder_reads_like_the_run_folder(runs_dir, tmp_path):
    from aloe_bench.core.run_files import find_runs
    from aloe_bench.harness.results_dataset import merge_runs

    merge_runs(find_runs(runs_dir), tmp_path / "dataset")
    entries = list_runs(str(tmp_path / "dataset"))
    assert sorted(e.run_id for e in entries) == ["20261201T000000", "20261202T000000"]
    base = next(e for e in entries if e.results["model"] == "base/model")
    assert isinstance(base.results["config"], dict)
    rows = conversation(load_rows(base, 100), PERSONAS[0])
    assert rows[0]["criteria_scores"] == {"style": 2.0, "content": 4.0, "human": 3.0}  # restored from `extra`
    assert rows[0]["judges"][1]["error"] == "no integer in the answer"
    assert "judge-two" in turn_markdown(rows[0]) and "RAW-A-1" in turn_markdown(rows[0])


def test_a_leaderboard_row_opens_its_run(runs_dir):
    board = load_leaderboard(str(runs_dir))
    row = dict(zip(COLUMNS, board.table()[0]))
    runs_tab, state = tab(runs_dir)
    out = runs_tab.on_open(str(runs_dir), row["run"], state)
    assert out[0]["selected"] == runs_tab.tab_id and out[2]["value"].startswith(f"{row['model']} · {row['run']}")
    assert out[4]["value"] == PERSONAS[0] and f"USER-{PERSONAS[0]}-1" in out[7]
    assert runs_tab.on_open(str(runs_dir), "no-such-run", state)[-2].startswith("⚠️")


def test_a_public_space_refuses_typed_paths_and_reads_hub_with_the_visitors_token(runs_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SPACE_ID", "owner/aloe")
    monkeypatch.setenv("HF_TOKEN", "hf_OWNERSECRETTOKEN123")
    config = SpaceConfig.from_env(runs=f"{runs_dir},hub:org/results")
    runs_tab, state = RunsTab(config), RunsSession()
    other = tmp_path / "elsewhere"
    write_two_runs(other)
    for typed in (str(other), "/etc", "hub:someone/else"):
        out = runs_tab.on_load(typed, state)
        assert out[3].startswith("⚠️ visitors of a public Space pick among the runs") and not state.entries
    assert "2 run(s)" in runs_tab.on_load(str(runs_dir), state)[3]

    seen = []

    def fake_load(source, config_name, split=None, **kwargs):
        seen.append((source, config_name, kwargs.get("token", "NOT GIVEN")))
        raise FileNotFoundError("offline")

    monkeypatch.setattr("aloe_bench.core.dataset_folder.load_dataset_source", fake_load)

    class Visitor:
        token = "hf_visitor"

    assert runs_tab.on_load("hub:org/results", state)[3].startswith("⚠️")
    runs_tab.on_load("hub:org/results", state, Visitor())
    assert seen == [("org/results", "results", False), ("org/results", "results", "hf_visitor")]
    local = RunsTab(SpaceConfig(results=str(runs_dir)))  # the owner's own machine: the environment's credentials
    local.on_load("hub:org/results", RunsSession())
    assert seen[-1][2] == "NOT GIVEN"


def test_secrets_in_a_run_are_masked(runs_dir, monkeypatch):
    secret = "sk-THISISASECRETVALUE"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    samples = next(runs_dir.rglob("samples_20261201T000000.jsonl"))
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    rows[0]["judge_error"] = f"401 for key {secret}"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    runs_tab, state = tab(runs_dir)
    labels = runs_tab.load(str(runs_dir), state)
    out = runs_tab.on_show(next(lb for lb in labels if "base" in lb), "", PERSONAS[0], state)
    assert secret not in repr(out) and "401 for key" in out[2]


def test_score_curve_and_plot_spec():
    rows = score_curve([4.0])
    assert {r["series"] for r in rows} == {"score", "trend"}
    spec = plot_spec(rows)
    assert spec["layer"][0]["encoding"]["x"]["axis"]["values"] == [1, 2] and spec["layer"][0]["encoding"]["x"]["axis"]["format"] == "d"
    assert spec["layer"][0]["mark"]["point"]  # a single scored turn is drawn as a point
    rows = score_curve([3.0, None, 4.0], {"style": [2.0, 3.0, None]})
    assert [(r["turn"], r["series"]) for r in rows] == [(1, "score"), (3, "score"), (1, "style"), (2, "style")]
    import pandas as pd

    data = ScorePlot().postprocess(pd.DataFrame(score_curve([2.0, 3.0, 5.0])))
    assert data.type == "altair" and json.loads(data.plot)["layer"][0]["encoding"]["x"]["axis"]["values"] == [1, 2, 3]
    assert ScorePlot().postprocess(None) is None


def test_the_rate_tab_reads_a_results_dataset_folder_through_the_same_reader(runs_dir, tmp_path):
    from aloe_bench.core.run_files import find_runs
    from aloe_bench.harness.results_dataset import merge_runs
    from aloe_bench.space.rate import load_items

    merge_runs(find_runs(runs_dir), tmp_path / "dataset")
    items = load_items(str(tmp_path / "dataset"), "20261202T000000")
    assert [(i.persona_id, i.turn, i.reply) for i in items] == [
        (PERSONAS[0], 1, "REPLY-B-evp01__evq01-1"), (PERSONAS[0], 2, "REPLY-B-evp01__evq01-2")]


def test_a_malformed_results_file_is_named_and_the_other_runs_still_show(runs_dir):
    (runs_dir / "broken").mkdir()
    (runs_dir / "broken" / "results_x.json").write_text("{not json")
    runs_tab, state = tab(runs_dir)
    out = runs_tab.on_load(str(runs_dir), state)
    assert "2 run(s)" in out[3] and "Skipped 1 unreadable" in out[3] and "results_x.json" in out[3]
    assert "no such run folder" in runs_tab.on_load(str(runs_dir / "nope"), state)[3]
