"""The WoE scorecard benchmark: bins, weights of evidence, monotone merging, JSON round trip."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest

from creditflow.models.metrics import auc
from creditflow.models.scorecard import Scorecard, fit_scorecard


def test_categorical_woe_by_hand():
    # A: 3 goods 1 bad; B: 1 good 3 bads. G = B = 4, two non-empty bins, smoothing 0.5:
    # WoE_A = ln(((3 + .5) / (4 + 1)) / ((1 + .5) / (4 + 1))) = ln(3.5 / 1.5)
    df = pl.DataFrame({"seg": ["A"] * 4 + ["B"] * 4, "y": [0, 0, 0, 1, 1, 1, 1, 0]})
    sc = fit_scorecard(df, target="y", features=["seg"], categorical=["seg"], min_category_rows=1)
    bins = sc.bins[0]
    assert bins.categories == ("A", "B")
    assert bins.woe[0] == pytest.approx(math.log(3.5 / 1.5))
    assert bins.woe[1] == pytest.approx(-math.log(3.5 / 1.5))
    assert bins.woe[2] == 0.0  # "other": no training rows -> average risk
    assert bins.missing_woe == 0.0
    # IV = (3/4 - 1/4) * w + (1/4 - 3/4) * (-w) = w
    assert bins.information_value == pytest.approx(math.log(3.5 / 1.5))
    # an unseen category and a missing value both score as average risk
    woe = sc.woe_matrix(pl.DataFrame({"seg": ["Z", None, "A"]}))
    assert woe[:, 0].tolist() == pytest.approx([0.0, 0.0, math.log(3.5 / 1.5)])


def test_rare_categories_share_the_other_bin():
    df = pl.DataFrame({"seg": ["A"] * 6 + ["B", "C"], "y": [0, 0, 0, 0, 0, 1, 1, 1]})
    sc = fit_scorecard(df, target="y", features=["seg"], categorical=["seg"], min_category_rows=3)
    assert sc.bins[0].categories == ("A",)
    assert sc.bins[0].counts == (6, 2, 0)  # A, other (B and C), missing
    assert sc.bins[0].defaults == (1, 2, 0)


def test_missing_values_get_their_own_bin():
    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    y = (rng.random(400) < 0.1).astype(int)
    x[:40] = np.nan
    y[:40] = 1  # every missing row defaults
    sc = fit_scorecard(
        pl.DataFrame({"x": x, "y": y}), target="y", features=["x"], binning="quantile", max_bins=4
    )
    bins = sc.bins[0]
    assert bins.counts[-1] == 40 and bins.defaults[-1] == 40
    assert bins.missing_woe < min(bins.woe)  # the riskiest bin
    assert len(bins.edges) == 3  # quartiles
    p = sc.predict_pd(pl.DataFrame({"x": [np.nan, 0.0]}))
    assert p[0] > p[1]


def test_monotone_direction_merges_bins_until_rates_are_monotone():
    rng = np.random.default_rng(1)
    n = 6_000
    x = rng.uniform(0, 10, n)
    # rising overall, with a dip in the middle that tree bins pick up
    p = 0.02 + 0.03 * x / 10 + np.where((x > 4) & (x < 6), -0.04, 0.0).clip(-0.02)
    y = (rng.random(n) < p).astype(int)
    df = pl.DataFrame({"x": x, "y": y})
    free = fit_scorecard(df, target="y", features=["x"], max_bins=8, min_bin_fraction=0.05)
    rising = fit_scorecard(
        df, target="y", features=["x"], monotone={"x": 1}, max_bins=8, min_bin_fraction=0.05
    )
    free_rates = np.array(free.bins[0].defaults[:-1]) / np.array(free.bins[0].counts[:-1])
    assert np.any(np.diff(free_rates) < 0)  # unconstrained bins follow the dip
    rates = np.array(rising.bins[0].defaults[:-1]) / np.array(rising.bins[0].counts[:-1])
    assert np.all(np.diff(rates) >= 0)
    assert np.all(np.diff(rising.bins[0].woe) <= 0)  # WoE = ln(%good/%bad) falls as risk rises
    assert len(rising.bins[0].edges) < len(free.bins[0].edges)


def _table(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    seg = rng.choice(["A", "B", "C"], n)
    logit = -2.5 + 1.0 * x1 - 0.7 * x2 + np.where(seg == "C", 0.8, 0.0)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    return pl.DataFrame({"x1": x1, "x2": x2, "seg": seg, "y": y})


def test_scorecard_ranks_a_logistic_truth_well():
    train, test = _table(4_000, 2), _table(4_000, 3)
    sc = fit_scorecard(
        train,
        target="y",
        features=["x1", "x2", "seg"],
        categorical=["seg"],
        monotone={"x1": 1, "x2": -1},
    )
    p = sc.predict_pd(test)
    assert np.all((p > 0) & (p < 1))
    # the true model's AUC here is ~0.80; binning loses a little
    assert auc(p, test["y"].to_numpy()) > 0.75
    assert sc.summary()["feature"][0] == "x1"  # the strongest feature has the largest IV


def test_json_round_trip_gives_identical_predictions():
    train, test = _table(3_000, 4), _table(1_000, 5)
    sc = fit_scorecard(train, target="y", features=["x1", "x2", "seg"], categorical=["seg"])
    back = Scorecard.from_dict(json.loads(json.dumps(sc.to_dict())))
    assert back == sc
    assert np.array_equal(back.predict_pd(test), sc.predict_pd(test))


def test_decimal_money_columns_are_used_as_floats():
    df = pl.DataFrame(
        {"exposure": ["10.00", "20.50", "30.25", "40.00"] * 25, "y": [0, 0, 1, 1] * 25}
    ).with_columns(pl.col("exposure").cast(pl.Decimal(18, 2)))
    sc = fit_scorecard(df, target="y", features=["exposure"], binning="quantile", max_bins=2)
    assert sc.bins[0].edges == (20.5,)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"features": ["nope"]}, r"columns \['nope'\] are not in the training frame"),
        (
            {"categorical": ["x2"], "features": ["x1"]},
            r"categorical features \['x2'\] are not in features",
        ),
        ({"categorical": ["seg"], "monotone": {"seg": 1}}, "only numeric features can be monotone"),
        ({"monotone": {"x1": 2}}, "must be -1, 0 or 1"),
        ({"binning": "chi2"}, "binning must be 'tree' or 'quantile'"),
        ({"max_bins": 1}, "max_bins must be an integer >= 2"),
    ],
)
def test_arguments_are_checked(kwargs, message):
    args = {"target": "y", "features": ["x1", "x2", "seg"], "categorical": ["seg"], **kwargs}
    with pytest.raises(ValueError, match=message):
        fit_scorecard(_table(200, 6), **args)


def test_constant_target_is_refused():
    df = _table(100, 7).with_columns(pl.lit(0).alias("y"))
    with pytest.raises(ValueError, match="is constant"):
        fit_scorecard(df, target="y", features=["x1"])


def test_text_feature_must_be_declared_categorical():
    with pytest.raises(TypeError, match="feature 'seg' must be numeric"):
        fit_scorecard(_table(100, 8), target="y", features=["seg"])


def test_infinite_values_score_beyond_the_last_edge():
    df = pl.DataFrame({"ratio": [0.1, 0.2, 0.3, 0.4, np.inf] * 20, "y": [0, 0, 1, 1, 1] * 20})
    sc = fit_scorecard(df, target="y", features=["ratio"], binning="quantile", max_bins=2)
    assert sc.bins[0].edges == (0.3,)  # the median (lower) of 100 values
    assert sc.bins[0].counts == (60, 40, 0)  # 0.4 and inf share the top bin; nothing missing
    p = sc.predict_pd(pl.DataFrame({"ratio": [np.inf, 0.4, -np.inf]}))
    assert np.isfinite(p).all() and p[0] == p[1]
