"""The panel's join-free assembly: the invoice-window count it uses and its agreement with the join path."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import polars as pl
import pytest

from creditflow.core import schema
from creditflow.features import panel as panel_module
from creditflow.features.labels import month_ends
from creditflow.features.ledger import cash_application, invoice_entries_in_window
from creditflow.features.panel import build_panel

D = date
JAN_31, MAR_31 = D(2024, 1, 31), D(2024, 3, 31)


def _row(eid, cust, kind, doc, amount, cur="CNY"):
    return {"entry_id": eid, "customer_id": cust, "entry_type": kind, "document_date": doc,
            "due_date": doc, "amount": Decimal(amount), "currency": cur, "applies_to": None}


def test_invoice_entries_in_window_counts_every_invoice_in_the_365_days_up_to_t():
    led = pl.DataFrame(
        [
            _row("i1", "c1", "INVOICE", D(2023, 3, 1), "10"),   # in (2023-01-31, 2024-01-31], not in (2023-03-31, 2024-03-31]
            _row("i2", "c1", "INVOICE", D(2024, 1, 10), "10"),  # in both windows
            _row("i3", "c1", "INVOICE", D(2024, 2, 1), "10", cur="USD"),  # no fx rate: unconverted, still counts at MAR_31
            _row("p1", "c1", "PAYMENT", D(2024, 1, 15), "5"),   # not an invoice
            _row("i4", "c2", "INVOICE", D(2023, 1, 31), "10"),  # exactly 365 days before JAN_31: out
        ],
        schema=schema.LEDGER.polars_schema,
    )
    cash = cash_application(led, None, base_currency="CNY")
    got = invoice_entries_in_window(
        cash,
        pl.Series(["c1", "c1", "c2", "c9"]),
        pl.Series([JAN_31, MAR_31, JAN_31, JAN_31]),
        [JAN_31, MAR_31],
        365,
    )
    assert got.tolist() == [2, 2, 0, 0]


def test_invoice_entries_in_window_rejects_dates_outside_the_list():
    led = pl.DataFrame([_row("i1", "c1", "INVOICE", D(2024, 1, 1), "10")], schema=schema.LEDGER.polars_schema)
    cash = cash_application(led, None, base_currency="CNY")
    with pytest.raises(ValueError, match="not in as_of_dates"):
        invoice_entries_in_window(cash, pl.Series(["c1"]), pl.Series([D(2024, 2, 15)]), [JAN_31], 365)


@pytest.fixture(scope="module")
def world(tmp_path_factory, typed_world):
    return typed_world(tmp_path_factory.mktemp("fast"), customers=40, months=20, seed=5)


def _build(frames):
    return build_panel(
        ledger=frames["ledger"].lazy(),
        customers=frames["customers"].lazy(),
        bureau=frames["bureau"].lazy(),
        events=frames["bureau_events"].lazy(),
        fx_rates=frames["fx_rates"].lazy(),
        base_currency="CNY",
    )


def test_join_free_panel_equals_the_joined_panel(world, monkeypatch):
    used = []
    original = panel_module._aligned_panel

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        used.append(out is not None)
        return out

    monkeypatch.setattr(panel_module, "_aligned_panel", spy)
    fast = _build(world)
    monkeypatch.setattr(panel_module, "_aligned_panel", lambda *a, **k: None)
    joined = _build(world)
    assert used == [True]
    assert fast.panel.height > 100
    assert fast.panel.equals(joined.panel)
    assert fast.as_of_dates == month_ends(world["ledger"]["document_date"].min(), fast.data_end)
