"""Recommended credit limits: every policy rule is a ceiling, the lowest one wins.

For a customer not in default, the rules (``docs/credit-policy.md`` has examples):

- ``GRADE_CAP``: the grade's ``max_limit``.
- ``SALES_MULTIPLE``: ``avg_monthly_sales_12m x (payment_terms_days / 30) x sales_multiple[grade]``.
- ``EQUITY_CAP``: ``equity_share x equity``; no equity figures -> the cap does not apply;
  zero or negative equity -> 0.
- ``MAX_EXPECTED_LOSS``: ``max_expected_loss / (pd_12m x LGD[grade])``.
- ``MAX_INCREASE``: ``current_limit x (1 + max_increase_share)``; not for a first limit
  (current limit 0).
- ``DPD_HOLD``: ``dpd_max > dpd_hold_over_days`` -> no increase (ceiling = current limit).
- ``OVER_LIMIT_HOLD``: exposure above the current limit -> no increase.
- ``LEGAL_EVENT_CUT``: a lawsuit or execution order in the last 3 months ->
  ``min(current_limit, legal_event_cut_factor x capacity)``, where capacity is the lowest of
  GRADE_CAP, SALES_MULTIPLE, EQUITY_CAP and MAX_EXPECTED_LOSS. Cutting the *capacity*
  (not the current limit) keeps the cut from compounding over the three monthly
  reviews during which the event stays in the 3-month window.

The recommendation is the lowest ceiling rounded **down** to ``rounding_step``;
``binding_rule`` is the rule whose ceiling is that lowest value; equal ceilings are
reported in the order of :data:`RULE_PRIORITY` (customer-specific evidence first).
When rounding down alone would take a limit that satisfies every ceiling below its
current value (the change is less than one step), the current limit stands:
``HOLD``, binding rule ``ROUNDING`` (or the rule whose ceiling equals the current limit).
Customers in default (``default_date <= as_of_date``) get 0, ``SUSPEND``, ``DEFAULT_SUSPEND``.

Money is exact: amounts are turned into integer cents (Int128) once, on entry;
base-currency amounts are converted with the exact ``fx_to_limit_currency`` rate
(ceilings rounded down to the cent, the reported exposure rounded half up). The only
float steps are those that involve the model's PD (a float): the MAX_EXPECTED_LOSS
ceiling (rounded down to the cent, with a 1e-12 relative tolerance for float noise) and
``expected_loss = pd_12m x LGD[grade] x recommended_limit`` (rounded half up to the cent).
Amounts go back to ``Decimal(18, 2)`` on exit.
"""

from __future__ import annotations

from decimal import Decimal

import polars as pl

from creditflow.core.schema import LIMITS, MONEY
from creditflow.models.scoring import grade_number_expr
from creditflow.policy.policy import (
    RATIO_DIGITS,
    CreditPolicy,
    as_frame,
    require_columns,
    require_money,
    require_pd,
    to_output,
)

INPUT_COLUMNS = (
    "as_of_date",
    "customer_id",
    "pd_12m",
    "exposure",
    "credit_limit",
    "currency",
    "fx_to_limit_currency",
    "payment_terms_days",
    "avg_monthly_sales_12m",
    "equity",
    "dpd_max",
    "events_lawsuit_3m",
    "events_execution_order_3m",
    "default_date",
)

RULE_PRIORITY = (
    "LEGAL_EVENT_CUT",
    "DPD_HOLD",
    "OVER_LIMIT_HOLD",
    "MAX_EXPECTED_LOSS",
    "EQUITY_CAP",
    "SALES_MULTIPLE",
    "GRADE_CAP",
    "MAX_INCREASE",
)
"""Tie-break between equal ceilings: the first listed is reported as ``binding_rule``."""

ROUNDING = "ROUNDING"
DEFAULT_SUSPEND = "DEFAULT_SUSPEND"

FX_SCALE = 10**8  # fx rates have at most 8 fraction digits (core.schema "rate")
RATIO_SCALE = 10**RATIO_DIGITS
EL_FLOAT_TOLERANCE = 1e-12
_MAX_CENTS = 10**18  # far above any Decimal(18, 2); keeps float -> int casts in range

_I128 = pl.Int128


def _int(value: int) -> pl.Expr:
    return pl.lit(value, dtype=_I128)


def _ratio_units(value: Decimal) -> int:
    return int(value * RATIO_SCALE)


def _cents(value: Decimal) -> int:
    return int(value * 100)


def money_to_cents(col: str | pl.Expr) -> pl.Expr:
    """A Decimal amount (at most 2 fraction digits) as exact integer cents (Int128)."""
    e = pl.col(col) if isinstance(col, str) else col
    return (e.cast(pl.Decimal(38, 2)) * 100).cast(_I128)


def cents_to_money(e: pl.Expr) -> pl.Expr:
    """Integer cents back to ``Decimal(18, 2)`` (exact)."""
    return (e.cast(pl.Decimal(38, 0)) * pl.lit(Decimal("0.01"))).cast(MONEY)


def _floor_div(num: pl.Expr, den: int) -> pl.Expr:
    return num // _int(den)


def _round_half_up_div(num: pl.Expr, den: int) -> pl.Expr:
    """num / den rounded half away from zero, in integers."""
    q = (num.abs() + _int(den // 2)) // _int(den)
    return pl.when(num < 0).then(_int(0) - q).otherwise(q)


def _per_grade(grade_n: pl.Expr, values: list[int], dtype: pl.DataType = pl.Int64) -> pl.Expr:
    return grade_n.replace_strict(list(range(1, len(values) + 1)), values, return_dtype=dtype)


def _check_values(df: pl.DataFrame) -> None:
    checks = {
        "payment_terms_days": (
            pl.col("payment_terms_days").is_null()
            | ~pl.col("payment_terms_days").is_between(0, 365),
            "must be 0..365",
        ),
        "credit_limit": (
            pl.col("credit_limit").is_null() | (pl.col("credit_limit") < 0),
            "must be >= 0 and present",
        ),
        "fx_to_limit_currency": (
            pl.col("fx_to_limit_currency").is_null() | (pl.col("fx_to_limit_currency") <= 0),
            "must be > 0 and present",
        ),
        "currency": (pl.col("currency").is_null(), "must be present"),
    }
    for name, (bad_expr, rule) in checks.items():
        bad = df.filter(bad_expr)
        if bad.height:
            row = bad.row(0, named=True)
            raise ValueError(
                f"limits frame: {name} {rule}; got {row[name]!r} for {row['customer_id']!r} "
                f"({bad.height} rows)"
            )


def recommend_limits(frame: pl.DataFrame | pl.LazyFrame, policy: CreditPolicy) -> pl.DataFrame:
    """The ``limits`` table: a recommended limit per customer, in its limit currency.

    ``frame`` has one row per customer and as-of date with the columns in
    :data:`INPUT_COLUMNS` (``exposure``, ``avg_monthly_sales_12m``, ``equity`` in base
    currency; ``credit_limit`` in the limit currency ``currency``; multiply base amounts
    by ``fx_to_limit_currency``). Missing exposure, sales, dpd and event counts count as 0.
    Output: the contract's LIMITS columns and dtypes, sorted by as_of_date, customer_id;
    ``exposure`` is reported in the limit currency and ``utilization`` recomputed from it.
    """
    df = as_frame(frame, "limits frame")
    require_columns(df, INPUT_COLUMNS, "limits frame")
    require_money(
        df, ["exposure", "credit_limit", "avg_monthly_sales_12m", "equity"], "limits frame"
    )
    require_money(df, ["fx_to_limit_currency"], "limits frame", max_scale=8)
    require_pd(df, "limits frame")
    _check_values(df)

    lp = policy.limits
    grades = policy.grades
    fx = (pl.col("fx_to_limit_currency").cast(pl.Decimal(38, 8)) * FX_SCALE).cast(_I128)
    pd_ = pl.col("pd_12m")
    grade_n = grade_number_expr(pd_, policy)
    current = money_to_cents("credit_limit")
    exposure_lc = _round_half_up_div(money_to_cents(pl.col("exposure").fill_null(0)) * fx, FX_SCALE)
    in_default = pl.col("default_date").is_not_null() & (
        pl.col("default_date") <= pl.col("as_of_date")
    )

    base = df.lazy().with_columns(
        _grade_n=grade_n,
        _current=current,
        _exposure=exposure_lc,
        _fx=fx,
        _in_default=in_default,
    )

    # ---- capacity ceilings (limit-currency cents)
    grade_cap = _floor_div(
        _per_grade(pl.col("_grade_n"), [_cents(g.max_limit) for g in grades]).cast(_I128)
        * pl.col("_fx"),
        FX_SCALE,
    )
    sales = money_to_cents(pl.col("avg_monthly_sales_12m").fill_null(0)).clip(lower_bound=0)
    multiple = _per_grade(
        pl.col("_grade_n"), [_ratio_units(g.sales_multiple) for g in grades]
    ).cast(_I128)
    sales_cap = _floor_div(
        sales * pl.col("_fx") * pl.col("payment_terms_days").cast(_I128) * multiple,
        FX_SCALE * 30 * RATIO_SCALE,
    )
    caps: dict[str, pl.Expr] = {"GRADE_CAP": grade_cap, "SALES_MULTIPLE": sales_cap}
    if lp.equity_share is not None:
        equity = money_to_cents("equity").clip(lower_bound=0)
        caps["EQUITY_CAP"] = _floor_div(
            equity * pl.col("_fx") * _int(_ratio_units(lp.equity_share)), FX_SCALE * RATIO_SCALE
        )  # null equity -> null ceiling -> ignored by min_horizontal
    if lp.max_expected_loss is not None:
        lgd = _per_grade(pl.col("_grade_n"), [float(g.lgd) for g in grades], pl.Float64)
        max_el = _cents(lp.max_expected_loss) * (pl.col("_fx").cast(pl.Float64) / FX_SCALE)
        el_cap = (
            (max_el / (pd_ * lgd) * (1 + EL_FLOAT_TOLERANCE)).floor().clip(upper_bound=_MAX_CENTS)
        )
        caps["MAX_EXPECTED_LOSS"] = pl.when(lgd > 0).then(el_cap.cast(_I128))
    with_caps = base.with_columns(**{f"_cap_{k}": v for k, v in caps.items()})
    capacity = pl.min_horizontal(*[pl.col(f"_cap_{k}") for k in caps])

    # ---- behaviour ceilings, relative to the current limit
    behaviour: dict[str, pl.Expr] = {}
    if lp.legal_event_cut_factor is not None:
        has_event = (pl.col("events_lawsuit_3m").fill_null(0) > 0) | (
            pl.col("events_execution_order_3m").fill_null(0) > 0
        )
        cut = _floor_div(capacity * _int(_ratio_units(lp.legal_event_cut_factor)), RATIO_SCALE)
        behaviour["LEGAL_EVENT_CUT"] = pl.when(has_event).then(
            pl.min_horizontal(pl.col("_current"), cut)
        )
    if lp.dpd_hold_over_days is not None:
        behaviour["DPD_HOLD"] = pl.when(
            pl.col("dpd_max").fill_null(0) > lp.dpd_hold_over_days
        ).then(pl.col("_current"))
    if lp.over_limit_hold:
        behaviour["OVER_LIMIT_HOLD"] = pl.when(pl.col("_exposure") > pl.col("_current")).then(
            pl.col("_current")
        )
    if lp.max_increase_share is not None:
        behaviour["MAX_INCREASE"] = pl.when(pl.col("_current") > 0).then(
            _floor_div(
                pl.col("_current") * _int(RATIO_SCALE + _ratio_units(lp.max_increase_share)),
                RATIO_SCALE,
            )
        )
    with_caps = with_caps.with_columns(**{f"_cap_{k}": v for k, v in behaviour.items()})

    present = [r for r in RULE_PRIORITY if r in caps or r in behaviour]
    min_cap = pl.min_horizontal(*[pl.col(f"_cap_{r}") for r in present])
    argmin = pl.when(pl.col(f"_cap_{present[0]}") == pl.col("_min_cap")).then(pl.lit(present[0]))
    for r in present[1:]:
        argmin = argmin.when(pl.col(f"_cap_{r}") == pl.col("_min_cap")).then(pl.lit(r))

    step = _cents(lp.rounding_step)
    stepped = (pl.col("_min_cap") // _int(step)) * _int(step)
    keep_current = (pl.col("_current") <= pl.col("_min_cap")) & (
        pl.col("_stepped") < pl.col("_current")
    )
    decided = (
        with_caps.with_columns(_min_cap=min_cap)
        .with_columns(_argmin=argmin, _stepped=stepped)
        .with_columns(
            _final=pl.when(pl.col("_in_default"))
            .then(_int(0))
            .when(keep_current)
            .then(pl.col("_current"))
            .otherwise(pl.col("_stepped")),
            binding_rule=pl.when(pl.col("_in_default"))
            .then(pl.lit(DEFAULT_SUSPEND))
            .when(keep_current & (pl.col("_current") < pl.col("_min_cap")))
            .then(pl.lit(ROUNDING))
            .otherwise(pl.col("_argmin")),
        )
        .with_columns(
            action=pl.when(pl.col("_in_default"))
            .then(pl.lit("SUSPEND"))
            .when(pl.col("_final") > pl.col("_current"))
            .then(pl.lit("INCREASE"))
            .when(pl.col("_final") < pl.col("_current"))
            .then(pl.lit("DECREASE"))
            .otherwise(pl.lit("HOLD"))
        )
    )

    lgd_f = _per_grade(pl.col("_grade_n"), [float(g.lgd) for g in grades], pl.Float64)
    el_cents = (pd_ * lgd_f * pl.col("_final").cast(pl.Float64) + 0.5).floor().cast(_I128)
    out = decided.select(
        "as_of_date",
        "customer_id",
        "currency",
        current_limit=pl.col("credit_limit").cast(MONEY),
        exposure=cents_to_money(pl.col("_exposure")),
        recommended_limit=cents_to_money(pl.col("_final")),
        utilization=pl.when(pl.col("_current") > 0).then(
            pl.col("_exposure").cast(pl.Float64) / pl.col("_current").cast(pl.Float64)
        ),
        action="action",
        binding_rule="binding_rule",
        expected_loss=cents_to_money(el_cents),
        policy_version=pl.lit(policy.version),
    )
    return to_output(out.collect(), LIMITS, "limits frame")
