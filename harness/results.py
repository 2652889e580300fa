"""Run files: the append-only samples log (resumable), the manifest, and the results summary.

Files go to `output_dir/<model name>/` (as lm-eval writes them; `core.run_files` reads both layouts), the
manifest `runs.json` and the request cache stay in `output_dir`. A run begun in the flat layout keeps its files.
"""

from __future__ import annotations

import hashlib
import json
import time
from importlib import metadata
from pathlib import Path

from aloe_bench.core.eval_results import benchmark_dataset, metric_args
from aloe_bench.core.io import append_jsonl, atomic_write_json, read_json, read_log, repair_tail
from aloe_bench.core.run_files import RunFileError, locate_run_files

PACKAGES = ("aloe-bench", "torch", "transformers", "datasets", "evaluate", "huggingface-hub",
            "sentence-transformers", "openai", "trl", "peft", "gradio", "vllm")


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def fingerprint(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


class RunFiles:
    """Files of one run in `output_dir`. Runs with the same fingerprint share a run id, so re-running resumes."""

    def __init__(self, output_dir: str | Path, run_fingerprint: str, model_id: str | None = None):
        self.dir = Path(output_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        manifest_path = self.dir / "runs.json"
        manifest = read_json(manifest_path) if manifest_path.exists() else {}
        if run_fingerprint not in manifest:
            manifest[run_fingerprint] = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
            atomic_write_json(manifest_path, manifest)
        self.run_id = manifest[run_fingerprint]
        self.fingerprint = run_fingerprint
        self.results_path, self.samples_path = locate_run_files(self.dir, self.run_id, model_id)
        self.samples_path.parent.mkdir(parents=True, exist_ok=True)
        self.cache_path = self.dir / "requests_cache.sqlite"

    def load_samples(self) -> list[dict]:
        """Rows written so far. A torn last line (a crash mid-append) is cut first (`core.io.repair_tail`): the
        row it held is run again."""
        if not self.samples_path.exists():
            return []
        repair_tail(self.samples_path, "that row is run again")
        return read_log(self.samples_path, RunFileError, "a sample row")

    def append_samples(self, rows: list[dict]) -> None:
        """Append rows durably (fsynced); callable from a writer thread."""
        append_jsonl(self.samples_path, rows)

    def write_results(self, results: dict) -> None:
        atomic_write_json(self.results_path, results)


LM_EVAL_METRICS = ("AL_avg", "IR", "N_IR", "R2", "N_R2")


def add_lm_eval_keys(results: dict) -> dict:
    """Add the keys leaderboard tooling built for lm-eval/lighteval reads, next to the project's own:
    `results: {aloe: {metric: value, metric_stderr-style intervals...}}`, `config.model_name`, `config.model_sha`."""
    metrics = results["metrics"]
    task = {name: metrics.get(name) for name in LM_EVAL_METRICS}
    for name in LM_EVAL_METRICS:
        interval = (metrics.get("intervals") or {}).get(name)
        if interval:
            task[f"{name}_ci95"] = interval
    task["alias"] = "aloe"
    task.update(metric_args(results))
    results["results"] = {"aloe": task}
    results["versions"] = {"aloe": (results.get("config") or {}).get("prompts", {}).get("version")}
    results["n-samples"] = {"aloe": {"original": (results["config"].get("personas") or {}).get("count"),
                                     "effective": (results.get("counts") or {}).get("conversations")}}
    config = results["config"]
    config["model_name"] = results["model"]
    config["model_sha"] = ((config.get("models") or {}).get("model") or {}).get("resolved_revision")
    config["benchmark"] = {"dataset": benchmark_dataset(), "config": "personas", "split": "test"}
    return results
