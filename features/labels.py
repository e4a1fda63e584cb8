"""Default dates, eligible observations and the ``default_12m`` label, with label maturity.

Definitions (binding, ``../shared/contract.md``):

- "**Default** of a customer at date ``t``: the first date on which (a) some
  invoice is 90 or more days past due with an outstanding amount above the
  materiality threshold (default 100 in base currency), or (b) a
  ``WRITE_OFF`` entry is posted, or (c) a ``BANKRUPTCY_FILING`` event is dated."
- "**Observation**: a customer at an as-of date ``t`` (month ends) who is not in
  default at ``t``, has ``onboarding_date <= t``, and has at least one invoice in
  ``(t - 365 days, t]``."
- "**Target** ``default_12m`` of an observation: 1 if the customer's default
  date falls in ``(t, t + 365 days]``, else 0. Observations whose window is not
  fully observed yet are not labelled."

Decisions:

- (a) is an exact day: ``due_date + 90`` of the first invoice that still owes
  more than the threshold (base currency, outstanding as in
  ``features.ledger``) at the end of that day. An invoice's outstanding amount
  never rises after its due date, so a later day cannot trigger it. Only days
  on or before ``data_end`` (the last day the data covers) count: an invoice
  still open when the data stops is not known to be unpaid 90 days later.
- (c) reaches customers through ``registration_id`` (exact text): every customer
  that any customer-master row links to the filing company defaults, several
  customers sharing one company included.
- "In default at ``t``" means ``default_date <= t``. In v1 a customer never
  returns to performing: after its first default it is never observed again.
- Label maturity: ``default_12m`` is null when ``t + 365 days > data_end`` (the
  last day the data covers), so the 12-month window is not fully observed.
- Ties on the first default day report the reason in contract order:
  ``DPD_90``, then ``WRITE_OFF``, then ``BANKRUPTCY``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from decimal import Decimal

import polars as pl

from creditflow.core.schema import LEDGER
from creditflow.features.customers import AS_OF_DATE, check_as_of_dates, require_columns, to_lazy
from creditflow.features.ledger import CashApplication, dpd_default_dates, ensure_cash_application

DEFAULT_REASONS: tuple[str, ...] = ("DPD_90", "WRITE_OFF", "BANKRUPTCY")
"""``default_reason`` values, in the order that breaks a tie on the same day."""
DEFAULT_DATE_COLUMNS: tuple[str, ...] = ("customer_id", "default_date", "default_reason")
LABEL = "default_12m"
HORIZON_DAYS = 365
OBSERVATION_WINDOW_DAYS = 365
BANKRUPTCY_FILING = "BANKRUPTCY_FILING"


def _check_date(value: object, name: str) -> date:
    if not isinstance(value, date) or hasattr(value, "hour"):
        raise TypeError(f"{name} must be a datetime.date; got {value!r}")
    return value


def month_ends(start: date, end: date) -> list[date]:
    """The last day of every month with ``start <= month end <= end``, in order."""
    start, end = _check_date(start, "start"), _check_date(end, "end")
    if start > end:
        raise ValueError(f"start must be on or before end; got start={start}, end={end}")
    out: list[date] = []
    year, month = start.year, start.month
    while True:
        nxt = date(year + month // 12, month % 12 + 1, 1)
        last = nxt - timedelta(days=1)
        if last > end:
            return out
        if last >= start:
            out.append(last)
        year, month = nxt.year, nxt.month


def default_dates(
    ledger: pl.LazyFrame | pl.DataFrame,
    fx_rates: pl.LazyFrame | pl.DataFrame | None,
    customers: pl.LazyFrame | pl.DataFrame,
    events: pl.LazyFrame | pl.DataFrame,
    *,
    base_currency: str,
    materiality_threshold: Decimal = Decimal("100"),
    data_end: date | None = None,
    cash: CashApplication | None = None,
) -> pl.LazyFrame:
    """Each customer's first default: columns customer_id, default_date, default_reason.

    One row per customer that ever defaulted (see the module docstring for
    the three reasons and ties). ``ledger``/``fx_rates`` as in
    ``features.ledger``; ``customers`` needs customer_id and registration_id
    (any snapshots); ``events`` the ``BUREAU_EVENTS`` columns registration_id,
    event_date, event_type. ``data_end`` is the last day the data covers
    (default: the latest ledger document date); a 90-days-past-due default
    must fall on or before it. ``cash`` reuses a ``cash_application`` of the
    same ledger. Sorted by customer_id.
    """
    if not isinstance(materiality_threshold, Decimal) or not materiality_threshold.is_finite() or materiality_threshold < 0:
        raise ValueError(f"materiality_threshold must be a finite Decimal >= 0; got {materiality_threshold!r}")
    led = to_lazy(ledger, "ledger")
    require_columns(led, LEDGER.names, "ledger")
    cust = to_lazy(customers, "customers")
    require_columns(cust, ("customer_id", "registration_id"), "customers")
    ev = to_lazy(events, "events")
    require_columns(ev, ("registration_id", "event_date", "event_type"), "events")
    if data_end is not None:
        data_end = _check_date(data_end, "data_end")
    cash = ensure_cash_application(led, fx_rates, base_currency, cash)

    dpd = dpd_default_dates(cash, materiality_threshold).lazy().with_columns(default_reason=pl.lit("DPD_90"))
    last_day = data_end if data_end is not None else led.select(pl.col("document_date").max()).collect().item()
    dpd = dpd.filter(pl.col("default_date") <= pl.lit(last_day, pl.Date)) if last_day is not None else dpd.head(0)
    write_off = (
        led.filter((pl.col("entry_type") == "WRITE_OFF") & pl.col("document_date").is_not_null())
        .group_by("customer_id")
        .agg(default_date=pl.col("document_date").min())
        .with_columns(default_reason=pl.lit("WRITE_OFF"))
    )
    filings = (
        ev.filter((pl.col("event_type") == BANKRUPTCY_FILING) & pl.col("event_date").is_not_null())
        .group_by("registration_id")
        .agg(default_date=pl.col("event_date").min())
    )
    links = (
        cust.select(pl.col("customer_id").cast(pl.String), pl.col("registration_id").cast(pl.String))
        .filter(pl.col("registration_id").is_not_null() & pl.col("customer_id").is_not_null())
        .unique()
    )
    bankruptcy = (
        links.join(filings.with_columns(pl.col("registration_id").cast(pl.String)), on="registration_id", how="inner")
        .group_by("customer_id")
        .agg(pl.col("default_date").min())
        .with_columns(default_reason=pl.lit("BANKRUPTCY"))
    )
    reason_rank = pl.col("default_reason").replace_strict(
        {r: i for i, r in enumerate(DEFAULT_REASONS)}, return_dtype=pl.Int8
    )
    columns = [pl.col("customer_id").cast(pl.String), pl.col("default_date").cast(pl.Date), "default_reason"]
    return (
        pl.concat([dpd.select(columns), write_off.select(columns), bankruptcy.select(columns)])
        .sort("customer_id", "default_date", reason_rank)
        .unique(subset=["customer_id"], keep="first", maintain_order=True)
        .select(DEFAULT_DATE_COLUMNS)
        .sort("customer_id")
    )


def _default_per_customer(default_dates_lf: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
    lf = to_lazy(default_dates_lf, "default_dates_lf")
    require_columns(lf, ("customer_id", "default_date"), "default_dates_lf")
    return lf.group_by("customer_id").agg(pl.col("default_date").min())


def observations(
    ledger: pl.LazyFrame | pl.DataFrame,
    customers_asof: pl.LazyFrame | pl.DataFrame,
    default_dates_lf: pl.LazyFrame | pl.DataFrame,
    as_of_dates: Sequence[date],
) -> pl.LazyFrame:
    """The eligible observations (customer_id, as_of_date), sorted.

    From the rows of ``customers_asof`` (customer_id, as_of_date,
    onboarding_date; the customer master in force) at ``as_of_dates``: kept
    when ``onboarding_date <= t``, the customer is not in default at ``t``
    (no ``default_date <= t`` in ``default_dates_lf``) and it has an
    ``INVOICE`` entry with ``document_date`` in ``(t - 365 days, t]`` (any
    currency). Uses nothing dated after ``t``.
    """
    dates = check_as_of_dates(as_of_dates)
    led = to_lazy(ledger, "ledger")
    require_columns(led, ("customer_id", "entry_type", "document_date"), "ledger")
    grid = to_lazy(customers_asof, "customers_asof")
    require_columns(grid, ("customer_id", AS_OF_DATE, "onboarding_date"), "customers_asof")
    defaults = _default_per_customer(default_dates_lf)

    invoices = (
        led.filter((pl.col("entry_type") == "INVOICE") & pl.col("document_date").is_not_null())
        .select(pl.col("customer_id").cast(pl.String), last_invoice=pl.col("document_date").cast(pl.Date))
        .unique()
        .sort("customer_id", "last_invoice")
    )
    rows = (
        grid.select(
            pl.col("customer_id").cast(pl.String),
            pl.col(AS_OF_DATE).cast(pl.Date),
            pl.col("onboarding_date").cast(pl.Date),
        )
        .filter(pl.col(AS_OF_DATE).is_in(pl.Series(dates, dtype=pl.Date).implode()))
        .unique(subset=["customer_id", AS_OF_DATE])
        .sort("customer_id", AS_OF_DATE)
    )
    window = timedelta(days=OBSERVATION_WINDOW_DAYS)
    return (
        rows.join_asof(
            invoices,
            left_on=AS_OF_DATE,
            right_on="last_invoice",
            by="customer_id",
            strategy="backward",
            check_sortedness=False,
        )
        .join(defaults, on="customer_id", how="left")
        .filter(
            (pl.col("onboarding_date") <= pl.col(AS_OF_DATE))
            & (pl.col("default_date").is_null() | (pl.col("default_date") > pl.col(AS_OF_DATE)))
            & (pl.col("last_invoice") > pl.col(AS_OF_DATE) - window)
        )
        .select("customer_id", AS_OF_DATE)
        .sort("customer_id", AS_OF_DATE)
    )


def labels(
    observations_lf: pl.LazyFrame | pl.DataFrame,
    default_dates_lf: pl.LazyFrame | pl.DataFrame,
    *,
    data_end: date,
) -> pl.LazyFrame:
    """The observations with ``default_12m`` (Int8) added.

    1 if the customer's default date falls in ``(t, t + 365 days]``, 0 if not,
    null when ``t + 365 days > data_end`` (the window is not fully observed;
    ``data_end`` is the last day the data covers). Row order is kept.
    """
    data_end = _check_date(data_end, "data_end")
    obs = to_lazy(observations_lf, "observations_lf")
    require_columns(obs, ("customer_id", AS_OF_DATE), "observations_lf")
    if LABEL in obs.collect_schema().names():
        raise ValueError(f"observations_lf already has a {LABEL} column")
    defaults = _default_per_customer(default_dates_lf).rename({"default_date": "_default_date"})
    t = pl.col(AS_OF_DATE)
    horizon_end = t + timedelta(days=HORIZON_DAYS)
    label = (
        pl.when(horizon_end > pl.lit(data_end))
        .then(pl.lit(None, pl.Int8))
        .when((pl.col("_default_date") > t) & (pl.col("_default_date") <= horizon_end))
        .then(pl.lit(1, pl.Int8))
        .otherwise(pl.lit(0, pl.Int8))
    )
    return (
        obs.join(defaults, on="customer_id", how="left", maintain_order="left")
        .with_columns(label.alias(LABEL))
        .drop("_default_date")
    )
