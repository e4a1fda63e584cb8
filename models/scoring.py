"""From a calibrated PD to what is published in ``scores``: points, grade, reasons.

- **Score points**: ``score = offset + factor * ln(odds)`` with ``odds = (1 - pd) / pd``
  (good:bad), ``factor = pdo / ln 2`` and ``offset = base_score - factor * ln(base_odds)``;
  with the default policy 600 points at odds 50:1 (PD 1/51) and 620 at 100:1
  (PD 1/101). Rounded half away from zero to a whole point (int32).
- **Risk grade**: the master scale of the policy; ``R1`` is the safest. A PD equal
  to a band edge gets the worse grade (bands are ``[lower, upper)``).
- **Reason codes**: the features that raise this customer's PD most, read from
  the model's own per-feature contributions (XGBoost ``pred_contribs``, log-odds):
  the largest *positive* contributions, most important first, at most ``top``;
  equal contributions keep feature order. A customer with no positive
  contribution gets an empty list.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl
import pyarrow as pa

from creditflow.core.schema import SCORES
from creditflow.policy.policy import (
    CreditPolicy,
    as_frame,
    require_columns,
    require_pd,
    to_output,
)

BIAS_COLUMNS = ("bias", "BIAS", "__bias__")
"""Names under which a contributions frame may carry XGBoost's bias column (ignored)."""


def _score_expr(pd_expr: pl.Expr, policy: CreditPolicy) -> pl.Expr:
    s = policy.scoring
    factor = s.points_to_double_odds / math.log(2)
    offset = s.base_score - factor * math.log(s.base_odds)
    points = pl.lit(offset) + pl.lit(factor) * ((1 - pd_expr) / pd_expr).log()
    # round half away from zero (polars' round is half-to-even); points are positive in practice
    return (points.sign() * (points.abs() + 0.5).floor()).cast(pl.Int32)


def grade_number_expr(pd_expr: pl.Expr, policy: CreditPolicy) -> pl.Expr:
    """Grade as a number 1 (R1, safest) .. 10 (R10): one plus the count of band edges at or below pd."""
    n = pl.lit(1, dtype=pl.Int32)
    for edge in policy.pd_edges:
        n = n + (pd_expr >= edge).cast(pl.Int32)
    return n


def _grade_label(number: pl.Expr) -> pl.Expr:
    return pl.concat_str(pl.lit("R"), number.cast(pl.String))


def _apply(pd: float | pl.Series | pl.Expr, build, policy: CreditPolicy):
    if isinstance(pd, pl.Expr):
        return build(pd, policy)
    if isinstance(pd, pl.Series):
        _check_pd_series(pd)
        return pl.select(build(pl.lit(pd), policy).alias(pd.name)).to_series()
    value = float(pd)
    _check_pd_series(pl.Series("pd", [value]))
    return pl.select(build(pl.lit(value, dtype=pl.Float64), policy)).item()


def _check_pd_series(s: pl.Series) -> None:
    require_pd(s.cast(pl.Float64).to_frame("pd"), "pd", column="pd")


def score_points(pd: float | pl.Series | pl.Expr, policy: CreditPolicy):
    """Score points (int32) for PDs in (0, 1); a float gives an int, a Series a Series, an Expr an Expr."""
    return _apply(pd, _score_expr, policy)


def risk_grade(pd: float | pl.Series | pl.Expr, policy: CreditPolicy):
    """Master-scale grade ``R1`` .. ``R10`` for PDs in (0, 1) (same kinds as :func:`score_points`)."""
    return _apply(pd, lambda e, p: _grade_label(grade_number_expr(e, p)), policy)


def _contribution_matrix(
    contributions: np.ndarray | pl.DataFrame, feature_names: Sequence[str] | None
) -> tuple[np.ndarray, list[str]]:
    if isinstance(contributions, pl.DataFrame):
        names = [c for c in contributions.columns if c not in BIAS_COLUMNS]
        if feature_names is not None and list(feature_names) != names:
            raise ValueError(
                f"feature_names do not match the contribution columns; got {list(feature_names)} vs {names}"
            )
        return contributions.select(names).to_numpy(), names
    if feature_names is None:
        raise ValueError("feature_names is required when contributions are a numpy matrix")
    matrix = np.asarray(contributions)
    names = list(feature_names)
    if matrix.ndim != 2:
        raise ValueError(
            f"contributions must be a 2-d matrix (customers x features); got {matrix.ndim} dimensions"
        )
    k = len(names)
    if matrix.shape[1] == k + 1:  # XGBoost pred_contribs: bias is the last column
        matrix = matrix[:, :k]
    elif matrix.shape[1] != k:
        raise ValueError(
            f"contributions must have one column per feature ({k}) or one more for the bias; "
            f"got {matrix.shape[1]} columns"
        )
    return matrix, names


def reason_codes(
    contrib_matrix: np.ndarray | pl.DataFrame,
    feature_names: Sequence[str] | None = None,
    reason_text: Mapping[str, str] | None = None,
    top: int = 3,
) -> pl.Series:
    """Per customer, up to ``top`` features with the largest positive contribution to the PD.

    ``contrib_matrix`` is customers x features (optionally + a trailing bias column, as
    XGBoost ``pred_contribs`` returns it) or a frame with one column per feature.
    Each feature is reported as ``reason_text[feature]`` (words an analyst reads),
    falling back to the feature name. Returns a ``list[str]`` Series, row-aligned.
    """
    if top < 1:
        raise ValueError(f"top must be at least 1; got {top}")
    matrix, names = _contribution_matrix(contrib_matrix, feature_names)
    texts = [(reason_text or {}).get(n, n) for n in names]
    n_rows, k = matrix.shape
    if k == 0 or n_rows == 0:
        return pl.Series("reason_codes", [[] for _ in range(n_rows)], dtype=pl.List(pl.String))
    top = min(top, k)
    # `top` passes of a row-wise argmax: the largest first, and argmax returns the first of
    # equal values, so ties keep feature order; NaN contributions never count as reasons
    work = np.where(np.isnan(matrix), -np.inf, matrix)
    rows = np.arange(n_rows)
    picked = np.empty((n_rows, top), dtype=np.int32)
    positive = np.empty((n_rows, top), dtype=bool)
    for j in range(top):
        idx = np.argmax(work, axis=1)
        positive[:, j] = work[rows, idx] > 0
        picked[:, j] = idx
        work[rows, idx] = -np.inf
    counts = positive.sum(axis=1)
    offsets = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    flat = picked[positive]  # row-major: keeps each row's order; positives come first in a row
    values = pa.DictionaryArray.from_arrays(pa.array(flat), pa.array(texts, pa.large_string()))
    lists = pa.LargeListArray.from_arrays(pa.array(offsets), values.cast(pa.large_string()))
    return pl.Series("reason_codes", lists).cast(pl.List(pl.String))


def build_scores(
    frame: pl.DataFrame | pl.LazyFrame,
    contributions: np.ndarray | pl.DataFrame | None,
    policy: CreditPolicy,
    *,
    model_name: str,
    model_version: str,
    run_id: str,
    feature_names: Sequence[str] | None = None,
    reason_text: Mapping[str, str] | None = None,
    top: int = 3,
) -> pl.DataFrame:
    """The ``scores`` table for one run.

    ``frame`` holds ``as_of_date``, ``customer_id`` and the calibrated ``pd_12m``;
    ``contributions`` holds the model's per-feature contributions for the same rows in
    the same order (see :func:`reason_codes`; ``None`` gives empty reason lists).
    Output: the contract's SCORES columns and dtypes, sorted by as_of_date, customer_id.
    """
    df = as_frame(frame, "scoring frame")
    require_columns(df, ["as_of_date", "customer_id", "pd_12m"], "scoring frame")
    for name, value in (
        ("model_name", model_name),
        ("model_version", model_version),
        ("run_id", run_id),
    ):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string; got {value!r}")
    require_pd(df, "scoring frame")
    if contributions is None:
        reasons = pl.Series(
            "reason_codes", [[] for _ in range(df.height)], dtype=pl.List(pl.String)
        )
    else:
        rows = (
            contributions.height
            if isinstance(contributions, pl.DataFrame)
            else np.shape(contributions)[0]
        )
        if rows != df.height:
            raise ValueError(
                f"contributions must have one row per scored customer ({df.height}); got {rows}"
            )
        reasons = reason_codes(contributions, feature_names, reason_text, top)
    pd_col = pl.col("pd_12m")
    out = (
        df.select("as_of_date", "customer_id", "pd_12m")
        .with_columns(reasons)
        .with_columns(
            score=_score_expr(pd_col, policy),
            risk_grade=_grade_label(grade_number_expr(pd_col, policy)),
            model_name=pl.lit(model_name),
            model_version=pl.lit(model_version),
            run_id=pl.lit(run_id),
        )
    )
    return to_output(out, SCORES, "scoring frame")
