"""Free vs lockstep on the embedded model (greedy, seeded): the same rows and scores; tiny sizes."""

import json

import pytest

from aloe_bench.harness import EvalConfig, evaluate_model
from aloe_bench.harness.protocol import resolve_run
from aloe_bench.harness.runner import build_roles

pytestmark = pytest.mark.slow
KEYS = ("persona_id", "turn", "user_message", "reply", "score", "error")


def test_free_and_lockstep_agree_on_the_embedded_model(tmp_path, upstream_dir):
    base = dict(personas=str(upstream_dir), max_personas=2, turns=2, reply_max_new_tokens=16, user_max_new_tokens=16,
                user_temperature=0.0, temperature=0.0, cache=False, bootstrap_resamples=20, progress=False, seed=0)
    roles = build_roles(resolve_run(EvalConfig(**base)))  # one model in memory, shared by both runs
    outcomes = {}
    for schedule in ("free", "lockstep"):
        out = tmp_path / schedule
        results = evaluate_model(resolve_run(EvalConfig(**base, output_dir=str(out), schedule=schedule)), roles=roles)
        rows = [json.loads(l) for l in (out / results["files"]["samples"]).read_text().splitlines()]
        outcomes[schedule] = (sorted(tuple(r[k] for k in KEYS) for r in rows), results["metrics"]["AL"])
    rows, al = outcomes["free"]
    assert len(rows) == 4 and all(r[5] is None and r[3] for r in rows)
    assert [r[:4] for r in rows] == [r[:4] for r in outcomes["lockstep"][0]]
    assert [r[4] for r in rows] == pytest.approx([r[4] for r in outcomes["lockstep"][0]], abs=1e-4)
    assert al == pytest.approx(outcomes["lockstep"][1], abs=1e-4)
