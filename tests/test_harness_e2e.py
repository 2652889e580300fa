"""End to end on the embedded model: `aloe eval` on the paper's files, the evaluate module, the Hub folder."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import load_dataset

from aloe_bench.core.eval_results import aloe_eval_results
from aloe_bench.harness.publish import push_results
from aloe_bench.harness.results import RunFiles
from publish_helpers import build_results_folder

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def run_cli(*args, cwd=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "aloe_bench.commands.main", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, upstream_dir):
    out = tmp_path_factory.mktemp("eval")
    proc = run_cli("eval", "--personas", str(upstream_dir), "--max_personas", "2", "--turns", "2",
                   "--output_dir", str(out), "--reply_max_new_tokens", "24", "--user_max_new_tokens", "24",
                   "--bootstrap_resamples", "100")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads(proc.stdout), proc


def test_eval_cli_writes_results_and_samples(cli_run):
    out, summary, proc = cli_run
    assert "ALOE" in proc.stderr  # the progress bar
    results = json.loads(Path(summary["results_file"]).read_text())
    assert results["judge"].startswith("embedded:HuggingFaceTB/SmolLM2-135M-Instruct (paper, logprobs)")
    assert "smoke" in results["judge_note"]
    assert results["counts"]["rows"] == 4 and results["counts"]["scored"] + results["counts"]["judge_failures"] == 4
    al = results["metrics"]["AL"]
    assert len(al) == 2 and all(1.0 <= v <= 5.0 for v in al)
    config = results["config"]
    assert config["models"]["model"]["resolved_revision"].startswith("gguf-sha256:")
    assert config["models"]["model"]["chat_template_sha256"]
    assert config["prompts"]["version"] and len(config["prompts"]["sha256"]) == 2
    assert config["personas"]["name"] == "aloe-upstream" and config["personas"]["count"] == 100
    rows = [json.loads(l) for l in (out / results["files"]["samples"]).read_text().splitlines()]
    assert len(rows) == 4
    for row in rows:
        assert row["user_message"] and row["reply"] and "*" not in row["user_message"]
        assert row["score"] is None or 1.0 <= row["score"] <= 5.0
        if row["score"] is not None:
            expected = sum(int(k) * p for k, p in row["judge_distribution"].items())
            assert row["score"] == pytest.approx(expected, abs=1e-5)
    assert results["throughput"]["generated_tokens"] > 0


def test_rerun_is_free_and_identical(cli_run, upstream_dir):
    out, summary, _ = cli_run
    proc = run_cli("eval", "--personas", str(upstream_dir), "--max_personas", "2", "--turns", "2",
                   "--output_dir", str(out), "--reply_max_new_tokens", "24", "--user_max_new_tokens", "24",
                   "--bootstrap_resamples", "100")
    assert proc.returncode == 0, proc.stderr[-2000:]
    again = json.loads(proc.stdout)
    assert again["results_file"] == summary["results_file"]
    assert again["metrics"]["AL"] == summary["metrics"]["AL"]
    results = json.loads(Path(again["results_file"]).read_text())
    assert results["throughput"]["generated_tokens"] == 0


def test_results_hub_folder_loads_and_offline_push_fails_clearly(cli_run, tmp_path, monkeypatch):
    out, summary, _ = cli_run
    results = json.loads(Path(summary["results_file"]).read_text())
    files = RunFiles(out, results["fingerprint"], results["model"])
    assert files.results_path == Path(summary["results_file"])  # the run is found again in <model>/
    folder = build_results_folder(files.load_samples(), results, tmp_path / "upload", "me/aloe-results")
    loaded = load_dataset(str(folder), "results", split="train")
    assert loaded[0]["model"] == results["model"] and loaded[0]["metrics"]["AL"] == pytest.approx(
        results["metrics"]["AL"])
    samples = load_dataset(str(folder), "samples", split=loaded[0]["split"])
    assert len(samples) == 4 and set(samples["run_id"]) == {results["run_id"]}
    assert "configs:" in (folder / "README.md").read_text()
    entries = aloe_eval_results(results, source_url="https://huggingface.co/datasets/me/aloe-results")
    assert entries and all(e.source_url.endswith("me/aloe-results") for e in entries)
    assert all(e.metric_args["personas"] == 2 and e.metric_args["turns"] == 2 for e in entries)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from huggingface_hub.errors import OfflineModeIsEnabled

    with pytest.raises(OfflineModeIsEnabled):
        push_results(files, results, "me/aloe-results")


def test_evaluate_module_loads_from_its_folder(tmp_path):
    import evaluate

    module = evaluate.load(str(REPO / "harness" / "aloe"))
    assert type(module).__name__ == "Aloe"
    out = module.compute(profiles=["A 52-year-old ferry captain in Bergen who builds model ships."],
                         personalities=["Gruff, brief, secretly sentimental."], model_id="embedded", turns=2,
                         output_dir=str(tmp_path), reply_max_new_tokens=16, user_max_new_tokens=16,
                         progress=False, bootstrap_resamples=20)
    assert set(out) >= {"AL", "AL_avg", "IR", "N_IR", "R2", "N_R2", "judge", "results_file"}
    assert len(out["AL"]) == 2 and Path(out["results_file"]).exists()
    assert out["counts"]["conversations"] == 1
