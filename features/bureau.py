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

import numpy as np
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
    sort_by_keys,
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


_DAY_BIAS = 1 << 31


def _text_codes(*columns: pl.Series) -> list[np.ndarray]:
    """Shared integer codes of text columns (equal codes <=> equal text; -1 for null)."""
    values = pl.concat([c.cast(pl.String).rename("v") for c in columns])
    codes = values.cast(pl.Categorical).to_physical().cast(pl.Int64).fill_null(-1).to_numpy()
    bounds = np.cumsum([0, *[c.len() for c in columns]])
    return [codes[bounds[i] : bounds[i + 1]] for i in range(len(columns))]


def _day_key(code: np.ndarray, day: pl.Series) -> np.ndarray:
    """Sortable int64 key of (code, day): one code's days are contiguous and in order."""
    days = day.cast(pl.Int32).cast(pl.Int64).to_numpy()
    return (code.astype(np.int64) << 32) | (days + _DAY_BIAS)


def _one_per_key(keys: np.ndarray, frame: pl.DataFrame, tie: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct ``keys`` and the row of ``frame`` kept for each: the last by the lineage ``tie``."""
    order = np.argsort(keys, kind="stable")
    k = keys[order]
    if k.size > 1 and bool((k[1:] == k[:-1]).any()):
        kept = (
            pl.DataFrame({"_k": keys, "_row": np.arange(keys.size, dtype=np.int64)})
            .hstack(frame.select(*tie))
            .sort("_k", *tie, nulls_last=False)
            .unique(subset=["_k"], keep="last", maintain_order=True)
        )
        return kept["_k"].to_numpy(), kept["_row"].to_numpy()
    return k, order


def _shifted_days(dates: pl.Series, months: int) -> pl.Series:
    """``months_back`` of each date (computed once per distinct date)."""
    days = dates.cast(pl.Int32).to_numpy()
    if dates.null_count() == 0 and days.size and int(days.max()) - int(days.min()) < 1 << 20:
        # few distinct dates in a short span (as-of dates): a lookup table instead of a sort
        present = np.bincount(days - days.min()) > 0
        distinct = (np.flatnonzero(present) + days.min()).astype(days.dtype)
        inverse = (np.cumsum(present) - 1)[days - days.min()]
    else:
        distinct, inverse = np.unique(days, return_inverse=True)
    back = pl.select(months_back(pl.Series(distinct, dtype=pl.Int32).cast(pl.Date), months)).to_series()
    return pl.Series(back.cast(pl.Int32).to_numpy()[inverse])


def _latest_at(keys: np.ndarray, rows: np.ndarray, code: np.ndarray, day: pl.Series) -> pl.Series:
    """``rows`` entry of the last key of ``code`` with a day on or before ``day`` (null if none or no code)."""
    q = _day_key(code, day)
    i = np.searchsorted(keys, q, side="right") - 1
    j = np.maximum(i, 0)
    ok = (code >= 0) & (i >= 0) & (keys[j] >> 32 == code) if keys.size else np.zeros(code.size, dtype=bool)
    return pl.select(pl.when(pl.Series(ok)).then(pl.Series(rows[j] if keys.size else j))).to_series()


def _gather(frame: pl.DataFrame, rows: pl.Series) -> pl.DataFrame:
    """``frame`` rows at ``rows`` (null rows give nulls)."""
    return frame.select(pl.all().gather(rows))


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
    grid = _filter_as_of(_customer_grid(master), as_of_dates).collect(engine="in-memory")

    # Point-in-time lookups as sorted integer keys (registration code, day): the latest
    # report on or before a day is one binary search, not a join of wide frames.
    have = bureau.collect_schema().names()
    tie = [c for c in (FILE_DATE, SOURCE_FILE, LINE_NUMBER) if c in have]
    raw = (
        bureau.select(*BUREAU.names, *tie)
        .filter(pl.col("registration_id").is_not_null() & pl.col("report_date").is_not_null())
        .collect(engine="in-memory")
    )
    r_code, g_code = _text_codes(raw["registration_id"], grid["registration_id"])
    keys, rows = _one_per_key(_day_key(r_code, raw["report_date"]), raw, tie)
    t = grid[AS_OF_DATE].cast(pl.Int32)
    latest_cols = ["report_date", "bureau_score", "paydex", "lawsuits_12m", "tax_arrears", "years_in_business"]
    pieces = [
        grid.select("customer_id", AS_OF_DATE),
        _gather(raw.select(latest_cols), _latest_at(keys, rows, g_code, t)),
    ]
    for m in CHANGE_MONTHS:
        at = _latest_at(keys, rows, g_code, _shifted_days(grid[AS_OF_DATE], m))
        pieces.append(
            _gather(
                raw.select(pl.col("bureau_score").alias(f"_bureau_score_{m}m"), pl.col("paydex").alias(f"_paydex_{m}m")),
                at,
            )
        )
    has_statement = raw.select(pl.any_horizontal(pl.col(c).is_not_null() for c in STATEMENT_FIELDS)).to_series()
    with_statement = has_statement.to_numpy()[rows]
    pieces.append(
        _gather(raw.select(STATEMENT_FIELDS), _latest_at(keys[with_statement], rows[with_statement], g_code, t))
    )
    out = pl.concat(pieces, how="horizontal")

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
    return sort_by_keys(features.select("customer_id", AS_OF_DATE, *BUREAU_FEATURE_COLUMNS)).lazy()


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
    grid = _filter_as_of(_customer_grid(master), as_of_dates).collect(engine="in-memory")
    ev = (
        events.select("registration_id", "event_date", "event_type")
        .filter(pl.col("event_date").is_not_null() & pl.col("registration_id").is_not_null())
        .collect(engine="in-memory")
    )
    # Counts in (start, t] per (registration, type): two binary searches in the sorted
    # (registration code, day) keys of that type's events.
    e_code, g_code = _text_codes(ev["registration_id"], grid["registration_id"])
    e_key = _day_key(e_code, ev["event_date"])
    e_type = ev["event_type"]
    has_id = g_code >= 0
    t_key = _day_key(g_code, grid[AS_OF_DATE])
    start_keys = {m: _day_key(g_code, _shifted_days(grid[AS_OF_DATE], m)) for m in EVENT_WINDOWS_MONTHS}
    counts = {}
    for event_type in BUREAU_EVENT_TYPES:
        keys = np.sort(e_key[(e_type == event_type).fill_null(False).to_numpy()])
        upto = np.searchsorted(keys, t_key, side="right")
        for m in EVENT_WINDOWS_MONTHS:
            n = upto - np.searchsorted(keys, start_keys[m], side="right")
            counts[event_feature_name(event_type, m)] = pl.select(
                pl.when(pl.Series(has_id)).then(pl.Series(n)).cast(pl.Int32)
            ).to_series()
    return sort_by_keys(grid.select("customer_id", AS_OF_DATE).with_columns(**{c: counts[c] for c in EVENT_FEATURE_COLUMNS})).lazy()
