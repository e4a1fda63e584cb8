"""Customer master as of a date: which snapshot of the slowly changing master is in force.

Contract: "A later file's row for a customer supersedes an earlier one (the
master is a slowly changing snapshot: keep history, latest file date wins at
any as-of)". The file date is the bronze lineage column ``file_date`` (the date
in the landing file's name).

Rules, in order:

1. At as-of date ``t`` a customer's master row is its snapshot with the latest
   ``file_date <= t``. Two rows with the same file date (two files dated the
   same day) are ordered by ``source_file`` name, then ``line_number``: the
   later one wins, so the choice never depends on read order.
2. A customer is in the master at ``t`` only if the chosen row's
   ``onboarding_date <= t``.
3. Backfill (the one documented exception to point in time for static master
   attributes): a customer onboarded on or before ``t`` but whose first
   snapshot file is dated after ``t`` (an ERP export taken after the customer
   was set up, as in the demo data) gets its *earliest* snapshot, as a credit
   department would, and ``master_backfilled = True`` marks the row. Appending
   files dated later than the current earliest snapshot cannot change this
   row. Edge: a file appended later whose file date is *earlier* than every
   snapshot held so far (a historical export delivered late) does change the
   backfilled rows of the as-of dates before it; such rows are visible through
   the flag. Rows with ``master_backfilled = False`` depend only on files dated
   ``<= t``.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from creditflow.core.schema import CUSTOMERS, FILE_DATE, LINE_NUMBER, SOURCE_FILE

AS_OF_DATE = "as_of_date"
MASTER_BACKFILLED = "master_backfilled"
MONTHS_SINCE_ONBOARDING = "months_since_onboarding"

MASTER_ATTRIBUTES: tuple[str, ...] = tuple(c for c in CUSTOMERS.names if c != "customer_id")
"""Contract columns carried from the chosen snapshot, in contract order."""

MASTER_ASOF_COLUMNS: tuple[str, ...] = (
    "customer_id",
    AS_OF_DATE,
    *MASTER_ATTRIBUTES,
    MONTHS_SINCE_ONBOARDING,
    MASTER_BACKFILLED,
)
"""Columns of :func:`customer_master_asof`, in order."""

_LINEAGE_NEEDED = (FILE_DATE, SOURCE_FILE, LINE_NUMBER)


def check_as_of_dates(as_of_dates: object) -> list[date]:
    """Validate as-of dates (a non-empty list of calendar dates) and return them sorted, unique."""
    if isinstance(as_of_dates, (str, bytes, date)) or not hasattr(as_of_dates, "__iter__"):
        raise TypeError(f"as_of_dates must be a list of dates; got {type(as_of_dates).__name__}")
    dates = list(as_of_dates)  # type: ignore[call-overload]
    if not dates:
        raise ValueError("as_of_dates must hold at least one date; got an empty list")
    for d in dates:
        # datetime is a subclass of date: a time of day has no meaning for an as-of date.
        if not isinstance(d, date) or hasattr(d, "hour"):
            raise TypeError(f"as_of_dates must hold datetime.date values; got {d!r}")
    return sorted(set(dates))


def as_of_frame(as_of_dates: list[date]) -> pl.LazyFrame:
    """A one-column frame of the as-of dates (dtype Date)."""
    return pl.LazyFrame({AS_OF_DATE: as_of_dates}, schema={AS_OF_DATE: pl.Date()})


def require_columns(frame: pl.LazyFrame, needed: tuple[str, ...] | list[str], what: str) -> None:
    """Fail with the missing column names when ``frame`` lacks any of ``needed``."""
    have = frame.collect_schema().names()
    missing = [c for c in needed if c not in have]
    if missing:
        raise ValueError(f"{what} is missing column(s) {missing}; has {have}")


def to_lazy(frame: pl.LazyFrame | pl.DataFrame, what: str) -> pl.LazyFrame:
    if isinstance(frame, pl.DataFrame):
        return frame.lazy()
    if isinstance(frame, pl.LazyFrame):
        return frame
    raise TypeError(f"{what} must be a polars LazyFrame or DataFrame; got {type(frame).__name__}")


def sort_by_keys(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` sorted by customer_id, as_of_date; returned as is when it already is (a cheap check)."""
    c, d = pl.col("customer_id"), pl.col(AS_OF_DATE)
    if frame.height < 2:
        return frame.sort("customer_id", AS_OF_DATE)
    in_order = frame.select(
        ((c.shift(-1) > c) | ((c.shift(-1) == c) & (d.shift(-1) >= d))).head(frame.height - 1).all(ignore_nulls=False)
        & c.is_not_null().all()
        & d.is_not_null().all()
    ).item()
    return frame if in_order is True else frame.sort("customer_id", AS_OF_DATE)


def months_between(start: pl.Expr, end: pl.Expr) -> pl.Expr:
    """Whole calendar months from ``start`` to ``end`` (end-of-month aware).

    A month has elapsed when ``start`` moved forward by that many calendar
    months (day clamped to the month's length) is on or before ``end``:
    2024-01-31 -> 2024-02-29 is 1 month, 2024-01-15 -> 2024-02-14 is 0.
    """
    raw = (end.dt.year() - start.dt.year()).cast(pl.Int32) * 12 + (
        end.dt.month().cast(pl.Int32) - start.dt.month().cast(pl.Int32)
    )
    short = (end.dt.day() < start.dt.day()) & (end != end.dt.month_end())
    return (raw - short.cast(pl.Int32)).cast(pl.Int32)


def customer_master_asof(
    customers: pl.LazyFrame | pl.DataFrame, as_of_dates: list[date]
) -> pl.LazyFrame:
    """The customer master in force at each as-of date.

    Input: bronze/silver customer rows (contract columns of ``CUSTOMERS`` plus
    lineage ``file_date``, ``source_file``, ``line_number``).
    Output: one row per customer onboarded on or before ``t`` and ``t``, with
    the contract attributes of the snapshot in force at ``t`` (latest
    ``file_date <= t``; see the module docstring for ties and the backfill of
    customers whose first snapshot is dated after ``t``), plus
    ``months_since_onboarding`` (whole calendar months from ``onboarding_date``
    to ``t``) and ``master_backfilled``. Sorted by customer_id, as_of_date.
    """
    customers = to_lazy(customers, "customers")
    dates = check_as_of_dates(as_of_dates)
    require_columns(customers, (*CUSTOMERS.names, *_LINEAGE_NEEDED), "customers")

    # One row per (customer, file date): the later source file, then the later line wins.
    per_file_date = (
        customers.select("customer_id", *MASTER_ATTRIBUTES, *_LINEAGE_NEEDED)
        .filter(pl.col("customer_id").is_not_null() & pl.col(FILE_DATE).is_not_null())
        .sort("customer_id", FILE_DATE, SOURCE_FILE, LINE_NUMBER, nulls_last=False)
        .unique(subset=["customer_id", FILE_DATE], keep="last", maintain_order=True)
    )
    snapshots = per_file_date.select("customer_id", FILE_DATE, *MASTER_ATTRIBUTES).sort(
        "customer_id", FILE_DATE
    )
    earliest = (
        per_file_date.sort("customer_id", FILE_DATE)
        .unique(subset=["customer_id"], keep="first", maintain_order=True)
        .select("customer_id", *MASTER_ATTRIBUTES)
    )

    grid = (
        snapshots.select("customer_id")
        .unique()
        .join(as_of_frame(dates), how="cross")
        .sort("customer_id", AS_OF_DATE)
    )
    in_force = grid.join_asof(
        snapshots,
        left_on=AS_OF_DATE,
        right_on=FILE_DATE,
        by="customer_id",
        strategy="backward",
        check_sortedness=False,  # both sides are sorted by by + on above
    )
    has_snapshot = pl.col(FILE_DATE).is_not_null()
    chosen = in_force.join(earliest, on="customer_id", how="left", suffix="_earliest").select(
        "customer_id",
        AS_OF_DATE,
        *[
            pl.when(has_snapshot).then(pl.col(c)).otherwise(pl.col(f"{c}_earliest")).alias(c)
            for c in MASTER_ATTRIBUTES
        ],
        (~has_snapshot).alias(MASTER_BACKFILLED),
    )
    return (
        chosen.filter(pl.col("onboarding_date") <= pl.col(AS_OF_DATE))
        .with_columns(
            months_between(pl.col("onboarding_date"), pl.col(AS_OF_DATE)).alias(
                MONTHS_SINCE_ONBOARDING
            )
        )
        .select(MASTER_ASOF_COLUMNS)
        .sort("customer_id", AS_OF_DATE)
    )
