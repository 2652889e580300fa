"""A two-judge jury end to end on the embedded model: `aloe eval` with the embedded judge twice, once with the
`paper` preset and once with `criteria` (both read from probabilities), writing per-judge records and the results'
`judges` block (smoke: the numbers of a 135M judge mean nothing, the plumbing does)."""

import json
from pathlib import Path

import pytest

from test_harness_e2e import run_cli

pytestmark = pytest.mark.slow


def test_a_two_judge_jury_on_the_embedded_model(tmp_path, upstream_dir):
    proc = run_cli("eval", "--personas", str(upstream_dir), "--max_personas", "2", "--turns", "2",
                   "--output_dir", str(tmp_path), "--reply_max_new_tokens", "16", "--user_max_new_tokens", "16",
                   "--bootstrap_resamples", "50", "--judge_model", "embedded", "--judge_model", "embedded",
                   "--judge_preset", "paper", "--judge_preset", "criteria")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(Path(json.loads(proc.stdout)["results_file"]).read_text())
    assert results["judge"].startswith("jury mean of 2: embedded:")
    assert "(paper, logprobs)" in results["judge"] and "(criteria, logprobs)" in results["judge"]
    rows = [json.loads(line) for line in (tmp_path / results["files"]["samples"]).read_text().splitlines()]
    assert len(rows) == 4
    for row in rows:
        paper, criteria = row["judges"]
        assert (paper["preset"], criteria["preset"]) == ("paper", "criteria")
        assert paper["attempts"] == 1 and criteria["attempts"] == 3  # one prompt per criterion
        assert set(criteria["criteria"]) == {"style", "content", "human"}
        scored = [r["score"] for r in row["judges"] if r["score"] is not None]
        assert row["score"] == pytest.approx(sum(scored) / len(scored), abs=1e-6)
        assert row["criteria_scores"] == criteria["criteria"]
    block = results["judges"]
    assert [(m["judge"], m["requests"]) for m in block["members"]] == [(1, 4), (2, 12)]
    assert block["spread"]["mean_sd"]["rows"] == sum(all(r["score"] is not None for r in row["judges"])
                                                     for row in rows)
    [pair] = block["agreement"]
    assert pair["pairs"] == block["spread"]["mean_sd"]["rows"]
    assert set(results["criteria"]) == {"style", "content", "human"}
    assert results["config"]["models"]["judge"]["members"][1]["preset"] == "criteria"
