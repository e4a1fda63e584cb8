"""Cash application, exposure, days past due and payment-behaviour features on tiny hand-made ledgers."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import polars as pl
import pytest

from creditflow.core.schema import FX_RATES, LEDGER
from creditflow.features.ledger import (
    APPLICATION_COLUMNS,
    LEDGER_FEATURE_COLUMNS,
    applications,
    cash_application,
    invoices_base,
    ledger_features,
    unconverted_entries,
)

D = date
M = Decimal


def row(eid, cust, kind, doc, amount, *, due=None, cur="CNY", to=None):
    return {
        "entry_id": eid,
        "customer_id": cust,
        "entry_type": kind,
        "document_date": doc,
        "due_date": due,
        "amount": M(amount),
        "currency": cur,
        "applies_to": to,
    }


def inv(eid, doc, due, amount, cust="c1", cur="CNY"):
    return row(eid, cust, "INVOICE", doc, amount, due=due, cur=cur)


def pay(eid, doc, amount, to=None, cust="c1", cur="CNY"):
    return row(eid, cust, "PAYMENT", doc, amount, to=to, cur=cur)


def ledger(*rows):
    return pl.DataFrame(list(rows), schema=LEDGER.polars_schema).lazy()


def fx(*rates):
    return pl.DataFrame(
        [{"rate_date": d, "currency": c, "rate_to_base": M(r)} for d, c, r in rates], schema=FX_RATES.polars_schema
    ).lazy()


def features(led, as_of, *, rates=None, customers_asof=None):
    return ledger_features(led, rates, customers_asof, as_of, base_currency="CNY").collect()


def one(frame, as_of, cust="c1"):
    out = frame.filter((pl.col("customer_id") == cust) & (pl.col("as_of_date") == as_of))
    assert out.height == 1
    return out.row(0, named=True)


def apps(led, rates=None):
    return applications(led, rates, base_currency="CNY").collect()


def app_rows(frame):
    return sorted(
        (r["invoice_id"], r["applied_date"], r["kind"], r["applied_amount_base"]) for r in frame.iter_rows(named=True)
    )


# ------------------------------------------------------------------ exposure and days past due


def test_exposure_counts_only_entries_dated_on_or_before_the_as_of_date():
    led = ledger(
        inv("I1", D(2024, 1, 10), D(2024, 2, 9), "100.00"),
        inv("I2", D(2024, 2, 5), D(2024, 3, 6), "50.00"),
        pay("P1", D(2024, 2, 20), "100.00", to="I1"),
    )
    f = features(led, [D(2024, 1, 31), D(2024, 2, 29)])
    assert one(f, D(2024, 1, 31))["exposure"] == M("100.00")
    assert one(f, D(2024, 2, 29))["exposure"] == M("50.00")


def test_partly_paid_invoice_ages_with_its_days_past_due():
    led = ledger(inv("I1", D(2024, 1, 1), D(2024, 1, 31), "100.00"), pay("P1", D(2024, 2, 10), "40.00", to="I1"))
    f = features(led, [D(2024, 2, 29), D(2024, 3, 31)])
    feb, mar = one(f, D(2024, 2, 29)), one(f, D(2024, 3, 31))
    assert (feb["exposure"], feb["aging_1_30"], feb["dpd_max"], feb["dpd_weighted"]) == (M("60.00"), M("60.00"), 29, 29.0)
    assert (mar["aging_1_30"], mar["aging_31_90"], mar["dpd_max"]) == (M("0.00"), M("60.00"), 60)


def test_paid_invoice_is_not_past_due():
    led = ledger(inv("I1", D(2024, 1, 1), D(2024, 1, 31), "100.00"), pay("P1", D(2024, 2, 5), "100.00", to="I1"))
    feb = one(features(led, [D(2024, 2, 29)]), D(2024, 2, 29))
    assert (feb["exposure"], feb["dpd_max"], feb["dpd_weighted"]) == (M("0.00"), 0, 0.0)


def test_aging_bucket_edges_and_weighted_days_past_due():
    t = D(2024, 6, 30)
    dpds = [0, 1, 30, 31, 90, 91, 180, 181]
    amounts = [1, 2, 4, 8, 16, 32, 64, 128]
    led = ledger(*[inv(f"I{d}", t - timedelta(days=d), t - timedelta(days=d), str(a)) for d, a in zip(dpds, amounts, strict=True)])
    r = one(features(led, [t]), t)
    assert [r[c] for c in ("aging_current", "aging_1_30", "aging_31_90", "aging_91_180", "aging_over_180")] == [
        M(1), M(6), M(24), M(96), M(128)
    ]
    assert r["exposure"] == M(255)
    assert r["dpd_max"] == 181
    assert r["dpd_weighted"] == pytest.approx(39410 / 255)


def test_not_yet_due_invoice_is_current():
    led = ledger(inv("I1", D(2024, 1, 20), D(2024, 2, 19), "70.00"))
    r = one(features(led, [D(2024, 1, 31)]), D(2024, 1, 31))
    assert (r["aging_current"], r["dpd_max"]) == (M("70.00"), 0)


# ------------------------------------------------------------------ direct applications


def test_credit_note_and_write_off_reduce_the_invoice_they_name():
    led = ledger(
        inv("I1", D(2024, 1, 1), D(2024, 1, 31), "100.00"),
        row("CN1", "c1", "CREDIT_NOTE", D(2024, 1, 10), "30.00", to="I1"),
        row("WO1", "c1", "WRITE_OFF", D(2024, 3, 1), "70.00", to="I1"),
    )
    f = features(led, [D(2024, 1, 31), D(2024, 2, 29), D(2024, 3, 31)])
    assert [one(f, d)["exposure"] for d in (D(2024, 1, 31), D(2024, 2, 29), D(2024, 3, 31))] == [
        M("70.00"), M("70.00"), M("0.00")
    ]
    assert app_rows(apps(led)) == [
        ("I1", D(2024, 1, 10), "CREDIT_NOTE", M("30.00")),
        ("I1", D(2024, 3, 1), "WRITE_OFF", M("70.00")),
    ]


def test_write_off_beyond_what_is_owed_creates_no_credit():
    led = ledger(
        inv("I1", D(2024, 1, 1), D(2024, 1, 31), "100.00"),
        inv("I2", D(2024, 1, 2), D(2024, 2, 1), "100.00"),
        row("WO1", "c1", "WRITE_OFF", D(2024, 1, 15), "150.00", to="I1"),
    )
    r = one(features(led, [D(2024, 1, 31)]), D(2024, 1, 31))
    assert (r["exposure"], r["unapplied_credit"]) == (M("100.00"), M("0.00"))
    assert app_rows(apps(led)) == [("I1", D(2024, 1, 15), "WRITE_OFF", M("100.00"))]


def test_over_payment_becomes_credit_applied_to_the_next_open_invoice():
    led = ledger(
        inv("I1", D(2024, 1, 1), D(2024, 1, 31), "100.00"),
        inv("I2", D(2024, 1, 5), D(2024, 2, 4), "80.00"),
        pay("P1", D(2024, 1, 20), "150.00", to="I1"),
    )
    assert app_rows(apps(led)) == [
        ("I1", D(2024, 1, 20), "PAYMENT", M("100.00")),
        ("I2", D(2024, 1, 20), "ON_ACCOUNT", M("50.00")),
    ]
    assert one(features(led, [D(2024, 1, 31)]), D(2024, 1, 31))["exposure"] == M("30.00")


def test_entry_dated_before_its_invoice_applies_on_the_invoice_date():
    led = ledger(pay("P1", D(2024, 1, 5), "40.00", to="I1"), inv("I1", D(2024, 1, 10), D(2024, 2, 9), "100.00"))
    assert app_rows(apps(led)) == [("I1", D(2024, 1, 10), "PAYMENT", M("40.00"))]


def test_entry_naming_another_customers_invoice_is_not_applied_and_counted():
    led = ledger(
        inv("I1", D(2024, 1, 1), D(2024, 1, 31), "100.00"),
        pay("P1", D(2024, 1, 5), "100.00", to="I1", cust="c2"),
        row("CN1", "c1", "CREDIT_NOTE", D(2024, 1, 6), "10.00", to="NOPE"),
    )
    cash = cash_application(led, None, base_currency="CNY")
    assert cash.unmatched_entries == 2
    assert apps(led).height == 0


# ------------------------------------------------------------------ cash on account


def test_cash_on_account_goes_to_the_oldest_due_date_first():
    led = ledger(
        inv("A", D(2024, 1, 5), D(2024, 3, 5), "100.00"),
        inv("B", D(2024, 1, 10), D(2024, 2, 9), "100.00"),
        pay("P1", D(2024, 1, 20), "150.00"),
    )
    assert app_rows(apps(led)) == [
        ("A", D(2024, 1, 20), "ON_ACCOUNT", M("50.00")),
        ("B", D(2024, 1, 20), "ON_ACCOUNT", M("100.00")),
    ]
    r = one(features(led, [D(2024, 1, 31)]), D(2024, 1, 31))
    assert (r["exposure"], r["aging_current"]) == (M("50.00"), M("50.00"))


def test_cash_on_account_only_reaches_invoices_posted_by_the_payment_date():
    led = ledger(
        inv("A", D(2024, 1, 5), D(2024, 2, 4), "100.00"),
        pay("P1", D(2024, 1, 10), "60.00"),
        inv("B", D(2024, 1, 15), D(2024, 2, 14), "100.00"),
    )
    assert app_rows(apps(led)) == [("A", D(2024, 1, 10), "ON_ACCOUNT", M("60.00"))]
    assert one(features(led, [D(2024, 1, 31)]), D(2024, 1, 31))["exposure"] == M("140.00")


def test_unapplied_credit_waits_for_the_next_invoice():
    led = ledger(
        inv("A", D(2024, 1, 5), D(2024, 2, 4), "100.00"),
        pay("P1", D(2024, 1, 10), "150.00"),
        inv("B", D(2024, 1, 15), D(2024, 2, 14), "100.00"),
    )
    assert app_rows(apps(led)) == [
        ("A", D(2024, 1, 10), "ON_ACCOUNT", M("100.00")),
        ("B", D(2024, 1, 15), "ON_ACCOUNT", M("50.00")),
    ]
    f = features(led, [D(2024, 1, 12), D(2024, 1, 31)])
    assert (one(f, D(2024, 1, 12))["exposure"], one(f, D(2024, 1, 12))["unapplied_credit"]) == (M("0.00"), M("50.00"))
    assert (one(f, D(2024, 1, 31))["exposure"], one(f, D(2024, 1, 31))["unapplied_credit"]) == (M("50.00"), M("0.00"))


def test_direct_payment_on_an_invoice_the_credit_covered_releases_the_credit():
    led = ledger(
        inv("A", D(2024, 1, 1), D(2024, 1, 31), "100.00"),
        inv("B", D(2024, 1, 2), D(2024, 2, 1), "100.00"),
        pay("P1", D(2024, 1, 10), "100.00"),
        pay("P2", D(2024, 1, 20), "100.00", to="A"),
    )
    assert app_rows(apps(led)) == [
        ("A", D(2024, 1, 10), "ON_ACCOUNT", M("100.00")),
        ("A", D(2024, 1, 20), "ON_ACCOUNT", M("-100.00")),
        ("A", D(2024, 1, 20), "PAYMENT", M("100.00")),
        ("B", D(2024, 1, 20), "ON_ACCOUNT", M("100.00")),
    ]
    assert one(features(led, [D(2024, 1, 31)]), D(2024, 1, 31))["exposure"] == M("0.00")


def test_invoice_due_earlier_takes_the_credit_over_on_its_posting_date():
    led = ledger(
        inv("A", D(2024, 1, 1), D(2024, 3, 31), "100.00"),
        pay("P1", D(2024, 1, 5), "100.00"),
        inv("B", D(2024, 1, 10), D(2024, 2, 15), "100.00"),
    )
    assert app_rows(apps(led)) == [
        ("A", D(2024, 1, 5), "ON_ACCOUNT", M("100.00")),
        ("A", D(2024, 1, 10), "ON_ACCOUNT", M("-100.00")),
        ("B", D(2024, 1, 10), "ON_ACCOUNT", M("100.00")),
    ]
    feb = one(features(led, [D(2024, 2, 29)]), D(2024, 2, 29))
    assert (feb["exposure"], feb["aging_current"], feb["dpd_max"]) == (M("100.00"), M("100.00"), 0)


# ------------------------------------------------------------------ fx conversion


RATES = [
    (D(2024, 1, 1), "USD", "7.00000000"),
    (D(2024, 1, 15), "USD", "7.20000000"),
    (D(2024, 2, 1), "USD", "7.50000000"),
]


def test_foreign_currency_uses_the_latest_rate_on_or_before_the_document_date():
    led = ledger(inv("I1", D(2024, 1, 20), D(2024, 2, 19), "100.00", cur="USD"))
    base = invoices_base(led, fx(*RATES), base_currency="CNY").collect()
    assert base.select("invoice_id", "amount", "amount_base").rows() == [("I1", M("100.00"), M("720.00"))]


def test_payment_in_the_invoice_currency_settles_it_at_the_invoice_rate():
    # 50 USD of a 100 USD invoice booked at 7.2 settle 360.00 CNY, although USD is at 7.5 on
    # the payment date: the fx difference is not money the customer owes
    led = ledger(
        inv("I1", D(2024, 1, 20), D(2024, 2, 19), "100.00", cur="USD"),
        pay("P1", D(2024, 2, 5), "50.00", to="I1", cur="USD"),
        pay("P2", D(2024, 3, 5), "50.00", to="I1", cur="USD"),
    )
    rates = fx(*RATES)
    assert app_rows(apps(led, rates)) == [
        ("I1", D(2024, 2, 5), "PAYMENT", M("360.00")),
        ("I1", D(2024, 3, 5), "PAYMENT", M("360.00")),
    ]
    f = features(led, [D(2024, 2, 29), D(2024, 3, 31)], rates=rates)
    assert (one(f, D(2024, 2, 29))["exposure"], one(f, D(2024, 3, 31))["exposure"]) == (M("360.00"), M("0.00"))


def test_payment_in_another_currency_is_converted_into_the_invoice_currency():
    # 375.00 CNY = 52.08 USD at the invoice rate 7.2, worth 375.00 CNY of the invoice (rounded)
    led = ledger(
        inv("I1", D(2024, 1, 20), D(2024, 2, 19), "100.00", cur="USD"),
        pay("P1", D(2024, 2, 5), "375.00", to="I1"),
    )
    assert app_rows(apps(led, fx(*RATES))) == [("I1", D(2024, 2, 5), "PAYMENT", M("374.98"))]


def test_credit_on_account_stays_in_its_currency_and_is_valued_at_the_as_of_rate():
    led = ledger(
        inv("U1", D(2024, 1, 20), D(2024, 2, 19), "100.00", cur="USD"),  # 720.00 CNY
        inv("C1", D(2024, 1, 20), D(2024, 2, 19), "100.00"),
        pay("P1", D(2024, 2, 5), "150.00", cur="USD"),  # on account: pays U1, 50 USD left
    )
    rates = fx(*RATES)
    assert app_rows(apps(led, rates)) == [("U1", D(2024, 2, 5), "ON_ACCOUNT", M("720.00"))]
    r = one(features(led, [D(2024, 2, 29)], rates=rates), D(2024, 2, 29))
    assert (r["exposure"], r["unapplied_credit"]) == (M("100.00"), M("375.00"))  # 50 USD at 7.5


def test_conversion_rounds_half_to_even_to_the_cent():
    led = ledger(inv("I1", D(2024, 1, 20), D(2024, 2, 19), "0.05", cur="USD"))
    rates = fx((D(2024, 1, 1), "USD", "2.50000000"))  # 0.125 -> 0.12
    assert invoices_base(led, rates, base_currency="CNY").collect()["amount_base"].to_list() == [M("0.12")]


def test_entry_without_an_fx_rate_is_left_out_and_counted_never_taken_at_rate_one():
    led = ledger(
        inv("I1", D(2023, 12, 31), D(2024, 1, 30), "100.00", cur="USD"),  # before the first USD rate
        inv("I2", D(2024, 1, 5), D(2024, 2, 4), "10.00", cur="EUR"),  # no EUR rate at all
        inv("I3", D(2024, 1, 5), D(2024, 2, 4), "40.00"),
    )
    rates = fx(*RATES)
    assert cash_application(led, rates, base_currency="CNY").unconverted_entries == 2
    assert sorted(unconverted_entries(led, rates, base_currency="CNY").collect()["entry_id"]) == ["I1", "I2"]
    assert one(features(led, [D(2024, 1, 31)], rates=rates), D(2024, 1, 31))["exposure"] == M("40.00")
    assert cash_application(led, None, base_currency="CNY").unconverted_entries == 2


# ------------------------------------------------------------------ history features


def test_invoices_that_reached_30_and_60_days_past_due():
    led = ledger(
        inv("I1", D(2024, 1, 1), D(2024, 1, 31), "100.00"),
        pay("P1", D(2024, 3, 15), "100.00", to="I1"),  # owed on due+30 (Mar 1), paid by due+60 (Mar 31)
        inv("I2", D(2024, 1, 1), D(2024, 1, 31), "100.00"),
        pay("P2", D(2024, 2, 29), "100.00", to="I2"),  # paid the day before due+30
    )
    f = features(led, [D(2024, 2, 29), D(2024, 3, 31)])
    assert (one(f, D(2024, 2, 29))["invoices_past_30_12m"], one(f, D(2024, 2, 29))["invoices_past_60_12m"]) == (0, 0)
    assert (one(f, D(2024, 3, 31))["invoices_past_30_12m"], one(f, D(2024, 3, 31))["invoices_past_60_12m"]) == (1, 0)


def test_sales_volume_growth_and_credit_note_ratio_over_the_windows():
    t = D(2024, 12, 31)  # 12 months = (2024-01-01, t]; 3 months = (2024-10-01, t]
    led = ledger(
        inv("I0", D(2024, 1, 1), D(2024, 1, 31), "999.00"),  # exactly t - 365 days: outside
        inv("I1", D(2024, 3, 1), D(2024, 3, 31), "600.06"),
        inv("I2", D(2024, 10, 15), D(2024, 11, 14), "300.00"),
        inv("I3", D(2024, 12, 15), D(2025, 1, 14), "300.00"),
        row("CN1", "c1", "CREDIT_NOTE", D(2024, 12, 20), "60.00", to="I3"),
    )
    r = one(features(led, [t]), t)
    assert r["invoice_count_12m"] == 3
    assert r["avg_monthly_sales_12m"] == M("100.01")  # 1200.06 / 12 = 100.005, half up
    assert r["sales_growth_3m_vs_12m"] == pytest.approx((600.00 / 91) / (1200.06 / 365) - 1)
    assert r["credit_note_ratio_12m"] == pytest.approx(60.00 / 1200.06)
    assert r["months_since_last_invoice"] == 0


def test_dso_and_months_since_last_invoice():
    led = ledger(inv("I1", D(2024, 1, 15), D(2024, 2, 14), "365.00"))
    f = features(led, [D(2024, 3, 31), D(2024, 7, 14)])
    assert one(f, D(2024, 3, 31))["dso_days"] == pytest.approx(365.0)
    assert one(f, D(2024, 3, 31))["months_since_last_invoice"] == 2
    assert one(f, D(2024, 7, 14))["months_since_last_invoice"] == 5


def test_payment_behaviour_over_invoices_closed_in_the_window():
    t = D(2024, 6, 30)  # 3 months = (2024-03-31, t]
    plan = [  # (invoice, due date, payment date)
        ("I1", D(2024, 1, 31), D(2024, 2, 10)),  # 10 days late, closes Feb 10
        ("I2", D(2024, 3, 31), D(2024, 3, 21)),  # 10 days early, closes on its due date Mar 31
        ("I3", D(2024, 5, 31), D(2024, 6, 20)),  # 20 days late
        ("I4", D(2024, 6, 15), D(2024, 6, 5)),  # 10 days early, closes Jun 15
        ("I6", D(2024, 7, 31), D(2024, 6, 25)),  # paid early but due after t: not closed yet
    ]
    rows = []
    for i, due, paid in plan:
        rows += [inv(i, due - timedelta(days=30), due, "100.00"), pay("P" + i, paid, "100.00", to=i)]
    rows.append(inv("I5", D(2024, 5, 31), D(2024, 6, 30), "100.00"))  # open
    r = one(features(ledger(*rows), [t]), t)
    assert r["pay_delay_avg_12m"] == pytest.approx(2.5)  # (10 - 10 + 20 - 10) / 4
    assert r["share_paid_late_12m"] == pytest.approx(0.5)
    assert r["pay_delay_p90_12m"] == pytest.approx(17.0)  # [-10, -10, 10, 20] at 0.9: 10 + 0.7 * 10
    assert r["pay_delay_trend"] == pytest.approx(5.0 - 2.5)  # (20 - 10) / 2 - 2.5


def test_payment_behaviour_is_null_when_nothing_closed():
    led = ledger(inv("I1", D(2024, 1, 1), D(2024, 1, 31), "100.00"))
    r = one(features(led, [D(2024, 1, 31)]), D(2024, 1, 31))
    assert [r[c] for c in ("pay_delay_avg_12m", "pay_delay_p90_12m", "share_paid_late_12m", "pay_delay_trend")] == [None] * 4


# ------------------------------------------------------------------ rows and schema


def test_customers_asof_defines_the_rows():
    led = ledger(inv("I1", D(2024, 1, 5), D(2024, 2, 4), "10.00"))
    grid = pl.LazyFrame(
        {"customer_id": ["c1", "c9", "c1"], "as_of_date": [D(2024, 1, 31), D(2024, 1, 31), D(2024, 2, 15)]}
    )
    f = features(led, [D(2024, 1, 31)], customers_asof=grid)
    assert f.select("customer_id", "as_of_date").rows() == [("c1", D(2024, 1, 31)), ("c9", D(2024, 1, 31))]
    c9 = one(f, D(2024, 1, 31), "c9")
    assert (c9["exposure"], c9["invoice_count_12m"], c9["months_since_last_invoice"]) == (M("0.00"), 0, None)


def test_without_customers_asof_rows_start_at_the_first_entry():
    led = ledger(inv("I1", D(2024, 2, 10), D(2024, 3, 11), "10.00"))
    f = features(led, [D(2024, 1, 31), D(2024, 2, 29)])
    assert f.select("customer_id", "as_of_date").rows() == [("c1", D(2024, 2, 29))]


def test_output_columns_and_types():
    led = ledger(inv("I1", D(2024, 1, 5), D(2024, 2, 4), "10.00"))
    f = features(led, [D(2024, 1, 31)])
    assert tuple(f.columns) == LEDGER_FEATURE_COLUMNS
    assert f.schema["exposure"] == pl.Decimal(18, 2)
    assert f.schema["aging_over_180"] == pl.Decimal(18, 2)
    assert f.schema["dpd_max"] == pl.Int32
    assert f.schema["dpd_weighted"] == pl.Float64
    assert tuple(apps(led).columns) == APPLICATION_COLUMNS


# ------------------------------------------------------------------ argument checks


def test_rejects_a_bad_base_currency():
    with pytest.raises(ValueError, match="base_currency must be a 3-letter upper-case ISO 4217 code; got 'cny'"):
        cash_application(ledger(), None, base_currency="cny")


def test_rejects_a_ledger_without_a_contract_column():
    led = ledger(inv("I1", D(2024, 1, 5), D(2024, 2, 4), "10.00")).drop("applies_to")
    with pytest.raises(ValueError, match=r"ledger is missing column\(s\) \['applies_to'\]"):
        cash_application(led, None, base_currency="CNY")


def test_rejects_something_that_is_not_a_frame():
    with pytest.raises(TypeError, match="ledger must be a polars LazyFrame or DataFrame"):
        cash_application([1, 2], None, base_currency="CNY")


def test_rejects_empty_as_of_dates():
    with pytest.raises(ValueError, match="as_of_dates must hold at least one date"):
        ledger_features(ledger(), None, None, [], base_currency="CNY")


def test_rejects_a_cash_application_in_another_base_currency():
    cash = cash_application(ledger(), None, base_currency="USD")
    with pytest.raises(ValueError, match="cash was computed in base currency USD; got base_currency=CNY"):
        ledger_features(None, None, None, [D(2024, 1, 31)], base_currency="CNY", cash=cash)


def test_empty_ledger_gives_no_rows():
    assert features(ledger(), [D(2024, 1, 31)]).height == 0
