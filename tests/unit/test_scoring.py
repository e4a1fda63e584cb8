"""Scores, grades and reason codes are consistent with the PD and the model's contributions."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from creditflow.core.schema import SCORES
from creditflow.models.scoring import build_scores, reason_codes, risk_grade, score_points
from creditflow.policy.policy import load_policy

AS_OF = dt.date(2026, 1, 31)


@pytest.fixture(scope="module")
def policy():
    return load_policy()


def test_600_points_at_odds_50_to_1(policy):
    assert score_points(1 / 51, policy) == 600


def test_20_points_double_the_odds(policy):
    assert score_points(1 / 101, policy) == 620  # odds 100:1
    assert score_points(1 / 26, policy) == 580  # odds 25:1


def test_score_formula_with_another_scaling(policy):
    custom = policy.model_copy(
        update={
            "scoring": policy.scoring.model_copy(
                update={"base_score": 500, "base_odds": 20, "points_to_double_odds": 40}
            )
        }
    )
    # factor = 40/ln2 = 57.7078; offset = 500 - 57.7078*ln 20 = 327.1236; odds 9:1 -> 327.1236 + 57.7078*2.1972 = 453.92
    assert score_points(0.1, custom) == 454
    expected = 500 + 40 / math.log(2) * (math.log(9) - math.log(20))
    assert abs(expected - 453.92) < 0.01


def test_grade_edges_belong_to_the_worse_grade(policy):
    assert risk_grade(0.000999, policy) == "R1"
    assert risk_grade(0.001, policy) == "R2"
    assert risk_grade(0.0199, policy) == "R5"
    assert risk_grade(0.02, policy) == "R6"
    assert risk_grade(0.2999, policy) == "R9"
    assert risk_grade(0.3, policy) == "R10"
    assert risk_grade(0.999, policy) == "R10"


def test_higher_pd_never_gets_a_better_score_or_grade(policy):
    pds = pl.Series("pd", np.geomspace(1e-5, 0.99, 400))
    scores = score_points(pds, policy).to_list()
    grades = [int(g[1:]) for g in risk_grade(pds, policy).to_list()]
    assert all(a >= b for a, b in zip(scores, scores[1:], strict=False))
    assert all(a <= b for a, b in zip(grades, grades[1:], strict=False))
    assert grades[0] == 1 and grades[-1] == 10
    assert scores[0] > scores[-1]


def test_score_points_works_on_expressions(policy):
    df = pl.DataFrame({"pd_12m": [1 / 51, 1 / 101]})
    assert df.select(score_points(pl.col("pd_12m"), policy)).to_series().to_list() == [600, 620]


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, float("nan")])
def test_pd_outside_open_unit_interval_is_rejected(policy, bad):
    with pytest.raises(ValueError, match=r"must be in \(0, 1\)"):
        score_points(bad, policy)


FEATURES = ["dpd_max", "utilization", "bureau_score_chg_3m", "tax_arrears"]


def test_reason_codes_are_the_top_positive_contributions_most_important_first():
    contrib = np.array(
        [
            [0.10, 0.40, -0.30, 0.20, -1.0],  # last column: bias, ignored
            [-0.1, -0.2, -0.3, 0.05, 5.0],  # one positive only
            [-0.1, -0.2, -0.3, -0.4, 5.0],  # none positive
            [0.30, 0.10, 0.20, 0.25, 0.0],  # four positive: top three
        ]
    )
    codes = reason_codes(contrib, FEATURES).to_list()
    assert codes == [
        ["utilization", "tax_arrears", "dpd_max"],
        ["tax_arrears"],
        [],
        ["dpd_max", "tax_arrears", "bureau_score_chg_3m"],
    ]


def test_reason_codes_use_the_analyst_text_and_fall_back_to_the_name():
    contrib = np.array([[0.5, 0.4, 0.0, 0.0]])
    text = {"dpd_max": "Paying late: days past due"}
    assert reason_codes(contrib, FEATURES, text).to_list() == [
        ["Paying late: days past due", "utilization"]
    ]


def test_equal_contributions_keep_feature_order():
    contrib = np.array([[0.2, 0.2, 0.2, 0.2, 0.0], [0.0, 0.3, 0.3, 0.3, 0.0]])
    assert reason_codes(contrib, FEATURES, top=2).to_list() == [
        ["dpd_max", "utilization"],
        ["utilization", "bureau_score_chg_3m"],
    ]


def test_zero_and_nan_contributions_are_not_reasons():
    contrib = np.array([[0.0, np.nan, 0.1, 0.0]])
    assert reason_codes(contrib, FEATURES).to_list() == [["bureau_score_chg_3m"]]


def test_reason_codes_from_a_contributions_frame_ignore_the_bias_column():
    frame = pl.DataFrame({"dpd_max": [0.1], "utilization": [0.3], "bias": [9.0]})
    assert reason_codes(frame).to_list() == [["utilization", "dpd_max"]]


def test_reason_codes_reject_a_matrix_of_the_wrong_width():
    with pytest.raises(ValueError, match="one column per feature"):
        reason_codes(np.zeros((2, 7)), FEATURES)


def _frame(ids, pds):
    return pl.DataFrame({"as_of_date": [AS_OF] * len(ids), "customer_id": ids, "pd_12m": pds})


def test_build_scores_has_the_contract_columns_and_aligned_reasons(policy):
    frame = _frame(["C3", "C1", "C2"], [0.2, 1 / 51, 0.0005])
    contrib = np.array(
        [
            [0.9, 0.0, 0.0, 0.0, 0.0],  # C3
            [0.0, 0.7, 0.0, 0.0, 0.0],  # C1
            [0.0, 0.0, 0.0, -0.1, 0.0],  # C2
        ]
    )
    out = build_scores(
        frame,
        contrib,
        policy,
        model_name="pd",
        model_version="7",
        run_id="r1",
        feature_names=FEATURES,
    )
    assert out.schema == SCORES.polars_schema
    assert out.get_column("customer_id").to_list() == ["C1", "C2", "C3"]
    assert out.get_column("score").to_list()[0] == 600
    assert out.get_column("risk_grade").to_list() == [
        "R5",
        "R1",
        "R9",
    ]  # 1/51 = 0.0196 is in [0.01, 0.02)
    assert out.get_column("reason_codes").to_list() == [["utilization"], [], ["dpd_max"]]
    assert out.get_column("model_version").unique().to_list() == ["7"]


def test_build_scores_rejects_contributions_for_other_rows(policy):
    with pytest.raises(ValueError, match="one row per scored customer"):
        build_scores(
            _frame(["C1"], [0.1]),
            np.zeros((2, 5)),
            policy,
            model_name="m",
            model_version="1",
            run_id="r",
            feature_names=FEATURES,
        )


def test_build_scores_rejects_duplicate_customers(policy):
    with pytest.raises(ValueError, match="one row per customer_id"):
        build_scores(
            _frame(["C1", "C1"], [0.1, 0.2]),
            None,
            policy,
            model_name="m",
            model_version="1",
            run_id="r",
        )


def test_build_scores_requires_a_model_version(policy):
    with pytest.raises(ValueError, match="model_version must be a non-empty string"):
        build_scores(
            _frame(["C1"], [0.1]), None, policy, model_name="m", model_version="", run_id="r"
        )
