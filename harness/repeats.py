"""`aloe eval --repeats K`: K ordinary runs of the same settings with seeds seed..seed+K-1, sharing a group id, and a
group summary of how much the numbers move from one repeat to the next.

Each repeat is a run like any other (its own run id, results and samples files, resumed on its own), so every reader
that pairs rows by persona and turn keeps working; its results file records `repeat: {group_id, index, repeats,
seed, seeds}`. The group summary (`group_<group id>.json`, next to the runs' files) gives, for AL_avg, IR and N_IR
(and each criterion's, for a run judged per criterion), the mean across repeats and their spread (sample SD, min,
max) beside each repeat's bootstrap interval over personas: the spread is simulator and judge noise under other
seeds, the interval the uncertainty of drawing these personas. A finished repeat is not run again: re-running the
same command resumes each repeat from its samples log (a finished one makes no model call) and rewrites the summary.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from aloe_bench.core.io import atomic_write_json
from aloe_bench.core.run_identity import EVAL_SETTINGS

from .protocol import EvalRun, resolve_run
from .results import fingerprint

GROUP_PREFIX = "group_"
GROUP_METRICS = ("AL_avg", "IR", "N_IR")
SPREAD_NOTE = ("mean, sd (sample standard deviation, n-1), min and max are across the repeats (other seeds: simulator, "
               "reply and judge sampling); bootstrap_intervals are each repeat's 95% interval over personas, "
               "bootstrap_width_mean their mean width")


def repeat_runs(run: EvalRun) -> list[EvalRun]:
    """The K runs of `run` (K = `config.repeats`), seeds seed..seed+K-1, each resolved as an ordinary run."""
    cfg = run.config
    return [resolve_run(replace(cfg, seed=cfg.seed + i), run.backend) for i in range(cfg.repeats)]


def group_id(run: EvalRun) -> str:
    """The id of `run`'s group of repeats: the run settings that make a run's identity, the seed replaced by the list
    of the repeats' seeds; the same command gives the same id, so a re-run resumes the group."""
    settings = {name: value for name, value in run.settings["run"].items() if name in EVAL_SETTINGS and name != "seed"}
    seeds = [run.config.seed + i for i in range(run.config.repeats)]
    return f"g{fingerprint({'run': settings, 'seeds': seeds})}"


def _number(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(float(value), 6)


def spread(values: list[float | None], intervals: list[list | None]) -> dict:
    """Mean, sample SD, min and max of one metric across repeats (repeats where it is undefined left out, counted),
    beside each repeat's bootstrap interval."""
    defined = [v for v in values if v is not None]
    out = {"values": values, "repeats_defined": len(defined),
           "mean": _number(np.mean(defined)) if defined else None,
           "sd": _number(np.std(defined, ddof=1)) if len(defined) >= 2 else None,
           "min": _number(min(defined)) if defined else None,
           "max": _number(max(defined)) if defined else None,
           "bootstrap_intervals": intervals}
    widths = [hi - lo for lo, hi in (i for i in intervals if i) if lo is not None and hi is not None]
    out["bootstrap_width_mean"] = _number(np.mean(widths)) if widths else None
    if len(defined) < 2:
        out["undefined"] = {"sd": "fewer than 2 repeats with a value"}
    return out


def _metric_spreads(blocks: list[dict]) -> dict:
    return {name: spread([_number(b.get(name)) for b in blocks], [(b.get("intervals") or {}).get(name) for b in blocks])
            for name in GROUP_METRICS}


def group_summary(gid: str, runs: list[EvalRun], results: list[dict]) -> dict:
    """The group summary of finished repeats (`results`, in repeat order)."""
    summary = {"group_id": gid, "repeats": len(results), "seeds": [r.config.seed for r in runs],
               "model": results[0]["model"], "judge": results[0]["judge"], "note": SPREAD_NOTE,
               "runs": [{"index": i, "seed": run.config.seed, "run_id": res["run_id"],
                         "results_file": Path(res["results_file"]).name, "counts": res["counts"]}
                        for i, (run, res) in enumerate(zip(runs, results), 1)],
               "metrics": _metric_spreads([r["metrics"] for r in results])}
    if all("criteria" in r for r in results):
        summary["criteria"] = {name: _metric_spreads([r["criteria"][name] for r in results])
                               for name in results[0]["criteria"]}
    return summary


def evaluate_repeats(run: EvalRun, roles_for=None, persona_set=None) -> dict:
    """Run (or resume) the K repeats of `run` and write their group summary; return it, with `summary_file`.

    `roles_for(run)` gives each repeat's roles (tests); by default each repeat builds its own, over the same loaded
    models (backends are shared per spec and options)."""
    from .runner import evaluate_model

    gid, runs = group_id(run), repeat_runs(run)
    seeds = [r.config.seed for r in runs]
    results = []
    for index, repeat in enumerate(runs, 1):
        info = {"group_id": gid, "index": index, "repeats": len(runs), "seed": repeat.config.seed, "seeds": seeds}
        results.append(evaluate_model(repeat, roles_for(repeat) if roles_for else None, persona_set, repeat=info))
    summary = group_summary(gid, runs, results)
    path = Path(results[0]["results_file"]).parent / f"{GROUP_PREFIX}{gid}.json"
    atomic_write_json(path, summary, indent=2)
    summary["summary_file"] = str(path)  # for callers; not part of the file
    return summary
