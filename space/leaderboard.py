"""The leaderboard tab's table, built from harness result files or a results dataset (a Hub id or its local folder).

Sources: a folder of `aloe eval` outputs (`results_*.json` at any depth, found by `aloe_bench.core.run_files`), a
results dataset folder as `aloe results push --local-dir` builds it, or a Hub results dataset (`hub:ORG/NAME`).
Rows are read by their keys (model, judge, created, metrics{AL_avg, IR, N_IR, intervals}, and for a run judged per
criterion its `criteria` block or the dataset's AL_style / AL_content / AL_human columns); it does not import the
harness. A malformed file is reported by name and skipped; the others still show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aloe_bench.core.errors import AloeError

CRITERION_COLUMNS = ["AL_style", "AL_content", "AL_human"]  # empty for runs of a one-integer judge
# run: opens it in the Runs tab
COLUMNS = ["model", "AL_avg", "AL_avg interval", "IR", "N_IR", *CRITERION_COLUMNS, "judge", "date", "run"]


class LeaderboardError(AloeError, ValueError):
    """The results source cannot be read at all (missing folder, unreachable Hub dataset)."""


@dataclass
class Leaderboard:
    rows: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    source: str = ""

    def table(self) -> list[list]:
        return [[row[c] for c in COLUMNS] for row in self.rows]


def _number(value, where: str, name: str, optional: bool = False):
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: metrics.{name} must be a number, got {value!r}")
    return round(float(value), 4)


def _criterion_average(record: dict, column: str, where: str):
    """A criterion's AL_avg: the results dataset's column, or the results file's `criteria` block; None when absent."""
    value = record.get(column)
    if value is None:
        block = record.get("criteria")
        if isinstance(block, dict):
            value = (block.get(column.removeprefix("AL_")) or {}).get("AL_avg")
    return _number(value, where, column, optional=True)


def row_from_result(record: dict, where: str) -> dict:
    """One leaderboard row from one result record; ValueError naming `where` and the field when malformed."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: a result must be a JSON object")
    for key in ("model", "judge", "created", "metrics"):
        if key not in record:
            raise ValueError(f"{where}: missing field {key!r}")
    metrics = record["metrics"]
    if not isinstance(metrics, dict):
        raise ValueError(f"{where}: field 'metrics' must be an object")
    interval = (metrics.get("intervals") or {}).get("AL_avg") or [None, None]
    if len(interval) != 2:
        raise ValueError(f"{where}: metrics.intervals.AL_avg must be [low, high]")
    low, high = (None if v is None else _number(v, where, "intervals.AL_avg") for v in interval)
    return {
        "model": str(record["model"]),
        "AL_avg": _number(metrics.get("AL_avg"), where, "AL_avg"),
        "AL_avg interval": "—" if low is None or high is None else f"[{low:.2f}, {high:.2f}]",
        "IR": _number(metrics.get("IR"), where, "IR"),
        "N_IR": _number(metrics.get("N_IR"), where, "N_IR", optional=True),
        **{column: _criterion_average(record, column, where) for column in CRITERION_COLUMNS},
        "judge": str(record["judge"]),
        "date": str(record["created"])[:10],
        "run": str(record.get("run_id") or ""),
    }


def _sorted(board: Leaderboard) -> Leaderboard:
    board.rows.sort(key=lambda r: (-r["AL_avg"], r["model"]))
    return board


def from_folder(folder: str | Path) -> Leaderboard:
    """Every `results_*.json` under `folder` (recursively), best AL_avg first."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise LeaderboardError(f"results folder {folder}: not found (run `aloe eval --output_dir {folder}` first)")
    if is_results_dataset(folder):
        return _from_dataset(str(folder), f"{folder} (results dataset)")
    from aloe_bench.core.io import read_json
    from aloe_bench.core.run_files import RunFileError, find_results_files

    board = Leaderboard(source=str(folder))
    for path in sorted(find_results_files(folder)):
        try:
            board.rows.append(row_from_result(read_json(path, RunFileError), str(path)))
        except (ValueError, RunFileError) as exc:
            board.problems.append(str(exc))
    return _sorted(board)


def is_results_dataset(folder: Path) -> bool:
    """A folder laid out as a results dataset repo: a card declaring a `results` config."""
    if not (folder / "README.md").is_file() or not (folder / "results").is_dir():
        return False
    from aloe_bench.core.dataset_folder import read_card_configs

    try:
        return "results" in read_card_configs(folder)
    except ValueError:
        return False


def _from_dataset(source: str, label: str, split: str = "train", token=None) -> Leaderboard:
    from aloe_bench.core.dataset_folder import load_dataset_source

    try:
        rows = load_dataset_source(source, "results", split=split, **({} if token is None else {"token": token}))
    except Exception as exc:
        raise LeaderboardError(f"Hub results dataset {source!r} could not be read: {type(exc).__name__}: {exc}") from exc
    board = Leaderboard(source=label)
    for number, record in enumerate(rows):
        try:
            board.rows.append(row_from_result(dict(record), f"{label} (results/{split}, row {number})"))
        except ValueError as exc:
            board.problems.append(str(exc))
    return _sorted(board)


def from_hub(repo_id: str, split: str = "train", token=None) -> Leaderboard:
    """The `results` config of a Hub results dataset: its rows carry the result keys. `token`: None reads with the
    environment's credentials, False anonymously, a string with that token."""
    return _from_dataset(repo_id, f"hub:{repo_id}", split, token)


def load_leaderboard(source: str, token=None) -> Leaderboard:
    """`hub:ORG/NAME` reads a Hub dataset (with `token`, as `from_hub`); anything else is a local folder."""
    source = (source or "").strip()
    if not source:
        raise LeaderboardError("give a results folder or hub:ORG/NAME")
    if source.startswith("hub:"):
        return from_hub(source[4:], token=token)
    return from_folder(source)
