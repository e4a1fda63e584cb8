"""The observation panel: one row per observation (customer x month-end as-of date)
with every feature of a versioned feature set and the ``default_12m`` label.

Assembles the point-in-time pieces (all of them use only data dated on or before
the as-of date; see ``features.ledger``, ``features.customers``, ``features.bureau``,
``features.labels``) into the table models learn from and scoring reads:

    keys        customer_id, as_of_date
    features    the feature set (``features.registry``), in model column order
    context     money and bookkeeping columns the policy needs (exposure, aging
                amounts, credit limit and its currency, fx rate, equity) that are
                deliberately not model features (``PANEL_CONTEXT_COLUMNS``)
    label       default_12m (Int8; null while its 12-month window is not observed)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, TypeVar

import polars as pl

from creditflow.core.schema import FX_RATES
from creditflow.features.bureau import bureau_features, event_features
from creditflow.features.customers import customer_master_asof, sort_by_keys
from creditflow.features.labels import (
    LABEL,
    OBSERVATION_WINDOW_DAYS,
    default_dates,
    labels,
    month_ends,
    observations,
)
from creditflow.features.ledger import (
    AGING_COLUMNS,
    CashApplication,
    cash_application,
    in_strict_key_order,
    invoice_entries_in_window,
    ledger_features,
)
from creditflow.features.registry import FEATURE_SET_VERSION, feature_names

AS_OF_DATE = "as_of_date"
_T = TypeVar("_T")
_OBSERVED = "_observed"
FX_TO_BASE = "fx_to_base"
"""Base-currency units per unit of the credit limit's currency at the as-of date."""

SALES_MONEY = "avg_monthly_sales_12m_money"
"""avg_monthly_sales_12m as Decimal(18, 2) for the limit policy (the model feature is its float)."""

CONTEXT_COLUMNS: tuple[str, ...] = (
    "exposure",
    *AGING_COLUMNS,
    "unapplied_credit",
    "credit_limit",
    "currency",
    FX_TO_BASE,
    "equity",
    "registration_id",
    "master_backfilled",
)
"""Panel columns that are not model features: money and bookkeeping the policy needs."""


@dataclass(frozen=True)
class PanelResult:
    """The panel and what else the chain needs from the same pass over the data."""

    panel: pl.DataFrame
    default_dates: pl.DataFrame
    """customer_id, default_date, default_reason: every customer that ever defaulted."""
    as_of_dates: list[date]
    data_end: date
    feature_set: str


def data_end_of(ledger: pl.LazyFrame) -> date:
    """The last day the ledger covers: the latest ``document_date`` (labels mature against it)."""
    end = ledger.select(pl.col("document_date").max()).collect().item()
    if end is None:
        raise ValueError("the ledger has no entries: nothing to build features from")
    return end


def panel_as_of_dates(ledger: pl.LazyFrame, data_end: date) -> list[date]:
    """Month ends from the first month end on or after the first entry to the last on or before data_end."""
    start = ledger.select(pl.col("document_date").min()).collect().item()
    return month_ends(start, data_end)


def _ledger_end_and_month_ends(ledger: pl.LazyFrame) -> tuple[date, list[date]]:
    """:func:`data_end_of` and :func:`panel_as_of_dates` of it, from one select."""
    first, end = ledger.select(first=pl.col("document_date").min(), end=pl.col("document_date").max()).collect().row(0)
    if end is None:
        raise ValueError("the ledger has no entries: nothing to build features from")
    return end, month_ends(first, end)


def limit_fx_to_base(
    fx_rates: pl.LazyFrame | None, as_of_dates: Sequence[date], *, base_currency: str
) -> pl.LazyFrame:
    """(currency, as_of_date, fx_to_base): the latest rate on or before each as-of date.

    The base currency is 1. A currency with no rate yet at ``t`` has no row (its
    limit cannot be compared with base-currency exposure: utilization is null).
    """
    dates = pl.LazyFrame({AS_OF_DATE: sorted(set(as_of_dates))}, schema={AS_OF_DATE: pl.Date})
    base = dates.with_columns(currency=pl.lit(base_currency), **{FX_TO_BASE: pl.lit(Decimal(1)).cast(pl.Decimal(18, 8))})
    if fx_rates is None:
        return base.select("currency", AS_OF_DATE, FX_TO_BASE)
    rates = (
        fx_rates.select([c for c in FX_RATES.names])
        .filter(pl.col("currency") != base_currency)
        .unique(subset=["currency", "rate_date"], keep="last", maintain_order=True)
        .sort("currency", "rate_date")
    )
    currencies = rates.select("currency").unique()
    grid = currencies.join(dates, how="cross").sort("currency", AS_OF_DATE)
    joined = grid.join_asof(
        rates, left_on=AS_OF_DATE, right_on="rate_date", by="currency", strategy="backward",
        check_sortedness=False,
    ).filter(pl.col("rate_to_base").is_not_null())
    other = joined.select("currency", AS_OF_DATE, pl.col("rate_to_base").cast(pl.Decimal(18, 8)).alias(FX_TO_BASE))
    return pl.concat([base.select("currency", AS_OF_DATE, FX_TO_BASE), other])


def _aligned_panel(
    master: pl.DataFrame, parts: list[pl.DataFrame], defaults: pl.DataFrame, cash: CashApplication,
    dates: list[date], fx: pl.LazyFrame, data_end: date,
) -> pl.LazyFrame | None:
    """The observations with the master, every part, ``fx_to_base`` and the label, side by side
    without wide joins.

    Every part has one row per master row in the master's order (customer_id,
    as_of_date); the observation rule of ``labels.observations`` becomes a row mask,
    applied once. The fx rate and ``labels.labels`` are looked up on the two key
    columns only. None when the pieces are not aligned like that (the caller joins
    them instead).
    """
    keys = ["customer_id", AS_OF_DATE]
    if master.height == 0:
        return None
    # keys in strictly increasing order have no duplicates (the master comes sorted)
    if not in_strict_key_order(master) and master.select(pl.struct(keys).is_duplicated().any()).item():
        return None
    master_keys = master.select(keys)
    for part in parts:
        if part.height != master.height or not part.select(keys).equals(master_keys):
            return None
    t = master[AS_OF_DATE]
    in_window = invoice_entries_in_window(cash, master["customer_id"], t, dates, OBSERVATION_WINDOW_DAYS) > 0
    default_at = (
        master.select("customer_id")
        .join(defaults.group_by("customer_id").agg(pl.col("default_date").min()), on="customer_id", how="left",
              maintain_order="left")
        .get_column("default_date")
    )
    observed = master.select(
        (pl.col("onboarding_date").cast(pl.Date) <= pl.col(AS_OF_DATE))
        & (default_at.is_null() | (default_at > pl.col(AS_OF_DATE)))
        & pl.Series(in_window)
        & pl.col(AS_OF_DATE).is_in(pl.Series(dates, dtype=pl.Date).implode())
    ).to_series().fill_null(False)
    fx_col = (
        master.lazy().select("currency", AS_OF_DATE)
        .join(fx, on=["currency", AS_OF_DATE], how="left", maintain_order="left")
        .collect(engine="in-memory")
    )
    labelled = labels(master_keys.lazy(), defaults, data_end=data_end).collect(engine="in-memory")
    if fx_col.height != master.height or not labelled.select(keys).equals(master_keys):
        return None
    wide = master
    for part in parts:
        wide = wide.hstack([part[c] for c in part.columns if c not in wide.columns])
    extra = [fx_col[FX_TO_BASE], labelled[LABEL], observed.alias(_OBSERVED)]
    if any(c.name in wide.columns for c in extra):
        return None
    return wide.hstack(extra).lazy().filter(pl.col(_OBSERVED))


def _attempt(fn: Callable[..., _T], *args: Any, **kwargs: Any) -> tuple[_T | None, Exception | None]:
    """``(fn(*args, **kwargs), None)``, or ``(None, the exception)``: lets a thread hand its error over."""
    try:
        return fn(*args, **kwargs), None
    except Exception as exc:  # noqa: BLE001 - re-raised by _raise_or_value in the caller's order
        return None, exc


def _raise_or_value(outcome: tuple[_T | None, Exception | None]) -> _T:
    value, error = outcome
    if error is not None:
        raise error
    return value  # type: ignore[return-value]


def _collected(fn: Callable[..., pl.LazyFrame], *args: Any, **kwargs: Any) -> pl.DataFrame:
    return fn(*args, **kwargs).collect()


def _master_of(customers: pl.LazyFrame, dates: list[date]) -> pl.DataFrame:
    # the in-memory engine runs this plan (cross join, as-of join, sort) at about half the CPU
    return customer_master_asof(customers, dates).collect(engine="in-memory")


def _side_parts(
    master_job: Future, bureau: pl.LazyFrame | None, events: pl.LazyFrame, dates: list[date]
) -> tuple[tuple[pl.DataFrame | None, Exception | None], tuple[pl.DataFrame | None, Exception | None]]:
    """Outcomes of the bureau and event features (nothing when the master failed: its error comes first)."""
    master, error = master_job.result()
    if error is not None:
        return (None, None), (None, None)
    bureau_out = _attempt(_collected, bureau_features, bureau, master, dates) if bureau is not None else (None, None)
    return bureau_out, _attempt(_collected, event_features, events, master, dates)


def build_panel(
    *,
    ledger: pl.LazyFrame,
    customers: pl.LazyFrame,
    bureau: pl.LazyFrame | None,
    events: pl.LazyFrame | None,
    fx_rates: pl.LazyFrame | None,
    base_currency: str,
    materiality_threshold: Decimal = Decimal("100"),
    as_of_dates: Sequence[date] | None = None,
    data_end: date | None = None,
    feature_set: str = FEATURE_SET_VERSION,
) -> PanelResult:
    """Build the observation panel of ``feature_set`` at ``as_of_dates`` (default: every month end).

    Inputs are the bronze frames of each family (contract columns, typed).
    ``data_end`` (default: the latest ledger ``document_date``) decides label
    maturity: "Observations whose window is not fully observed yet are not labelled".
    """
    names = feature_names(feature_set)  # fails early on an unknown set
    if data_end or as_of_dates:
        end = data_end or data_end_of(ledger)
        dates = sorted(set(as_of_dates)) if as_of_dates else panel_as_of_dates(ledger, end)
    else:  # both ends of the ledger's dates in one pass over it
        end, dates = _ledger_end_and_month_ends(ledger)
    if not dates:
        raise ValueError(f"no month end between the first ledger entry and {end}: nothing to build")
    late = [d for d in dates if d > end]
    if late:
        raise ValueError(f"as-of dates after the end of the data ({end}) cannot be built yet: {late[:3]}")
    events = events if events is not None else pl.LazyFrame(
        schema={"registration_id": pl.String, "event_date": pl.Date, "event_type": pl.String, "detail": pl.String})

    # Two threads next to this one: the Polars-heavy master, bureau and event features run
    # while the numpy cash application runs here (Polars and large numpy operations release
    # the GIL). Every piece is a pure function of the inputs, so the result does not depend
    # on the interleaving; errors are raised in the order a sequential build meets them.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="panel") as pool:
        master_job = pool.submit(_attempt, _master_of, customers, dates)
        side_job = pool.submit(_side_parts, master_job, bureau, events, dates)
        cash_out = _attempt(cash_application, ledger, fx_rates, base_currency=base_currency)
        master = _raise_or_value(master_job.result())
        cash = _raise_or_value(cash_out)
        # Defaults are observed up to the end of the data: a 90-days-past-due date after it is
        # a projection (the payment may still come), not a default.
        defaults_job = pool.submit(
            _attempt, _collected, default_dates, ledger, fx_rates, customers, events, base_currency=base_currency,
            materiality_threshold=materiality_threshold, data_end=end, cash=cash)
        ledger_out = _attempt(_collected, ledger_features, ledger, fx_rates, master, dates,
                              base_currency=base_currency, cash=cash)
        defaults = _raise_or_value(defaults_job.result())
        parts = [_raise_or_value(ledger_out)]
        bureau_out, events_out = side_job.result()
        if bureau is not None:
            parts.append(_raise_or_value(bureau_out))
        parts.append(_raise_or_value(events_out))
    keys = ["customer_id", AS_OF_DATE]
    fx = limit_fx_to_base(fx_rates, dates, base_currency=base_currency)
    panel = _aligned_panel(master, parts, defaults, cash, dates, fx, end)
    aligned = panel is not None
    if panel is None:  # the general path: join the pieces on the keys
        obs = observations(ledger, master, defaults, dates)
        panel = obs.join(master.lazy(), on=keys, how="left", suffix="_master")
        for part in parts:
            panel = panel.join(part.lazy(), on=keys, how="left", suffix="_dup")
        panel = panel.join(fx, on=["currency", AS_OF_DATE], how="left", maintain_order="left")

    exposure_f = pl.col("exposure").cast(pl.Float64)  # Decimal -> float only for model ratios
    limit_base = pl.col("credit_limit").cast(pl.Float64) * pl.col(FX_TO_BASE).cast(pl.Float64)
    share = {
        f"{c}_share": pl.when(exposure_f > 0).then(pl.col(c).cast(pl.Float64) / exposure_f)
        for c in AGING_COLUMNS
    }
    panel = panel.with_columns(
        utilization=pl.when(limit_base > 0).then(exposure_f / limit_base),
        avg_monthly_sales_12m_f=pl.col("avg_monthly_sales_12m").cast(pl.Float64),
        **share,
    )
    schema = panel.collect_schema()
    missing = [n for n in names if n not in schema]
    if missing:
        raise ValueError(f"feature set {feature_set!r} lists features no producer made: {missing}")
    context = [c for c in CONTEXT_COLUMNS if c in schema]
    feature_exprs = [
        pl.col("avg_monthly_sales_12m_f").alias(n) if n == "avg_monthly_sales_12m"
        else pl.col(n).cast(pl.Categorical) if schema[n] == pl.String
        else pl.col(n)
        for n in names
    ]
    # The money version of avg_monthly_sales_12m stays for the policy under a context name.
    context_exprs = [pl.col(c) for c in context] + [pl.col("avg_monthly_sales_12m").alias(SALES_MONEY)]
    selected = panel.select(*keys, *feature_exprs, *context_exprs, *([LABEL] if aligned else []))
    labelled = selected if aligned else labels(selected, defaults, data_end=end)
    out = sort_by_keys(labelled.collect(engine="in-memory"))
    return PanelResult(panel=out, default_dates=defaults, as_of_dates=list(dates), data_end=end,
                       feature_set=feature_set)


__all__ = ["AS_OF_DATE", "LABEL", "PanelResult", "build_panel", "data_end_of", "limit_fx_to_base",
           "panel_as_of_dates"]
