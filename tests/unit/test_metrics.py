"""Metric functions on tiny hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from creditflow.models.metrics import (
    assign_grades,
    auc,
    brier,
    calibration_table,
    default_rate_by_grade,
    evaluate,
    expected_calibration_error,
    gini,
    ks,
    log_loss,
)


def test_auc_of_perfect_ranking_is_one_and_of_reversed_ranking_is_zero():
    y = [0, 0, 1, 1]
    assert auc([0.1, 0.2, 0.3, 0.4], y) == 1.0
    assert auc([0.4, 0.3, 0.2, 0.1], y) == 0.0


def test_auc_counts_pairs():
    # defaulters 0.35 and 0.8 against non-defaulters 0.1 and 0.4:
    # 0.35>0.1 yes, 0.35>0.4 no, 0.8>0.1 yes, 0.8>0.4 yes -> 3 of 4 pairs
    assert auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert gini([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.5


def test_auc_counts_ties_as_half():
    assert auc([0.2, 0.2, 0.2, 0.2], [0, 1, 0, 1]) == 0.5
    # one tie (0.3 vs 0.3) of 4 pairs, the 3 other pairs won -> (3 + 0.5) / 4
    assert auc([0.3, 0.1, 0.3, 0.6], [0, 0, 1, 1]) == 3.5 / 4


def test_ks_is_largest_gap_between_cumulative_distributions():
    # sorted by pd: 0.1 (good) 0.35 (bad) 0.4 (good) 0.8 (bad)
    # cum bad: .5 .5 ... -> after 0.1: bad 0, good .5 -> gap .5; after 0.35: .5/.5 -> 0; after 0.4: .5/1 -> .5
    assert ks([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.5
    assert ks([0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1]) == 1.0


def test_ks_moves_tied_pds_together():
    # every pd equal: the only threshold takes everyone, so no separation
    assert ks([0.2, 0.2, 0.2, 0.2], [0, 1, 0, 1]) == 0.0


def test_brier_is_mean_squared_error():
    # (0.1-0)^2 + (0.9-1)^2 + (0.5-1)^2 = 0.01 + 0.01 + 0.25 -> / 3 = 0.09
    assert brier([0.1, 0.9, 0.5], [0, 1, 1]) == pytest.approx(0.09)


def test_log_loss_of_coin_flip_is_ln2_and_hard_mistake_is_finite():
    assert log_loss([0.5, 0.5], [0, 1]) == pytest.approx(math.log(2))
    assert math.isfinite(log_loss([0.0, 1.0], [1, 0]))
    assert log_loss([0.0, 1.0], [1, 0]) == pytest.approx(-math.log(1e-15), rel=1e-4)


def test_ece_with_two_equal_frequency_bins():
    pd_ = [0.1] * 5 + [0.3] * 5
    y = [1, 0, 0, 0, 0] + [1, 1, 1, 0, 0]
    # bin 1: mean pd 0.1, rate 0.2 -> 0.1; bin 2: mean pd 0.3, rate 0.6 -> 0.3; ECE = .5*.1 + .5*.3
    assert expected_calibration_error(pd_, y, n_bins=2) == pytest.approx(0.2)


def test_ece_weights_unequal_bins_by_size():
    # 5 rows, 2 bins -> 3 rows and 2 rows
    pd_ = [0.0, 0.0, 0.0, 1.0, 1.0]
    y = [1, 0, 0, 1, 1]
    # bin 1: |0 - 1/3| with weight 3/5 -> 0.2; bin 2: |1 - 1| -> 0
    table = calibration_table(pd_, y, n_bins=2)
    assert table["count"].to_list() == [3, 2]
    assert expected_calibration_error(pd_, y, n_bins=2) == pytest.approx(0.2)


def test_ece_of_perfectly_calibrated_bins_is_zero():
    pd_ = [0.25] * 4 + [0.75] * 4
    y = [1, 0, 0, 0] + [1, 1, 1, 0]
    assert expected_calibration_error(pd_, y, n_bins=2) == pytest.approx(0.0)


def test_default_rate_by_grade_hand_case():
    pd_ = [0.005, 0.01, 0.015, 0.5]
    y = [0, 1, 0, 1]
    table = default_rate_by_grade(pd_, y, [0.01, 0.02])
    assert table["grade"].to_list() == ["R1", "R2", "R3"]
    assert table["count"].to_list() == [
        1,
        2,
        1,
    ]  # 0.01 sits in R2: a PD on an edge gets the worse grade
    assert table["defaults"].to_list() == [0, 1, 1]
    assert table["mean_pd"].to_list() == pytest.approx([0.005, 0.0125, 0.5])
    assert table["observed_default_rate"].to_list() == pytest.approx([0.0, 0.5, 1.0])
    assert table["pd_upper"].to_list() == [0.01, 0.02, 1.0]


def test_default_rate_by_grade_accepts_outer_edges_and_keeps_empty_grades():
    pd_ = [0.005, 0.5]
    y = [0, 1]
    with_outer = default_rate_by_grade(pd_, y, [0.0, 0.01, 0.02, 1.0])
    assert with_outer.equals(default_rate_by_grade(pd_, y, [0.01, 0.02]))
    assert with_outer["count"].to_list() == [1, 0, 1]
    assert with_outer["mean_pd"][1] is None
    assert with_outer["observed_default_rate"][1] is None


def test_assign_grades_is_zero_based_index():
    assert assign_grades([0.001, 0.0099999, 0.01, 0.02, 0.9], [0.01, 0.02]).tolist() == [
        0,
        0,
        1,
        2,
        2,
    ]


@pytest.mark.parametrize(
    ("edges", "message"),
    [
        ([0.02, 0.01], "strictly increasing"),
        ([0.5, 1.5], "inside"),
        ([], "at least one"),
        ([0.0, 1.0], "at least one"),
    ],
)
def test_band_edges_are_checked(edges, message):
    with pytest.raises(ValueError, match=message):
        default_rate_by_grade([0.1], [0], edges)


def test_evaluate_reports_every_metric():
    m = evaluate([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], n_bins=2)
    assert m["auc"] == 0.75 and m["gini"] == 0.5 and m["ks"] == 0.5
    assert m["n"] == 4 and m["n_defaults"] == 2 and m["default_rate"] == 0.5
    assert m["mean_pd"] == pytest.approx(0.4125)
    assert m["ece_bins"] == 2
    # bins (0.1, 0.35) rate .5 mean .225 and (0.4, 0.8) rate .5 mean .6 -> .5*.275 + .5*.1
    assert m["ece"] == pytest.approx(0.1875)


def test_evaluate_with_one_class_gives_nan_ranking_metrics():
    m = evaluate([0.1, 0.2], [0, 0])
    assert np.isnan(m["auc"]) and np.isnan(m["gini"]) and np.isnan(m["ks"])
    assert m["brier"] == pytest.approx((0.01 + 0.04) / 2)


def test_ranking_metrics_need_both_classes():
    with pytest.raises(ValueError, match="both defaulters and non-defaulters"):
        auc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="both defaulters and non-defaulters"):
        ks([0.1, 0.2], [0, 0])


@pytest.mark.parametrize(
    ("pd_", "y", "message"),
    [
        ([0.1, 0.2], [0], "same length"),
        ([0.1, 1.2], [0, 1], r"in \[0, 1\]"),
        ([0.1, float("nan")], [0, 1], "finite"),
        ([0.1, 0.2], [0, 2], "0/1"),
        ([], [], "empty"),
    ],
)
def test_inputs_are_checked(pd_, y, message):
    with pytest.raises(ValueError, match=message):
        brier(pd_, y)
