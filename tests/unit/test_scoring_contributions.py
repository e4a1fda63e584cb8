"""``models.scoring.contributions`` gives XGBoost's own pred_contribs (to the last bit), faster.

Small boosters (a few hundred rows, tens of trees, one thread) with numeric features,
missing values and a categorical feature; every test compares with the plain
``booster.predict(DMatrix, pred_contribs=True)`` call on the same rows.
"""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb
from hypothesis import given, settings
from hypothesis import strategies as st

from creditflow.models import scoring
from creditflow.models.scoring import contributions

NAMES = ["dpd_max", "utilization", "bureau_score", "industry"]
TYPES = ["q", "q", "q", "c"]


def _dmatrix(x: np.ndarray, **kwargs) -> xgb.DMatrix:
    """``x`` with the test's feature names and types (category codes in column 3)."""
    return xgb.DMatrix(x, feature_names=NAMES, feature_types=TYPES, enable_categorical=True, missing=np.nan,
                       **kwargs)


def _data(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.column_stack(
        [
            rng.choice([0, 0, 5, 20, 35, 70, 120], n).astype(np.float32),
            rng.gamma(2.0, 0.3, n).astype(np.float32),
            rng.integers(300, 900, n).astype(np.float32),
            rng.integers(0, 6, n).astype(np.float32),  # category codes 0..5
        ]
    ).astype(np.float32)
    x[rng.random(n) < 0.1, 1] = np.nan
    x[rng.random(n) < 0.1, 3] = np.nan
    return x


def _booster(
    max_depth: int, rounds: int = 30, booster: str = "gbtree", seed: int = 3
) -> xgb.Booster:
    x = _data(400, seed)
    rng = np.random.default_rng(seed)
    logit = -2 + 0.02 * x[:, 0] + np.nan_to_num(x[:, 1]) - 0.003 * (x[:, 2] - 600) + (x[:, 3] == 2)
    y = (rng.random(len(x)) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    dm = _dmatrix(x, label=y)
    params = {
        "objective": "binary:logistic",
        "max_depth": max_depth,
        "learning_rate": 0.3,
        "nthread": 1,
        "seed": seed,
        "max_cat_to_onehot": 1,
        "min_child_weight": 0.5,
        "verbosity": 0,
        "booster": booster,
    }
    return xgb.train(params, dm, num_boost_round=rounds)


def _plain(booster: xgb.Booster, x: np.ndarray, approx: bool = False) -> np.ndarray:
    dm = _dmatrix(x)
    return booster.predict(dm, pred_contribs=True, approx_contribs=approx)


@pytest.fixture(scope="module")
def depth2() -> xgb.Booster:
    return _booster(max_depth=2)


@pytest.mark.parametrize("max_depth", [1, 2, 3, 4])
def test_equals_xgboost_exact_treeshap(max_depth):
    booster = _booster(max_depth)
    x = _data(300, 11)
    fast = contributions(booster, x, chunk_rows=64)
    assert fast.dtype == np.float32 and fast.shape == (300, len(NAMES) + 1)
    np.testing.assert_array_equal(fast, _plain(booster, x))


def test_equals_xgboost_approximate_contributions(depth2):
    x = _data(300, 12)
    fast = contributions(depth2, x, approx=True)
    np.testing.assert_array_equal(fast, _plain(depth2, x, approx=True))
    # Saabas and SHAP differ on this model, so the comparison above is not vacuous
    assert np.abs(fast - contributions(depth2, x)).max() > 1e-3


def test_contributions_and_bias_sum_to_the_margin(depth2):
    x = _data(500, 13)
    fast = contributions(depth2, x).astype(np.float64)
    dm = _dmatrix(x)
    margin = depth2.predict(dm, output_margin=True)
    np.testing.assert_allclose(fast.sum(axis=1), margin, rtol=0, atol=1e-4)


def test_only_features_the_trees_split_on_get_a_contribution():
    x = _data(200, 14)
    x[:, 2] = 600.0  # a constant feature is never split on
    y = (x[:, 0] > 30).astype(np.float32)
    dm = _dmatrix(x, label=y)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 2, "nthread": 1, "verbosity": 0}, dm, 5
    )
    fast = contributions(booster, x)
    assert np.all(fast[:, 2] == 0)
    np.testing.assert_array_equal(fast, _plain(booster, x))


def test_chunk_boundaries_do_not_change_any_row(depth2):
    x = _data(101, 15)
    whole = contributions(depth2, x, chunk_rows=1_000, n_threads=1)
    # 101 rows in blocks of 7 (the last holds 3) on two threads: every row is computed the same way
    np.testing.assert_array_equal(contributions(depth2, x, chunk_rows=7, n_threads=2), whole)
    np.testing.assert_array_equal(contributions(depth2, x, chunk_rows=1, n_threads=2), whole)


def test_rows_on_a_threshold_missing_or_unseen_category_follow_xgboost(depth2):
    thresholds = [
        (s["Feature"], s["Split"])
        for s in depth2.trees_to_dataframe().to_dict("records")
        if s["Feature"] in ("dpd_max", "utilization", "bureau_score")
    ]
    assert thresholds, "the fixture model splits on numeric features"
    assert any(c is not None for t in scoring._parse_trees(depth2) for c in t.right_categories)
    x = np.repeat(_data(1, 16), 3 * len(thresholds) + 5, axis=0)
    for i, (feature, split) in enumerate(thresholds):
        j = NAMES.index(feature)
        x[3 * i, j] = np.float32(split)  # exactly on the threshold: XGBoost sends it right
        x[3 * i + 1, j] = np.nextafter(np.float32(split), np.float32(-np.inf))
        x[3 * i + 2, j] = np.nan
    # codes: never seen in training, missing, known, known but fractional, negative
    x[-5:, 3] = [9.0, np.nan, 2.0, 2.5, -1.0]
    np.testing.assert_array_equal(contributions(depth2, x), _plain(depth2, x))


def test_deep_trees_take_xgboosts_path_for_every_row():
    booster = _booster(max_depth=6, rounds=8)
    nodes = [len(t.features) for t in scoring._parse_trees(booster)]
    assert max(nodes) > scoring._MAX_PATTERN_NODES  # this model exercises the per-row path
    x = _data(200, 17)
    np.testing.assert_array_equal(contributions(booster, x, chunk_rows=50), _plain(booster, x))


def test_a_dmatrix_gives_the_same_as_its_matrix(depth2):
    x = _data(120, 18)
    dm = _dmatrix(x)
    np.testing.assert_array_equal(contributions(depth2, dm), contributions(depth2, x))


def test_dart_booster_uses_xgboosts_own_call():
    booster = _booster(max_depth=2, rounds=10, booster="dart")
    x = _data(80, 19)
    np.testing.assert_array_equal(contributions(booster, x), _plain(booster, x))


def test_a_wrong_fast_result_is_caught_and_recomputed(depth2, monkeypatch):
    x = _data(200, 20)
    real = scoring._goes_right
    # every row seen as going left: all rows of a tree fall in one pattern, which is wrong
    monkeypatch.setattr(scoring, "_goes_right", lambda *a: np.zeros_like(real(*a)))
    with pytest.warns(RuntimeWarning, match="recomputed with XGBoost"):
        out = contributions(depth2, x)
    np.testing.assert_array_equal(out, _plain(depth2, x))


def test_no_rows_give_an_empty_matrix(depth2):
    out = contributions(depth2, np.empty((0, len(NAMES)), dtype=np.float32))
    assert out.shape == (0, len(NAMES) + 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chunk_rows": 0}, r"chunk_rows must be an integer >= 1; got 0"),
        ({"n_threads": 0}, r"n_threads must be an integer >= 1; got 0"),
        ({"check_rows": -1}, r"check_rows must be an integer >= 0; got -1"),
    ],
)
def test_bad_arguments_are_rejected(depth2, kwargs, message):
    with pytest.raises(ValueError, match=message):
        contributions(depth2, _data(5, 21), **kwargs)


def test_wrong_number_of_columns_is_rejected(depth2):
    with pytest.raises(ValueError, match=r"one column per model feature \(4\); got 3"):
        contributions(depth2, _data(5, 22)[:, :3])


def test_a_non_booster_is_rejected():
    with pytest.raises(ValueError, match="booster must be an xgboost.Booster; got dict"):
        contributions({}, _data(5, 23))


def test_a_dmatrix_with_a_base_margin_keeps_each_rows_bias(depth2):
    x = _data(30, 24)
    dm = _dmatrix(x, base_margin=np.linspace(-1, 1, 30).astype(np.float32))
    out = contributions(depth2, dm)
    np.testing.assert_array_equal(out, depth2.predict(dm, pred_contribs=True))
    assert out[-1, -1] - out[0, -1] == pytest.approx(2.0, abs=1e-5)


_BOOSTER_D3 = _booster(max_depth=3, rounds=15, seed=5)
_SPLITS = {
    f: sorted(
        {
            np.float32(s["Split"])
            for s in _BOOSTER_D3.trees_to_dataframe().to_dict("records")
            if s["Feature"] == f
        }
    )
    for f in NAMES[:3]
}


@st.composite
def _rows(draw) -> np.ndarray:
    """Rows whose numeric values sit on, just below or just above the model's thresholds, or are missing."""
    n = draw(st.integers(1, 40))
    x = np.empty((n, len(NAMES)), dtype=np.float32)
    for j, f in enumerate(NAMES[:3]):
        for i in range(n):
            split = draw(st.sampled_from(_SPLITS[f] or [np.float32(0)]))
            how = draw(st.sampled_from(["on", "below", "above", "missing"]))
            x[i, j] = {
                "on": split,
                "below": np.nextafter(split, np.float32(-np.inf)),
                "above": np.nextafter(split, np.float32(np.inf)),
                "missing": np.nan,
            }[how]
    x[:, 3] = draw(
        st.lists(st.sampled_from([0.0, 1.0, 2.0, 3.0, 5.0, 7.0, np.nan]), min_size=n, max_size=n)
    )
    return x


@settings(max_examples=30, deadline=None)
@given(x=_rows(), chunk_rows=st.integers(1, 50))
def test_any_rows_give_xgboosts_values(x, chunk_rows):
    out = contributions(_BOOSTER_D3, x, chunk_rows=chunk_rows, check_rows=0)
    np.testing.assert_array_equal(out, _plain(_BOOSTER_D3, x))
