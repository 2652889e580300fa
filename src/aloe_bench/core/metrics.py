"""ALOE metrics: the alignment curve AL(k) and its improvement rate.

- AL(k): mean judge score at turn k over the conversations that have a score there;
- AL_avg: mean of the AL(k) values;
- IR: least-squares slope of AL(k) against k = 1..K; R2: the fit's coefficient of determination;
- N_IR / N_R2: the same after min-max normalising the curve with its own global min and max.
Intervals are percentile bootstraps over conversations (each resample redraws whole conversations).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

METRIC_NAMES = ("AL_avg", "IR", "N_IR", "R2", "N_R2")


def _fit(curve: np.ndarray) -> tuple[float, float | None]:
    turns = np.arange(1, len(curve) + 1, dtype=float)
    if np.ptp(curve) == 0:  # a flat curve: slope 0, R2 undefined
        return 0.0, None
    from scipy import stats  # here, not at the top: `aloe` builds its parser without scipy (about 1 s)

    result = stats.linregress(turns, curve)
    return float(result.slope), float(result.rvalue**2)


def aloe_metrics(al: Sequence[float]) -> dict:
    """Metrics of one AL(k) curve, k = 1..len(al). Undefined values are None, never a made-up number."""
    curve = np.asarray(al, dtype=float)
    if curve.ndim != 1 or len(curve) < 2:
        raise ValueError(f"an AL curve needs at least 2 turns, got {len(curve)}")
    if not np.all(np.isfinite(curve)):
        raise ValueError(f"AL curve has missing values: {curve.tolist()}")
    ir, r2 = _fit(curve)
    low, high = curve.min(), curve.max()
    if high > low:
        n_ir, n_r2 = _fit((curve - low) / (high - low))
    else:
        n_ir, n_r2 = None, None
    return {"AL_avg": float(curve.mean()), "IR": ir, "N_IR": n_ir, "R2": r2, "N_R2": n_r2}


def al_curve(scores: np.ndarray) -> list[float | None]:
    """AL(k) from a (conversations x turns) matrix with NaN where no score exists."""
    scores = np.asarray(scores, dtype=float)
    out: list[float | None] = []
    for column in scores.T:
        valid = column[np.isfinite(column)]
        out.append(float(valid.mean()) if len(valid) else None)
    return out


def _metric_vector(scores: np.ndarray) -> np.ndarray:
    curve = al_curve(scores)
    if any(v is None for v in curve):
        return np.full(len(METRIC_NAMES), np.nan)
    values = aloe_metrics(curve)
    return np.array([np.nan if values[n] is None else values[n] for n in METRIC_NAMES])


def _bootstrap(index, scores, n_resamples, confidence, seed):
    from scipy import stats

    return stats.bootstrap(
        (index,),
        lambda idx: _metric_vector(scores[idx.astype(int)]),
        vectorized=False,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )


def bootstrap_intervals(scores: np.ndarray, confidence: float = 0.95, n_resamples: int = 1000,
                        seed: int = 0) -> dict[str, list[float | None]]:
    """Percentile bootstrap intervals of every metric, resampling conversations with replacement."""
    scores = np.asarray(scores, dtype=float)
    if scores.shape[0] < 2:
        return {name: [None, None] for name in METRIC_NAMES}
    from scipy import stats

    index = np.arange(scores.shape[0])
    with warnings.catch_warnings():  # identical resamples (e.g. constant scores) give a zero-width interval
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = _bootstrap(index, scores, n_resamples, confidence, seed)
    low, high = np.atleast_1d(result.confidence_interval.low), np.atleast_1d(result.confidence_interval.high)
    return {
        name: [None if math.isnan(lo) else float(lo), None if math.isnan(hi) else float(hi)]
        for name, lo, hi in zip(METRIC_NAMES, low, high)
    }


def summarise(scores: np.ndarray, confidence: float = 0.95, n_resamples: int = 1000, seed: int = 0) -> dict:
    """Everything a result file reports about a score matrix."""
    scores = np.asarray(scores, dtype=float)
    curve = al_curve(scores)
    summary: dict = {"AL": curve}
    if all(v is not None for v in curve) and len(curve) >= 2:
        summary.update(aloe_metrics(curve))
        summary["intervals"] = bootstrap_intervals(scores, confidence, n_resamples, seed)
    else:
        summary.update({name: None for name in METRIC_NAMES})
        summary["intervals"] = {name: [None, None] for name in METRIC_NAMES}
    summary["confidence"] = confidence
    return summary
