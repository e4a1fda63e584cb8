"""The collections list: customers in default and what to do about them.

A customer is in default at the as-of date when ``default_date <= as_of_date``.
Its receivables (base currency) are split by age from the ledger features:
``bucket_0_30 = aging_current + aging_1_30``, ``bucket_31_90 = aging_31_90``,
``bucket_91_180 = aging_91_180``, ``bucket_over_180 = aging_over_180``;
``outstanding`` is their sum (missing aging values count as 0).

``provision = sum over buckets of bucket x lgd_by_age[bucket]``, computed exactly in
integer cents and rounded half up to the cent once, on the total.

``recommended_action``: the first rule of ``policy.collections.actions`` that matches,
top to bottom. A rule matches when ``max_days_past_due >= min_days_past_due`` and
``outstanding >= min_outstanding`` (conditions it does not set hold), or, with
``or_bankruptcy``, when the customer has a bankruptcy filing (optional input column
``has_bankruptcy_filing``; absent means no filing known). The last rule is a catch-all.
"""

from __future__ import annotations

import polars as pl

from creditflow.core.schema import COLLECTIONS
from creditflow.policy.limits import cents_to_money, money_to_cents
from creditflow.policy.policy import (
    CreditPolicy,
    as_frame,
    require_columns,
    require_money,
    to_output,
)

AGING_COLUMNS = ("aging_current", "aging_1_30", "aging_31_90", "aging_91_180", "aging_over_180")
INPUT_COLUMNS = ("as_of_date", "customer_id", "default_date", "dpd_max", *AGING_COLUMNS)
BANKRUPTCY_COLUMN = "has_bankruptcy_filing"

_LGD_SCALE = 10**6  # policy LGDs have at most 6 fraction digits


def build_collections(frame: pl.DataFrame | pl.LazyFrame, policy: CreditPolicy) -> pl.DataFrame:
    """The ``collections`` table: one row per customer in default at its as-of date.

    ``frame`` has :data:`INPUT_COLUMNS` (aging amounts as Decimal, base currency;
    ``dpd_max`` the largest days past due) and optionally ``has_bankruptcy_filing``.
    Output: the contract's COLLECTIONS columns and dtypes, sorted by as_of_date, customer_id.
    """
    df = as_frame(frame, "collections frame")
    require_columns(df, INPUT_COLUMNS, "collections frame")
    require_money(df, AGING_COLUMNS, "collections frame")

    df = df.filter(
        pl.col("default_date").is_not_null() & (pl.col("default_date") <= pl.col("as_of_date"))
    )
    negative = df.filter(pl.any_horizontal([pl.col(c) < 0 for c in AGING_COLUMNS]))
    if negative.height:
        row = negative.row(0, named=True)
        raise ValueError(
            f"collections frame: aging amounts must be >= 0; got {negative.height} rows, "
            f"e.g. {row['customer_id']!r}: {[row[c] for c in AGING_COLUMNS]}"
        )

    cents = {c: money_to_cents(pl.col(c).fill_null(0)) for c in AGING_COLUMNS}
    buckets = {
        "bucket_0_30": cents["aging_current"] + cents["aging_1_30"],
        "bucket_31_90": cents["aging_31_90"],
        "bucket_91_180": cents["aging_91_180"],
        "bucket_over_180": cents["aging_over_180"],
    }
    lgd = policy.collections.lgd_by_age.as_dict()
    staged = df.with_columns(
        **{f"_{k}": v for k, v in buckets.items()},
        _dpd=pl.col("dpd_max").fill_null(0).cast(pl.Int32),
        _bankrupt=(
            pl.col(BANKRUPTCY_COLUMN).fill_null(False).cast(pl.Boolean)
            if BANKRUPTCY_COLUMN in df.columns
            else pl.lit(False)
        ),
    ).with_columns(
        _outstanding=pl.sum_horizontal(*[pl.col(f"_{k}") for k in buckets]),
        _provision_scaled=pl.sum_horizontal(
            *[pl.col(f"_{k}") * pl.lit(int(lgd[k] * _LGD_SCALE), dtype=pl.Int128) for k in buckets]
        ),
    )
    half = pl.lit(_LGD_SCALE // 2, dtype=pl.Int128)
    provision = (pl.col("_provision_scaled") + half) // pl.lit(_LGD_SCALE, dtype=pl.Int128)

    action: pl.Expr | None = None
    for rule in policy.collections.actions:
        cond = pl.lit(True)
        if rule.min_days_past_due is not None:
            cond = cond & (pl.col("_dpd") >= rule.min_days_past_due)
        if rule.min_outstanding is not None:
            cond = cond & (
                pl.col("_outstanding") >= pl.lit(int(rule.min_outstanding * 100), dtype=pl.Int128)
            )
        if rule.or_bankruptcy:
            cond = (cond & pl.lit(not rule.is_catch_all)) | pl.col("_bankrupt")
        action = (pl.when(cond) if action is None else action.when(cond)).then(pl.lit(rule.action))

    out = staged.select(
        "as_of_date",
        "customer_id",
        "default_date",
        outstanding=cents_to_money(pl.col("_outstanding")),
        **{k: cents_to_money(pl.col(f"_{k}")) for k in buckets},
        max_days_past_due=pl.col("_dpd"),
        provision=cents_to_money(provision),
        recommended_action=action,
    )
    return to_output(out, COLLECTIONS, "collections frame")
