"""Point in time: rows dated after t never change a master, bureau or event feature at as-of <= t.

Contract: every feature of an observation at t uses only "bureau rows with
report_date <= t, and events with event_date <= t. Nothing later may change it."
Customer snapshots dated after t change nothing either, except the documented
backfill (features.customers): a customer whose first snapshot is dated after t
gets its earliest snapshot, flagged ``master_backfilled``.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from creditflow.core.schema import (
    BUREAU,
    BUREAU_EVENT_TYPES,
    BUREAU_EVENTS,
    CUSTOMERS,
    LINEAGE_DTYPES,
)
from creditflow.features.bureau import bureau_features, event_features
from creditflow.features.customers import customer_master_asof

MONTH_ENDS = [date(2024, m + 1, 1) - timedelta(days=1) for m in range(1, 12)] + [date(2024, 12, 31)]
START, END = date(2023, 1, 1), date(2025, 12, 31)
CUSTOMER_IDS = ["c1", "c2", "c3", "c4"]
# c3 shares c2's company; "007" keeps its leading zeros; "R9" is not a customer
REG_OF = {"c1": "007", "c2": "R2", "c3": "R2", "c4": None}
REG_IDS = ["007", "7", "R2", "R9"]
KEY = ["customer_id", "as_of_date"]
LINEAGE = {k: LINEAGE_DTYPES[k] for k in ("file_date", "source_file", "line_number")}

money = st.one_of(
    st.none(), st.decimals(min_value=-1000, max_value=100000, places=2, allow_nan=False)
)


@st.composite
def snapshots(draw, min_date: date = START):
    cid = draw(st.sampled_from(CUSTOMER_IDS))
    file_date = draw(st.dates(min_date, END))
    return {
        "customer_id": cid,
        "customer_name": f"Name {cid}",
        "registration_id": draw(st.sampled_from([REG_OF[cid], REG_OF[cid], "R9"])),
        "industry": draw(st.sampled_from(["C13", "F51", None])),
        "region": "East",
        "onboarding_date": draw(st.dates(date(2022, 6, 1), date(2024, 12, 31))),
        "credit_limit": Decimal(draw(st.integers(0, 10**6))),
        "payment_terms_days": draw(st.integers(0, 120)),
        "currency": "CNY",
        "file_date": file_date,
        "source_file": f"customers/customers_{file_date.isoformat()}_{draw(st.integers(0, 3))}.csv",
        "line_number": draw(st.integers(2, 50)),
    }


@st.composite
def bureau_rows(draw, min_date: date = START):
    return {
        "registration_id": draw(st.sampled_from(REG_IDS)),
        "report_date": draw(st.dates(min_date, END)),
        "bureau_score": draw(st.one_of(st.none(), st.integers(0, 1000))),
        "paydex": draw(st.one_of(st.none(), st.integers(0, 100))),
        "lawsuits_12m": draw(st.integers(0, 5)),
        "tax_arrears": draw(st.booleans()),
        "revenue": draw(money),
        "total_assets": draw(money),
        "total_liabilities": draw(money),
        "current_assets": draw(money),
        "current_liabilities": draw(money),
        "net_income": draw(money),
        "years_in_business": draw(st.one_of(st.none(), st.integers(0, 50))),
    }


@st.composite
def event_rows(draw, min_date: date = START):
    return {
        "registration_id": draw(st.sampled_from(REG_IDS)),
        "event_date": draw(st.dates(min_date, END)),
        "event_type": draw(st.sampled_from(BUREAU_EVENT_TYPES)),
        "detail": None,
    }


def _frame(rows: list[dict], schema: dict) -> pl.LazyFrame:
    return pl.DataFrame(rows, schema=schema).lazy()


def _customers(rows):
    # within one file a customer appears once (contract): keep the first per (file, customer)
    seen, unique_rows = set(), []
    for r in rows:
        if (r["source_file"], r["customer_id"]) not in seen:
            seen.add((r["source_file"], r["customer_id"]))
            unique_rows.append(r)
    return _frame(unique_rows, {**CUSTOMERS.polars_schema, **LINEAGE})


def _upto(frame: pl.DataFrame, t: date) -> pl.DataFrame:
    return frame.filter(pl.col("as_of_date") <= t).sort(KEY)


@st.composite
def scenarios(draw):
    t = draw(st.sampled_from(MONTH_ENDS))
    after = t + timedelta(days=1)
    base_customers = draw(st.lists(snapshots(), min_size=1, max_size=8))
    return {
        "t": t,
        "customers": base_customers,
        "bureau": draw(st.lists(bureau_rows(), max_size=15)),
        "events": draw(st.lists(event_rows(), max_size=15)),
        "new_customers": draw(st.lists(snapshots(min_date=after), max_size=4)),
        "new_bureau": draw(st.lists(bureau_rows(min_date=after), min_size=1, max_size=8)),
        "new_events": draw(st.lists(event_rows(min_date=after), min_size=1, max_size=8)),
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_rows_dated_after_t_change_no_feature_at_or_before_t(s):
    t = s["t"]
    base_c = s["customers"]
    # appended files come after the base files, in landing order: they never reuse a base file name
    new_c = [{**r, "source_file": "late/" + r["source_file"]} for r in s["new_customers"]]

    m_before = customer_master_asof(_customers(base_c), MONTH_ENDS).collect()
    m_after = customer_master_asof(_customers(base_c + new_c), MONTH_ENDS).collect()
    before, after = _upto(m_before, t), _upto(m_after, t)

    # 1. rows in force from a snapshot dated <= t are untouched, and none appear or vanish
    assert before.filter(~pl.col("master_backfilled")).equals(
        after.filter(~pl.col("master_backfilled"))
    )

    # 2. backfilled rows change only for customers whose earliest snapshot a late file pre-dates
    earliest = {}
    for r in base_c:
        earliest[r["customer_id"]] = min(
            earliest.get(r["customer_id"], r["file_date"]), r["file_date"]
        )
    moved = {
        r["customer_id"] for r in new_c if r["file_date"] <= earliest.get(r["customer_id"], END)
    }
    stable = pl.col("master_backfilled") & ~pl.col("customer_id").is_in(sorted(moved))
    assert before.filter(stable).equals(after.filter(stable))

    # 3. bureau and event features at as-of <= t ignore bureau rows and events dated after t
    bureau_schema, events_schema = BUREAU.polars_schema, BUREAU_EVENTS.polars_schema
    b0 = _frame(s["bureau"], bureau_schema)
    b1 = _frame(s["bureau"] + s["new_bureau"], bureau_schema)
    e0 = _frame(s["events"], events_schema)
    e1 = _frame(s["events"] + s["new_events"], events_schema)
    master_lf = m_before.lazy()
    assert _upto(bureau_features(b0, master_lf, MONTH_ENDS).collect(), t).equals(
        _upto(bureau_features(b1, master_lf, MONTH_ENDS).collect(), t)
    )
    assert _upto(event_features(e0, master_lf, MONTH_ENDS).collect(), t).equals(
        _upto(event_features(e1, master_lf, MONTH_ENDS).collect(), t)
    )

    # 4. end to end: with the appended master too, rows not backfilled keep their bureau features
    kept = before.filter(~pl.col("master_backfilled")).select(KEY)
    bf0 = (
        bureau_features(b0, m_before.lazy(), MONTH_ENDS)
        .collect()
        .join(kept, on=KEY, how="semi")
        .sort(KEY)
    )
    bf1 = (
        bureau_features(b1, m_after.lazy(), MONTH_ENDS)
        .collect()
        .join(kept, on=KEY, how="semi")
        .sort(KEY)
    )
    assert bf0.equals(bf1)
