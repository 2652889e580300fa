"""`aloe judge rescore` on scripted backends: same rows re-judged with their history, failures kept, resume."""

from __future__ import annotations

import json

import pytest

from aloe_bench.core.judge import Judge, JudgeConfig
from aloe_bench.core.run_files import RunFileError
from aloe_bench.harness import evaluate_model
from aloe_bench.harness.rescore import RescoreConfig, rescore_run
from aloe_bench.testing.backends import ScriptedBackend
from test_harness_loop import config, make_roles


class Crash(Exception):
    """Stands for a killed process: raised by the fake judge after N rows."""


def source_run(tmp_path, upstream_dir, layout_subdir=None):
    roles, *_ = make_roles(judge_answers=("3",))
    cfg = config(tmp_path, upstream_dir, max_personas=4, turns=3)
    results = evaluate_model(cfg, roles=roles)
    run_dir = tmp_path / "run"
    if layout_subdir:  # the per-model layout: OUTPUT_DIR/<model name>/
        target = run_dir / layout_subdir
        target.mkdir()
        for path in list(run_dir.glob("*_*.json*")):
            path.rename(target / path.name)
    return results, run_dir


def judge_fn(seen, fail_after=None, answer=lambda m: "5"):
    def fn(messages, _config):
        if fail_after is not None and len(seen) >= fail_after:
            raise Crash("judge died")
        seen.append(messages)
        return answer(messages)
    return fn


def fake_judge(seen, preset="robust", **kw):
    return Judge(ScriptedBackend(fn=judge_fn(seen, **kw)), JudgeConfig(preset, "text", max_retries=0))


def rows_of(results):
    path = results["results_file"].replace("results_", "samples_").replace(".json", ".jsonl")
    return [json.loads(line) for line in open(path)]


@pytest.mark.parametrize("subdir", [None, "fake-model"])
def test_rescore_rejudges_same_rows_with_same_history(tmp_path, upstream_dir, subdir):
    source, run_dir = source_run(tmp_path, upstream_dir, subdir)
    seen = []
    out = rescore_run(RescoreConfig(str(run_dir), str(tmp_path / "re"), judge_preset="robust", progress=False,
                                    bootstrap_resamples=20, batch_size=5), judge=fake_judge(seen, answer=lambda m: "[[5]]"))
    assert out["rescore_of"] == source["run_id"] and out["fingerprint"] != source["fingerprint"]
    assert out["metrics"]["AL"] == [5.0, 5.0, 5.0] and out["counts"]["rows"] == 12
    rows = rows_of(out)
    assert all(r["original_score"] == 3.0 and r["score"] == 5.0 for r in rows)
    # turn 3 of a conversation: the robust judge saw turns 1 and 2 of that same conversation in its prompt
    original = {(r["persona_id"], r["turn"]): r for r in
                (json.loads(l) for l in open(next(run_dir.rglob("samples_*.jsonl"))))}
    pid = rows[-1]["persona_id"]
    turn2, turn3 = original[(pid, 2)]["reply"], original[(pid, 3)]["reply"]
    assert any(turn2 in m[-1]["content"] and turn3 in m[-1]["content"] for m in seen), \
        "the turn-2 reply never reached the judge as history of turn 3"
    assert len(seen) == 12


def test_unparsable_answer_is_a_recorded_failure(tmp_path, upstream_dir):
    _, run_dir = source_run(tmp_path, upstream_dir)
    out = rescore_run(RescoreConfig(str(run_dir), str(tmp_path / "re"), progress=False, bootstrap_resamples=20),
                      judge=fake_judge([], preset="paper", answer=lambda m: "no idea"))
    assert out["counts"]["judge_failures"] == 12 and out["counts"]["scored"] == 0
    assert all(r["score"] is None and r["judge_error"] for r in rows_of(out))
    assert out["metrics"]["AL_avg"] is None


def test_rescore_resumes_after_a_crash_without_duplicates(tmp_path, upstream_dir):
    _, run_dir = source_run(tmp_path, upstream_dir)
    cfg = RescoreConfig(str(run_dir), str(tmp_path / "re"), progress=False, bootstrap_resamples=20, batch_size=4,
                        cache=False)
    first = []
    with pytest.raises(Crash):
        rescore_run(cfg, judge=fake_judge(first, answer=lambda m: "[[4]]", fail_after=6))
    partial = [json.loads(l) for l in open(next((tmp_path / "re").rglob("samples_*.jsonl")))]
    assert len(partial) == 4  # the first batch of 4 was written, the second died mid-way
    second = []
    out = rescore_run(cfg, judge=fake_judge(second, answer=lambda m: "[[4]]"))
    rows = rows_of(out)
    keys = [(r["persona_id"], r["turn"]) for r in rows]
    assert len(keys) == 12 and len(set(keys)) == 12 and len(second) == 8
    assert out["counts"]["scored"] == 12 and out["metrics"]["AL_avg"] == 4.0


def test_a_folder_with_two_runs_asks_for_a_run_id(tmp_path, upstream_dir):
    _, run_dir = source_run(tmp_path, upstream_dir)
    files = list(run_dir.rglob("*_*.json*"))  # wherever the run wrote them (flat or OUTPUT_DIR/<model>/)
    other = run_dir / "other-model"
    other.mkdir()
    for path in files:
        (other / path.name.replace("T", "X", 1)).write_text(path.read_text())
    with pytest.raises(RunFileError, match="several runs.*--run-id"):
        rescore_run(RescoreConfig(str(run_dir), str(tmp_path / "re"), progress=False), judge=fake_judge([]))
