"""Point-in-time bureau features: the latest report, its changes, financial ratios, alert counts.

Contract: every feature of an observation at ``t`` uses only "bureau rows with
``report_date <= t``, and events with ``event_date <= t``. Nothing later may
change it."

Bureau rows reach a customer through the ``registration_id`` the customer
master holds *at t* (``customer_master_asof``), compared as exact text: ids
keep their leading zeros and are never cast to numbers. Bureau rows and events
of companies that are not customers are ignored. Customers without a
registration id get null bureau features and null event counts (unknown, not
zero).

Months are calendar months back from ``t``, end-of-month aware (see
:func:`months_back`): 3 months before 2024-06-30 is 2024-03-31, 3 months
before 2024-05-15 is 2024-02-15, 1 month before 2024-03-30 is 2024-02-29.
"""

from __future__ import annotations

from datetime import date

import polars as pl
from creditflow.core.schema import (
    BUREAU,
    BUREAU_EVENT_TYPES,
    BUREAU_EVENTS,
    FILE_DATE,
    LINE_NUMBER,
    MONEY,
    SOURCE_FILE,
)
from creditflow.features.customers import (
    AS_OF_DATE,
    as_of_frame,
    check_as_of_dates,
    require_columns,
    to_lazy,
)

STATEMENT_FIELDS: tuple[str, ...] = (
    "revenue",
    "total_assets",
    "total_liabilities",
    "current_assets",
    "current_liabilities",
    "net_income",
)
"""Bureau columns from the latest annual financial statement."""

CHANGE_MONTHS: tuple[int, ...] = (3, 6)
EVENT_WINDOWS_MONTHS: tuple[int, ...] = (3, 12)

BUREAU_FEATURE_COLUMNS: tuple[str, ...] = (
    "bureau_score",
    "paydex",
    "lawsuits_12m",
    "tax_arrears",
    "bureau_report_age_days",
    *[f"{v}_change_{m}m" for v in ("bureau_score", "paydex") for m in CHANGE_MONTHS],
    "leverage",
    "current_ratio",
    "net_margin",
    "log_revenue",
    "equity",
    "years_in_business",
)
"""Columns of :func:`bureau_features` after ``customer_id, as_of_date``, in order.
``equity`` is Decimal(18, 2) money for the credit policy, not a model feature."""


def event_feature_name(event_type: str, months: int) -> str:
    """``events_<type>_<months>m``, e.g. ``events_lawsuit_3m``."""
    if event_type not in BUREAU_EVENT_TYPES:
        raise ValueError(f"event_type must be one of {BUREAU_EVENT_TYPES}; got {event_type!r}")
    return f"events_{event_type.lower()}_{months}m"


EVENT_FEATURE_COLUMNS: tuple[str, ...] = tuple(
    event_feature_name(t, m) for t in BUREAU_EVENT_TYPES for m in EVENT_WINDOWS_MONTHS
)
"""Columns of :func:`event_features` after ``customer_id, as_of_date``, in order."""

_MASTER_NEEDED = ("customer_id", AS_OF_DATE, "registration_id")


def months_back(day: pl.Expr, months: int) -> pl.Expr:
    """``day`` moved back ``months`` calendar months, end-of-month aware.

    A month end maps to the month end ``months`` earlier (2024-06-30 -> 2024-03-31
    for 3); any other day keeps its day number, clamped to the target month's
    length (2024-05-30 -> 2024-02-29 for 3).
    """
    if not isinstance(months, int) or months < 0:
        raise ValueError(f"months must be a whole number >= 0; got {months!r}")
    shifted = day.dt.offset_by(f"-{months}mo")
    return pl.when(day == day.dt.month_end()).then(shifted.dt.month_end()).otherwise(shifted)


def _customer_grid(master_asof: pl.LazyFrame) -> pl.LazyFrame:
    require_columns(master_asof, _MASTER_NEEDED, "master_asof")
    return master_asof.select(*_MASTER_NEEDED)


def _filter_as_of(master: pl.LazyFrame, as_of_dates: list[date]) -> pl.LazyFrame:
    dates = check_as_of_dates(as_of_dates)
    return master.join(as_of_frame(dates), on=AS_OF_DATE, how="semi")


def _latest_per_report(bureau: pl.LazyFrame) -> pl.LazyFrame:
    """One row per (registration_id, report_date).

    A company's report re-delivered in another file keeps the copy from the
    later file date, then source file, then line (when lineage is present), so
    the choice never depends on read order.
    """
    have = bureau.collect_schema().names()
    tie = [c for c in (FILE_DATE, SOURCE_FILE, LINE_NUMBER) if c in have]
    return (
        bureau.select(*BUREAU.names, *tie)
        .filter(pl.col("registration_id").is_not_null() & pl.col("report_date").is_not_null())
        .sort("registration_id", "report_date", *tie, nulls_last=False)
        .unique(subset=["registration_id", "report_date"], keep="last", maintain_order=True)
        .select(BUREAU.names)
    )


def _ratio(numerator: str, denominator: str) -> pl.Expr:
    # Money leaves Decimal here: ratios feed the model as Float64. A denominator
    # that is zero or negative has no meaning for these ratios -> null.
    num = pl.col(numerator).cast(pl.Float64)
    den = pl.col(denominator).cast(pl.Float64)
    return pl.when(den > 0).then(num / den).otherwise(None)


def bureau_features(
    bureau: pl.LazyFrame | pl.DataFrame,
    master_asof: pl.LazyFrame | pl.DataFrame,
    as_of_dates: list[date],
) -> pl.LazyFrame:
    """Bureau features of each customer at each as-of date ``t``.

    Inputs: bureau rows (contract columns of ``BUREAU``, lineage optional), the
    output of ``customer_master_asof`` and the as-of dates. Output: one row per
    ``master_asof`` row at those dates (customer_id, as_of_date, then
    ``BUREAU_FEATURE_COLUMNS``), sorted by customer_id, as_of_date:

    - from the latest report with ``report_date <= t``: ``bureau_score``,
      ``paydex``, ``lawsuits_12m``, ``tax_arrears`` (Int8 0/1),
      ``years_in_business`` and ``bureau_report_age_days`` (t - report_date);
    - ``bureau_score_change_3m`` / ``_6m`` and ``paydex_change_3m`` / ``_6m``:
      the latest value minus the value in the latest report on or before
      ``months_back(t, 3)`` / ``months_back(t, 6)``; null when either is missing;
    - from the latest report on or before ``t`` that carries a financial
      statement (any of ``STATEMENT_FIELDS`` present), all from that one
      statement: ``leverage`` = total_liabilities / total_assets,
      ``current_ratio`` = current_assets / current_liabilities, ``net_margin``
      = net_income / revenue, ``log_revenue`` = ln(revenue), and ``equity`` =
      total_assets - total_liabilities (Decimal(18, 2), for the credit policy's
      equity cap). A zero or negative denominator (or revenue for the log), or
      a missing input, gives null.
    """
    bureau = to_lazy(bureau, "bureau")
    master = to_lazy(master_asof, "master_asof")
    require_columns(bureau, BUREAU.names, "bureau")
    grid = _filter_as_of(_customer_grid(master), as_of_dates)

    reports = _latest_per_report(bureau).sort("registration_id", "report_date")
    left = (
        grid.filter(pl.col("registration_id").is_not_null())
        .with_columns(
            *[months_back(pl.col(AS_OF_DATE), m).alias(f"_t_minus_{m}m") for m in CHANGE_MONTHS]
        )
        .sort("registration_id", AS_OF_DATE)
    )

    latest = left.join_asof(
        reports.select(
            "registration_id",
            "report_date",
            "bureau_score",
            "paydex",
            "lawsuits_12m",
            "tax_arrears",
            "years_in_business",
        ),
        left_on=AS_OF_DATE,
        right_on="report_date",
        by="registration_id",
        strategy="backward",
        check_sortedness=False,  # both sides are sorted by by + on above
    )

    out = latest
    for m in CHANGE_MONTHS:
        past = reports.select(
            "registration_id",
            pl.col("report_date").alias(f"_report_date_{m}m"),
            pl.col("bureau_score").alias(f"_bureau_score_{m}m"),
            pl.col("paydex").alias(f"_paydex_{m}m"),
        )
        out = out.sort("registration_id", f"_t_minus_{m}m").join_asof(
            past,
            left_on=f"_t_minus_{m}m",
            right_on=f"_report_date_{m}m",
            by="registration_id",
            strategy="backward",
            check_sortedness=False,  # both sides are sorted by by + on above
        )

    statements = (
        reports.filter(pl.any_horizontal(pl.col(c).is_not_null() for c in STATEMENT_FIELDS))
        .select(
            "registration_id", pl.col("report_date").alias("_statement_date"), *STATEMENT_FIELDS
        )
        .sort("registration_id", "_statement_date")
    )
    out = out.sort("registration_id", AS_OF_DATE).join_asof(
        statements,
        left_on=AS_OF_DATE,
        right_on="_statement_date",
        by="registration_id",
        strategy="backward",
        check_sortedness=False,  # both sides are sorted by by + on above
    )

    revenue = pl.col("revenue").cast(pl.Float64)
    features = out.select(
        "customer_id",
        AS_OF_DATE,
        pl.col("bureau_score"),
        pl.col("paydex"),
        pl.col("lawsuits_12m"),
        pl.col("tax_arrears").cast(pl.Int8),
        (pl.col(AS_OF_DATE) - pl.col("report_date"))
        .dt.total_days()
        .cast(pl.Int32)
        .alias("bureau_report_age_days"),
        *[
            (pl.col(v) - pl.col(f"_{v}_{m}m")).alias(f"{v}_change_{m}m")
            for v in ("bureau_score", "paydex")
            for m in CHANGE_MONTHS
        ],
        _ratio("total_liabilities", "total_assets").alias("leverage"),
        _ratio("current_assets", "current_liabilities").alias("current_ratio"),
        _ratio("net_income", "revenue").alias("net_margin"),
        pl.when(revenue > 0).then(revenue.log()).otherwise(None).alias("log_revenue"),
        (pl.col("total_assets") - pl.col("total_liabilities")).cast(MONEY).alias("equity"),
        pl.col("years_in_business"),
    )
    # Customers without a registration id (or none at t) keep their row, all nulls.
    return (
        grid.select("customer_id", AS_OF_DATE)
        .join(features, on=["customer_id", AS_OF_DATE], how="left")
        .select("customer_id", AS_OF_DATE, *BUREAU_FEATURE_COLUMNS)
        .sort("customer_id", AS_OF_DATE)
    )


def event_features(
    events: pl.LazyFrame | pl.DataFrame,
    master_asof: pl.LazyFrame | pl.DataFrame,
    as_of_dates: list[date],
) -> pl.LazyFrame:
    """Counts of bureau alerts per type in the 3 and 12 months up to each as-of date ``t``.

    ``events_<type>_3m`` counts events of that type with ``event_date`` in
    ``(months_back(t, 3), t]``, ``events_<type>_12m`` in ``(months_back(t, 12), t]``:
    an event dated exactly 3 months before ``t`` is out of the 3-month window, one
    dated ``t`` is in. Every row counts (the contract has no uniqueness rule for
    events: two lawsuits on one day are two events). One row per
    ``master_asof`` row at those dates (customer_id, as_of_date, then
    ``EVENT_FEATURE_COLUMNS``), Int32 counts, null for customers without a
    registration id; sorted by customer_id, as_of_date.

    ``events_bankruptcy_filing_*`` are computed like the others, for audit and
    the watchlist, but a bankruptcy filing dated on or before ``t`` puts the
    customer in default at ``t`` (contract default trigger (c)), so these are
    zero on every modelling observation and are not model features (see
    ``features.registry``).
    """
    events = to_lazy(events, "events")
    master = to_lazy(master_asof, "master_asof")
    require_columns(events, BUREAU_EVENTS.required, "events")
    grid = _filter_as_of(_customer_grid(master), as_of_dates)

    longest = max(EVENT_WINDOWS_MONTHS)
    windows = grid.filter(pl.col("registration_id").is_not_null()).with_columns(
        *[months_back(pl.col(AS_OF_DATE), m).alias(f"_start_{m}m") for m in EVENT_WINDOWS_MONTHS]
    )
    hits = windows.join(
        events.select("registration_id", "event_date", "event_type").filter(
            pl.col("event_date").is_not_null()
        ),
        on="registration_id",
        how="inner",
    ).filter(
        (pl.col("event_date") <= pl.col(AS_OF_DATE))
        & (pl.col("event_date") > pl.col(f"_start_{longest}m"))
    )
    counts = hits.group_by("customer_id", AS_OF_DATE).agg(
        ((pl.col("event_type") == event_type) & (pl.col("event_date") > pl.col(f"_start_{m}m")))
        .sum()
        .cast(pl.Int32)
        .alias(event_feature_name(event_type, m))
        for event_type in BUREAU_EVENT_TYPES
        for m in EVENT_WINDOWS_MONTHS
    )
    has_id = pl.col("registration_id").is_not_null()
    return (
        grid.join(counts, on=["customer_id", AS_OF_DATE], how="left")
        .select(
            "customer_id",
            AS_OF_DATE,
            *[
                pl.when(has_id).then(pl.col(c).fill_null(0)).otherwise(None).cast(pl.Int32).alias(c)
                for c in EVENT_FEATURE_COLUMNS
            ],
        )
        .sort("customer_id", AS_OF_DATE)
    )
