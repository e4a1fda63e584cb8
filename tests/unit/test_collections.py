"""Collections: who is listed, aging buckets, provisions and the recommended action."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import polars as pl
import pytest

from creditflow.core.schema import COLLECTIONS
from creditflow.policy.collections import build_collections
from creditflow.policy.policy import load_policy

AS_OF = dt.date(2026, 1, 31)
MONEY = pl.Decimal(18, 2)
SCHEMA = {
    "as_of_date": pl.Date,
    "customer_id": pl.String,
    "default_date": pl.Date,
    "dpd_max": pl.Int32,
    "aging_current": MONEY,
    "aging_1_30": MONEY,
    "aging_31_90": MONEY,
    "aging_91_180": MONEY,
    "aging_over_180": MONEY,
}


@pytest.fixture(scope="module")
def policy():
    return load_policy()


def _row(**kw) -> dict:
    row = {
        "as_of_date": AS_OF,
        "customer_id": "C1",
        "default_date": dt.date(2025, 12, 15),
        "dpd_max": 100,
        "aging_current": D("1000.00"),
        "aging_1_30": D("500.50"),
        "aging_31_90": D("2000.25"),
        "aging_91_180": D("3000.00"),
        "aging_over_180": D("0"),
    }
    row.update(kw)
    return row


def _build(policy, *rows, extra: dict | None = None) -> pl.DataFrame:
    frame = pl.DataFrame(list(rows), schema=SCHEMA)
    if extra:
        frame = frame.with_columns(**{k: pl.Series(v) for k, v in extra.items()})
    return build_collections(frame, policy)


def test_buckets_outstanding_and_provision(policy):
    rec = _build(policy, _row()).row(0, named=True)
    assert rec["bucket_0_30"] == D("1500.50")  # current + 1-30
    assert rec["bucket_31_90"] == D("2000.25")
    assert rec["bucket_91_180"] == D("3000.00")
    assert rec["bucket_over_180"] == D("0.00")
    assert rec["outstanding"] == D("6500.75")
    assert rec["outstanding"] == sum(
        rec[b] for b in ("bucket_0_30", "bucket_31_90", "bucket_91_180", "bucket_over_180")
    )
    # 1500.50 x 0.20 + 2000.25 x 0.40 + 3000 x 0.65 = 300.10 + 800.10 + 1950.00
    assert rec["provision"] == D("3050.20")
    assert rec["max_days_past_due"] == 100
    assert rec["default_date"] == dt.date(2025, 12, 15)


def test_provision_is_rounded_once_on_the_total(policy):
    # 0.01 x 0.20 + 0.01 x 0.40 = 0.006 -> 0.01 (rounding each bucket first would give 0.00)
    rec = _build(
        policy,
        _row(
            aging_current=D("0.01"), aging_1_30=D("0"), aging_31_90=D("0.01"), aging_91_180=D("0")
        ),
    ).row(0, named=True)
    assert rec["provision"] == D("0.01")


def test_missing_aging_counts_as_zero(policy):
    rec = _build(policy, _row(aging_1_30=None, aging_91_180=None)).row(0, named=True)
    assert rec["bucket_0_30"] == D("1000.00")
    assert rec["outstanding"] == D("3000.25")


def test_only_customers_in_default_at_the_as_of_date(policy):
    out = _build(
        policy,
        _row(customer_id="IN", default_date=AS_OF),
        _row(customer_id="LATER", default_date=AS_OF + dt.timedelta(days=1)),
        _row(customer_id="NEVER", default_date=None),
    )
    assert out.get_column("customer_id").to_list() == ["IN"]


@pytest.mark.parametrize(
    ("dpd", "over_180", "action"),
    [
        (59, "0", "DUNNING"),
        (60, "0", "STOP_SUPPLY"),
        (119, "100000", "STOP_SUPPLY"),  # big but not old enough for legal action
        (120, "43499.24", "STOP_SUPPLY"),  # outstanding 6500.75 + 43499.24 = 49,999.99
        (120, "43499.25", "LEGAL_ACTION"),  # outstanding 50,000.00
        (359, "100000", "LEGAL_ACTION"),
        (360, "0", "WRITE_OFF_REVIEW"),
    ],
)
def test_action_ladder_by_age_and_amount(policy, dpd, over_180, action):
    out = _build(policy, _row(dpd_max=dpd, aging_over_180=D(over_180)))
    assert out.get_column("recommended_action").to_list() == [action]


def test_bankruptcy_goes_to_write_off_review_at_any_age(policy):
    out = _build(
        policy,
        _row(customer_id="B", dpd_max=10),
        _row(customer_id="N", dpd_max=10),
        extra={"has_bankruptcy_filing": [True, False]},
    )
    assert out.get_column("recommended_action").to_list() == ["WRITE_OFF_REVIEW", "DUNNING"]


def test_output_has_the_contract_columns(policy):
    out = _build(policy, _row(customer_id="B"), _row(customer_id="A"))
    assert out.schema == COLLECTIONS.polars_schema
    assert out.get_column("customer_id").to_list() == ["A", "B"]


def test_negative_aging_is_rejected(policy):
    with pytest.raises(ValueError, match="aging amounts must be >= 0"):
        _build(policy, _row(aging_31_90=D("-5")))


def test_float_aging_is_rejected(policy):
    frame = pl.DataFrame([_row()], schema=SCHEMA).with_columns(
        pl.col("aging_current").cast(pl.Float64)
    )
    with pytest.raises(ValueError, match="aging_current must be a Decimal"):
        build_collections(frame, policy)
