"""The early-warning list: performing customers showing a warning sign.

Triggers (thresholds and severities from ``policy.watchlist.triggers``):

- ``PD_JUMP``: ``pd_12m / previous pd >= min_ratio`` and ``pd_12m - previous pd >= min_increase``
  (compared with a 1e-12 tolerance: 0.01 -> 0.03 is a rise of 0.02 although floats say 0.0199..).
- ``GRADE_DOWN_2``: grade number at least ``min_notches`` worse than the previous run's
  published ``risk_grade``.
- ``DPD_30`` / ``DPD_60``: ``dpd_max`` above ``over_days``; only the worse one is listed.
- ``OVER_LIMIT``: ``utilization`` above ``utilization_over``.
- ``BUREAU_SCORE_DROP``: ``bureau_score_chg_3m <= -min_drop``.
- ``NEW_LAWSUIT`` / ``EXECUTION_ORDER``: a lawsuit / execution order in the last 3 months.
- ``TAX_ARREARS``: the bureau reports tax arrears.

A missing value never fires a trigger. Migration triggers need the previous run's
score for the customer. A customer's severity is the highest severity of its
triggers, raised one level (LOW -> MEDIUM -> HIGH) when it has at least
``escalate_at_trigger_count`` triggers. Customers in default at the as-of date are
not listed: they are on the collections list.

``since_date``: the *previous run* is the latest as-of date before this one in
``previous_scores`` (every run publishes scores, even when its watchlist is empty),
else in ``previous_watchlist``. A customer listed at exactly that date keeps its
``since_date``; anyone else starts at this run's ``as_of_date``.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from creditflow.core.schema import WATCHLIST
from creditflow.models.scoring import grade_number_expr
from creditflow.policy.policy import (
    CreditPolicy,
    as_frame,
    require_columns,
    require_pd,
    to_output,
)

INPUT_COLUMNS = (
    "as_of_date",
    "customer_id",
    "pd_12m",
    "dpd_max",
    "utilization",
    "events_lawsuit_3m",
    "events_execution_order_3m",
    "bureau_score_chg_3m",
    "tax_arrears",
)

TRIGGER_ORDER = (
    "PD_JUMP",
    "GRADE_DOWN_2",
    "DPD_30",
    "DPD_60",
    "OVER_LIMIT",
    "BUREAU_SCORE_DROP",
    "NEW_LAWSUIT",
    "TAX_ARREARS",
    "EXECUTION_ORDER",
)
"""The order in which triggers are listed (the contract's order)."""

_PD_TOLERANCE = 1e-12  # so that a PD rising by exactly the threshold fires despite float noise
_LEVEL = {"LOW": 1, "MEDIUM": 2, "HIGH": 3}
_SEVERITY = {v: k for k, v in _LEVEL.items()}


def _single_as_of(df: pl.DataFrame, what: str) -> dt.date | None:
    dates = df.get_column("as_of_date").unique()
    if dates.len() > 1:
        raise ValueError(
            f"{what} must hold one as_of_date (one run); got {dates.len()}: {sorted(dates.to_list())[:3]}"
        )
    return dates.item() if dates.len() else None


def _previous_as_of(
    as_of: dt.date, previous_scores: pl.DataFrame | None, previous_watchlist: pl.DataFrame | None
) -> dt.date | None:
    for prev in (previous_scores, previous_watchlist):
        if prev is not None:
            return prev.filter(pl.col("as_of_date") < as_of).get_column("as_of_date").max()
    return None


def _trigger_exprs(policy: CreditPolicy, has_previous: bool) -> dict[str, pl.Expr]:
    t = policy.watchlist.triggers
    pd_ = pl.col("pd_12m")
    prev_pd = pl.col("_prev_pd")
    dpd = pl.col("dpd_max")
    exprs: dict[str, pl.Expr] = {}
    if has_previous:
        exprs["PD_JUMP"] = (pd_ >= prev_pd * t.PD_JUMP.min_ratio - _PD_TOLERANCE) & (
            pd_ - prev_pd >= t.PD_JUMP.min_increase - _PD_TOLERANCE
        )
        exprs["GRADE_DOWN_2"] = (
            pl.col("_grade_n") - pl.col("_prev_grade_n") >= t.GRADE_DOWN_2.min_notches
        )
    dpd60 = dpd > t.DPD_60.over_days if t.DPD_60.enabled else pl.lit(False)
    exprs["DPD_60"] = dpd60
    exprs["DPD_30"] = (dpd > t.DPD_30.over_days) & ~dpd60.fill_null(False)
    exprs["OVER_LIMIT"] = pl.col("utilization") > t.OVER_LIMIT.utilization_over
    exprs["BUREAU_SCORE_DROP"] = pl.col("bureau_score_chg_3m") <= -t.BUREAU_SCORE_DROP.min_drop
    exprs["NEW_LAWSUIT"] = pl.col("events_lawsuit_3m") > 0
    exprs["TAX_ARREARS"] = pl.col("tax_arrears").cast(pl.Int64) == 1
    exprs["EXECUTION_ORDER"] = pl.col("events_execution_order_3m") > 0
    return {name: expr.fill_null(False) for name, expr in exprs.items() if getattr(t, name).enabled}


def build_watchlist(
    current: pl.DataFrame | pl.LazyFrame,
    previous_scores: pl.DataFrame | pl.LazyFrame | None,
    previous_watchlist: pl.DataFrame | pl.LazyFrame | None,
    policy: CreditPolicy,
) -> pl.DataFrame:
    """The ``watchlist`` table for one run (one as-of date).

    ``current``: one row per customer with :data:`INPUT_COLUMNS` (and optionally
    ``default_date``); ``previous_scores``: published ``scores`` rows of earlier runs
    (``as_of_date``, ``customer_id``, ``pd_12m``, ``risk_grade``) or None;
    ``previous_watchlist``: published ``watchlist`` rows of earlier runs or None.
    Output: the contract's WATCHLIST columns and dtypes, sorted by customer_id.
    """
    df = as_frame(current, "watchlist frame")
    require_columns(df, INPUT_COLUMNS, "watchlist frame")
    require_pd(df, "watchlist frame")
    as_of = _single_as_of(df, "watchlist frame")
    prev_scores = (
        as_frame(previous_scores, "previous_scores") if previous_scores is not None else None
    )
    prev_watch = (
        as_frame(previous_watchlist, "previous_watchlist")
        if previous_watchlist is not None
        else None
    )
    if prev_scores is not None:
        require_columns(
            prev_scores, ["as_of_date", "customer_id", "pd_12m", "risk_grade"], "previous_scores"
        )
    if prev_watch is not None:
        require_columns(
            prev_watch, ["as_of_date", "customer_id", "since_date"], "previous_watchlist"
        )
    if as_of is None:
        return pl.DataFrame(schema=WATCHLIST.polars_schema)

    if "default_date" in df.columns:
        df = df.filter(
            pl.col("default_date").is_null() | (pl.col("default_date") > pl.col("as_of_date"))
        )
    prev_as_of = _previous_as_of(as_of, prev_scores, prev_watch)

    df = df.with_columns(_grade_n=grade_number_expr(pl.col("pd_12m"), policy))
    has_previous = prev_scores is not None and prev_as_of is not None
    if has_previous:
        prev = prev_scores.filter(pl.col("as_of_date") == prev_as_of).select(
            "customer_id",
            _prev_pd=pl.col("pd_12m"),
            _prev_grade_n=pl.col("risk_grade").str.strip_prefix("R").cast(pl.Int32, strict=False),
        )
        df = df.join(prev, on="customer_id", how="left")

    triggers = _trigger_exprs(policy, has_previous)
    names = [n for n in TRIGGER_ORDER if n in triggers]
    levels = {n: _LEVEL[getattr(policy.watchlist.triggers, n).severity] for n in names}
    if not names:
        return pl.DataFrame(schema=WATCHLIST.polars_schema)

    # each customer's set of triggers as a bit mask; the few distinct sets present get their
    # trigger list and severity from a small look-up table (building lists row by row is slow)
    mask = pl.sum_horizontal(*[triggers[n].cast(pl.Int32) * (1 << i) for i, n in enumerate(names)])
    flagged = df.select("as_of_date", "customer_id", _mask=mask).filter(pl.col("_mask") > 0)
    sets = flagged.get_column("_mask").unique().sort().to_list()
    escalate = policy.watchlist.escalate_at_trigger_count
    lut_triggers, lut_severity = [], []
    for m in sets:
        fired = [n for i, n in enumerate(names) if m >> i & 1]
        level = max(levels[n] for n in fired)
        if escalate is not None and len(fired) >= escalate:
            level = min(level + 1, _LEVEL["HIGH"])
        lut_triggers.append(fired)
        lut_severity.append(_SEVERITY[level])
    lut = pl.DataFrame(
        {"_mask": sets, "triggers": lut_triggers, "severity": lut_severity},
        schema={"_mask": pl.Int32, "triggers": pl.List(pl.String), "severity": pl.String},
    )
    flagged = flagged.join(lut, on="_mask", how="left")

    if prev_watch is not None and prev_as_of is not None:
        carried = prev_watch.filter(pl.col("as_of_date") == prev_as_of).select(
            "customer_id", _prev_since=pl.col("since_date")
        )
        flagged = flagged.join(carried, on="customer_id", how="left")
        since = pl.coalesce("_prev_since", "as_of_date")
    else:
        since = pl.col("as_of_date")
    out = flagged.with_columns(since_date=since)
    return to_output(out, WATCHLIST, "watchlist frame")
