"""The lockstep loop, resume, failure accounting and result files, on scripted backends (no model)."""

import json

import pytest

from aloe_bench.core.backends import GenerationConfig
from aloe_bench.core.judge import Judge, JudgeConfig
from aloe_bench.core.simulator import UserSimulator
from aloe_bench.harness import EvalConfig, evaluate_model
from aloe_bench.harness.runner import EvalRoles
from aloe_bench.testing.backends import ScriptedBackend


def user_fn(messages, config):
    turn = sum(1 for m in messages if m["role"] == "assistant") + 1
    persona = messages[0]["content"].split("\n")[3][:20]
    if "FAIL-USER" in messages[0]["content"] and turn == 2:
        return "*only an action*"  # cleans to empty -> retried -> failure
    return f"user turn {turn} from {persona}"


def make_roles(judge_answers=("4",), user=user_fn):
    model = ScriptedBackend(fn=lambda m, c: f"reply to: {m[-1]['content']}")
    users = ScriptedBackend(fn=user)
    judge = ScriptedBackend(list(judge_answers))
    return EvalRoles(model, UserSimulator(users, GenerationConfig(16, 0.7)),
                 Judge(judge, JudgeConfig("paper", "text", max_retries=1)), GenerationConfig(16), None), model, users, judge


def config(tmp_path, upstream_dir, **kw):
    values = dict(personas=str(upstream_dir), max_personas=3, turns=2, output_dir=str(tmp_path / "run"),
                  bootstrap_resamples=50, progress=False, schedule="lockstep")
    return EvalConfig(**{**values, **kw})


def read_rows(results, tmp_path):
    return [json.loads(l) for l in (tmp_path / "run" / results["files"]["samples"]).read_text().splitlines()]


def test_lockstep_batches_every_turn(tmp_path, upstream_dir):
    roles, model, users, judge = make_roles()
    results = evaluate_model(config(tmp_path, upstream_dir), roles=roles)
    assert [len(batch) for batch, _ in model.calls] == [3, 3]
    assert [len(batch) for batch, _ in users.calls] == [3, 3]
    assert results["metrics"]["AL"] == [4.0, 4.0] and results["metrics"]["AL_avg"] == 4.0
    assert results["counts"] == {"conversations": 3, "turns": 2, "rows": 6, "scored": 6, "judge_failures": 0,
                                 "generation_failures": 0, "stopped_conversations": 0}
    rows = read_rows(results, tmp_path)
    assert sorted((r["persona_id"], r["turn"]) for r in rows) == sorted(
        (pid, t) for pid in {r["persona_id"] for r in rows} for t in (1, 2))
    second = [r for r in rows if r["turn"] == 2][0]
    assert second["reply"] == "reply to: " + second["user_message"]
    from aloe_bench.core.run_files import model_dir_name

    # lm-eval's layout: OUTPUT_DIR/<model name>/results_<run id>.json
    on_disk = json.loads((tmp_path / "run" / model_dir_name(results["model"]) / f"results_{results['run_id']}.json"
                          ).read_text())
    assert on_disk["metrics"] == results["metrics"]
    assert on_disk["results"]["aloe"]["AL_avg"] == results["metrics"]["AL_avg"]
    assert on_disk["config"]["model_name"] == results["model"] and "model_sha" in on_disk["config"]
    assert on_disk["config"]["personas"]["evaluated"] == 3 and on_disk["results"]["aloe"]["personas"] == 3
    cfg_block = on_disk["config"]
    assert set(cfg_block["prompts"]["sha256"]) == {"user_simulator", "judge_paper"}
    assert cfg_block["personas"]["count"] == 100 and cfg_block["packages"]["transformers"]


def test_sequential_mode_runs_one_conversation_at_a_time(tmp_path, upstream_dir):
    roles, model, _, _ = make_roles()
    results = evaluate_model(config(tmp_path, upstream_dir, schedule="sequential", cache=False), roles=roles)
    assert [len(batch) for batch, _ in model.calls] == [1] * 6
    assert results["counts"]["scored"] == 6


def test_rerun_resumes_and_extends(tmp_path, upstream_dir):
    roles, model, _, _ = make_roles()
    first = evaluate_model(config(tmp_path, upstream_dir), roles=roles)
    roles2, model2, users2, _ = make_roles()
    again = evaluate_model(config(tmp_path, upstream_dir), roles=roles2)
    assert model2.calls == [] and users2.calls == []  # nothing redone
    assert again["run_id"] == first["run_id"] and again["metrics"]["AL"] == first["metrics"]["AL"]
    roles3, model3, _, _ = make_roles()
    longer = evaluate_model(config(tmp_path, upstream_dir, turns=3), roles=roles3)
    assert [len(batch) for batch, _ in model3.calls] == [3]  # only turn 3 is new
    rows = read_rows(longer, tmp_path)
    keys = [(r["persona_id"], r["turn"]) for r in rows]
    assert len(keys) == len(set(keys)) == 9


def test_torn_last_line_is_dropped_and_redone(tmp_path, upstream_dir):
    roles, _, _, _ = make_roles()
    first = evaluate_model(config(tmp_path, upstream_dir), roles=roles)
    samples = tmp_path / "run" / first["files"]["samples"]
    text = samples.read_text()
    samples.write_text(text[: len(text) - 40])  # crash in the middle of the last row
    roles2, model2, _, _ = make_roles()
    again = evaluate_model(config(tmp_path, upstream_dir), roles=roles2)
    rows = read_rows(again, tmp_path)
    assert len(rows) == 6 and len({(r["persona_id"], r["turn"]) for r in rows}) == 6
    assert again["metrics"]["AL"] == first["metrics"]["AL"]


def test_judge_failures_are_counted_not_scored(tmp_path, upstream_dir):
    roles, _, _, judge = make_roles(judge_answers=("no idea",))
    results = evaluate_model(config(tmp_path, upstream_dir), roles=roles)
    assert results["counts"]["judge_failures"] == 6 and results["counts"]["scored"] == 0
    assert results["metrics"]["AL"] == [None, None] and results["metrics"]["AL_avg"] is None
    rows = read_rows(results, tmp_path)
    assert all(r["score"] is None and r["judge_error"] == "unparsable judge answer" and r["judge_attempts"] == 2
               for r in rows)


def test_user_failure_stops_that_conversation_only(tmp_path):
    personas = tmp_path / "personas.jsonl"
    personas.write_text("\n".join(json.dumps({"id": pid, "profile": f"P {pid}", "personality": q}) for pid, q in
                                  [("ok", "calm"), ("bad", "FAIL-USER")]) + "\n")
    roles, _, _, _ = make_roles()
    cfg = EvalConfig(personas=str(personas), turns=3, output_dir=str(tmp_path / "run"), progress=False,
                     bootstrap_resamples=50)
    results = evaluate_model(cfg, roles=roles)
    assert results["counts"]["generation_failures"] == 1 and results["counts"]["stopped_conversations"] == 1
    rows = read_rows(results, tmp_path)
    bad = sorted((r["turn"], r["error"]) for r in rows if r["persona_id"] == "bad")
    assert bad[0] == (1, None) and bad[1][0] == 2 and "empty user message" in bad[1][1] and len(bad) == 2
    assert results["metrics"]["AL"][2] == 4.0  # turn 3 averages the surviving conversation


def test_config_errors():
    with pytest.raises(ValueError, match="turns"):
        EvalConfig(turns=0)


def test_request_timeout_and_retries_reach_remote_backends():
    from aloe_bench.harness.runner import build_roles
    from aloe_bench.training.generate import build_backends
    from aloe_bench.training.generate_config import GenerateConfig

    url = "http://127.0.0.1:9/v1"
    cfg = EvalConfig(model="openai:m", user_model="openai:m", judge_model="openai:m", base_url=url, user_base_url=url,
                     judge_base_url=url, request_timeout_s=7.0, request_max_retries=1, progress=False)
    roles = build_roles(cfg)
    assert (roles.model.timeout_s, roles.model.max_retries) == (7.0, 1)
    assert (roles.judge.backend.timeout_s, roles.user.backend.max_retries) == (7.0, 1)
    gen = GenerateConfig(**{f"{r}_model": "openai:g" for r in ("user", "induction", "preferred", "rejected", "judge")},
                         base_url=url, request_timeout_s=9.0, request_max_retries=0)
    assert {(b.timeout_s, b.max_retries) for b in build_backends(gen).values()} == {(9.0, 0)}
