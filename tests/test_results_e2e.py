"""Two real runs on the embedded model published with `aloe results push --local-dir`, read back with load_dataset.

Run A is judged by text answers with the `robust` preset (the 135M judge does not write its verdict, so its
answers are recorded failures: score null, judge_error set, no distribution); run B by probabilities (every row
has a distribution). Their rows differ in which fields are null, which once made the `samples` config unloadable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from datasets import load_dataset

from aloe_bench.core.run_files import model_dir_name

pytestmark = pytest.mark.slow
TINY = ["--max_personas", "2", "--turns", "2", "--reply_max_new_tokens", "16", "--user_max_new_tokens", "16",
        "--bootstrap_resamples", "20", "--progress", "false"]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "aloe_bench.commands.main", *args], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=900)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    text = ["eval", "--output_dir", str(out), *TINY, "--judge_preset", "robust", "--judge_scoring", "text",
            "--judge_max_retries", "0"]
    probs = ["eval", "--output_dir", str(out), *TINY, "--judge_scoring", "logprobs"]
    summaries = []
    for args in (text, probs):
        proc = cli(*args)
        assert proc.returncode == 0, proc.stderr[-3000:]
        summaries.append(json.loads(proc.stdout))
    return out, summaries, text


def test_runs_are_written_per_model_and_resume_there(two_runs):
    out, (a, b), text_args = two_runs
    folder = out / model_dir_name(a["model"])
    assert Path(a["results_file"]).parent == folder and Path(b["results_file"]).parent == folder
    on_disk = json.loads(Path(a["results_file"]).read_text())
    assert on_disk["results"]["aloe"]["AL_avg"] == on_disk["metrics"]["AL_avg"]
    assert on_disk["config"]["model_name"] == a["model"] and on_disk["config"]["model_sha"].startswith("gguf-sha256:")
    assert on_disk["config"]["personas"]["evaluated"] == 2 and on_disk["results"]["aloe"]["personas"] == 2
    proc = cli(*text_args)  # the same command again finds the earlier run in <model>/ and redoes nothing
    assert proc.returncode == 0, proc.stderr[-2000:]
    again = json.loads(proc.stdout)
    assert again["results_file"] == a["results_file"]
    assert json.loads(Path(again["results_file"]).read_text())["throughput"]["generated_tokens"] == 0


def test_local_push_of_two_real_runs_loads_every_split_and_repush_adds_nothing(two_runs, tmp_path):
    out, (a, b), _ = two_runs
    ds = tmp_path / "results-ds"
    for source in (a["results_file"], b["results_file"]):
        proc = cli("results", "push", source, "--local-dir", str(ds))
        assert proc.returncode == 0, proc.stderr[-3000:]
    results = load_dataset(str(ds), "results", split="train", download_mode="force_redownload")
    assert len(results) == 2
    by_run = {r["run_id"]: r for r in results}
    ids = {json.loads(Path(s["results_file"]).read_text())["run_id"] for s in (a, b)}
    assert set(by_run) == ids
    samples = load_dataset(str(ds), "samples", download_mode="force_redownload")
    latest = "latest_" + model_dir_name(a["model"]).replace("-", "_").replace(".", "_")
    assert set(samples) == {r["split"] for r in results} | {latest}
    text_run = samples[next(r["split"] for r in results if "text" in r["judge"])]
    prob_run = samples[next(r["split"] for r in results if "logprobs" in r["judge"])]
    assert len(text_run) == len(prob_run) == 4
    assert all(d is None for d in text_run["judge_distribution"])           # nulls here...
    assert all(d is not None and len(d) == 5 for d in prob_run["judge_distribution"])  # ...values there
    failures = [r for r in text_run if r["score"] is None]
    assert failures and all(r["judge_error"] for r in failures)
    assert all(r["score"] is not None for r in prob_run)
    assert len(samples[latest]) == 4 and set(samples[latest]["run_id"]) == {max(by_run, key=lambda k: (
        by_run[k]["created"], k))}
    for split in samples.values():
        assert {"run_id", "model", "model_revision", "judge", "protocol"} <= set(split.column_names)
        assert None not in split["model_revision"] and set(split["protocol"]) == {"custom"}
    counts = {p.name: pq.ParquetFile(p).metadata.num_rows for p in (ds / "samples").glob("*.parquet")}
    proc = cli("results", "push", a["results_file"], "--local-dir", str(ds))  # the first run once more
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {p.name: pq.ParquetFile(p).metadata.num_rows for p in (ds / "samples").glob("*.parquet")} == counts
    assert len(load_dataset(str(ds), "results", split="train", download_mode="force_redownload")) == 2

    from aloe_bench.space.leaderboard import load_leaderboard

    ranked = [s for s in (a, b) if s["metrics"]["AL_avg"] is not None]  # a run whose every answer failed has none
    for source in (str(ds), str(out)):  # the leaderboard tab reads the results dataset folder and the run folder
        board = load_leaderboard(source)
        assert sorted(r["judge"] for r in board.rows) == sorted(s["judge"] for s in ranked)
        assert len(board.problems) == 2 - len(ranked)
        assert all("metrics.AL_avg must be a number, got None" in p for p in board.problems)
