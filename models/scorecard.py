"""The transparent benchmark: a classic weight-of-evidence scorecard.

Each feature is cut into bins on the training window, every bin gets a weight
of evidence (WoE), and a logistic regression on the WoE values gives the PD:

- numeric features: supervised tree binning (a depth-limited decision tree on
  the feature alone, at most ``max_bins`` leaves of at least
  ``min_bin_fraction`` of the non-missing rows) or equal-frequency quantile
  binning. Bin k covers ``(edge_(k-1), edge_k]``. When a monotone direction is
  given for the feature (+1: PD rises with it), adjacent bins are merged until
  the default rate is monotone in that direction.
- categorical features: one bin per category with at least
  ``min_category_rows`` training rows; rarer categories and categories never
  seen in training share an "other" bin.
- missing values (null or NaN) are their own bin.

``WoE = ln( ((goods_k + s) / (G + s K)) / ((bads_k + s) / (B + s K)) )``, the
Siddiqi convention (positive = safer than average), with additive smoothing
``s`` (default 0.5) so a bin without goods or without bads stays finite; ``K``
is the number of non-empty bins of the feature. A bin with no training rows (no
missing values seen, say) gets WoE 0, i.e. the average risk.

The fitted scorecard is plain data (``to_dict``/``from_dict``, JSON-ready) and
:meth:`Scorecard.predict_pd` gives PDs clipped to ``[1e-6, 1 - 1e-6]``. Money
columns (``Decimal``) are converted to float64 here because the model needs a
float.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from creditflow.models.calibration import clip_pd

Binning = Literal["tree", "quantile"]
FORMAT_VERSION = 1
_TREE_MAX_ROWS = 100_000


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def column_as_float(frame: pl.DataFrame, name: str) -> np.ndarray:
    """A numeric/boolean/decimal column as float64 with NaN for missing (money becomes float here).

    +-inf (a ratio over a zero denominator, say) becomes +-3.4e38, the largest float32, so
    it still sorts beyond every real value and XGBoost (which refuses inf) accepts it.
    """
    dtype = frame.schema[name]
    if not (dtype.is_numeric() or dtype == pl.Boolean):
        raise TypeError(f"feature {name!r} must be numeric, boolean or decimal; got dtype {dtype}")
    values = frame.get_column(name).cast(pl.Float64).fill_null(float("nan")).to_numpy()
    return np.clip(values, -_FLOAT32_MAX, _FLOAT32_MAX)


def column_as_text(frame: pl.DataFrame, name: str) -> np.ndarray:
    """A categorical/text column as an object array of str, None for missing."""
    return np.asarray(frame.get_column(name).cast(pl.String).to_list(), dtype=object)


@dataclass(frozen=True)
class FeatureBins:
    """Bins and weights of evidence of one feature."""

    feature: str
    kind: Literal["numeric", "categorical"]
    edges: tuple[float, ...]
    """Numeric: increasing cut points; bin k covers (edges[k-1], edges[k]]."""
    categories: tuple[str, ...]
    """Categorical: categories with their own bin; the last bin is "other"."""
    woe: tuple[float, ...]
    """One WoE per bin (numeric: len(edges)+1; categorical: len(categories)+1)."""
    missing_woe: float
    counts: tuple[int, ...]
    """Training rows per bin, then the missing bin last."""
    defaults: tuple[int, ...]
    """Training defaults per bin, then the missing bin last."""
    information_value: float

    def bin_index(self, values: np.ndarray) -> np.ndarray:
        """Bin of each value; -1 for missing."""
        if self.kind == "numeric":
            x = np.asarray(values, dtype=np.float64)
            idx = np.searchsorted(np.asarray(self.edges, dtype=np.float64), x, side="left")
            return np.where(np.isnan(x), -1, idx)
        lookup = {c: i for i, c in enumerate(self.categories)}
        other = len(self.categories)
        return np.array([-1 if v is None else lookup.get(v, other) for v in values], dtype=np.int64)

    def transform(self, values: np.ndarray) -> np.ndarray:
        """WoE of each value (missing -> the missing bin's WoE)."""
        idx = self.bin_index(values)
        woe = np.asarray(self.woe, dtype=np.float64)
        return np.where(idx < 0, self.missing_woe, woe[np.clip(idx, 0, woe.size - 1)])

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "kind": self.kind,
            "edges": [float(e) for e in self.edges],
            "categories": list(self.categories),
            "woe": [float(w) for w in self.woe],
            "missing_woe": float(self.missing_woe),
            "counts": [int(c) for c in self.counts],
            "defaults": [int(d) for d in self.defaults],
            "information_value": float(self.information_value),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureBins:
        return cls(
            feature=d["feature"],
            kind=d["kind"],
            edges=tuple(float(e) for e in d["edges"]),
            categories=tuple(d["categories"]),
            woe=tuple(float(w) for w in d["woe"]),
            missing_woe=float(d["missing_woe"]),
            counts=tuple(int(c) for c in d["counts"]),
            defaults=tuple(int(x) for x in d["defaults"]),
            information_value=float(d["information_value"]),
        )


@dataclass(frozen=True)
class Scorecard:
    """Logistic regression on WoE-binned features: ``PD = sigmoid(intercept + sum_j coef_j * WoE_j)``."""

    features: tuple[str, ...]
    bins: tuple[FeatureBins, ...]
    coefficients: tuple[float, ...]
    intercept: float

    def woe_matrix(self, frame: pl.DataFrame) -> np.ndarray:
        """WoE of every feature (columns in ``features`` order) for each row of ``frame``."""
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise ValueError(f"frame lacks scorecard features {missing}")
        cols = []
        for fb in self.bins:
            values = (
                column_as_float(frame, fb.feature)
                if fb.kind == "numeric"
                else column_as_text(frame, fb.feature)
            )
            cols.append(fb.transform(values))
        return np.column_stack(cols) if cols else np.zeros((frame.height, 0))

    def predict_pd(self, frame: pl.DataFrame) -> np.ndarray:
        """PD of each row, clipped to [1e-6, 1 - 1e-6]."""
        z = self.intercept + self.woe_matrix(frame) @ np.asarray(
            self.coefficients, dtype=np.float64
        )
        return clip_pd(0.5 * (1.0 + np.tanh(0.5 * z)))

    def summary(self) -> pl.DataFrame:
        """One row per feature: information value and coefficient, most informative first."""
        return pl.DataFrame(
            {
                "feature": list(self.features),
                "kind": [b.kind for b in self.bins],
                "n_bins": [len(b.woe) for b in self.bins],
                "information_value": [b.information_value for b in self.bins],
                "coefficient": list(self.coefficients),
            }
        ).sort(["information_value", "feature"], descending=[True, False])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation (no pickle)."""
        return {
            "format_version": FORMAT_VERSION,
            "features": list(self.features),
            "bins": [b.to_dict() for b in self.bins],
            "coefficients": [float(c) for c in self.coefficients],
            "intercept": float(self.intercept),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Scorecard:
        """Rebuild a scorecard from :meth:`to_dict` output."""
        if d.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"scorecard format_version must be {FORMAT_VERSION}; got {d.get('format_version')!r}"
            )
        return cls(
            features=tuple(d["features"]),
            bins=tuple(FeatureBins.from_dict(b) for b in d["bins"]),
            coefficients=tuple(float(c) for c in d["coefficients"]),
            intercept=float(d["intercept"]),
        )


def _woe(goods: np.ndarray, bads: np.ndarray, smoothing: float) -> np.ndarray:
    k = goods.size
    g_total, b_total = goods.sum(), bads.sum()
    dist_good = (goods + smoothing) / (g_total + smoothing * k)
    dist_bad = (bads + smoothing) / (b_total + smoothing * k)
    return np.log(dist_good / dist_bad)


def _numeric_edges(
    x: np.ndarray,
    y: np.ndarray,
    binning: Binning,
    max_bins: int,
    min_bin_fraction: float,
    seed: int,
) -> np.ndarray:
    if x.size == 0 or np.unique(x).size < 2:
        return np.empty(0)
    if binning == "quantile":
        qs = np.quantile(x, np.linspace(0, 1, max_bins + 1)[1:-1], method="lower")
        edges = np.unique(qs)
        return edges[edges < x.max()]
    if x.size > _TREE_MAX_ROWS:
        # Cut points from a seeded sample: a tree per feature on a whole training
        # window is slow, and bins of >= 5% of the rows are well placed by 100k rows.
        pick = np.random.default_rng(seed).choice(x.size, size=_TREE_MAX_ROWS, replace=False)
        x, y = x[pick], y[pick]
    tree = DecisionTreeClassifier(
        max_leaf_nodes=max_bins,
        min_samples_leaf=max(math.ceil(min_bin_fraction * x.size), 1),
        random_state=seed,
    )
    tree.fit(x.reshape(-1, 1), y)
    t = tree.tree_
    return np.unique(t.threshold[t.feature >= 0])


def _merge_to_monotone(
    x: np.ndarray, y: np.ndarray, edges: np.ndarray, direction: int
) -> np.ndarray:
    """Drop cut points until the bin default rates move with ``direction`` (+1 rising, -1 falling)."""
    edges = list(edges)
    while edges:
        idx = np.searchsorted(np.asarray(edges), x, side="left")
        n = np.bincount(idx, minlength=len(edges) + 1)
        d = np.bincount(idx, weights=y, minlength=len(edges) + 1)
        rate = d / np.maximum(n, 1)
        steps = np.diff(rate) * direction
        bad = np.flatnonzero(steps < 0)
        if bad.size == 0:
            break
        # Merge the pair with the worst violation: remove the edge between them.
        k = int(bad[np.argmin(steps[bad])])
        del edges[k]
    return np.asarray(edges, dtype=np.float64)


def _fit_numeric_bins(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    *,
    binning: Binning,
    max_bins: int,
    min_bin_fraction: float,
    direction: int,
    smoothing: float,
    seed: int,
) -> FeatureBins:
    present = ~np.isnan(x)
    xp, yp = x[present], y[present]
    edges = _numeric_edges(xp, yp, binning, max_bins, min_bin_fraction, seed)
    if direction != 0 and edges.size:
        edges = _merge_to_monotone(xp, yp, edges, direction)
    idx = np.searchsorted(edges, xp, side="left")
    n_bins = edges.size + 1
    counts = np.r_[np.bincount(idx, minlength=n_bins), (~present).sum()]
    bads = np.r_[np.bincount(idx, weights=yp, minlength=n_bins), y[~present].sum()]
    return _finish_bins(
        name, "numeric", tuple(float(e) for e in edges), (), counts, bads, smoothing
    )


def _fit_categorical_bins(
    name: str, values: np.ndarray, y: np.ndarray, *, min_category_rows: int, smoothing: float
) -> FeatureBins:
    present = np.array([v is not None for v in values], dtype=bool)
    cats, counts_all = (
        np.unique(values[present].astype(str), return_counts=True) if present.any() else ([], [])
    )
    kept = tuple(str(c) for c, n in zip(cats, counts_all, strict=True) if n >= min_category_rows)
    lookup = {c: i for i, c in enumerate(kept)}
    other = len(kept)
    idx = np.array([lookup.get(v, other) for v in values[present]], dtype=np.int64)
    n_bins = len(kept) + 1
    counts = np.r_[np.bincount(idx, minlength=n_bins), (~present).sum()]
    bads = np.r_[np.bincount(idx, weights=y[present], minlength=n_bins), y[~present].sum()]
    return _finish_bins(name, "categorical", (), kept, counts, bads, smoothing)


def _finish_bins(
    name: str,
    kind: Literal["numeric", "categorical"],
    edges: tuple[float, ...],
    categories: tuple[str, ...],
    counts: np.ndarray,
    bads: np.ndarray,
    smoothing: float,
) -> FeatureBins:
    counts = counts.astype(np.int64)
    bads = np.rint(bads).astype(np.int64)
    goods = counts - bads
    used = counts > 0
    woe = np.zeros(counts.size)
    woe[used] = _woe(goods[used].astype(float), bads[used].astype(float), smoothing)
    dist_good = goods / max(goods.sum(), 1)
    dist_bad = bads / max(bads.sum(), 1)
    iv = float(np.sum((dist_good - dist_bad)[used] * woe[used]))
    return FeatureBins(
        feature=name,
        kind=kind,
        edges=edges,
        categories=categories,
        woe=tuple(float(w) for w in woe[:-1]),
        missing_woe=float(woe[-1]),
        counts=tuple(int(c) for c in counts),
        defaults=tuple(int(b) for b in bads),
        information_value=iv,
    )


def fit_scorecard(
    frame: pl.DataFrame,
    *,
    target: str,
    features: Sequence[str],
    categorical: Sequence[str] = (),
    monotone: Mapping[str, int] | None = None,
    binning: Binning = "tree",
    max_bins: int = 8,
    min_bin_fraction: float = 0.05,
    min_category_rows: int = 50,
    smoothing: float = 0.5,
    regularization_c: float = 1.0,
    seed: int = 42,
) -> Scorecard:
    """Fit the WoE scorecard on the training window.

    ``frame`` holds the training rows with ``target`` (0/1) and ``features``;
    ``categorical`` names the features binned by category; ``monotone`` maps a
    numeric feature to +1 (PD rises with it) or -1 and forces monotone bins.
    Returns a :class:`Scorecard` (bins + L2-regularised logistic regression
    with inverse strength ``regularization_c``).
    """
    monotone = dict(monotone or {})
    if binning not in ("tree", "quantile"):
        raise ValueError(f"binning must be 'tree' or 'quantile'; got {binning!r}")
    if not isinstance(max_bins, int) or max_bins < 2:
        raise ValueError(f"max_bins must be an integer >= 2; got {max_bins!r}")
    if not 0.0 < min_bin_fraction < 0.5:
        raise ValueError(f"min_bin_fraction must be in (0, 0.5); got {min_bin_fraction}")
    if smoothing <= 0:
        raise ValueError(f"smoothing must be > 0; got {smoothing}")
    if not features:
        raise ValueError("features must name at least one column")
    missing = [c for c in [target, *features] if c not in frame.columns]
    if missing:
        raise ValueError(
            f"columns {missing} are not in the training frame; columns: {frame.columns}"
        )
    unknown = [c for c in categorical if c not in features]
    if unknown:
        raise ValueError(f"categorical features {unknown} are not in features")
    for f, d in monotone.items():
        if d not in (-1, 0, 1):
            raise ValueError(f"monotone direction of {f!r} must be -1, 0 or 1; got {d!r}")
        if d != 0 and f in categorical:
            raise ValueError(
                f"monotone direction given for categorical feature {f!r}; only numeric features can be monotone"
            )
    y = frame.get_column(target).cast(pl.Float64).to_numpy()
    if np.isnan(y).any() or not np.all((y == 0) | (y == 1)):
        raise ValueError(f"target {target!r} must be 0/1 with no missing values")
    if y.sum() == 0 or y.sum() == y.size:
        raise ValueError(f"target {target!r} is constant in the training frame")
    cat = set(categorical)
    bins = []
    for f in features:
        if f in cat:
            bins.append(
                _fit_categorical_bins(
                    f,
                    column_as_text(frame, f),
                    y,
                    min_category_rows=min_category_rows,
                    smoothing=smoothing,
                )
            )
        else:
            bins.append(
                _fit_numeric_bins(
                    f,
                    column_as_float(frame, f),
                    y,
                    binning=binning,
                    max_bins=max_bins,
                    min_bin_fraction=min_bin_fraction,
                    direction=int(monotone.get(f, 0)),
                    smoothing=smoothing,
                    seed=seed,
                )
            )
    partial = Scorecard(
        features=tuple(features),
        bins=tuple(bins),
        coefficients=(0.0,) * len(features),
        intercept=0.0,
    )
    woe = partial.woe_matrix(frame)
    # tol 1e-6: coefficients within ~2e-4 of a fully converged fit at a fraction of the
    # iterations (measured on 400k rows x 50 WoE features).
    lr = LogisticRegression(C=regularization_c, solver="lbfgs", max_iter=1000, tol=1e-6)
    lr.fit(woe, y.astype(np.int64))
    return Scorecard(
        features=tuple(features),
        bins=tuple(bins),
        coefficients=tuple(float(c) for c in lr.coef_.ravel()),
        intercept=float(lr.intercept_[0]),
    )
