"""Discrimination and calibration metrics of a probability-of-default model.

Every function takes plain arrays: ``pd`` (predicted probabilities of default
in [0, 1]) and ``outcome`` (observed defaults, 0/1) of the same length, and
returns plain floats or a small Polars table. Nothing here knows about XGBoost.

- AUC: probability that a random defaulter gets a higher PD than a random
  non-defaulter (ties count one half; the Mann-Whitney statistic).
- Gini (accuracy ratio): ``2 * AUC - 1``.
- KS: the largest gap between the cumulative PD distributions of defaulters and
  non-defaulters, taken only at distinct PD values (tied PDs move together).
- Brier: mean of ``(pd - outcome) ** 2``.
- Log loss: mean of ``-(y log pd + (1 - y) log(1 - pd))`` with ``pd`` clipped to
  ``[1e-15, 1 - 1e-15]`` so a hard 0/1 prediction costs a large finite amount.
- ECE (expected calibration error): rows sorted by PD and cut into
  ``n_bins`` equal-frequency bins (``DEFAULT_ECE_BINS`` = 10; sizes differ by at
  most one row); ``ECE = sum_b (n_b / N) * |mean pd_b - default rate_b|``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

DEFAULT_ECE_BINS = 10
"""Equal-frequency bins used for the expected calibration error."""

_LOG_LOSS_EPS = 1e-15


def _check_pd_outcome(pd_: np.ndarray | Sequence[float], outcome: np.ndarray | Sequence[float]):
    p = np.asarray(pd_, dtype=np.float64).ravel()
    y = np.asarray(outcome, dtype=np.float64).ravel()
    if p.shape != y.shape:
        raise ValueError(f"pd and outcome must have the same length; got {p.size} and {y.size}")
    if p.size == 0:
        raise ValueError("pd and outcome must not be empty")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"pd must be finite; got {int((~np.isfinite(p)).sum())} NaN/inf values")
    if p.min() < 0 or p.max() > 1:
        raise ValueError(f"pd must be in [0, 1]; got values from {p.min()} to {p.max()}")
    if not np.all((y == 0) | (y == 1)):
        bad = np.unique(y[~((y == 0) | (y == 1))])[:5]
        raise ValueError(f"outcome must be 0/1; got values such as {bad.tolist()}")
    return p, y


def _check_both_classes(y: np.ndarray, metric: str) -> None:
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        raise ValueError(
            f"{metric} needs both defaulters and non-defaulters; got {n_pos} defaults in {y.size} rows"
        )


def auc(pd_: np.ndarray | Sequence[float], outcome: np.ndarray | Sequence[float]) -> float:
    """Area under the ROC curve: P(pd of a defaulter > pd of a non-defaulter), ties count 1/2."""
    p, y = _check_pd_outcome(pd_, outcome)
    _check_both_classes(y, "AUC")
    # Mann-Whitney U with mid-ranks for ties.
    order = np.argsort(p, kind="mergesort")
    sorted_p = p[order]
    ranks = np.empty(p.size, dtype=np.float64)
    _, first, counts = np.unique(sorted_p, return_index=True, return_counts=True)
    mid = first + (counts + 1) / 2.0  # 1-based mid-rank of each tie group
    ranks[order] = np.repeat(mid, counts)
    n_pos = y.sum()
    n_neg = y.size - n_pos
    u = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def gini(pd_: np.ndarray | Sequence[float], outcome: np.ndarray | Sequence[float]) -> float:
    """Gini coefficient (accuracy ratio): ``2 * AUC - 1``."""
    return 2.0 * auc(pd_, outcome) - 1.0


def ks(pd_: np.ndarray | Sequence[float], outcome: np.ndarray | Sequence[float]) -> float:
    """Kolmogorov-Smirnov statistic: max over PD thresholds of |CDF_defaulters - CDF_non-defaulters|."""
    p, y = _check_pd_outcome(pd_, outcome)
    _check_both_classes(y, "KS")
    order = np.argsort(p, kind="mergesort")
    sorted_p, sorted_y = p[order], y[order]
    cum_pos = np.cumsum(sorted_y) / sorted_y.sum()
    cum_neg = np.cumsum(1.0 - sorted_y) / (sorted_y.size - sorted_y.sum())
    # Only thresholds between distinct PD values: the last row of each tie group.
    last_of_group = np.r_[sorted_p[1:] != sorted_p[:-1], True]
    return float(np.max(np.abs(cum_pos[last_of_group] - cum_neg[last_of_group])))


def brier(pd_: np.ndarray | Sequence[float], outcome: np.ndarray | Sequence[float]) -> float:
    """Brier score: mean squared difference between PD and outcome."""
    p, y = _check_pd_outcome(pd_, outcome)
    return float(np.mean((p - y) ** 2))


def log_loss(pd_: np.ndarray | Sequence[float], outcome: np.ndarray | Sequence[float]) -> float:
    """Mean negative log-likelihood of the outcomes under the PDs (PD clipped to [1e-15, 1-1e-15])."""
    p, y = _check_pd_outcome(pd_, outcome)
    p = np.clip(p, _LOG_LOSS_EPS, 1.0 - _LOG_LOSS_EPS)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def _equal_frequency_bins(n: int, n_bins: int) -> list[np.ndarray]:
    return [b for b in np.array_split(np.arange(n), n_bins) if b.size > 0]


def calibration_table(
    pd_: np.ndarray | Sequence[float],
    outcome: np.ndarray | Sequence[float],
    n_bins: int = DEFAULT_ECE_BINS,
) -> pl.DataFrame:
    """Reliability table: rows sorted by PD, cut into ``n_bins`` equal-frequency bins.

    Returns one row per bin: ``bin`` (1 = lowest PDs), ``count``, ``mean_pd``,
    ``observed_default_rate``. Bins hold ``N // n_bins`` or one more rows; with
    fewer rows than bins, one row per bin.
    """
    p, y = _check_pd_outcome(pd_, outcome)
    if not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer; got {n_bins!r}")
    order = np.argsort(p, kind="mergesort")
    p, y = p[order], y[order]
    bins = _equal_frequency_bins(p.size, int(n_bins))
    return pl.DataFrame(
        {
            "bin": np.arange(1, len(bins) + 1, dtype=np.int32),
            "count": np.array([b.size for b in bins], dtype=np.int64),
            "mean_pd": np.array([p[b].mean() for b in bins]),
            "observed_default_rate": np.array([y[b].mean() for b in bins]),
        }
    )


def expected_calibration_error(
    pd_: np.ndarray | Sequence[float],
    outcome: np.ndarray | Sequence[float],
    n_bins: int = DEFAULT_ECE_BINS,
) -> float:
    """ECE over ``n_bins`` equal-frequency PD bins: sum_b (n_b/N) |mean pd_b - default rate_b|."""
    table = calibration_table(pd_, outcome, n_bins)
    counts = table["count"].to_numpy().astype(np.float64)
    gap = np.abs(table["mean_pd"].to_numpy() - table["observed_default_rate"].to_numpy())
    return float(np.sum(counts / counts.sum() * gap))


def evaluate(
    pd_: np.ndarray | Sequence[float],
    outcome: np.ndarray | Sequence[float],
    n_bins: int = DEFAULT_ECE_BINS,
) -> dict[str, float]:
    """All headline metrics of one model on one window.

    Returns ``n``, ``n_defaults``, ``default_rate``, ``mean_pd``, ``auc``,
    ``gini``, ``ks``, ``brier``, ``log_loss``, ``ece`` and ``ece_bins`` (the bin
    count used). AUC, Gini and KS are NaN when the window holds one class only.
    """
    p, y = _check_pd_outcome(pd_, outcome)
    both = 0 < y.sum() < y.size
    a = auc(p, y) if both else float("nan")
    return {
        "n": float(y.size),
        "n_defaults": float(y.sum()),
        "default_rate": float(y.mean()),
        "mean_pd": float(p.mean()),
        "auc": a,
        "gini": 2.0 * a - 1.0,
        "ks": ks(p, y) if both else float("nan"),
        "brier": brier(p, y),
        "log_loss": log_loss(p, y),
        "ece": expected_calibration_error(p, y, n_bins),
        "ece_bins": float(n_bins),
    }


def grade_names(n_grades: int) -> list[str]:
    """Master-scale grade names ``R1`` (safest) .. ``R<n>``."""
    return [f"R{i}" for i in range(1, n_grades + 1)]


def _check_band_edges(band_edges: Sequence[float]) -> np.ndarray:
    edges = np.asarray(band_edges, dtype=np.float64).ravel()
    if edges.size and edges[0] == 0.0:
        edges = edges[1:]
    if edges.size and edges[-1] == 1.0:
        edges = edges[:-1]
    if edges.size == 0:
        raise ValueError(
            f"band_edges must hold at least one PD edge strictly inside (0, 1); got {list(band_edges)}"
        )
    if not np.all(np.isfinite(edges)) or edges.min() <= 0 or edges.max() >= 1:
        raise ValueError(f"band_edges must lie strictly inside (0, 1); got {list(band_edges)}")
    if np.any(np.diff(edges) <= 0):
        raise ValueError(f"band_edges must be strictly increasing; got {list(band_edges)}")
    return edges


def assign_grades(pd_: np.ndarray | Sequence[float], band_edges: Sequence[float]) -> np.ndarray:
    """Grade index (0 = R1) of each PD on the master scale.

    ``band_edges`` are the inner band edges of the policy (``CreditPolicy.pd_edges``:
    the upper PD bounds of grades R1..R(n-1)), strictly increasing inside (0, 1);
    a leading 0 and a trailing 1 are allowed and ignored. As in the policy, grade
    k covers ``[edge_(k-1), edge_k)``: a PD equal to an edge gets the worse grade.
    """
    edges = _check_band_edges(band_edges)
    p = np.asarray(pd_, dtype=np.float64).ravel()
    return np.searchsorted(edges, p, side="right")


def default_rate_by_grade(
    pd_: np.ndarray | Sequence[float],
    outcome: np.ndarray | Sequence[float],
    band_edges: Sequence[float],
) -> pl.DataFrame:
    """Observed default rate per master-scale grade.

    Grades follow :func:`assign_grades`. Returns one row per grade (empty grades
    included, with null mean PD and rate): ``grade``, ``pd_lower``, ``pd_upper``,
    ``count``, ``defaults``, ``mean_pd``, ``observed_default_rate``.
    """
    p, y = _check_pd_outcome(pd_, outcome)
    edges = _check_band_edges(band_edges)
    idx = np.searchsorted(edges, p, side="right")
    n_grades = edges.size + 1
    counts = np.bincount(idx, minlength=n_grades)
    defaults = np.bincount(idx, weights=y, minlength=n_grades)
    pd_sum = np.bincount(idx, weights=p, minlength=n_grades)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_pd = np.where(counts > 0, pd_sum / np.maximum(counts, 1), np.nan)
        rate = np.where(counts > 0, defaults / np.maximum(counts, 1), np.nan)
    return pl.DataFrame(
        {
            "grade": grade_names(n_grades),
            "pd_lower": np.r_[0.0, edges],
            "pd_upper": np.r_[edges, 1.0],
            "count": counts.astype(np.int64),
            "defaults": defaults.astype(np.int64),
            "mean_pd": mean_pd,
            "observed_default_rate": rate,
        }
    ).with_columns(pl.col("mean_pd", "observed_default_rate").fill_nan(None))
