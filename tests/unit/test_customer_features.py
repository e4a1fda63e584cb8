"""Customer master as of a date: latest snapshot <= t, ties, backfill, onboarding after t."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import polars as pl
import pytest

from creditflow.core.schema import CUSTOMERS, LINEAGE_DTYPES
from creditflow.features.customers import (
    MASTER_ASOF_COLUMNS,
    customer_master_asof,
    months_between,
)

D = date
SCHEMA = {
    **CUSTOMERS.polars_schema,
    **{k: LINEAGE_DTYPES[k] for k in ("file_date", "source_file", "line_number")},
}


def snapshot(customer_id: str, file_date: date, **kw) -> dict:
    row = {
        "customer_id": customer_id,
        "customer_name": f"Name {customer_id}",
        "registration_id": f"REG{customer_id}",
        "industry": "C13",
        "region": "East",
        "onboarding_date": D(2023, 1, 15),
        "credit_limit": Decimal("1000.00"),
        "payment_terms_days": 30,
        "currency": "CNY",
        "file_date": file_date,
        "source_file": f"customers/customers_{file_date.isoformat()}.csv",
        "line_number": 2,
    }
    row.update(kw)
    return row


def frame(*rows: dict) -> pl.LazyFrame:
    return pl.DataFrame(list(rows), schema=SCHEMA).lazy()


def master(rows: list[dict], dates: list[date]) -> pl.DataFrame:
    return customer_master_asof(frame(*rows), dates).collect()


def test_picks_latest_snapshot_on_or_before_each_as_of_date():
    rows = [
        snapshot("c1", D(2024, 1, 10), credit_limit=Decimal("100.00")),
        snapshot("c1", D(2024, 3, 31), credit_limit=Decimal("300.00")),
        snapshot("c1", D(2024, 5, 5), credit_limit=Decimal("500.00")),
    ]
    out = master(rows, [D(2024, 1, 31), D(2024, 3, 31), D(2024, 4, 30)])
    assert out["as_of_date"].to_list() == [D(2024, 1, 31), D(2024, 3, 31), D(2024, 4, 30)]
    # the file dated exactly t is in force at t; the 2024-05-05 file is never used
    assert out["credit_limit"].to_list() == [
        Decimal("100.00"),
        Decimal("300.00"),
        Decimal("300.00"),
    ]
    assert out["master_backfilled"].to_list() == [False, False, False]


def test_output_columns_and_types():
    out = master([snapshot("c1", D(2024, 1, 1))], [D(2024, 1, 31)])
    assert tuple(out.columns) == MASTER_ASOF_COLUMNS
    assert out.schema["credit_limit"] == CUSTOMERS.column("credit_limit").dtype
    assert out.schema["months_since_onboarding"] == pl.Int32
    assert out.schema["master_backfilled"] == pl.Boolean


def test_same_file_date_later_source_file_wins_regardless_of_row_order():
    a = snapshot("c1", D(2024, 2, 1), region="North", source_file="customers/a_2024-02-01.csv")
    b = snapshot("c1", D(2024, 2, 1), region="South", source_file="customers/b_2024-02-01.csv")
    assert master([a, b], [D(2024, 2, 29)])["region"].to_list() == ["South"]
    assert master([b, a], [D(2024, 2, 29)])["region"].to_list() == ["South"]


def test_customer_without_snapshot_yet_uses_earliest_snapshot_and_is_flagged():
    rows = [
        snapshot("c1", D(2024, 6, 1), credit_limit=Decimal("600.00")),
        snapshot("c1", D(2024, 9, 1), credit_limit=Decimal("900.00")),
    ]
    out = master(rows, [D(2024, 3, 31), D(2024, 6, 30)])
    assert out["credit_limit"].to_list() == [Decimal("600.00"), Decimal("600.00")]
    assert out["master_backfilled"].to_list() == [True, False]


def test_backfilled_row_unchanged_by_a_later_file():
    rows = [snapshot("c1", D(2024, 6, 1), credit_limit=Decimal("600.00"))]
    before = master(rows, [D(2024, 3, 31)])
    after = master(
        [*rows, snapshot("c1", D(2024, 7, 1), credit_limit=Decimal("1.00"))], [D(2024, 3, 31)]
    )
    assert before.equals(after)


def test_backfill_edge_late_file_with_earlier_file_date_changes_backfilled_row():
    # Documented edge: a historical export delivered late, dated before every
    # snapshot held so far, becomes the earliest snapshot.
    rows = [snapshot("c1", D(2024, 6, 1), credit_limit=Decimal("600.00"))]
    late = snapshot("c1", D(2024, 5, 1), credit_limit=Decimal("500.00"))
    out = master([*rows, late], [D(2024, 3, 31)])
    assert out["credit_limit"].to_list() == [Decimal("500.00")]
    assert out["master_backfilled"].to_list() == [True]


def test_customer_onboarded_after_as_of_date_is_not_in_master():
    rows = [
        snapshot("c1", D(2024, 1, 1), onboarding_date=D(2023, 5, 1)),
        snapshot("c2", D(2024, 1, 1), onboarding_date=D(2024, 2, 15)),
    ]
    out = master(rows, [D(2024, 1, 31), D(2024, 2, 29)])
    assert out.select("customer_id", "as_of_date").rows() == [
        ("c1", D(2024, 1, 31)),
        ("c1", D(2024, 2, 29)),
        ("c2", D(2024, 2, 29)),
    ]


def test_months_since_onboarding_is_end_of_month_aware():
    frame_ = pl.DataFrame(
        {
            "start": [
                D(2024, 1, 31),
                D(2024, 1, 15),
                D(2024, 1, 15),
                D(2023, 1, 30),
                D(2024, 3, 31),
            ],
            "end": [D(2024, 2, 29), D(2024, 2, 14), D(2024, 2, 15), D(2024, 2, 29), D(2024, 3, 31)],
        }
    )
    got = frame_.select(months_between(pl.col("start"), pl.col("end")).alias("m"))["m"].to_list()
    assert got == [1, 0, 1, 13, 0]


def test_as_of_dates_are_sorted_and_deduplicated():
    out = master([snapshot("c1", D(2024, 1, 1))], [D(2024, 2, 29), D(2024, 1, 31), D(2024, 2, 29)])
    assert out["as_of_date"].to_list() == [D(2024, 1, 31), D(2024, 2, 29)]


def test_missing_lineage_column_is_rejected():
    lf = frame(snapshot("c1", D(2024, 1, 1))).drop("file_date")
    with pytest.raises(ValueError, match=r"customers is missing column\(s\) \['file_date'\]"):
        customer_master_asof(lf, [D(2024, 1, 31)])


def test_empty_as_of_dates_are_rejected():
    with pytest.raises(ValueError, match="at least one date"):
        customer_master_asof(frame(snapshot("c1", D(2024, 1, 1))), [])


def test_datetime_as_of_date_is_rejected():
    with pytest.raises(TypeError, match="datetime.date"):
        customer_master_asof(frame(snapshot("c1", D(2024, 1, 1))), [datetime(2024, 1, 31)])
