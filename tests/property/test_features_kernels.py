"""The panel's array kernels against plain readings of what they compute.

The windowed quantile (``pay_delay_p90_12m``) walks a wavelet matrix instead of
calling Polars' ``rolling_quantile_by``; the invoice timelines are merged by
counting instead of a sort. Both must give exactly the values of the plain
versions: the point of them is speed, never a different number.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from creditflow.features.ledger import _stable_order, _timeline, _window_quantile

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _polars_window_quantile(cust, day, value, q_cust, q_day, window, quantile):
    """Reference: Polars' rolling quantile over one time axis, customers far apart, queries as null rows."""
    stride = 10 * window + 10_000
    frame = pl.DataFrame(
        {
            "t": np.concatenate([cust * stride + day, q_cust * stride + q_day]).astype(np.int64),
            "v": pl.Series(np.concatenate([value.astype(np.float64), np.full(q_cust.size, np.nan)])).fill_nan(None),
            "q": np.concatenate([np.full(cust.size, -1), np.arange(q_cust.size)]).astype(np.int64),
        }
    )
    res = (
        frame.sort("t")
        .with_columns(r=pl.col("v").rolling_quantile_by("t", window_size=f"{window}i", quantile=quantile,
                                                         interpolation="linear"))
        .filter(pl.col("q") >= 0)
        .sort("q")
    )
    return res["r"].fill_null(np.nan).to_numpy()


@st.composite
def events_and_queries(draw):
    n = draw(st.integers(0, 60))
    cust = np.array(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)), dtype=np.int64)
    day = np.array(draw(st.lists(st.integers(0, 900), min_size=n, max_size=n)), dtype=np.int64)
    wide = draw(st.booleans())  # a few huge values take the np.unique path for ranks
    bound = 10**12 if wide else 40
    value = np.array(draw(st.lists(st.integers(-bound, bound), min_size=n, max_size=n)), dtype=np.int64)
    m = draw(st.integers(1, 20))
    q_cust = np.array(draw(st.lists(st.integers(0, 4), min_size=m, max_size=m)), dtype=np.int64)
    q_day = np.array(draw(st.lists(st.integers(0, 1000), min_size=m, max_size=m)), dtype=np.int64)
    return cust, day, value, q_cust, q_day


@SETTINGS
@given(events_and_queries(), st.sampled_from([1, 30, 365]), st.sampled_from([0.0, 0.5, 0.9, 1.0]))
def test_window_quantile_equals_polars_rolling_quantile(data, window, quantile):
    cust, day, value, q_cust, q_day = data
    got = _window_quantile(cust, day, value, q_cust, q_day, window, quantile)
    if cust.size == 0:
        assert np.isnan(got).all()
        return
    want = _polars_window_quantile(cust, day, value, q_cust, q_day, window, quantile)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(got[~np.isnan(got)], want[~np.isnan(want)])  # exact, not approximately


def _plain_timeline(inv_doc, inv_cents, a_inv, a_day, a_cum):
    """Reference: per invoice, the posting day at its amount, then the last change of each day."""
    rows = {}
    for i, (doc, cents) in enumerate(zip(inv_doc.tolist(), inv_cents.tolist(), strict=True)):
        rows[(i, doc)] = cents
    for inv, day, cum in zip(a_inv.tolist(), a_day.tolist(), a_cum.tolist(), strict=True):
        rows[(inv, day)] = inv_cents[inv] - cum  # a later row of the same day overwrites
    keys = sorted(rows)
    return (np.array([k[0] for k in keys], dtype=np.int64), np.array([k[1] for k in keys], dtype=np.int64),
            np.array([rows[k] for k in keys], dtype=np.int64))


@st.composite
def invoices_and_applications(draw):
    n_inv = draw(st.integers(0, 6))
    inv_doc = np.array(draw(st.lists(st.integers(-50, 50), min_size=n_inv, max_size=n_inv)), dtype=np.int64)
    inv_cents = np.array(draw(st.lists(st.integers(1, 10_000), min_size=n_inv, max_size=n_inv)), dtype=np.int64)
    apps = []
    if n_inv:
        # applications may fall before the posting day too: the merge must not assume otherwise
        apps = draw(st.lists(st.tuples(st.integers(0, n_inv - 1), st.integers(-60, 80), st.integers(-500, 500)),
                             max_size=15))
    apps.sort(key=lambda a: (a[0], a[1]))  # sorted by (invoice, day); same-day order as drawn
    a_inv = np.array([a[0] for a in apps], dtype=np.int64)
    a_day = np.array([a[1] for a in apps], dtype=np.int64)
    a_cum = np.array([a[2] for a in apps], dtype=np.int64)
    return inv_doc, inv_cents, a_inv, a_day, a_cum


@SETTINGS
@given(invoices_and_applications())
def test_timeline_equals_its_plain_reading(data):
    got = _timeline(*data)
    want = _plain_timeline(*data)
    for g, w in zip(got, want, strict=True):
        assert g.tolist() == w.tolist()


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(-3, 3), st.integers(0, 2)), max_size=40))
def test_stable_order_is_a_stable_lexicographic_sort(rows):
    keys = [np.array([r[j] for r in rows], dtype=np.int64) for j in range(3)]
    got = _stable_order(keys).tolist() if rows else []
    assert got == sorted(range(len(rows)), key=lambda i: rows[i])  # Python's sort is stable
