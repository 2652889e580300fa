"""Run files: the append-only samples log (resumable), the manifest, and the results summary."""

from __future__ import annotations

import hashlib
import json
import os
import time
from importlib import metadata
from pathlib import Path

from aloe_bench.core.config import atomic_write_json

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

    def __init__(self, output_dir: str | Path, run_fingerprint: str):
        self.dir = Path(output_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        manifest_path = self.dir / "runs.json"
        manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
        if run_fingerprint not in manifest:
            manifest[run_fingerprint] = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
            atomic_write_json(manifest_path, manifest)
        self.run_id = manifest[run_fingerprint]
        self.fingerprint = run_fingerprint
        self.samples_path = self.dir / f"samples_{self.run_id}.jsonl"
        self.results_path = self.dir / f"results_{self.run_id}.json"
        self.cache_path = self.dir / "requests_cache.sqlite"

    def load_samples(self) -> list[dict]:
        """Rows written so far. A torn last line (crash mid-write) is dropped and rewritten cleanly.

        A last line without its newline counts as torn even when it parses: appending after it would glue
        the next row onto it.
        """
        if not self.samples_path.exists():
            return []
        rows, good_bytes = [], 0
        with open(self.samples_path, "rb") as fh:
            for raw in fh:
                if not raw.endswith(b"\n"):
                    break
                try:
                    rows.append(json.loads(raw))
                except json.JSONDecodeError:
                    break
                good_bytes += len(raw)
        if good_bytes != self.samples_path.stat().st_size:
            with open(self.samples_path, "r+b") as fh:
                fh.truncate(good_bytes)
        return rows

    def append_samples(self, rows: list[dict]) -> None:
        if not rows:
            return
        with open(self.samples_path, "a", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def write_results(self, results: dict) -> None:
        atomic_write_json(self.results_path, results)
