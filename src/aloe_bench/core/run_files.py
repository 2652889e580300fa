"""Run files: where a run of `aloe eval` or `aloe judge rescore` keeps its files, and the one finder of runs.

A run is `OUT/<model name>/results_<run id>.json` (its summary) and `OUT/<model name>/samples_<run id>.jsonl` (one
row per persona and turn), laid out as lm-eval lays out its outputs. Readers look for those names at any depth below
the folder they are given, so a folder above a run, or one holding several models' runs, works as well. Used by
the harness (eval, rescore, agreement, results push), training cards, the Space and `aloe reproduce`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .io import DataFileError, read_json, read_log

RESULTS_PREFIX, SAMPLES_PREFIX = "results_", "samples_"
RESULTS_GLOB, SAMPLES_GLOB = f"{RESULTS_PREFIX}*.json", f"{SAMPLES_PREFIX}*.jsonl"


class RunFileError(DataFileError):
    """A run's files cannot be read, or a folder does not hold exactly the run asked for; the message names them."""


def model_dir_name(model_id: str) -> str:
    """The folder name of a model's runs, like lm-eval's sanitised model name (`ORG/NAME` -> `ORG__NAME`).

    A local folder is named by its last path component; characters outside [A-Za-z0-9._-] become `_`.
    """
    text = str(model_id)
    if text.startswith(("/", "./", "../", "~")) or Path(text).is_absolute():
        text = Path(text).name or "model"
    text = text.replace("/", "__")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "model"


def run_id_of(path: Path) -> str:
    """`results_<run id>.json` / `samples_<run id>.jsonl` -> `<run id>`."""
    return path.name.split("_", 1)[1].rsplit(".", 1)[0]


def locate_run_files(output_dir: str | Path, run_id: str, model_id: str) -> tuple[Path, Path]:
    """Where run `run_id` of `model_id` keeps its results and samples: `output_dir/<model name>/`."""
    folder = Path(output_dir) / model_dir_name(model_id)
    return folder / f"{RESULTS_PREFIX}{run_id}.json", folder / f"{SAMPLES_PREFIX}{run_id}.jsonl"


def find_results_files(source: str | Path) -> list[Path]:
    """Every results file under `source` (a results file itself, or a folder), oldest first."""
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir():
        return []
    files = [p for p in source.rglob(RESULTS_GLOB) if p.is_file()]
    return sorted(files, key=lambda p: (p.stat().st_mtime, str(p)))


def find_samples_files(folder: str | Path) -> list[Path]:
    """Every samples log under `folder`, at any depth, in path order."""
    return sorted(p for p in Path(folder).rglob(SAMPLES_GLOB) if p.is_file())


def read_results(path: str | Path) -> dict:
    """A results file as a dict; RunFileError naming the file when it is not one."""
    path = Path(path)
    data = read_json(path, RunFileError)
    if not isinstance(data, dict):
        raise RunFileError(f"{path}: a results file must hold a JSON object")
    for key in ("model", "judge", "metrics"):
        if key not in data:
            raise RunFileError(f"{path}: not an ALOE results file (no {key!r})")
    return data


def samples_path_for(results_path: str | Path, results: dict | None = None) -> Path:
    """The samples file of a results file: next to it (its name is recorded in `files`)."""
    results_path = Path(results_path)
    recorded = ((results or {}).get("files") or {}).get("samples")
    name = Path(recorded).name if recorded else f"{SAMPLES_PREFIX}{run_id_of(results_path)}.jsonl"
    return results_path.parent / name


def results_path_for(samples_path: str | Path) -> Path:
    """The results file of a samples log: `results_<run id>.json` beside it (absent until the run is finished)."""
    samples_path = Path(samples_path)
    return samples_path.with_name(f"{RESULTS_PREFIX}{run_id_of(samples_path)}.json")


def read_samples(path: str | Path) -> list[dict]:
    """Rows of a samples log, each with `persona_id` and `turn`; a torn last line (a run killed mid-append) is left
    out, any other bad line is an error naming the file and line."""
    path = Path(path)
    if not path.exists():
        raise RunFileError(f"{path}: samples file not found")
    return read_log(path, RunFileError, "a sample row", required=("persona_id", "turn"))


@dataclass
class Run:
    """One run on disk: its results (None when its samples log has no results file beside it) and its files.

    `rows` holds sample rows already in memory (a run published as it finishes); without them `samples()` reads
    the samples log.
    """

    results: dict | None
    results_path: Path
    samples_path: Path
    rows: list[dict] | None = None

    @property
    def run_id(self) -> str:
        return str((self.results or {}).get("run_id") or run_id_of(self.results_path))

    def samples(self) -> list[dict]:
        return self.rows if self.rows is not None else read_samples(self.samples_path)


def find_runs(source: str | Path) -> list[Run]:
    """Every run with a results file under `source` (results file or folder), oldest first; errors name the file."""
    runs = []
    for path in find_results_files(source):
        results = read_results(path)
        runs.append(Run(results, path, samples_path_for(path, results)))
    return runs


def _run_of_samples(samples_path: Path) -> Run:
    results_path = results_path_for(samples_path)
    results = read_json(results_path, RunFileError) if results_path.is_file() else None
    if results is not None and not isinstance(results, dict):
        raise RunFileError(f"{results_path}: a results file must hold a JSON object")
    return Run(results, results_path, samples_path)


def find_run(source: str | Path, run_id: str | None = None) -> Run:
    """The one run in `source` (a run folder, a folder above it, or a samples file), found by its samples log.

    A folder holding several runs needs `run_id`; the error lists the runs it found.
    """
    path = Path(source).expanduser()
    if path.is_file():
        if not path.name.startswith(SAMPLES_PREFIX):
            raise RunFileError(f"{path}: not a samples_<run id>.jsonl file")
        return _run_of_samples(path)
    if not path.is_dir():
        raise RunFileError(f"{path}: no such run folder or samples file")
    samples: dict[str, list[Path]] = {}
    for found in find_samples_files(path):
        samples.setdefault(run_id_of(found), []).append(found)
    if run_id is not None:
        samples = {k: v for k, v in samples.items() if k == run_id}
        if not samples:
            raise RunFileError(f"{path}: no samples_{run_id}.jsonl at any depth")
    if not samples:
        raise RunFileError(f"{path}: no samples_*.jsonl at any depth (is this an `aloe eval` output folder?)")
    if len(samples) > 1 or len(next(iter(samples.values()))) > 1:
        listed = ", ".join(f"{k} ({', '.join(str(p.parent) for p in v)})" for k, v in samples.items())
        raise RunFileError(f"{path} holds several runs: {listed}; choose one with --run-id (or pass its samples file)")
    return _run_of_samples(next(iter(samples.values()))[0])
