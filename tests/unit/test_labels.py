"""Default dates, observation eligibility, default_12m labels and month ends on tiny hand-made data."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import polars as pl
import pytest

from creditflow.core.schema import BUREAU_EVENTS, LEDGER
from creditflow.features.labels import default_dates, labels, month_ends, observations

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


def ledger(*rows):
    return pl.DataFrame(list(rows), schema=LEDGER.polars_schema).lazy()


def customers(*links):
    return pl.LazyFrame(
        {"customer_id": [c for c, _ in links], "registration_id": [r for _, r in links]},
        schema={"customer_id": pl.String, "registration_id": pl.String},
    )


def events(*rows):
    return pl.DataFrame(
        [{"registration_id": r, "event_date": d, "event_type": t, "detail": None} for r, d, t in rows],
        schema=BUREAU_EVENTS.polars_schema,
    ).lazy()


DATA_END = D(2025, 12, 31)


def defaults(led, *, links=(), evs=(), threshold=None):
    kw = {} if threshold is None else {"materiality_threshold": threshold}
    return default_dates(
        led, None, customers(*links), events(*evs), base_currency="CNY", data_end=DATA_END, **kw
    ).collect()


JAN_31 = D(2024, 1, 31)


def unpaid(cust, amount, due=JAN_31):
    return row(f"I-{cust}", cust, "INVOICE", D(2024, 1, 1), amount, due=due)


# ------------------------------------------------------------------ month ends


def test_month_ends_between_two_dates():
    assert month_ends(D(2024, 1, 15), D(2024, 4, 30)) == [D(2024, 1, 31), D(2024, 2, 29), D(2024, 3, 31), D(2024, 4, 30)]
    assert month_ends(D(2023, 12, 31), D(2024, 1, 31)) == [D(2023, 12, 31), D(2024, 1, 31)]
    assert month_ends(D(2023, 2, 1), D(2023, 2, 27)) == []


def test_month_ends_checks_its_arguments():
    with pytest.raises(ValueError, match="start must be on or before end; got start=2024-02-01, end=2024-01-01"):
        month_ends(D(2024, 2, 1), D(2024, 1, 1))
    with pytest.raises(TypeError, match="end must be a datetime.date"):
        month_ends(D(2024, 1, 1), datetime(2024, 2, 1))


# ------------------------------------------------------------------ default dates


def test_invoice_90_days_past_due_defaults_on_due_date_plus_90():
    out = defaults(ledger(unpaid("c1", "1000.00")))
    assert out.rows() == [("c1", D(2024, 4, 30), "DPD_90")]  # 2024-01-31 + 90 days


def test_materiality_threshold_is_exclusive():
    out = defaults(ledger(unpaid("c1", "100.00"), unpaid("c2", "100.01")))
    assert out.rows() == [("c2", D(2024, 4, 30), "DPD_90")]
    assert defaults(ledger(unpaid("c1", "100.00")), threshold=M("99.99")).height == 1


def test_outstanding_is_taken_at_the_end_of_due_date_plus_90():
    paid_on_time = ledger(unpaid("c1", "500.00"), row("P1", "c1", "PAYMENT", D(2024, 4, 30), "400.00", to="I-c1"))
    paid_late = ledger(unpaid("c1", "500.00"), row("P1", "c1", "PAYMENT", D(2024, 5, 1), "400.00", to="I-c1"))
    assert defaults(paid_on_time).height == 0
    assert defaults(paid_late).rows() == [("c1", D(2024, 4, 30), "DPD_90")]


def test_no_90_days_past_due_default_after_the_data_ends():
    led = ledger(unpaid("c1", "1000.00"), row("I2", "c1", "INVOICE", D(2024, 4, 29), "5.00", due=D(2024, 5, 29)))
    # without data_end the data ends on the ledger's last day, 2024-04-29: one day too early
    assert default_dates(led, None, customers(), events(), base_currency="CNY").collect().height == 0
    out = default_dates(led, None, customers(), events(), base_currency="CNY", data_end=D(2024, 4, 30)).collect()
    assert out.rows() == [("c1", D(2024, 4, 30), "DPD_90")]


def test_write_off_defaults_on_its_posting_date():
    led = ledger(unpaid("c1", "50.00"), row("WO1", "c1", "WRITE_OFF", D(2024, 3, 1), "50.00", to="I-c1"))
    assert defaults(led).rows() == [("c1", D(2024, 3, 1), "WRITE_OFF")]


def test_bankruptcy_filing_reaches_every_customer_of_the_company():
    evs = [
        ("R1", D(2024, 5, 1), "BANKRUPTCY_FILING"),
        ("R1", D(2024, 2, 1), "LAWSUIT"),
        ("R9", D(2024, 1, 1), "BANKRUPTCY_FILING"),  # not a customer
    ]
    links = [("c1", "R1"), ("c2", "R1"), ("c3", "R2"), ("c4", None)]
    assert defaults(ledger(), links=links, evs=evs).rows() == [
        ("c1", D(2024, 5, 1), "BANKRUPTCY"),
        ("c2", D(2024, 5, 1), "BANKRUPTCY"),
    ]


def test_the_earliest_reason_wins_and_ties_follow_contract_order():
    led = ledger(
        unpaid("c1", "50.00"),
        row("WO1", "c1", "WRITE_OFF", D(2024, 3, 1), "50.00", to="I-c1"),
        unpaid("c5", "500.00"),  # 90 days past due on 2024-04-30 ...
        row("J5", "c5", "INVOICE", D(2024, 4, 1), "20.00", due=D(2024, 5, 1)),
        row("WO5", "c5", "WRITE_OFF", D(2024, 4, 30), "20.00", to="J5"),  # ... the day another is written off
    )
    out = defaults(led, links=[("c1", "R1")], evs=[("R1", D(2024, 5, 1), "BANKRUPTCY_FILING")])
    assert out.rows() == [("c1", D(2024, 3, 1), "WRITE_OFF"), ("c5", D(2024, 4, 30), "DPD_90")]


def test_default_dates_checks_the_threshold():
    with pytest.raises(ValueError, match="materiality_threshold must be a finite Decimal >= 0; got -1"):
        defaults(ledger(), threshold=-1)


# ------------------------------------------------------------------ observations


T = D(2024, 6, 30)  # t - 365 days = 2023-07-01


def _obs(rows, default_rows=()):
    grid = pl.LazyFrame(
        {
            "customer_id": [c for c, _ in rows],
            "as_of_date": [T] * len(rows),
            "onboarding_date": [o for _, o in rows],
        }
    )
    dd = pl.LazyFrame(
        {"customer_id": [c for c, _ in default_rows], "default_date": [d for _, d in default_rows]},
        schema={"customer_id": pl.String, "default_date": pl.Date},
    )
    return grid, dd


def test_observation_needs_an_invoice_in_the_last_365_days():
    led = ledger(
        row("I1", "c1", "INVOICE", T, "1.00", due=T),  # on t: in
        row("I5", "c5", "INVOICE", D(2023, 7, 1), "1.00", due=D(2023, 7, 1)),  # t - 365: out
        row("I6", "c6", "INVOICE", D(2023, 7, 2), "1.00", due=D(2023, 7, 2)),  # t - 364: in
        row("I7", "c7", "INVOICE", D(2024, 7, 1), "1.00", due=D(2024, 7, 1)),  # after t: out
        row("P8", "c8", "PAYMENT", D(2024, 6, 1), "1.00"),  # no invoice
    )
    grid, dd = _obs([(c, D(2020, 1, 1)) for c in ("c1", "c5", "c6", "c7", "c8")])
    assert observations(led, grid, dd, [T]).collect()["customer_id"].to_list() == ["c1", "c6"]


def test_observation_needs_onboarding_on_or_before_t():
    led = ledger(*[row(f"I{c}", c, "INVOICE", D(2024, 6, 1), "1.00", due=T) for c in ("c1", "c2", "c3")])
    grid, dd = _obs([("c1", T), ("c2", D(2024, 7, 1)), ("c3", D(2024, 1, 1))])
    assert observations(led, grid, dd, [T]).collect()["customer_id"].to_list() == ["c1", "c3"]


def test_customer_in_default_at_t_is_not_observed():
    led = ledger(*[row(f"I{c}", c, "INVOICE", D(2024, 6, 1), "1.00", due=T) for c in ("c3", "c4")])
    grid, dd = _obs([("c3", D(2020, 1, 1)), ("c4", D(2020, 1, 1))], [("c3", T), ("c4", D(2024, 7, 1))])
    assert observations(led, grid, dd, [T]).collect().rows() == [("c4", T)]


def test_observations_only_at_the_given_as_of_dates():
    led = ledger(row("I1", "c1", "INVOICE", D(2024, 5, 1), "1.00", due=T))
    grid = pl.LazyFrame(
        {"customer_id": ["c1", "c1"], "as_of_date": [D(2024, 5, 31), T], "onboarding_date": [D(2020, 1, 1)] * 2}
    )
    dd = pl.LazyFrame(schema={"customer_id": pl.String, "default_date": pl.Date})
    assert observations(led, grid, dd, [T]).collect().rows() == [("c1", T)]


# ------------------------------------------------------------------ labels


LATE_END = D(2025, 12, 31)


def _label(default_date, *, t=JAN_31, data_end=LATE_END):
    obs = pl.LazyFrame({"customer_id": ["c1"], "as_of_date": [t]})
    dd = pl.LazyFrame({"customer_id": ["c1"] if default_date else [], "default_date": [default_date] if default_date else []},
                      schema={"customer_id": pl.String, "default_date": pl.Date})
    return labels(obs, dd, data_end=data_end).collect()["default_12m"].to_list()[0]


def test_label_is_one_for_a_default_in_the_next_365_days():
    # t = 2024-01-31, t + 365 days = 2025-01-30
    assert _label(D(2024, 2, 1)) == 1
    assert _label(D(2025, 1, 30)) == 1


def test_label_is_zero_outside_the_window():
    assert _label(D(2025, 1, 31)) == 0
    assert _label(D(2024, 1, 31)) == 0
    assert _label(None) == 0


def test_label_is_null_until_the_window_is_fully_observed():
    assert _label(D(2024, 2, 1), data_end=D(2025, 1, 30)) == 1
    assert _label(D(2024, 2, 1), data_end=D(2025, 1, 29)) is None
    assert _label(None, data_end=D(2025, 1, 29)) is None


def test_labels_keep_rows_and_columns():
    obs = pl.LazyFrame(
        {"customer_id": ["c2", "c1", "c1"], "as_of_date": [D(2024, 1, 31), D(2024, 2, 29), D(2024, 1, 31)], "x": [1, 2, 3]}
    )
    dd = pl.LazyFrame({"customer_id": ["c1"], "default_date": [D(2024, 3, 1)]})
    out = labels(obs, dd, data_end=D(2025, 2, 1)).collect()
    assert out.columns == ["customer_id", "as_of_date", "x", "default_12m"]
    assert out.schema["default_12m"] == pl.Int8
    assert out.rows() == [
        ("c2", D(2024, 1, 31), 1, 0),
        ("c1", D(2024, 2, 29), 2, None),  # 2024-02-29 + 365 days = 2025-02-28 > data_end
        ("c1", D(2024, 1, 31), 3, 1),
    ]


def test_labels_check_their_arguments():
    obs = pl.LazyFrame({"customer_id": ["c1"], "as_of_date": [D(2024, 1, 31)]})
    dd = pl.LazyFrame(schema={"customer_id": pl.String, "default_date": pl.Date})
    with pytest.raises(TypeError, match="data_end must be a datetime.date"):
        labels(obs, dd, data_end="2025-01-01")
    with pytest.raises(ValueError, match=r"default_dates_lf is missing column\(s\) \['default_date'\]"):
        labels(obs, dd.drop("default_date"), data_end=D(2025, 1, 1))
