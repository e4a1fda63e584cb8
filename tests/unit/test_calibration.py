"""Calibration maps: Platt and isotonic fits, cross-fitted choice, JSON round trip, clipping."""

from __future__ import annotations

import json

import numpy as np
import pytest

from creditflow.models.calibration import (
    PD_MAX,
    PD_MIN,
    Calibrator,
    fit_calibrator,
    fit_isotonic,
    fit_platt,
)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _logit(p):
    return np.log(p / (1 - p))


def distorted_scores(n: int, seed: int, true_map):
    """Raw scores r ~ U(0.01, 0.99) whose true default probability is ``true_map(r)``."""
    rng = np.random.default_rng(seed)
    r = rng.uniform(0.01, 0.99, n)
    y = (rng.random(n) < true_map(r)).astype(np.int8)
    return r, y


def test_platt_recovers_a_logistic_distortion():
    # true PD = sigmoid(0.5 * logit(r) - 1): Platt's family holds the answer a = 0.5, b = -1.
    r, y = distorted_scores(40_000, 0, lambda r: _sigmoid(0.5 * _logit(r) - 1.0))
    cal = fit_platt(r, y)
    # MLE standard errors at n = 40k are ~0.01 for a and b; 0.05 is 5 sd.
    assert cal.params["a"] == pytest.approx(0.5, abs=0.05)
    assert cal.params["b"] == pytest.approx(-1.0, abs=0.05)


def test_platt_on_a_hand_case_matches_the_observed_rates():
    # Two score levels with observed rates 1/4 and 3/4: with two free parameters the
    # maximum-likelihood map reproduces both rates exactly.
    r = np.array([0.2] * 4 + [0.6] * 4)
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    cal = fit_platt(r, y)
    assert cal.apply([0.2, 0.6]) == pytest.approx([0.25, 0.75], abs=1e-6)


def test_isotonic_is_non_decreasing_and_fits_a_step():
    r, y = distorted_scores(20_000, 1, lambda r: np.where(r < 0.5, 0.05, 0.6))
    cal = fit_isotonic(r, y)
    grid = np.linspace(0, 1, 201)
    out = cal.apply(grid)
    assert np.all(np.diff(out) >= 0)
    # each side holds ~10k rows: sd of the rate ~0.005, bound 0.03 is 6 sd
    assert cal.apply([0.2])[0] == pytest.approx(0.05, abs=0.03)
    assert cal.apply([0.8])[0] == pytest.approx(0.6, abs=0.03)


def test_auto_choice_prefers_isotonic_for_a_step_and_platt_for_a_logistic_map():
    r, y = distorted_scores(8_000, 2, lambda r: np.where(r < 0.5, 0.05, 0.6))
    step = fit_calibrator(r, y, seed=0)
    assert step.method == "isotonic"
    assert step.selection["isotonic"] < step.selection["platt"]
    r, y = distorted_scores(8_000, 3, lambda r: _sigmoid(0.7 * _logit(r) - 0.3))
    smooth = fit_calibrator(r, y, seed=0)
    assert smooth.method == "platt"
    assert smooth.selection["platt"] < smooth.selection["isotonic"]


def test_calibrated_pds_are_strictly_inside_zero_one():
    r = np.array([0.0, 0.0, 0.001, 0.5, 0.999, 1.0, 1.0])
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    for cal in (fit_platt(r, y), fit_isotonic(r, y)):
        out = cal.apply(np.array([0.0, 1e-12, 0.5, 1.0 - 1e-12, 1.0]))
        assert out.min() >= PD_MIN and out.max() <= PD_MAX
        assert np.all((out > 0) & (out < 1))


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_json_round_trip_gives_identical_predictions(method):
    r, y = distorted_scores(5_000, 4, lambda r: _sigmoid(1.3 * _logit(r) + 0.2))
    cal = fit_calibrator(r, y, method=method)
    text = json.dumps(cal.to_dict())
    back = Calibrator.from_dict(json.loads(text))
    grid = np.linspace(0, 1, 1001)
    assert back.method == method
    assert np.array_equal(back.apply(grid), cal.apply(grid))
    assert np.array_equal(back.apply(r), cal.apply(r))


def test_auto_selection_scores_survive_the_round_trip():
    r, y = distorted_scores(3_000, 5, lambda r: r)
    cal = fit_calibrator(r, y, seed=1)
    back = Calibrator.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert back.selection == cal.selection
    assert set(cal.selection) == {"platt", "isotonic"}


def test_from_dict_checks_the_format():
    with pytest.raises(ValueError, match="format_version must be 1"):
        Calibrator.from_dict({"method": "platt", "params": {"a": 1.0, "b": 0.0}})
    with pytest.raises(ValueError, match="needs params a and b"):
        Calibrator.from_dict({"format_version": 1, "method": "platt", "params": {"a": 1.0}})
    with pytest.raises(ValueError, match="method must be one of"):
        Calibrator.from_dict({"format_version": 1, "method": "beta", "params": {}})
    with pytest.raises(ValueError, match="non-decreasing"):
        Calibrator(method="isotonic", params={"x": [0.0, 1.0], "y": [0.5, 0.2]})


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="both defaulters and non-defaulters"):
        fit_platt([0.1, 0.2, 0.3], [0, 0, 0])
    with pytest.raises(ValueError, match="same length"):
        fit_isotonic([0.1, 0.2], [0])
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        fit_platt([0.1, 1.5], [0, 1])
    with pytest.raises(ValueError, match="at least n_folds=5 rows of each class"):
        fit_calibrator([0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"raw PDs must be finite and in \[0, 1\]"):
        fit_platt([0.1, 0.2], [0, 1]).apply([np.nan])
