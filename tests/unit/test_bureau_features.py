"""Bureau and event features: latest report <= t, month-end changes, ratios, event windows."""

from __future__ import annotations

import math
from datetime import date
from decimal import Decimal

import polars as pl
import pytest

from creditflow.core.schema import BUREAU, BUREAU_EVENT_TYPES, BUREAU_EVENTS, MONEY
from creditflow.features.bureau import (
    BUREAU_FEATURE_COLUMNS,
    EVENT_FEATURE_COLUMNS,
    bureau_features,
    event_features,
    months_back,
)

D = date
T = D(2024, 6, 30)
MASTER_SCHEMA = {
    "customer_id": pl.String(),
    "as_of_date": pl.Date(),
    "registration_id": pl.String(),
}


def master(*rows: tuple[str, date, str | None]) -> pl.LazyFrame:
    return pl.DataFrame(list(rows), schema=MASTER_SCHEMA, orient="row").lazy()


def report(registration_id: str, report_date: date, **kw) -> dict:
    row = {c: None for c in BUREAU.names}
    row.update(
        registration_id=registration_id,
        report_date=report_date,
        bureau_score=500,
        paydex=80,
        lawsuits_12m=0,
        tax_arrears=False,
        years_in_business=10,
    )
    row.update(kw)
    return row


def reports(*rows: dict) -> pl.LazyFrame:
    return pl.DataFrame(list(rows), schema=BUREAU.polars_schema).lazy()


def statement(**amounts: str) -> dict:
    return {k: Decimal(v) for k, v in amounts.items()}


def features(bureau_rows: list[dict], master_lf: pl.LazyFrame, dates: list[date]) -> pl.DataFrame:
    return bureau_features(reports(*bureau_rows), master_lf, dates).collect()


def event(registration_id: str, event_date: date, event_type: str = "LAWSUIT") -> dict:
    return {
        "registration_id": registration_id,
        "event_date": event_date,
        "event_type": event_type,
        "detail": None,
    }


def events(*rows: dict) -> pl.LazyFrame:
    return pl.DataFrame(list(rows), schema=BUREAU_EVENTS.polars_schema).lazy()


# ---------------------------------------------------------------- months_back


def test_months_back_is_end_of_month_aware():
    days = pl.DataFrame(
        {"d": [D(2024, 6, 30), D(2024, 5, 30), D(2024, 5, 15), D(2024, 3, 30), D(2024, 2, 29)]}
    )
    got = days.select(
        months_back(pl.col("d"), 3).alias("m3"),
        months_back(pl.col("d"), 1).alias("m1"),
        months_back(pl.col("d"), 12).alias("m12"),
    )
    assert got["m3"].to_list() == [
        D(2024, 3, 31),
        D(2024, 2, 29),
        D(2024, 2, 15),
        D(2023, 12, 30),
        D(2023, 11, 30),
    ]
    assert got["m1"].to_list() == [
        D(2024, 5, 31),
        D(2024, 4, 30),
        D(2024, 4, 15),
        D(2024, 2, 29),
        D(2024, 1, 31),
    ]
    assert got["m12"].to_list() == [
        D(2023, 6, 30),
        D(2023, 5, 30),
        D(2023, 5, 15),
        D(2023, 3, 30),
        D(2023, 2, 28),
    ]


def test_months_back_rejects_negative_months():
    with pytest.raises(ValueError, match="months must be a whole number >= 0; got -1"):
        months_back(pl.col("d"), -1)


# ---------------------------------------------------------------- latest report


def test_latest_report_on_or_before_t_is_used():
    rows = [
        report(
            "R1",
            D(2024, 5, 31),
            bureau_score=610,
            paydex=70,
            lawsuits_12m=2,
            tax_arrears=True,
            years_in_business=7,
        ),
        report(
            "R1",
            T,
            bureau_score=620,
            paydex=72,
            lawsuits_12m=1,
            tax_arrears=False,
            years_in_business=8,
        ),
        report("R1", D(2024, 7, 1), bureau_score=999, paydex=99),  # after t: never used
    ]
    out = features(rows, master(("c1", T, "R1"), ("c1", D(2024, 6, 29), "R1")), [D(2024, 6, 29), T])
    assert out.select(
        "as_of_date", "bureau_score", "paydex", "lawsuits_12m", "tax_arrears", "years_in_business"
    ).rows() == [
        (D(2024, 6, 29), 610, 70, 2, 1, 7),
        (T, 620, 72, 1, 0, 8),
    ]
    assert out["bureau_report_age_days"].to_list() == [29, 0]


def test_output_columns_and_dtypes():
    out = features([report("R1", T)], master(("c1", T, "R1")), [T])
    assert tuple(out.columns) == ("customer_id", "as_of_date", *BUREAU_FEATURE_COLUMNS)
    assert out.schema["tax_arrears"] == pl.Int8
    assert out.schema["equity"] == MONEY
    assert out.schema["leverage"] == pl.Float64


def test_score_and_paydex_changes_use_calendar_month_ends():
    # t = 2024-06-30: 3 months back is 2024-03-31 (not 03-30), 6 months back is 2023-12-31.
    rows = [
        report("R1", D(2023, 12, 31), bureau_score=700, paydex=90),
        report("R1", D(2024, 3, 30), bureau_score=650, paydex=85),
        report("R1", D(2024, 3, 31), bureau_score=640, paydex=84),
        report("R1", T, bureau_score=600, paydex=75),
    ]
    out = features(rows, master(("c1", T, "R1")), [T])
    assert out.select(
        "bureau_score_change_3m", "bureau_score_change_6m", "paydex_change_3m", "paydex_change_6m"
    ).row(0) == (
        -40,
        -100,
        -9,
        -15,
    )


def test_change_is_null_without_an_old_enough_report():
    rows = [report("R1", D(2024, 4, 1), bureau_score=640), report("R1", T, bureau_score=600)]
    out = features(rows, master(("c1", T, "R1")), [T])
    assert out["bureau_score_change_3m"].to_list() == [None]
    assert out["bureau_score_change_6m"].to_list() == [None]


def test_change_is_null_when_the_latest_score_is_missing():
    rows = [report("R1", D(2024, 3, 31), bureau_score=640), report("R1", T, bureau_score=None)]
    out = features(rows, master(("c1", T, "R1")), [T])
    assert out.select("bureau_score", "bureau_score_change_3m").row(0) == (None, None)


# ---------------------------------------------------------------- statements


def test_ratios_from_latest_report_with_a_statement():
    with_statement = report(
        "R1",
        D(2024, 4, 30),
        **statement(
            revenue="2000.00",
            total_assets="1000.00",
            total_liabilities="600.00",
            current_assets="300.00",
            current_liabilities="200.00",
            net_income="100.00",
        ),
    )
    rows = [with_statement, report("R1", T)]  # the later report has no statement
    out = features(rows, master(("c1", T, "R1")), [T])
    r = out.row(0, named=True)
    assert r["leverage"] == pytest.approx(0.6)
    assert r["current_ratio"] == pytest.approx(1.5)
    assert r["net_margin"] == pytest.approx(0.05)
    assert r["log_revenue"] == pytest.approx(math.log(2000))
    assert r["equity"] == Decimal("400.00")
    assert r["bureau_report_age_days"] == 0  # age is of the latest report, not the statement


def test_zero_or_negative_denominators_give_null_ratios():
    rows = [
        report(
            "R1",
            T,
            **statement(
                revenue="0.00",
                total_assets="0.00",
                total_liabilities="50.00",
                current_assets="10.00",
                current_liabilities="-5.00",
                net_income="-3.00",
            ),
        )
    ]
    r = features(rows, master(("c1", T, "R1")), [T]).row(0, named=True)
    assert (r["leverage"], r["current_ratio"], r["net_margin"], r["log_revenue"]) == (
        None,
        None,
        None,
        None,
    )
    assert r["equity"] == Decimal("-50.00")


def test_missing_statement_input_gives_null_ratio_only_for_that_ratio():
    rows = [report("R1", T, **statement(total_assets="100.00", total_liabilities="25.00"))]
    r = features(rows, master(("c1", T, "R1")), [T]).row(0, named=True)
    assert r["leverage"] == pytest.approx(0.25)
    assert (r["current_ratio"], r["net_margin"], r["log_revenue"]) == (None, None, None)


# ---------------------------------------------------------------- joining to customers


def test_registration_ids_match_as_exact_text_with_leading_zeros():
    rows = [
        report("00123", T, bureau_score=300),
        report("123", T, bureau_score=900),  # another company (not a customer): ignored
        report("999", T, bureau_score=100),  # not a customer: ignored
    ]
    out = features(rows, master(("c1", T, "00123"), ("c2", T, "0123")), [T])
    assert out.select("customer_id", "bureau_score").rows() == [("c1", 300), ("c2", None)]


def test_customer_without_registration_id_keeps_a_row_of_nulls():
    out = features([report("R1", T)], master(("c1", T, None), ("c2", T, "R1")), [T])
    assert out["customer_id"].to_list() == ["c1", "c2"]
    assert out.row(0, named=True)["bureau_score"] is None
    assert out.row(1, named=True)["bureau_score"] == 500


def test_registration_id_in_force_at_t_is_used():
    rows = [report("OLD", D(2024, 5, 31), bureau_score=200), report("NEW", T, bureau_score=800)]
    m = master(("c1", D(2024, 5, 31), "OLD"), ("c1", T, "NEW"))
    out = features(rows, m, [D(2024, 5, 31), T])
    assert out["bureau_score"].to_list() == [200, 800]


def test_redelivered_report_keeps_the_copy_from_the_later_file():
    lineage = {"file_date": pl.Date(), "source_file": pl.String(), "line_number": pl.Int64()}
    rows = [
        {
            **report("R1", T, bureau_score=555),
            "file_date": D(2024, 7, 3),
            "source_file": "bureau/b.csv",
            "line_number": 2,
        },
        {
            **report("R1", T, bureau_score=444),
            "file_date": D(2024, 7, 1),
            "source_file": "bureau/a.csv",
            "line_number": 9,
        },
    ]
    lf = pl.DataFrame(rows, schema={**BUREAU.polars_schema, **lineage}).lazy()
    out = bureau_features(lf, master(("c1", T, "R1")), [T]).collect()
    assert out["bureau_score"].to_list() == [555]


def test_only_requested_as_of_dates_are_returned():
    m = master(("c1", D(2024, 5, 31), "R1"), ("c1", T, "R1"))
    out = features([report("R1", D(2024, 1, 1))], m, [T])
    assert out["as_of_date"].to_list() == [T]


def test_bureau_missing_column_is_rejected():
    lf = reports(report("R1", T)).drop("paydex")
    with pytest.raises(ValueError, match=r"bureau is missing column\(s\) \['paydex'\]"):
        bureau_features(lf, master(("c1", T, "R1")), [T])


def test_master_missing_registration_id_is_rejected():
    m = master(("c1", T, "R1")).drop("registration_id")
    with pytest.raises(
        ValueError, match=r"master_asof is missing column\(s\) \['registration_id'\]"
    ):
        bureau_features(reports(report("R1", T)), m, [T])


# ---------------------------------------------------------------- events


def test_event_columns_follow_the_schema_event_types():
    assert (
        tuple(f"events_{t.lower()}_{m}m" for t in BUREAU_EVENT_TYPES for m in (3, 12))
        == EVENT_FEATURE_COLUMNS
    )


def test_event_window_boundaries():
    # t = 2024-06-30: 3-month window (2024-03-31, 2024-06-30], 12-month window (2023-06-30, 2024-06-30]
    rows = [
        event("R1", D(2023, 6, 30)),  # exactly 12 months back: out of both
        event("R1", D(2023, 7, 1)),  # 12m only
        event("R1", D(2024, 3, 31)),  # exactly 3 months back: 12m only
        event("R1", D(2024, 4, 1)),  # both
        event("R1", T),  # at t: both
        event("R1", D(2024, 7, 1)),  # after t: neither
    ]
    out = event_features(events(*rows), master(("c1", T, "R1")), [T]).collect()
    assert out.select("events_lawsuit_3m", "events_lawsuit_12m").row(0) == (2, 4)


def test_event_window_for_a_mid_month_as_of_date():
    t = D(2024, 5, 15)  # 3 months back: 2024-02-15
    rows = [event("R1", D(2024, 2, 15)), event("R1", D(2024, 2, 16))]
    out = event_features(events(*rows), master(("c1", t, "R1")), [t]).collect()
    assert out["events_lawsuit_3m"].to_list() == [1]


def test_events_counted_per_type_and_same_day_events_count_twice():
    rows = [
        event("R1", D(2024, 6, 1), "TAX_ARREARS"),
        event("R1", D(2024, 6, 1), "TAX_ARREARS"),
        event("R1", D(2024, 1, 10), "EXECUTION_ORDER"),
        event("OTHER", D(2024, 6, 1), "LAWSUIT"),  # not a customer: ignored
    ]
    out = event_features(events(*rows), master(("c1", T, "R1")), [T]).collect().row(0, named=True)
    assert (out["events_tax_arrears_3m"], out["events_tax_arrears_12m"]) == (2, 2)
    assert (out["events_execution_order_3m"], out["events_execution_order_12m"]) == (0, 1)
    assert out["events_lawsuit_12m"] == 0


def test_event_counts_zero_without_events_and_null_without_registration_id():
    out = event_features(
        events(event("R9", T)), master(("c1", T, "R1"), ("c2", T, None)), [T]
    ).collect()
    assert out.schema["events_lawsuit_3m"] == pl.Int32
    assert out["events_lawsuit_3m"].to_list() == [0, None]
    assert out["events_owner_change_12m"].to_list() == [0, None]


def test_events_missing_column_is_rejected():
    with pytest.raises(ValueError, match=r"events is missing column\(s\) \['event_type'\]"):
        event_features(events(event("R1", T)).drop("event_type"), master(("c1", T, "R1")), [T])
