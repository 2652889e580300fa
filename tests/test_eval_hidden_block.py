"""`aloe eval --reply_hidden_block`: a model that writes its inference of the user in <profile>...</profile> (what
`aloe train online --profile_reward` teaches) is evaluated on the reply alone: the role-play user, the judge and
the history never see the block, the samples row keeps it as `reply_hidden`, cached replies are cut the same way,
and the setting counts in the run's identity only when it is on."""

from __future__ import annotations

import json

import pytest

from aloe_bench.core.backends import GenerationConfig
from aloe_bench.core.hidden_block import HiddenBlock
from aloe_bench.core.simulator import UserSimulator
from aloe_bench.harness import EvalConfig, evaluate_model
from aloe_bench.harness.protocol import resolve_run
from aloe_bench.harness.runner import EvalRoles, build_judges
from aloe_bench.testing.backends import ScriptedBackend
from test_harness_loop import user_fn

BLOCK = "<profile>\nretired chemistry teacher\nlikes sailing\n</profile>"


def model_fn(messages, config):
    return f"{BLOCK}\nHappy to help with: {messages[-1]['content']}"


def run(tmp_path, upstream_dir, schedule, out="run", **settings):
    seen = []  # every text the user and the judge were shown

    def user(messages, config):
        seen.extend(m["content"] for m in messages)
        return user_fn(messages, config)

    def judge(messages, config):
        seen.extend(m["content"] for m in messages)
        return "4"

    cfg = EvalConfig(personas=str(upstream_dir), max_personas=2, turns=3, output_dir=str(tmp_path / out),
                     bootstrap_resamples=20, progress=False, schedule=schedule, judge_scoring="text", **settings)
    model = ScriptedBackend(fn=model_fn)
    roles = EvalRoles(model, UserSimulator(ScriptedBackend(fn=user), GenerationConfig(16, 0.7)),
                      build_judges(resolve_run(cfg), backends=[ScriptedBackend(fn=judge)]), GenerationConfig(32), None)
    results = evaluate_model(resolve_run(cfg), roles=roles)
    rows = [json.loads(line) for line in (tmp_path / out / results["files"]["samples"]).read_text().splitlines()]
    rows.sort(key=lambda r: (r["persona_id"], r["turn"]))
    return results, rows, seen, model


@pytest.mark.parametrize("schedule", ["free", "lockstep"])
def test_the_block_is_cut_before_anyone_reads_the_reply_and_kept_in_the_row(tmp_path, upstream_dir, schedule):
    results, rows, seen, _ = run(tmp_path, upstream_dir, schedule, reply_hidden_block=True)
    assert len(rows) == 6 and all(r["score"] == 4.0 for r in rows)
    for row in rows:
        assert row["reply"].startswith("Happy to help with: user turn") and "<profile>" not in row["reply"]
        assert row["reply_hidden"] == "retired chemistry teacher\nlikes sailing"
    assert seen and not any("<profile>" in text or "likes sailing" in text for text in seen)
    assert results["config"]["run"]["reply_hidden_block"] is True
    # without the setting the block is what everyone reads, and the run is another run
    plain, plain_rows, plain_seen, _ = run(tmp_path, upstream_dir, schedule, out="plain")
    assert all("<profile>" in r["reply"] and "reply_hidden" not in r for r in plain_rows)
    assert any("likes sailing" in text for text in plain_seen)
    assert "reply_hidden_block" not in plain["config"]["run"]
    assert plain["fingerprint"] != results["fingerprint"]


def test_a_resumed_run_reads_its_cached_replies_cut_the_same_way(tmp_path, upstream_dir):
    first, rows, _, model = run(tmp_path, upstream_dir, "free", reply_hidden_block=True)
    assert model.calls
    (tmp_path / "run" / first["files"]["samples"]).unlink()  # lose the rows, keep the request cache
    again, again_rows, seen, model = run(tmp_path, upstream_dir, "free", reply_hidden_block=True)
    assert not model.calls  # every reply came from the request cache
    assert [r["reply"] for r in again_rows] == [r["reply"] for r in rows]
    assert all(r["reply_hidden"] == "retired chemistry teacher\nlikes sailing" for r in again_rows)
    assert not any("likes sailing" in text for text in seen)


def test_hidden_block_split():
    block = HiddenBlock("<profile>", "</profile>")
    assert block.split("<PROFILE>a</profile> hi") == ("hi", "a")
    assert block.split("hi <profile>cut by the token lim") == ("hi", "cut by the token lim")
    assert block.split("no block </profile> here") == ("no block  here", None)
    assert block.split(None) == (None, None)
