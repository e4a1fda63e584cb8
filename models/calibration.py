"""Calibration: turn a model's raw scores into probabilities of default.

Two maps from the raw PD ``r`` of a model to a calibrated PD:

- Platt: ``pd = sigmoid(a * logit(r) + b)``, fitted by maximum likelihood
  (Newton's method). Two parameters: smooth, needs little data, keeps the
  model's ranking (no ties).
- Isotonic: a non-decreasing piecewise-linear map through thresholds
  ``(x_k, y_k)`` (pool-adjacent-violators on the raw PD); flat outside the
  range seen in fitting. Flexible, needs more data, introduces ties.

Which one? Choosing by the log loss on the rows a map was fitted on always
favours isotonic (it fits in-sample noise), so :func:`fit_calibrator` decides by
*cross-fitting*: the calibration rows are cut into ``n_folds`` stratified folds
(seeded); each candidate is fitted on the other folds and scored on the held-out
fold; the candidate with the lowest out-of-fold log loss wins and is refitted on
all calibration rows. Its out-of-fold log loss per candidate is kept for the
report.

Every calibrated PD is clipped to ``[PD_MIN, PD_MAX] = [1e-6, 1 - 1e-6]`` so it
is strictly inside (0, 1). A calibrator is plain data: ``to_dict``/``from_dict``
give a JSON-ready dict (no pickle), and ``apply`` maps raw PDs to PDs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from sklearn.isotonic import IsotonicRegression

from creditflow.models.metrics import log_loss

PD_MIN = 1e-6
PD_MAX = 1.0 - 1e-6
CalibrationMethod = Literal["platt", "isotonic"]
METHODS: tuple[CalibrationMethod, ...] = ("platt", "isotonic")
FORMAT_VERSION = 1


def clip_pd(p: np.ndarray) -> np.ndarray:
    """Clip probabilities to [PD_MIN, PD_MAX] so every PD is strictly inside (0, 1)."""
    return np.clip(np.asarray(p, dtype=np.float64), PD_MIN, PD_MAX)


def _logit(p: np.ndarray) -> np.ndarray:
    p = clip_pd(p)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


@dataclass(frozen=True)
class Calibrator:
    """A fitted calibration map (Platt or isotonic) from raw PD to calibrated PD."""

    method: CalibrationMethod
    params: dict[str, Any]
    """Platt: ``{"a": float, "b": float}``. Isotonic: ``{"x": [...], "y": [...]}``."""
    selection: dict[str, float] = field(default_factory=dict)
    """Out-of-fold log loss of each candidate method when chosen by cross-fitting."""

    def __post_init__(self) -> None:
        if self.method == "platt":
            if set(self.params) != {"a", "b"}:
                raise ValueError(
                    f"platt calibrator needs params a and b; got {sorted(self.params)}"
                )
            if not all(np.isfinite([self.params["a"], self.params["b"]])):
                raise ValueError(f"platt params must be finite; got {self.params}")
        elif self.method == "isotonic":
            if set(self.params) != {"x", "y"}:
                raise ValueError(
                    f"isotonic calibrator needs params x and y; got {sorted(self.params)}"
                )
            x = np.asarray(self.params["x"], dtype=np.float64)
            y = np.asarray(self.params["y"], dtype=np.float64)
            if x.size == 0 or x.size != y.size:
                raise ValueError(
                    f"isotonic x and y must be non-empty and equally long; got {x.size} and {y.size}"
                )
            if np.any(np.diff(x) < 0) or np.any(np.diff(y) < 0):
                raise ValueError("isotonic thresholds x and values y must be non-decreasing")
        else:
            raise ValueError(
                f"calibration method must be one of {list(METHODS)}; got {self.method!r}"
            )

    def apply(self, raw_pd: np.ndarray | Sequence[float]) -> np.ndarray:
        """Calibrated PD for each raw PD, clipped to [1e-6, 1 - 1e-6]."""
        r = np.asarray(raw_pd, dtype=np.float64)
        if r.size and (not np.all(np.isfinite(r)) or r.min() < 0 or r.max() > 1):
            raise ValueError("raw PDs must be finite and in [0, 1]")
        if self.method == "platt":
            out = _sigmoid(self.params["a"] * _logit(r) + self.params["b"])
        else:
            out = np.interp(r, self.params["x"], self.params["y"])
        return clip_pd(out)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation (floats as Python floats; no pickle)."""
        if self.method == "platt":
            params = {"a": float(self.params["a"]), "b": float(self.params["b"])}
        else:
            params = {
                "x": [float(v) for v in self.params["x"]],
                "y": [float(v) for v in self.params["y"]],
            }
        return {
            "format_version": FORMAT_VERSION,
            "method": self.method,
            "params": params,
            "selection": {k: float(v) for k, v in self.selection.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibrator:
        """Rebuild a calibrator from :meth:`to_dict` output."""
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"calibrator format_version must be {FORMAT_VERSION}; got {data.get('format_version')!r}"
            )
        params = dict(data["params"])
        if data["method"] == "isotonic":
            params = {"x": [float(v) for v in params["x"]], "y": [float(v) for v in params["y"]]}
        else:
            params = {k: float(v) for k, v in params.items()}
        return cls(method=data["method"], params=params, selection=dict(data.get("selection", {})))


def _check_inputs(raw_pd: np.ndarray | Sequence[float], outcome: np.ndarray | Sequence[float]):
    r = np.asarray(raw_pd, dtype=np.float64).ravel()
    y = np.asarray(outcome, dtype=np.float64).ravel()
    if r.size != y.size:
        raise ValueError(f"raw_pd and outcome must have the same length; got {r.size} and {y.size}")
    if not np.all(np.isfinite(r)) or (r.size and (r.min() < 0 or r.max() > 1)):
        raise ValueError("raw_pd must be finite and in [0, 1]")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("outcome must be 0/1")
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        raise ValueError(
            f"calibration needs both defaulters and non-defaulters; got {n_pos} defaults in {y.size} rows"
        )
    return r, y


def fit_platt(
    raw_pd: np.ndarray | Sequence[float], outcome: np.ndarray | Sequence[float]
) -> Calibrator:
    """Platt scaling: maximum-likelihood ``a, b`` of ``pd = sigmoid(a * logit(raw) + b)``."""
    r, y = _check_inputs(raw_pd, outcome)
    z = _logit(r)
    # Start from the identity map with the intercept at the observed log-odds shift.
    a, b = (
        1.0,
        float(
            np.log(y.mean() / (1 - y.mean())) - np.log(clip_pd(r).mean() / (1 - clip_pd(r).mean()))
        ),
    )
    ridge = 1e-9  # keeps the Hessian invertible when z is (nearly) constant
    for _ in range(100):
        p = _sigmoid(a * z + b)
        w = p * (1 - p)
        g = np.array([np.dot(z, p - y), np.sum(p - y)])
        h = np.array([[np.dot(w * z, z) + ridge, np.dot(w, z)], [np.dot(w, z), np.sum(w) + ridge]])
        step = np.linalg.solve(h, g)
        # Backtracking keeps Newton's method from overshooting on separable data.
        loss0 = _nll(a, b, z, y)
        t = 1.0
        while t > 1e-8 and _nll(a - t * step[0], b - t * step[1], z, y) > loss0 + 1e-12:
            t *= 0.5
        a, b = a - t * step[0], b - t * step[1]
        if np.max(np.abs(t * step)) < 1e-10:
            break
    return Calibrator(method="platt", params={"a": float(a), "b": float(b)})


def _nll(a: float, b: float, z: np.ndarray, y: np.ndarray) -> float:
    s = a * z + b
    # log(1 + exp(s)) - y * s, computed stably
    return float(np.sum(np.logaddexp(0.0, s) - y * s))


def fit_isotonic(
    raw_pd: np.ndarray | Sequence[float], outcome: np.ndarray | Sequence[float]
) -> Calibrator:
    """Isotonic calibration: non-decreasing piecewise-linear map fitted by pool-adjacent-violators."""
    r, y = _check_inputs(raw_pd, outcome)
    iso = IsotonicRegression(y_min=PD_MIN, y_max=PD_MAX, increasing=True, out_of_bounds="clip")
    iso.fit(r, y)
    return Calibrator(
        method="isotonic",
        params={
            "x": iso.X_thresholds_.astype(np.float64).tolist(),
            "y": iso.y_thresholds_.astype(np.float64).tolist(),
        },
    )


_FITTERS = {"platt": fit_platt, "isotonic": fit_isotonic}


def _stratified_folds(y: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    fold = np.empty(y.size, dtype=np.int64)
    for value in (0, 1):
        idx = np.flatnonzero(y == value)
        idx = idx[rng.permutation(idx.size)]
        fold[idx] = np.arange(idx.size) % n_folds
    return fold


def fit_calibrator(
    raw_pd: np.ndarray | Sequence[float],
    outcome: np.ndarray | Sequence[float],
    *,
    method: CalibrationMethod | Literal["auto"] = "auto",
    n_folds: int = 5,
    seed: int = 42,
) -> Calibrator:
    """Fit the calibration map on the calibration rows (the validation window).

    ``method="auto"`` picks Platt or isotonic by ``n_folds``-fold cross-fitted log
    loss (stratified, seeded folds) and refits the winner on all rows; ties go
    to Platt (the simpler map). The out-of-fold log losses are kept in
    ``Calibrator.selection``.
    """
    r, y = _check_inputs(raw_pd, outcome)
    if method != "auto":
        if method not in _FITTERS:
            raise ValueError(f"method must be 'auto' or one of {list(METHODS)}; got {method!r}")
        return _FITTERS[method](r, y)
    if not isinstance(n_folds, int) or n_folds < 2:
        raise ValueError(f"n_folds must be an integer >= 2; got {n_folds!r}")
    n_pos = int(y.sum())
    if min(n_pos, y.size - n_pos) < n_folds:
        raise ValueError(
            f"cross-fitted calibration needs at least n_folds={n_folds} rows of each class; "
            f"got {n_pos} defaults and {y.size - n_pos} non-defaults"
        )
    folds = _stratified_folds(y, n_folds, seed)
    oof = {m: np.empty(y.size) for m in METHODS}
    for k in range(n_folds):
        held = folds == k
        for m in METHODS:
            oof[m][held] = _FITTERS[m](r[~held], y[~held]).apply(r[held])
    scores = {m: log_loss(oof[m], y) for m in METHODS}
    best = min(METHODS, key=lambda m: (scores[m], METHODS.index(m)))
    fitted = _FITTERS[best](r, y)
    return Calibrator(method=fitted.method, params=fitted.params, selection=scores)
