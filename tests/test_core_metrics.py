"""ALOE metrics against curves computed by hand."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from aloe_bench.core.metrics import al_curve, aloe_metrics, bootstrap_intervals, summarise


def test_linear_curve():
    m = aloe_metrics([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    assert m["AL_avg"] == pytest.approx(5.5)
    assert m["IR"] == pytest.approx(1.0)
    assert m["R2"] == pytest.approx(1.0)
    # normalised by (max - min) = 9, so the slope shrinks by 9
    assert m["N_IR"] == pytest.approx(1 / 9)
    assert m["N_R2"] == pytest.approx(1.0)


def test_step_curve_by_hand():
    # k = 1..4, mean k 2.5, Sxx = 5; y mean 3.5; Sxy = 0.75 + 0.25 + 0.25 + 0.75 = 2 -> slope 0.4
    # SS_reg = 0.4^2 * 5 = 0.8, SS_tot = 4 * 0.25 = 1 -> R2 0.8; range 1 so N_IR = IR
    m = aloe_metrics([3, 3, 4, 4])
    assert m["AL_avg"] == pytest.approx(3.5)
    assert m["IR"] == pytest.approx(0.4)
    assert m["R2"] == pytest.approx(0.8)
    assert m["N_IR"] == pytest.approx(0.4)


def test_normalisation_uses_curve_min_and_max():
    # y = [2, 4, 3]: slope 0.5, R2 0.25; normalised [0, 1, 0.5]: slope 0.25, same R2
    m = aloe_metrics([2, 4, 3])
    assert m["IR"] == pytest.approx(0.5)
    assert m["R2"] == pytest.approx(0.25)
    assert m["N_IR"] == pytest.approx(0.25)
    assert m["N_R2"] == pytest.approx(0.25)


def test_flat_curve_has_undefined_fits_not_invented_numbers():
    m = aloe_metrics([3, 3, 3])
    assert m["IR"] == 0.0
    assert m["R2"] is None and m["N_IR"] is None and m["N_R2"] is None


def test_bad_curves_raise():
    with pytest.raises(ValueError, match="at least 2"):
        aloe_metrics([3.0])
    with pytest.raises(ValueError, match="missing"):
        aloe_metrics([3.0, float("nan")])


def test_al_curve_ignores_missing_scores():
    scores = np.array([[1, 2], [3, np.nan], [5, 4]], dtype=float)
    assert al_curve(scores) == [pytest.approx(3.0), pytest.approx(3.0)]
    assert al_curve(np.array([[np.nan], [np.nan]])) == [None]


def test_bootstrap_intervals_bracket_the_estimate_and_are_reproducible():
    rng = np.random.default_rng(1)
    scores = np.clip(np.arange(1, 6) * 0.3 + rng.normal(2.5, 0.5, size=(40, 5)), 1, 5)
    summary = summarise(scores, n_resamples=300, seed=3)
    for name in ("AL_avg", "IR"):
        low, high = summary["intervals"][name]
        assert low <= summary[name] <= high
        assert low < high
    assert bootstrap_intervals(scores, n_resamples=300, seed=3) == summary["intervals"]
    assert summarise(scores[:1])["intervals"]["AL_avg"] == [None, None]


def test_metrics_cli_prints_json():
    out = subprocess.run([sys.executable, "-m", "aloe_bench.commands.main", "metrics", "--al", "3,3,4,4"],
                         capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    assert set(data) == {"AL_avg", "IR", "N_IR", "R2", "N_R2"}
    assert math.isclose(data["IR"], 0.4)


def test_metrics_cli_rejects_garbage():
    proc = subprocess.run([sys.executable, "-m", "aloe_bench.commands.main", "metrics", "--al", "3,x"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "--al" in proc.stderr
