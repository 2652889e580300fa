"""One reader of ALOE run folders, for both layouts: the harness, training cards, the Space and `aloe reproduce`.

Layouts of `aloe eval --output_dir OUT`:
- flat (before lm-eval-style folders): `OUT/results_<run id>.json` and `OUT/samples_<run id>.jsonl`;
- per model (as lm-eval writes them): `OUT/<model name>/results_<run id>.json` and `.../samples_<run id>.jsonl`,
  where the model name is `model_dir_name(model id)`.

File names stay `results_*.json` / `samples_*.jsonl` in both, so a glob at any depth finds every run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import AloeError

RESULTS_GLOB = "results_*.json"
SAMPLES_PREFIX = "samples_"


class RunFileError(AloeError, ValueError):
    """A results or samples file cannot be read; the message names the file (and line)."""


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


def find_results_files(source: str | Path) -> list[Path]:
    """Every results file under `source` (a results file itself, or a folder in either layout), oldest first."""
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir():
        return []
    files = [p for p in source.rglob(RESULTS_GLOB) if p.is_file()]
    return sorted(files, key=lambda p: (p.stat().st_mtime, str(p)))


def read_results(path: str | Path) -> dict:
    """A results file as a dict; RunFileError naming the file when it is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RunFileError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunFileError(f"{path}: cannot be read ({exc})") from None
    if not isinstance(data, dict):
        raise RunFileError(f"{path}: a results file must hold a JSON object")
    for key in ("model", "judge", "metrics"):
        if key not in data:
            raise RunFileError(f"{path}: not an ALOE results file (no {key!r})")
    return data


def samples_path_for(results_path: str | Path, results: dict | None = None) -> Path:
    """The samples file of a results file: next to it in either layout (its name is recorded in `files`)."""
    results_path = Path(results_path)
    recorded = ((results or {}).get("files") or {}).get("samples")
    name = Path(recorded).name if recorded else f"{SAMPLES_PREFIX}{run_id_of(results_path)}.jsonl"
    return results_path.parent / name


def read_samples(path: str | Path) -> list[dict]:
    """Rows of a samples log; a torn last line (a run killed mid-append) is ignored, any other bad line is an error."""
    path = Path(path)
    if not path.exists():
        raise RunFileError(f"{path}: samples file not found")
    rows = []
    with open(path, "rb") as fh:
        lines = fh.read().split(b"\n")
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            if number == len(lines):  # the last line without its newline: torn by a kill
                break
            raise RunFileError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise RunFileError(f"{path}:{number}: a sample row must be a JSON object")
        rows.append(row)
    return rows


@dataclass
class Run:
    """One finished run found on disk: its results dict and where its files are."""

    results: dict
    results_path: Path
    samples_path: Path

    @property
    def run_id(self) -> str:
        return str(self.results.get("run_id") or run_id_of(self.results_path))

    def samples(self) -> list[dict]:
        return read_samples(self.samples_path)


def find_runs(source: str | Path) -> list[Run]:
    """Every run under `source` (results file or folder, either layout), oldest first; errors name the file."""
    runs = []
    for path in find_results_files(source):
        results = read_results(path)
        runs.append(Run(results, path, samples_path_for(path, results)))
    return runs


def locate_run_files(output_dir: str | Path, run_id: str, model_id: str | None) -> tuple[Path, Path]:
    """Where run `run_id` of `model_id` keeps its results and samples in `output_dir`.

    New runs go to `output_dir/<model name>/`; a run started in the flat layout keeps its flat files, so
    re-running an old command resumes it where it is.
    """
    output_dir = Path(output_dir)
    flat = (output_dir / f"results_{run_id}.json", output_dir / f"{SAMPLES_PREFIX}{run_id}.jsonl")
    if model_id is None or any(p.exists() for p in flat):
        return flat
    folder = output_dir / model_dir_name(model_id)
    return folder / f"results_{run_id}.json", folder / f"{SAMPLES_PREFIX}{run_id}.jsonl"
