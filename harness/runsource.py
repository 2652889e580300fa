"""Finding one run's files under a folder: `samples_<id>.jsonl` and `results_<id>.json` at any depth.

Runs are written either straight into the output folder or into `<output folder>/<model name>/`; both are
found. A folder holding several runs needs a run id, and the error lists the ones it found.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from aloe_bench.core.errors import AloeError


class RunSourceError(AloeError, ValueError):
    """The folder or file does not name exactly one run."""


@dataclass
class RunSource:
    run_id: str
    samples_path: Path
    results_path: Path | None

    def results(self) -> dict | None:
        if self.results_path is None:
            return None
        try:
            return json.loads(self.results_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise RunSourceError(f"{self.results_path}: line {exc.lineno}: invalid JSON ({exc.msg})") from None

    def rows(self) -> list[dict]:
        rows = []
        with open(self.samples_path, encoding="utf-8") as fh:
            lines = fh.read().split("\n")
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                if number == len(lines):  # a torn last line from a killed run
                    break
                raise RunSourceError(f"{self.samples_path}:{number}: invalid JSON ({exc.msg})") from None
            for key in ("persona_id", "turn"):
                if not isinstance(row, dict) or key not in row:
                    raise RunSourceError(f"{self.samples_path}:{number}: missing field {key!r}")
            rows.append(row)
        return rows


def _run_id(path: Path, prefix: str) -> str:
    return path.name[len(prefix):].rsplit(".", 1)[0]


def find_run(source: str | Path, run_id: str | None = None) -> RunSource:
    """The run in `source` (a run folder, a folder above it, or a samples file)."""
    path = Path(source).expanduser()
    if path.is_file():
        if not path.name.startswith("samples_"):
            raise RunSourceError(f"{path}: not a samples_<run id>.jsonl file")
        rid = _run_id(path, "samples_")
        results = path.with_name(f"results_{rid}.json")
        return RunSource(rid, path, results if results.is_file() else None)
    if not path.is_dir():
        raise RunSourceError(f"{path}: no such run folder or samples file")
    samples = {}
    for found in sorted(path.rglob("samples_*.jsonl")):
        samples.setdefault(_run_id(found, "samples_"), []).append(found)
    if run_id is not None:
        samples = {k: v for k, v in samples.items() if k == run_id}
        if not samples:
            raise RunSourceError(f"{path}: no samples_{run_id}.jsonl at any depth")
    if not samples:
        raise RunSourceError(f"{path}: no samples_*.jsonl at any depth (is this an `aloe eval` output folder?)")
    if len(samples) > 1 or len(next(iter(samples.values()))) > 1:
        listed = ", ".join(f"{k} ({', '.join(str(p.parent) for p in v)})" for k, v in samples.items())
        raise RunSourceError(f"{path} holds several runs: {listed}; choose one with --run-id "
                             f"(or pass its samples file)")
    rid, (found,) = next(iter(samples.items()))
    results = found.with_name(f"results_{rid}.json")
    return RunSource(rid, found, results if results.is_file() else None)
