"""Training on a synthetic table with a known PD: out of time, monotone, reproducible,
calibrated, better than the scorecard, resumable.

The ground truth (numpy, seeded): 9 features, 24+ monthly as-of dates,

    logit PD = -3 + 0.9 min(x_up, 4)   (monotone rising; missing x_up adds 0.5 instead)
               - 0.7 x_down            (monotone falling)
               + 0.6 (x_u^2 - 1)       (U-shape, unconstrained)
               + 1.0 x_a x_b           (pure interaction: no main effect of x_a or x_b)
               + industry effect       (categorical)
    and three pure-noise features.

The process is stationary, so a fresh sample from it is a fair held-out set for
calibration. Training runs use ``n_threads=1``: on a shared 2-core machine
OpenMP threads spin against each other and small fits get slower.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import polars as pl
import pytest

from creditflow.models.metrics import auc, expected_calibration_error
from creditflow.models.split import SplitConfig, SplitError
from creditflow.models.train import PdModel, TuningConfig, resolve_features, train_pd_model

INDUSTRY = {"A": -0.5, "B": 0.0, "C": 0.4, "D": 0.9, "E": -0.2}
MONOTONE = {"x_up": 1, "x_down": -1}
TARGET, DATE = "default_12m", "as_of_date"


def _month_ends(n: int) -> list[dt.date]:
    return [
        dt.date(2020 + (i + 1) // 12, (i + 1) % 12 + 1, 1) - dt.timedelta(days=1) for i in range(n)
    ]


def true_pd(x_up, x_down, x_u, x_a, x_b, industry) -> np.ndarray:
    up = np.where(np.isnan(x_up), 0.5, 0.9 * np.minimum(x_up, 4.0))
    logit = (
        -3.0
        + up
        - 0.7 * x_down
        + 0.6 * (x_u**2 - 1)
        + 1.0 * x_a * x_b
        + np.vectorize(INDUSTRY.get)(industry)
    )
    return 1.0 / (1.0 + np.exp(-logit))


def make_table(customers: int, periods: int, seed: int) -> pl.DataFrame:
    """``customers`` rows per month end for ``periods`` months, labelled from the true PD."""
    rng = np.random.default_rng(seed)
    n = customers * periods
    x_up = rng.gamma(2.0, 0.5, n)
    x_up[rng.random(n) < 0.1] = np.nan
    x_down, x_u, x_a, x_b = (rng.normal(size=n) for _ in range(4))
    industry = rng.choice(list(INDUSTRY), n)
    y = (rng.random(n) < true_pd(x_up, x_down, x_u, x_a, x_b, industry)).astype(np.int8)
    dates = _month_ends(periods)
    return pl.DataFrame(
        {
            "customer_id": [f"C{i % customers:05d}" for i in range(n)],
            DATE: pl.Series([dates[i // customers] for i in range(n)], dtype=pl.Date),
            "x_up": x_up,
            "x_down": x_down,
            "x_u": x_u,
            "x_a": x_a,
            "x_b": x_b,
            "industry": industry,
            **{f"noise_{k}": rng.normal(size=n) for k in range(3)},
            TARGET: y,
        }
    )


FAST = TuningConfig(
    n_trials=6, n_threads=1, max_rounds=600, early_stopping_rounds=30, prune_warmup_rounds=20
)


@pytest.fixture(scope="module")
def table() -> pl.DataFrame:
    return make_table(customers=400, periods=30, seed=0)  # 12k rows; ~20% default rate


@pytest.fixture(scope="module")
def result(table):
    return train_pd_model(
        table,
        target=TARGET,
        time_column=DATE,
        monotone=MONOTONE,
        tuning=FAST,
        band_edges=[0.02, 0.05, 0.1, 0.2, 0.4],
        seed=7,
    )


@pytest.fixture(scope="module")
def holdout() -> pl.DataFrame:
    """A fresh sample of 20,000 observations from the same process."""
    return make_table(customers=1000, periods=20, seed=99)


def test_split_is_out_of_time(result):
    s = result.split
    assert s.method == "out_of_time"
    train, valid, test = (s.window(w) for w in ("train", "validation", "test"))
    assert train.last_period < valid.first_period <= valid.last_period < test.first_period
    # 30 periods: 6 test, 6 validation, 18 train, 400 rows each
    assert (train.n_rows, valid.n_rows, test.n_rows) == (7200, 2400, 2400)


def test_features_are_inferred_without_a_list(table):
    feats, cats, mono, ignored = resolve_features(
        table.with_columns(pl.lit(dt.date(2020, 1, 1)).alias("opened")),
        target=TARGET,
        time_column=DATE,
    )
    assert feats == [
        "x_up",
        "x_down",
        "x_u",
        "x_a",
        "x_b",
        "industry",
        "noise_0",
        "noise_1",
        "noise_2",
    ]
    assert cats == ["industry"]  # text column -> categorical
    assert ignored == ["opened"]  # a date is not a feature
    assert mono == {}


def test_monotone_constraints_hold_on_the_trained_model(result, table):
    rows = table.sample(50, seed=1)
    for feature, direction in MONOTONE.items():
        grid = np.linspace(table[feature].min(), table[feature].max(), 25)
        # each of the 50 rows repeated over the grid, other features fixed
        probe = rows.select(pl.all().repeat_by(len(grid)).explode()).with_columns(
            pl.Series(feature, np.tile(grid, 50))
        )
        for predict in (result.model.raw_pd, result.predict_pd):
            p = predict(probe).reshape(50, len(grid))
            steps = np.diff(p, axis=1) * direction
            assert steps.min() >= 0, (
                f"{feature} not monotone ({direction:+d}) on {predict.__name__}"
            )
        # and the constraint binds: the PD actually moves along the grid
        assert (
            np.ptp(result.model.raw_pd(probe).reshape(50, len(grid)), axis=1) > 0.01
        ).mean() > 0.5


def test_same_seed_gives_identical_model_bytes_and_another_seed_differs():
    df = make_table(customers=150, periods=24, seed=3)
    tuning = TuningConfig(n_trials=4, n_threads=1, max_rounds=300, early_stopping_rounds=20)
    runs = [
        train_pd_model(
            df, target=TARGET, time_column=DATE, monotone=MONOTONE, tuning=tuning, seed=s
        )
        for s in (5, 5, 6)
    ]
    a, b, c = (r.booster.save_raw("ubj") for r in runs)
    assert a == b
    assert runs[0].calibrator.to_dict() == runs[1].calibrator.to_dict()
    assert runs[0].best_params == runs[1].best_params
    assert a != c


def test_calibrated_pds_match_observed_rates_on_held_out_data(result, holdout):
    # Where the bound comes from (p ~ 0.2 is the default rate):
    # - calibration in the large: the calibrator's level is estimated on the 2,400-row
    #   validation window, sd sqrt(p(1-p)/2400) ~ 0.008, and the held-out rate on 20,000 rows
    #   has sd ~ 0.003: the mean PD misses the held-out rate by sd ~ 0.0087; 3 sd ~ 0.026.
    # - per bin: 10 equal-frequency bins of 2,000 held-out rows, binomial sd sqrt(p(1-p)/2000)
    #   <= 0.011, so even a perfect model shows ECE ~ 0.8 sd ~ 0.007 from noise alone.
    # ECE is at most the level error plus the per-bin errors: bound 0.026 + ~0.009 = 0.035.
    # (Seeds 0-3 of this setup gave ECE 0.005-0.022.)
    p = result.predict_pd(holdout)
    y = holdout[TARGET].to_numpy()
    ece = expected_calibration_error(p, y, n_bins=10)
    assert ece < 0.035, f"ECE {ece:.4f} ({result.calibrator.method})"
    assert abs(p.mean() - y.mean()) < 0.026
    # the bound can fail: doubling the odds of the same PDs breaks it
    odds = 2 * p / (1 - p)
    assert expected_calibration_error(odds / (1 + odds), y, n_bins=10) > 0.035


def test_xgboost_beats_the_scorecard_on_a_nonlinear_truth(result, holdout):
    y = holdout[TARGET].to_numpy()
    xgb_auc = auc(result.predict_pd(holdout), y)
    card_auc = auc(result.scorecard.predict_pd(holdout), y)
    true_auc = auc(
        true_pd(
            *(holdout[c].to_numpy() for c in ("x_up", "x_down", "x_u", "x_a", "x_b", "industry"))
        ),
        y,
    )
    # AUC sd on 20k rows with ~4k defaults is ~0.004; the interaction x_a*x_b alone is worth
    # several points of AUC that an additive WoE model cannot see.
    assert xgb_auc > card_auc + 0.03, (xgb_auc, card_auc)
    assert xgb_auc > true_auc - 0.05, (xgb_auc, true_auc)
    m = result.metrics
    assert m["xgboost"]["test"]["auc"] > m["scorecard"]["test"]["auc"]


def test_result_reports_metrics_grades_importance_and_shap(result):
    assert set(result.metrics) == {"xgboost", "xgboost_uncalibrated", "scorecard"}
    for windows in result.metrics.values():
        assert set(windows) == {"validation", "test"}
        assert windows["test"]["gini"] == pytest.approx(2 * windows["test"]["auc"] - 1)
    grades = result.grade_tables["xgboost"]["test"]
    assert grades["grade"].to_list() == ["R1", "R2", "R3", "R4", "R5", "R6"]
    assert grades["count"].sum() == 2400
    assert set(result.feature_importance) == set(result.features)
    assert all(v >= 0 for v in result.feature_importance.values())
    shap = result.mean_abs_shap
    signal = [shap[f] for f in ("x_up", "x_down", "x_u", "x_a", "x_b", "industry")]
    noise = [shap[f] for f in ("noise_0", "noise_1", "noise_2")]
    assert max(noise) < min(signal)
    assert result.n_trials == 6 and result.n_trials_run == 6
    assert {"max_depth", "learning_rate", "n_estimators"} <= set(result.best_params)
    assert 2 <= result.best_params["max_depth"] <= 6
    assert result.xgb_params["nthread"] == 1 and result.xgb_params["tree_method"] == "hist"
    assert set(result.timings_seconds) == {
        "split",
        "tuning",
        "refit",
        "calibration",
        "scorecard",
        "report",
    }


def test_contributions_add_up_to_the_log_odds(result, table):
    rows = table.head(20)
    contrib = result.model.contributions(rows)
    raw = result.model.raw_pd(rows)
    assert contrib.shape == (20, len(result.features) + 1)
    assert contrib.sum(axis=1) == pytest.approx(np.log(raw / (1 - raw)), abs=1e-4)


def test_predict_pd_is_strictly_inside_zero_one_and_copes_with_new_values(result, table):
    odd = table.head(4).with_columns(
        pl.Series("industry", ["Z", None, "A", "B"]),  # unseen and missing categories
        pl.Series("x_up", [None, np.nan, np.inf, -np.inf]),  # a ratio over zero is inf
    )
    p = result.predict_pd(odd)
    assert np.all((p > 0) & (p < 1)) and np.all(np.isfinite(p))


def test_model_spec_json_round_trip_gives_identical_predictions(result, table):
    back = PdModel.from_dict(json.loads(json.dumps(result.model.to_dict())), result.booster)
    assert np.array_equal(back.predict_pd(table.head(500)), result.predict_pd(table.head(500)))


def test_resumed_study_continues_until_it_holds_n_trials(tmp_path):
    df = make_table(customers=100, periods=24, seed=4)
    journal = tmp_path / "study.journal"

    def run(n_trials: int):
        tuning = TuningConfig(
            n_trials=n_trials,
            n_threads=1,
            max_rounds=200,
            early_stopping_rounds=20,
            storage_path=journal,
        )
        return train_pd_model(df, target=TARGET, time_column=DATE, tuning=tuning, seed=1)

    first = run(3)
    assert (first.n_trials, first.n_trials_run) == (3, 3)
    resumed = run(5)  # the same study: only the two missing trials run
    assert resumed.study_name == first.study_name
    assert (resumed.n_trials, resumed.n_trials_run) == (5, 2)
    done = run(5)
    assert (done.n_trials, done.n_trials_run) == (5, 0)
    assert done.best_params == resumed.best_params
    assert done.booster.save_raw("ubj") == resumed.booster.save_raw("ubj")


def test_without_time_column_the_split_is_stratified_and_says_so():
    df = make_table(customers=100, periods=24, seed=5).drop(DATE)
    r = train_pd_model(
        df,
        target=TARGET,
        time_column=None,
        tuning=TuningConfig(n_trials=2, n_threads=1, max_rounds=100),
    )
    assert (
        r.split.method == "grouped_stratified_random"
    )  # customer_id is an id column: whole customers move
    assert any("NOT out of time" in note for note in r.notes)


def test_bad_arguments_fail_clearly(table):
    with pytest.raises(ValueError, match="only numeric features can be monotone"):
        train_pd_model(
            table, target=TARGET, time_column=DATE, monotone={"industry": 1}, tuning=FAST
        )
    with pytest.raises(ValueError, match=r"features \['nope'\] are not in the table"):
        train_pd_model(
            table, target=TARGET, time_column=DATE, features=["x_up", "nope"], tuning=FAST
        )
    with pytest.raises(ValueError, match="feature 'industry' has dtype String"):
        train_pd_model(
            table,
            target=TARGET,
            time_column=DATE,
            features=["x_up", "industry"],
            categorical=[],
            tuning=FAST,
        )
    with pytest.raises(SplitError, match="too few periods"):
        train_pd_model(
            table.filter(pl.col(DATE) < dt.date(2020, 5, 1)),
            target=TARGET,
            time_column=DATE,
            tuning=FAST,
        )
    with pytest.raises(SplitError, match="is constant"):
        train_pd_model(
            table.with_columns(pl.lit(0).alias(TARGET)),
            target=TARGET,
            time_column=DATE,
            tuning=FAST,
        )
    with pytest.raises(ValueError, match="n_trials must be a positive integer"):
        TuningConfig(n_trials=0)
    with pytest.raises(ValueError, match="calibration must be"):
        train_pd_model(table, target=TARGET, time_column=DATE, calibration="beta", tuning=FAST)
    with pytest.raises(ValueError, match="valid_fraction"):
        SplitConfig(valid_fraction=0.7)
