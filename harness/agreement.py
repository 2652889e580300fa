"""How far two (or more) judges agree on the same rows: run folders, samples files and human ratings files.

Rows are paired by (persona, turn). Scores may be fractional (a judge read from probabilities): exact and
within-1 agreement and Cohen's kappa use them rounded to the nearest integer and clipped to 1-5; correlations
and the mean difference use them as they are. A statistic that is undefined for the data (all-equal scores,
fewer than two pairs) is `null` with a reason, never a made-up number. Intervals are percentile bootstraps
over conversations (personas resampled with replacement, every turn of a drawn persona kept).
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats
from sklearn.metrics import cohen_kappa_score

from aloe_bench.core.errors import ConfigError
from aloe_bench.core.io import DataFileError, read_jsonl
from aloe_bench.core.jury import member_scores
from aloe_bench.core.ratings import is_ratings_file, latest_ratings, read_ratings
from aloe_bench.core.run_files import SAMPLES_PREFIX, find_run

LABELS = [1, 2, 3, 4, 5]
ROUNDING_NOTE = ("exact/within-1 agreement and Cohen's kappa use scores rounded to the nearest integer and clipped "
                 "to 1-5; Spearman, Pearson and the mean difference use the scores as given")
STATISTICS = ("exact", "within_1", "kappa", "kappa_quadratic", "spearman", "pearson", "mean_difference")


@dataclass
class Rater:
    """One judge or person: a score (None = a recorded failure) per (persona, turn), and reply lengths."""

    name: str
    scores: dict[tuple[str, int], float | None] = field(default_factory=dict)
    reply_chars: dict[tuple[str, int], int] = field(default_factory=dict)
    source: str = ""
    kind: str = "judge"  # judge | human

    @property
    def failures(self) -> int:
        return sum(v is None for v in self.scores.values())


#: the columns a scored-rows JSONL file may name each field by (the first one present in a row is read)
SCORED_COLUMNS = {"persona id": ("persona_id", "persona"), "turn": ("turn",), "score": ("score", "rating")}


class ScoredRowsError(DataFileError):
    """A JSONL file of scored rows lacks a column or holds a bad value; the message names the file and line."""


def _column(row: dict, field: str):
    """The value of `field` in `row` under the first of its accepted column names present, or KeyError."""
    for name in SCORED_COLUMNS[field]:
        if name in row:
            return row[name]
    raise KeyError(field)


def _add_row(rater: Rater, row: dict) -> None:
    """One samples-shaped row: a generation error or a missing reply is not a judged row and is left out; a null
    score is a recorded judge failure."""
    if row.get("error") or ("reply" in row and row["reply"] is None):  # no reply: nothing was judged
        return
    turn, score = _column(row, "turn"), _column(row, "score")
    if isinstance(turn, bool) or isinstance(score, bool) or (isinstance(turn, float) and not turn.is_integer()):
        raise ValueError("a flag is not a turn or a score")
    key = (str(_column(row, "persona id")), int(turn))
    rater.scores[key] = None if score is None else float(score)
    if isinstance(row.get("reply"), str):
        rater.reply_chars[key] = len(row["reply"])


def read_scored_rows(path: Path) -> Rater:
    """A JSONL file of scored rows under any name, recognised by its content: each row names a persona
    (`persona_id` or `persona`), a `turn` and a score (`score` or `rating`; null: a failure). Samples rows of
    other harnesses read the same way (with `reply`, its length is kept for the length bias)."""
    rater = Rater(path.stem, source=str(path))
    for number, row in read_jsonl(path, log=True, error=ScoredRowsError):
        where = f"{path}:{number}"
        if not isinstance(row, dict):
            raise ScoredRowsError(f"{where}: a scored row must be a JSON object")
        missing = [f"{field} ({' or '.join(names)})" for field, names in SCORED_COLUMNS.items()
                   if not any(name in row for name in names)]
        if missing:
            raise ScoredRowsError(f"{where}: row lacks {', '.join(missing)}: not a file of scored rows")
        try:
            _add_row(rater, row)
        except (TypeError, ValueError):
            raise ScoredRowsError(f"{where}: turn must be an integer and score a number or null, got turn "
                                  f"{_column(row, 'turn')!r}, score {_column(row, 'score')!r}") from None
    if not rater.scores:
        raise ScoredRowsError(f"{path}: no scored rows")
    return rater


def load_raters(source: str, run_id: str | None = None) -> list[Rater]:
    """A run folder or samples file gives one rater (its judge); a ratings file one rater per rater id; any other
    JSONL file of scored rows (`SCORED_COLUMNS`) one rater named after the file."""
    path = Path(source).expanduser()
    if path.is_file() and is_ratings_file(path):
        raters: dict[str, Rater] = {}
        for (rater, _run, persona, turn), record in latest_ratings(read_ratings(path)).items():
            if record["score"] is None:  # a skip: the row was not rated
                continue
            raters.setdefault(rater, Rater(f"human:{rater}", source=str(path), kind="human"))
            raters[rater].scores[(persona, turn)] = float(record["score"])
        return list(raters.values())
    if path.is_file() and not path.name.startswith(SAMPLES_PREFIX):
        return [read_scored_rows(path)]
    run = find_run(path, run_id)
    results = run.results or {}
    name = results.get("judge") or run.run_id
    rater = Rater(f"{name} [{run.run_id}]", source=str(run.samples_path))
    members: dict[int, Rater] = {}  # a jury's judges, each its own rater beside the jury's combined score
    for row in run.samples():
        _add_row(rater, row)
        _add_members(members, row, run)
    return [rater, *members.values()] if len(members) > 1 else [rater]


def _add_members(members: dict[int, Rater], row: dict, run) -> None:
    """Each jury member's score of a samples row (the mean of its samples that parsed, None when none did), from
    the row's `judges` records; rows without records (a lone judge, a failed generation) add nothing."""
    records = row.get("judges") or []
    if not records or row.get("error") or row.get("reply", "") is None:
        return
    names = {r["judge"]: r.get("name") or r.get("spec") or f"judge {r['judge']}" for r in records}
    for place, score in member_scores(records).items():
        member = members.setdefault(place, Rater(f"{names[place]} (judge {place}) [{run.run_id}]",
                                                 source=str(run.samples_path)))
        key = (str(row["persona_id"]), int(row["turn"]))
        member.scores[key] = score
        if isinstance(row.get("reply"), str):
            member.reply_chars[key] = len(row["reply"])


def _rounded(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 1, 5).astype(int)


def _value(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 6)


def pair_statistics(a: np.ndarray, b: np.ndarray) -> dict:
    """Every statistic of paired scores; undefined ones are None, with the reason under `undefined`."""
    out: dict = {"pairs": int(len(a))}
    undefined: dict[str, str] = {}
    if len(a) == 0:
        for name in STATISTICS:
            out[name] = None
            undefined[name] = "no paired rows"
        out["undefined"] = undefined
        return out
    ra, rb = _rounded(a), _rounded(b)
    out["exact"] = _value(np.mean(ra == rb))
    out["within_1"] = _value(np.mean(np.abs(ra - rb) <= 1))
    for name, weights in (("kappa", None), ("kappa_quadratic", "quadratic")):
        if len(set(ra.tolist()) | set(rb.tolist())) < 2:
            out[name], undefined[name] = None, "both raters gave one and the same score to every row (chance " \
                                                "agreement is 1)"
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            value = cohen_kappa_score(ra, rb, labels=LABELS, weights=weights)
        out[name] = _value(value)
        if out[name] is None:
            undefined[name] = "chance agreement is 1"
    for name, fn in (("spearman", stats.spearmanr), ("pearson", stats.pearsonr)):
        if len(a) < 2:
            out[name], undefined[name] = None, "fewer than 2 pairs"
        elif np.ptp(a) == 0 or np.ptp(b) == 0:
            which = "both raters" if np.ptp(a) == 0 and np.ptp(b) == 0 else ("rater A" if np.ptp(a) == 0 else "rater B")
            out[name], undefined[name] = None, f"{which} gave every row the same score"
        else:
            out[name] = _value(fn(a, b).statistic)
    out["mean_difference"] = _value(np.mean(a - b))
    out["undefined"] = undefined
    return out


def _paired(a: Rater, b: Rater, keys=None):
    keys = sorted(k for k in (keys or a.scores.keys() & b.scores.keys())
                  if a.scores.get(k) is not None and b.scores.get(k) is not None)
    return keys, np.array([a.scores[k] for k in keys]), np.array([b.scores[k] for k in keys])


def bootstrap_intervals(a: Rater, b: Rater, n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict:
    """Percentile intervals over conversations; resamples where a statistic is undefined are left out (counted)."""
    keys, _, _ = _paired(a, b)
    personas = sorted({k[0] for k in keys})
    if len(personas) < 2:
        return {name: {"interval": [None, None], "defined_resamples": 0} for name in STATISTICS}
    by_persona = {p: [k for k in keys if k[0] == p] for p in personas}
    rng = np.random.default_rng(seed)
    draws = {name: [] for name in STATISTICS}
    for _ in range(n_resamples):
        chosen = rng.choice(len(personas), size=len(personas), replace=True)
        sample = [k for i in chosen for k in by_persona[personas[i]]]
        values = pair_statistics(np.array([a.scores[k] for k in sample]), np.array([b.scores[k] for k in sample]))
        for name in STATISTICS:
            if values[name] is not None:
                draws[name].append(values[name])
    tail = (1 - confidence) / 2 * 100
    out = {}
    for name, values in draws.items():
        interval = [None, None] if not values else [_value(np.percentile(values, tail)),
                                                     _value(np.percentile(values, 100 - tail))]
        out[name] = {"interval": interval, "defined_resamples": len(values)}
    return out


def compare(a: Rater, b: Rater, n_resamples: int = 1000, seed: int = 0) -> dict:
    shared = a.scores.keys() & b.scores.keys()
    keys, x, y = _paired(a, b)
    result = {"a": a.name, "b": b.name, **pair_statistics(x, y),
              "rows_only_in_a": len(a.scores.keys() - b.scores.keys()),
              "rows_only_in_b": len(b.scores.keys() - a.scores.keys()),
              "shared_rows_with_a_failure": sum(a.scores[k] is None for k in shared),
              "shared_rows_with_b_failure": sum(b.scores[k] is None for k in shared)}
    result["per_turn"] = {}
    for turn in sorted({k[1] for k in keys}):
        _, tx, ty = _paired(a, b, [k for k in keys if k[1] == turn])
        result["per_turn"][str(turn)] = pair_statistics(tx, ty)
    result["bootstrap"] = bootstrap_intervals(a, b, n_resamples, seed)
    return result


def length_bias(rater: Rater) -> dict:
    """Spearman correlation of a judge's score with the reply's length in characters."""
    keys = [k for k, v in rater.scores.items() if v is not None and k in rater.reply_chars]
    if not keys:
        return {"spearman": None, "rows": 0, "undefined": "no reply lengths (human ratings carry no reply)"}
    scores = np.array([rater.scores[k] for k in keys])
    lengths = np.array([rater.reply_chars[k] for k in keys])
    if len(keys) < 2 or np.ptp(scores) == 0 or np.ptp(lengths) == 0:
        return {"spearman": None, "rows": len(keys), "undefined": "scores or lengths are all equal (or < 2 rows)"}
    return {"spearman": _value(stats.spearmanr(scores, lengths).statistic), "rows": len(keys)}


def inter_rater(raters: list[Rater]) -> dict:
    """Several raters of the same rows: mean pairwise kappa and Krippendorff's alpha (missing ratings allowed)."""
    import krippendorff

    kappas = {"kappa": [], "kappa_quadratic": []}
    for a, b in itertools.combinations(raters, 2):
        stats_ab = pair_statistics(*_paired(a, b)[1:])
        for name in kappas:
            if stats_ab[name] is not None:
                kappas[name].append(stats_ab[name])
    units = sorted(set().union(*(r.scores.keys() for r in raters)))
    matrix = np.array([[np.nan if r.scores.get(u) is None else r.scores[u] for u in units] for r in raters])
    out = {"raters": [r.name for r in raters], "units": len(units)}
    for name, values in kappas.items():
        out[f"mean_pairwise_{name}"] = _value(np.mean(values)) if values else None
        out[f"defined_pairs_{name}"] = len(values)
    rated_twice = int((np.isfinite(matrix).sum(axis=0) >= 2).sum())
    for level in ("ordinal", "interval"):
        key = f"krippendorff_alpha_{level}"
        if rated_twice == 0 or len(np.unique(matrix[np.isfinite(matrix)])) < 2:
            out[key] = None
            out.setdefault("undefined", {})[key] = "no row rated twice, or one score value only"
            continue
        data = np.rint(matrix) if level == "ordinal" else matrix
        out[key] = _value(krippendorff.alpha(reliability_data=data, level_of_measurement=level))
    out["units_rated_at_least_twice"] = rated_twice
    return out


def agree(sources: list[str], run_id: str | None = None, n_resamples: int = 1000, seed: int = 0) -> dict:
    raters = [r for source in sources for r in load_raters(source, run_id)]
    if len(raters) < 2:
        raise ConfigError(f"need at least two raters, got {len(raters)} from {sources}")
    report = {
        "note": ROUNDING_NOTE,
        "bootstrap": {"over": "conversations (personas)", "resamples": n_resamples, "confidence": 0.95, "seed": seed},
        "raters": [{"name": r.name, "kind": r.kind, "source": r.source, "rows": len(r.scores),
                    "failures": r.failures,
                    "failure_share": _value(r.failures / len(r.scores)) if r.scores else None,
                    "length_bias": length_bias(r)} for r in raters],
        "pairs": [compare(a, b, n_resamples, seed) for a, b in itertools.combinations(raters, 2)],
    }
    if len(raters) >= 3:
        report["inter_rater"] = inter_rater(raters)
    return report
