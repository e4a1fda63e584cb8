"""The panel build's threads and shortcuts change nothing: same panel as a build in one thread,
errors in the order a sequential build meets them, and the sort/join shortcuts of the cash
application agree with the general paths."""

from __future__ import annotations

from concurrent.futures import Future
from datetime import date

import numpy as np
import polars as pl
import pytest

from creditflow.features import bureau as bureau_module
from creditflow.features import ledger as ledger_module
from creditflow.features import panel as panel_module
from creditflow.features.bureau import months_back
from creditflow.features.panel import build_panel

D = date


class _InlineExecutor:
    """A stand-in for ThreadPoolExecutor that runs every job at once in the calling thread."""

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *args, **kwargs):
        job = Future()
        try:
            job.set_result(fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - handed over like a thread would
            job.set_exception(exc)
        return job


@pytest.fixture(scope="module")
def world(tmp_path_factory, typed_world):
    return typed_world(tmp_path_factory.mktemp("threads"), customers=40, months=20, seed=11)


def _build(frames, **overrides):
    inputs = {
        "ledger": frames["ledger"].lazy(),
        "customers": frames["customers"].lazy(),
        "bureau": frames["bureau"].lazy(),
        "events": frames["bureau_events"].lazy(),
        "fx_rates": frames["fx_rates"].lazy(),
    }
    inputs.update(overrides)
    return build_panel(**inputs, base_currency="CNY")


def test_threaded_build_equals_a_build_in_one_thread(world, monkeypatch):
    threaded = _build(world)
    for module in (panel_module, ledger_module):
        monkeypatch.setattr(module, "ThreadPoolExecutor", _InlineExecutor)
    inline = _build(world)
    assert threaded.panel.height > 100
    assert threaded.panel.equals(inline.panel)
    assert threaded.panel.schema == inline.panel.schema
    assert threaded.default_dates.equals(inline.default_dates)
    assert threaded.as_of_dates == inline.as_of_dates


def test_a_master_error_comes_first_even_when_the_cash_application_fails_too(world):
    # sequentially the master is built before the cash application: its error wins
    no_lineage = world["customers"].drop("file_date").lazy()
    bad_fx = world["fx_rates"].drop("rate_to_base").lazy()
    with pytest.raises(ValueError, match="customers is missing column"):
        _build(world, customers=no_lineage, fx_rates=bad_fx)
    with pytest.raises(ValueError, match="fx_rates is missing column"):
        _build(world, fx_rates=bad_fx)


def test_a_bureau_error_from_the_worker_thread_reaches_the_caller(world):
    with pytest.raises(ValueError, match="bureau is missing column"):
        _build(world, bureau=world["bureau"].drop("paydex").lazy())


def test_order_by_position_equals_order_by_text_when_ids_ascend_down_the_rows():
    rng = np.random.default_rng(7)
    n = 2_000
    rows = np.sort(rng.choice(10 * n, size=n, replace=False))
    ids = pl.Series([f"E{r:07d}" for r in range(10 * n)])  # ascending down the ledger
    keys = [rng.integers(0, 5, n), rng.integers(0, 3, n), rng.integers(-2, 2, n)]  # many ties
    by_text = ledger_module._order(keys, ids, rows)
    by_position = ledger_module._order(keys, ids, rows, text_follows_rows=True)
    assert np.array_equal(by_text, by_position)
    # the promise only counts for rows in ledger order: otherwise the text decides
    shuffled = rows[::-1].copy()
    assert np.array_equal(
        ledger_module._order(keys, ids, shuffled, text_follows_rows=True), ledger_module._order(keys, ids, shuffled)
    )


def test_text_pairs_are_exact_matches_in_naming_then_row_order():
    applies_to = pl.Series(["x", None, "b", "a", "b", None, "zz", None])
    entry_ids = pl.Series(["a", "b", "b", "n1", "n2", None, "n3", "a"])
    naming = np.array([0, 2, 3, 4, 5])  # texts: x, b, a, b, null
    i, r = ledger_module._text_pairs(applies_to, naming, entry_ids, np.array([7, 0, 1, 2, 5]))
    # "b" is the id of rows 1 and 2 (both listed), "a" of rows 0 and 7; "x" and null match nothing
    assert i.tolist() == [1, 1, 2, 2, 3, 3]
    assert r.tolist() == [1, 2, 0, 7, 1, 2]
    # a naming list out of ledger order gives the same pairs for the same positions
    i2, r2 = ledger_module._text_pairs(applies_to, naming[::-1].copy(), entry_ids, np.array([0, 1, 2, 5, 7]))
    assert i2.tolist() == [1, 1, 2, 2, 3, 3]
    assert r2.tolist() == [1, 2, 0, 7, 1, 2]


def test_shifted_days_lookup_equals_months_back():
    dates = pl.Series([D(2024, 6, 30), D(2024, 5, 15), D(2024, 6, 30), D(2024, 3, 30), D(2023, 12, 31)])
    got = bureau_module._shifted_days(dates, 3).cast(pl.Date).to_list()
    want = pl.select(months_back(pl.lit(dates), 3)).to_series().to_list()
    assert got == want == [D(2024, 3, 31), D(2024, 2, 15), D(2024, 3, 31), D(2023, 12, 30), D(2023, 9, 30)]


def test_outstanding_of_every_invoice_equals_outstanding_at(world):
    cash = ledger_module.cash_application(world["ledger"], world["fx_rates"], base_currency="CNY")
    n = cash.invoice_facts.height
    assert n > 100
    due = cash.invoice_facts["due_day"].to_numpy().astype(np.int64)
    doc = cash.invoice_facts["doc_day"].to_numpy().astype(np.int64)
    rng = np.random.default_rng(3)
    for day in (due + 30, due + 90, doc - 1, doc, doc + rng.integers(0, 400, n)):
        want = cash.outstanding_at(np.arange(n, dtype=np.int64), day)
        got = cash.outstanding_of_every_invoice(day)
        assert np.array_equal(got, want)
    assert (cash.outstanding_of_every_invoice(doc - 1) == 0).all()  # nothing owed before posting
    with pytest.raises(ValueError, match="one day per invoice"):
        cash.outstanding_of_every_invoice(due[:-1])
