"""The promotion gate: each branch of the pure rule, with numbers chosen to sit on either side."""

from __future__ import annotations

import pytest

from creditflow.flows.tracking import ChallengerMetrics, decide

BOUND = 0.03


def test_first_model_is_promoted_when_it_beats_the_scorecard_and_is_calibrated():
    d = decide(ChallengerMetrics(auc=0.80, ece=0.01), None, 0.75, BOUND)
    assert d.promote
    assert "no champion yet" in d.reason and "0.8000" in d.reason and "0.7500" in d.reason


def test_first_model_that_does_not_beat_the_scorecard_is_rejected():
    d = decide(ChallengerMetrics(auc=0.74, ece=0.01), None, 0.75, BOUND)
    assert not d.promote
    assert "does not beat the scorecard's 0.7500" in d.reason


def test_equal_to_the_scorecard_is_not_better():
    assert not decide(ChallengerMetrics(auc=0.75, ece=0.01), None, 0.75, BOUND).promote


def test_challenger_beating_champion_and_scorecard_is_promoted():
    d = decide(ChallengerMetrics(auc=0.81, ece=0.02), 0.80, 0.70, BOUND)
    assert d.promote
    assert "champion's 0.8000" in d.reason


def test_challenger_equal_to_the_champion_is_rejected():
    d = decide(ChallengerMetrics(auc=0.80, ece=0.02), 0.80, 0.70, BOUND)
    assert not d.promote
    assert "does not beat the champion's 0.8000" in d.reason and "equal is not better" in d.reason


def test_challenger_worse_than_the_champion_is_rejected():
    assert not decide(ChallengerMetrics(auc=0.79, ece=0.02), 0.80, 0.70, BOUND).promote


def test_calibration_error_above_the_bound_blocks_an_otherwise_better_model():
    d = decide(ChallengerMetrics(auc=0.90, ece=0.031), 0.80, 0.70, BOUND)
    assert not d.promote
    assert "calibration error 0.0310 is above the bound 0.03" in d.reason


def test_calibration_error_equal_to_the_bound_passes():
    assert decide(ChallengerMetrics(auc=0.90, ece=0.03), 0.80, 0.70, BOUND).promote


def test_every_failed_condition_is_named():
    d = decide(ChallengerMetrics(auc=0.60, ece=0.05), 0.80, 0.70, BOUND)
    assert not d.promote
    assert d.reason.count(";") == 2
    assert "calibration" in d.reason and "scorecard" in d.reason and "champion" in d.reason


def test_a_champion_that_cannot_be_rescored_blocks_promotion():
    d = decide(
        ChallengerMetrics(auc=0.90, ece=0.01),
        None,
        0.70,
        BOUND,
        champion_problem="the champion lacks features ['x']",
    )
    assert not d.promote
    assert d.reason == "the champion lacks features ['x']"


def test_an_undefined_auc_is_rejected():
    d = decide(ChallengerMetrics(auc=float("nan"), ece=0.01), None, float("nan"), BOUND)
    assert not d.promote
    assert "undefined" in d.reason


def test_bad_arguments_fail_clearly():
    with pytest.raises(ValueError, match="max_calibration_error must be in"):
        decide(ChallengerMetrics(auc=0.8, ece=0.01), None, 0.7, 0.0)
    with pytest.raises(ValueError, match="not both"):
        decide(ChallengerMetrics(auc=0.8, ece=0.01), 0.7, 0.7, BOUND, champion_problem="x")
