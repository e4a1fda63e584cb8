"""Train a tuned, calibrated XGBoost probability-of-default model.

Input is any labelled observation table (a Polars frame): feature columns, a
binary target (1 = default within the horizon) and, usually, an as-of date
column. The ledger panel of ``features/`` is one producer; a modeler's own
table is another. The steps:

1. Split (``models.split``): out of time by as-of date (train = oldest periods,
   validation = a later block, test = the latest block); without a time column a
   seeded stratified split, said so in the summary. Training periods whose
   outcome windows overlap the validation window are purged (H-1 periods for an
   H-period target, read from the labels of a customer panel; see
   ``models.split``): otherwise the validation window rewards memorising
   customers, and tuning and early stopping pick models that lose out of time.
2. Tune (Optuna): TPE sampler seeded with ``seed``, median pruning through
   ``optuna_integration.XGBoostPruningCallback`` on the validation log loss,
   ``n_trials`` and an optional ``timeout``. The objective is the validation
   *log loss* (a proper scoring rule: it rewards ranking and calibration alike,
   and is smoother than AUC, so early stopping and pruning are stable). Trials
   train on at most ``tune_max_rows`` training rows (a seeded sample) so that
   tuning cost does not grow with the table; early stopping always watches the
   whole validation window. An optional journal file makes the study
   resumable: rerunning with the same file continues it until it holds
   ``n_trials`` finished trials.
3. Refit: the best parameters on the whole training window, with early stopping
   on the validation window; the booster is cut at its best iteration.
4. Calibrate (``models.calibration``) on the validation window: Platt or
   isotonic, chosen by cross-fitted log loss; PDs clipped to [1e-6, 1 - 1e-6].
5. Benchmark (``models.scorecard``): a WoE logistic scorecard fitted on the
   training window.
6. Report (``models.metrics``): metrics per model per window, feature
   importance (gain), mean |SHAP| per feature (TreeSHAP contributions from
   ``Booster.predict(pred_contribs=True)``, on a seeded sample of at most
   ``shap_max_rows`` test rows: TreeSHAP costs ~1.7 ms per row for 500 depth-6
   trees on 2 cores, so 5,000 rows keep it to seconds).

XGBoost details: ``hist`` trees, ``nthread`` from the tuning config (2 by
default), monotone constraints from the per-feature directions, native missing
values, native categoricals (categories learned on the training window, coded
in sorted order; a category unseen in training is treated as missing).

Reproducibility: the same table, settings and seed give a byte-identical
booster (``save_raw("ubj")``) when the study runs all its trials, i.e. the
timeout does not cut it short and it is not resumed halfway.

Caveats: validation-window metrics are optimistic (that window chose the
hyper-parameters, the stopping round and the calibration); the test window is
the honest one. Median pruning compares trials at the same boosting round, so
it favours faster learning rates; with early stopping that costs little.

Cost (measured on a shared 2-core machine, load ~1-2: the 20k-customer x 48-month
panel, 765k rows x 46 features, 173k training rows after the purge, 12 trials,
tune_max_rows=100k): 73 s wall in all (tuning 47 s, refit 16 s, scorecard 7 s).
Before the purge the leaky validation window kept early stopping going for
~1,000 rounds: 40 trials took 638 s and the refit 149 s. Where other work shares the cores, set
``OMP_WAIT_POLICY=PASSIVE`` before XGBoost is imported: spinning OpenMP threads
made each boosting round 4-5x slower under contention.

Scale-out: given a ``dask_client`` (a ``distributed.Client``), the boosting of every
trial and of the refit runs on that Dask cluster through ``xgboost.dask``
(``DaskQuantileDMatrix`` for the training window, ``DaskDMatrix`` for the validation
window, ``xgboost.dask.train``); trials stay sequential. The design matrices are built
here and shipped to the workers in one partition per worker; calibration, scorecard and
report run here on the returned booster. Differences from the local path: trials are not
pruned (the pruning callback would run on every worker, not here), and the hist sketch
is merged over partitions, so the model is close to, not byte-identical with, the local
one (the integration test holds the test AUC within 0.02 of it). The study name includes
the engine, so a local study is never resumed on Dask or the other way round.

No file IO here except the optional Optuna journal file; no MLflow, no Prefect.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import polars as pl
import xgboost as xgb
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from optuna_integration import XGBoostPruningCallback

from creditflow.models.calibration import Calibrator, fit_calibrator, fit_platt
from creditflow.models.metrics import DEFAULT_ECE_BINS, default_rate_by_grade, evaluate
from creditflow.models.scorecard import Scorecard, column_as_float, fit_scorecard
from creditflow.models.split import Split, SplitConfig, SplitSummary, split_windows

SEARCH_SPACE_VERSION = 1
MODEL_NAMES = ("xgboost", "xgboost_uncalibrated", "scorecard")
REPORT_WINDOWS = ("validation", "test")
_CATEGORICAL_DTYPES = (pl.String, pl.Categorical, pl.Enum)
_VALIDATION = "validation"
_OBSERVATION_KEY = f"{_VALIDATION}-logloss"
_MIN_CLASS_ROWS_FOR_CROSS_FIT = 25  # 5 folds x 5 rows of the rarer class


# ---------------------------------------------------------------------------- features


@dataclass(frozen=True)
class FeatureSpec:
    """The model's inputs: feature order, categorical levels and monotone directions."""

    features: tuple[str, ...]
    categorical: tuple[str, ...] = ()
    categories: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Levels of each categorical feature, from the training window, in code order."""
    monotone: Mapping[str, int] = field(default_factory=dict)
    """+1: PD rises with the feature; -1: PD falls; absent or 0: unconstrained."""

    @property
    def feature_types(self) -> list[str]:
        cat = set(self.categorical)
        return ["c" if f in cat else "q" for f in self.features]

    @property
    def monotone_constraints(self) -> str:
        """XGBoost's ``monotone_constraints`` tuple string, in feature order."""
        return "(" + ",".join(str(int(self.monotone.get(f, 0))) for f in self.features) + ")"

    def design_matrix(self, frame: pl.DataFrame) -> np.ndarray:
        """float32 matrix in feature order; categorical features as level codes, missing/unseen as NaN.

        Numeric and money (Decimal) columns are converted to float here because the model needs a float.
        """
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise ValueError(f"frame lacks model features {missing}")
        out = np.empty((frame.height, len(self.features)), dtype=np.float32)
        cat = set(self.categorical)
        for j, f in enumerate(self.features):
            if f in cat:
                levels = self.categories[f]
                codes = (
                    frame.get_column(f)
                    .cast(pl.String)
                    .replace_strict(
                        list(levels),
                        list(range(len(levels))),
                        default=None,
                        return_dtype=pl.Float32,
                    )
                )
                out[:, j] = codes.fill_null(float("nan")).to_numpy()
            else:
                out[:, j] = column_as_float(frame, f)
        return out

    def dmatrix(
        self, frame: pl.DataFrame, label: np.ndarray | None = None, n_threads: int = 2
    ) -> xgb.DMatrix:
        """An XGBoost DMatrix of ``frame`` with feature names, types and native missing values."""
        return xgb.DMatrix(
            self.design_matrix(frame),
            label=label,
            feature_names=list(self.features),
            feature_types=self.feature_types,
            enable_categorical=True,
            missing=np.nan,
            nthread=n_threads,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "categorical": list(self.categorical),
            "categories": {k: list(v) for k, v in self.categories.items()},
            "monotone": {k: int(v) for k, v in self.monotone.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureSpec:
        return cls(
            features=tuple(d["features"]),
            categorical=tuple(d["categorical"]),
            categories={k: tuple(v) for k, v in d["categories"].items()},
            monotone={k: int(v) for k, v in d["monotone"].items()},
        )


def _is_id_column(name: str) -> bool:
    return name == "id" or name.endswith("_id")


def resolve_features(
    frame: pl.DataFrame,
    *,
    target: str,
    time_column: str | None,
    features: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    monotone: Mapping[str, int] | None = None,
    id_columns: Sequence[str] | None = None,
) -> tuple[list[str], list[str], dict[str, int], list[str]]:
    """Decide the model's features: ``(features, categorical, monotone, ignored_columns)``.

    Without ``features``: every column except the target, the time column and
    id columns (``id_columns``, default: ``id`` and names ending in ``_id``);
    columns of other dtypes than numeric, boolean, decimal, text or categorical
    (dates, lists) are ignored and listed. Without ``categorical``: the text and
    categorical columns among the features.
    """
    cols = frame.columns
    for name, col in (("target", target), ("time column", time_column)):
        if col is not None and col not in cols:
            raise ValueError(f"{name} {col!r} is not in the table; columns: {cols}")
    ids = set(id_columns) if id_columns is not None else {c for c in cols if _is_id_column(c)}
    reserved = {target, time_column} | ids
    ignored: list[str] = []
    if features is None:
        features = []
        for c in cols:
            if c in reserved:
                continue
            dtype = frame.schema[c]
            if dtype.is_numeric() or dtype == pl.Boolean or isinstance(dtype, _CATEGORICAL_DTYPES):
                features.append(c)
            else:
                ignored.append(c)
    else:
        features = list(features)
        missing = [f for f in features if f not in cols]
        if missing:
            raise ValueError(f"features {missing} are not in the table; columns: {cols}")
        clash = [f for f in features if f in (target, time_column)]
        if clash:
            raise ValueError(f"features must not include the target or time column; got {clash}")
        dupes = sorted({f for f in features if features.count(f) > 1})
        if dupes:
            raise ValueError(f"features are listed twice: {dupes}")
    if not features:
        raise ValueError(f"no usable feature columns; columns: {cols}, ignored: {ignored}")
    if categorical is None:
        categorical = [f for f in features if isinstance(frame.schema[f], _CATEGORICAL_DTYPES)]
    else:
        categorical = list(categorical)
        unknown = [c for c in categorical if c not in features]
        if unknown:
            raise ValueError(f"categorical features {unknown} are not among the features")
    cat = set(categorical)
    for f in features:
        dtype = frame.schema[f]
        if f not in cat and not (dtype.is_numeric() or dtype == pl.Boolean):
            raise ValueError(
                f"feature {f!r} has dtype {dtype}: numeric features must be numeric, boolean or decimal; "
                "list it in categorical to treat it by category"
            )
    monotone = {k: int(v) for k, v in (monotone or {}).items()}
    for f, d in monotone.items():
        if f not in features:
            raise ValueError(f"monotone direction given for {f!r}, which is not a feature")
        if d not in (-1, 0, 1):
            raise ValueError(f"monotone direction of {f!r} must be -1, 0 or 1; got {d}")
        if d != 0 and f in cat:
            raise ValueError(
                f"monotone direction given for categorical feature {f!r}; only numeric features can be monotone"
            )
    return (
        features,
        [f for f in features if f in cat],
        {f: d for f, d in monotone.items() if d != 0},
        ignored,
    )


def _categories(frame: pl.DataFrame, categorical: Sequence[str]) -> dict[str, tuple[str, ...]]:
    return {
        f: tuple(frame.get_column(f).cast(pl.String).drop_nulls().unique().sort().to_list())
        for f in categorical
    }


# ------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class PdModel:
    """The scoring model: feature spec + XGBoost booster + calibrator."""

    spec: FeatureSpec
    booster: xgb.Booster
    calibrator: Calibrator

    def raw_pd(self, frame: pl.DataFrame) -> np.ndarray:
        """Uncalibrated booster probability of each row."""
        return self.booster.predict(self.spec.dmatrix(frame)).astype(np.float64)

    def predict_pd(self, frame: pl.DataFrame) -> np.ndarray:
        """Calibrated 12-month PD of each row, strictly inside (0, 1)."""
        return self.calibrator.apply(self.raw_pd(frame))

    def contributions(self, frame: pl.DataFrame) -> np.ndarray:
        """TreeSHAP contributions to the log-odds: (rows, features + 1); the last column is the bias."""
        return self.booster.predict(self.spec.dmatrix(frame), pred_contribs=True)

    def to_dict(self) -> dict[str, Any]:
        """Everything but the booster (saved separately as XGBoost JSON/UBJ), JSON-ready."""
        return {"spec": self.spec.to_dict(), "calibrator": self.calibrator.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], booster: xgb.Booster) -> PdModel:
        return cls(
            spec=FeatureSpec.from_dict(d["spec"]),
            booster=booster,
            calibrator=Calibrator.from_dict(d["calibrator"]),
        )


# ------------------------------------------------------------------------------ tuning


@dataclass(frozen=True)
class TuningConfig:
    """Optuna and XGBoost training budget.

    ``n_trials``: finished trials the study should hold (a resumed study runs
    only the missing ones). ``timeout_seconds``: wall-clock cap of this call's
    tuning (None: no cap; a cap makes the result depend on machine speed).
    ``storage_path``: Optuna journal file for a resumable study (None: in
    memory). ``study_name``: default derived from the data and settings, so a
    different table never resumes another table's study.
    ``tune_max_rows``: trials train on a seeded sample of at most this many
    training rows (the final refit uses all). ``max_rounds`` /
    ``early_stopping_rounds``: boosting rounds cap and patience on the
    validation log loss. ``prune_every``: report to the pruner every k rounds.
    """

    n_trials: int = 40
    timeout_seconds: float | None = None
    storage_path: str | Path | None = None
    study_name: str | None = None
    tune_max_rows: int = 100_000
    max_rounds: int = 2000
    early_stopping_rounds: int = 50
    n_threads: int = 2
    pruning: bool = True
    prune_every: int = 5
    prune_warmup_rounds: int = 50
    max_bin: int = 256

    def __post_init__(self) -> None:
        positive = (
            "n_trials",
            "tune_max_rows",
            "max_rounds",
            "early_stopping_rounds",
            "n_threads",
            "prune_every",
            "max_bin",
        )
        for name in positive:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer; got {v!r}")
        if self.timeout_seconds is not None and not self.timeout_seconds > 0:
            raise ValueError(f"timeout_seconds must be > 0 or None; got {self.timeout_seconds!r}")
        if self.prune_warmup_rounds < 0:
            raise ValueError(f"prune_warmup_rounds must be >= 0; got {self.prune_warmup_rounds}")


def suggest_params(trial: optuna.Trial) -> dict[str, Any]:
    """The search space: shallow, regularised trees suited to PD models."""
    return {
        "max_depth": trial.suggest_int("max_depth", 2, 6),
        "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.3, log=True),
        "min_child_weight": trial.suggest_float("min_child_weight", 0.5, 100.0, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 50.0, log=True),
        "reg_alpha": trial.suggest_float("reg_alpha", 1e-3, 10.0, log=True),
    }


def _base_params(spec: FeatureSpec, config: TuningConfig, seed: int) -> dict[str, Any]:
    return {
        "objective": "binary:logistic",
        "eval_metric": "logloss",
        "tree_method": "hist",
        "max_bin": config.max_bin,
        "nthread": config.n_threads,
        "seed": seed,
        "monotone_constraints": spec.monotone_constraints,
        "max_cat_to_onehot": 4,
        "verbosity": 0,
    }


class _ThinnedPruningCallback(XGBoostPruningCallback):
    """Reports to the pruner every ``every`` rounds (a report per round is a journal write per round)."""

    def __init__(self, trial: optuna.Trial, observation_key: str, every: int) -> None:
        super().__init__(trial, observation_key)
        self._every = every

    def after_iteration(self, model: Any, epoch: int, evals_log: dict) -> bool:
        if epoch % self._every:
            return False
        return super().after_iteration(model, epoch, evals_log)


def _fit_booster(
    params: dict[str, Any],
    dtrain: xgb.DMatrix,
    dvalid: xgb.DMatrix,
    config: TuningConfig,
    callbacks: list[xgb.callback.TrainingCallback] | None = None,
) -> xgb.Booster:
    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=config.max_rounds,
        evals=[(dvalid, _VALIDATION)],
        early_stopping_rounds=config.early_stopping_rounds,
        callbacks=callbacks or [],
        verbose_eval=False,
    )
    return booster


def _fit_booster_dask(
    client: Any,
    params: dict[str, Any],
    dtrain: Any,
    dvalid: Any,
    config: TuningConfig,
) -> xgb.Booster:
    """``_fit_booster`` on a Dask cluster: the same rounds, early stopping and validation log loss."""
    import xgboost.dask as dxgb

    # xgboost.dask looks up the default client even when one is passed: make this one current.
    with client.as_current():
        out = dxgb.train(
            client,
            params,
            dtrain,
            num_boost_round=config.max_rounds,
            evals=[(dvalid, _VALIDATION)],
            early_stopping_rounds=config.early_stopping_rounds,
            verbose_eval=False,
        )
    return out["booster"]


@dataclass(frozen=True)
class _DaskMatrices:
    """Builds the Dask counterparts of the local matrices: one partition per worker."""

    client: Any
    spec: FeatureSpec
    target: str
    config: TuningConfig

    def _arrays(self, frame: pl.DataFrame) -> tuple[Any, Any]:
        import dask.array as da

        workers = max(1, len(self.client.scheduler_info(n_workers=-1)["workers"]))
        rows = max(1, -(-frame.height // workers))
        x = self.spec.design_matrix(frame)
        return da.from_array(x, chunks=(rows, x.shape[1])), da.from_array(_labels(frame, self.target), chunks=rows)

    def train(self, frame: pl.DataFrame) -> Any:
        import xgboost.dask as dxgb

        x, y = self._arrays(frame)
        with self.client.as_current():
            return dxgb.DaskQuantileDMatrix(
                self.client, x, y, feature_names=list(self.spec.features), feature_types=self.spec.feature_types,
                enable_categorical=True, missing=np.nan, max_bin=self.config.max_bin,
            )

    def valid(self, frame: pl.DataFrame) -> Any:
        import xgboost.dask as dxgb

        x, y = self._arrays(frame)
        with self.client.as_current():
            return dxgb.DaskDMatrix(
                self.client, x, y, feature_names=list(self.spec.features), feature_types=self.spec.feature_types,
                enable_categorical=True, missing=np.nan,
            )


def _storage(path: str | Path | None) -> optuna.storages.BaseStorage | None:
    if path is None:
        return None
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"storage_path folder {path.parent} does not exist")
    return JournalStorage(JournalFileBackend(str(path)))


_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=_FINISHED)


def _study_name(fingerprint: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(
        json.dumps(fingerprint, sort_keys=True, default=str).encode()
    ).hexdigest()
    return f"creditflow-pd-{digest[:16]}"


@dataclass(frozen=True)
class StudyOutcome:
    best_params: dict[str, Any]
    best_value: float
    n_trials: int
    n_trials_run: int
    n_pruned: int
    study_name: str


def tune_xgboost(
    dtrain: xgb.DMatrix,
    dvalid: xgb.DMatrix,
    *,
    base_params: Mapping[str, Any],
    config: TuningConfig,
    seed: int,
    study_name: str,
    on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
    dask_client: Any | None = None,
) -> StudyOutcome:
    """Run (or resume) the Optuna study minimising the validation log loss; return the best trial.

    ``on_trial`` is called with each trial this call runs, once it has finished
    (complete or pruned), e.g. to log it to a tracking server; it must not
    change the study. With ``dask_client``, ``dtrain``/``dvalid`` are
    ``xgboost.dask`` matrices and each trial trains on the cluster, unpruned.
    """
    storage = _storage(config.storage_path) or optuna.storages.InMemoryStorage()
    pruner: optuna.pruners.BasePruner = (
        optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=config.prune_warmup_rounds)
        if config.pruning
        else optuna.pruners.NopPruner()
    )
    # Count the finished trials first so a resumed study gets a fresh sampler
    # stream (re-using the seed would replay the first random trials).
    try:
        study_id = storage.get_study_id_from_name(study_name)
        n_before = len(storage.get_all_trials(study_id, deepcopy=False, states=_FINISHED))
    except KeyError:
        n_before = 0
    sampler = optuna.samplers.TPESampler(
        seed=seed + n_before, multivariate=True, n_startup_trials=10
    )
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction="minimize",
        load_if_exists=True,
        sampler=sampler,
        pruner=pruner,
    )

    def objective(trial: optuna.Trial) -> float:
        params = {**base_params, **suggest_params(trial)}
        if dask_client is not None:
            booster = _fit_booster_dask(dask_client, params, dtrain, dvalid, config)
            trial.set_user_attr("best_iteration", int(booster.best_iteration))
            return float(booster.best_score)
        callbacks = (
            [_ThinnedPruningCallback(trial, _OBSERVATION_KEY, config.prune_every)]
            if config.pruning
            else []
        )
        booster = _fit_booster(params, dtrain, dvalid, config, callbacks)
        trial.set_user_attr("best_iteration", int(booster.best_iteration))
        return float(booster.best_score)

    remaining = max(0, config.n_trials - n_before)
    if remaining:
        callbacks = [lambda _study, trial: on_trial(trial)] if on_trial is not None else None
        study.optimize(
            objective,
            n_trials=remaining,
            timeout=config.timeout_seconds,
            n_jobs=1,
            catch=(),
            callbacks=callbacks,
        )
    finished = _finished(study)
    complete = [t for t in finished if t.state == TrialState.COMPLETE]
    if not complete:
        raise RuntimeError(
            f"the Optuna study {study_name!r} has no completed trial; raise n_trials or the timeout"
        )
    best = study.best_trial
    return StudyOutcome(
        best_params=dict(best.params),
        best_value=float(best.value),
        n_trials=len(finished),
        n_trials_run=len(finished) - n_before,
        n_pruned=len(finished) - len(complete),
        study_name=study_name,
    )


# ------------------------------------------------------------------------------ result


@dataclass(frozen=True)
class TrainingResult:
    """Everything one training produced; ``predict_pd`` scores new observations."""

    model: PdModel
    scorecard: Scorecard
    best_params: dict[str, Any]
    """Tuned hyper-parameters plus ``n_estimators`` (rounds kept after early stopping)."""
    xgb_params: dict[str, Any]
    """The complete parameter dict of the final booster."""
    n_trials: int
    """Finished (complete + pruned) trials in the study, including resumed ones."""
    n_trials_run: int
    n_trials_pruned: int
    study_name: str
    best_validation_log_loss: float
    split: SplitSummary
    metrics: dict[str, dict[str, dict[str, float]]]
    """``metrics[model][window]``; models: xgboost (calibrated), xgboost_uncalibrated, scorecard;
    windows: validation (also used for tuning and calibration, so optimistic) and test."""
    grade_tables: dict[str, dict[str, pl.DataFrame]]
    """Default rate per master-scale grade, ``[model][window]``; empty without band edges."""
    feature_importance: dict[str, float]
    """XGBoost gain (average loss reduction of the splits on a feature), 0 for unused features."""
    mean_abs_shap: dict[str, float]
    """Mean |TreeSHAP contribution| to the log-odds per feature, on a sample of the test window."""
    ignored_columns: list[str]
    notes: list[str]
    seed: int
    timings_seconds: dict[str, float] = field(default_factory=dict)
    """Wall-clock seconds per step: split, tuning, refit, calibration, scorecard, report."""

    @property
    def booster(self) -> xgb.Booster:
        return self.model.booster

    @property
    def calibrator(self) -> Calibrator:
        return self.model.calibrator

    @property
    def features(self) -> tuple[str, ...]:
        return self.model.spec.features

    def predict_pd(self, frame: pl.DataFrame) -> np.ndarray:
        """Calibrated 12-month PD of each row of ``frame`` (needs the model's feature columns)."""
        return self.model.predict_pd(frame)


# ---------------------------------------------------------------------------- training


def _labels(df: pl.DataFrame, target: str) -> np.ndarray:
    return df.get_column(target).cast(pl.Float64).to_numpy()


def _train_matrix(
    spec: FeatureSpec, train: pl.DataFrame, target: str, config: TuningConfig
) -> xgb.QuantileDMatrix:
    return xgb.QuantileDMatrix(
        spec.design_matrix(train),
        label=_labels(train, target),
        feature_names=list(spec.features),
        feature_types=spec.feature_types,
        enable_categorical=True,
        missing=np.nan,
        nthread=config.n_threads,
        max_bin=config.max_bin,
    )


def _sample_rows(df: pl.DataFrame, max_rows: int, seed: int) -> pl.DataFrame:
    if df.height <= max_rows:
        return df
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(df.height, size=max_rows, replace=False))
    return df[idx]


def train_pd_model(
    frame: pl.DataFrame | pl.LazyFrame,
    *,
    target: str,
    time_column: str | None,
    features: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    monotone: Mapping[str, int] | None = None,
    id_columns: Sequence[str] | None = None,
    split_config: SplitConfig | None = None,
    tuning: TuningConfig | None = None,
    calibration: str = "auto",
    band_edges: Sequence[float] | None = None,
    ece_bins: int = DEFAULT_ECE_BINS,
    shap_max_rows: int = 5_000,
    seed: int = 42,
    on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
    dask_client: Any | None = None,
) -> TrainingResult:
    """Train, tune, calibrate and benchmark a 12-month PD model on a labelled table.

    ``frame``: one row per observation with ``target`` (0/1; null = not yet
    matured, left out), ``time_column`` (as-of date; None for a
    cross-sectional table) and the features. ``features`` / ``categorical`` /
    ``monotone`` (feature -> +1/-1/0) / ``id_columns``: see
    :func:`resolve_features`. ``calibration``: "auto", "platt" or "isotonic".
    ``band_edges``: master-scale PD band edges for the grade tables.
    ``on_trial``: called with each finished Optuna trial (see :func:`tune_xgboost`).
    ``dask_client``: a ``distributed.Client``; the trials and the refit then boost on
    its cluster through ``xgboost.dask`` (see the module docstring).
    Returns a :class:`TrainingResult`.
    """
    tuning = tuning or TuningConfig()
    split_config = split_config or SplitConfig()
    if calibration not in ("auto", "platt", "isotonic"):
        raise ValueError(f"calibration must be 'auto', 'platt' or 'isotonic'; got {calibration!r}")
    if not isinstance(shap_max_rows, int) or shap_max_rows < 1:
        raise ValueError(f"shap_max_rows must be a positive integer; got {shap_max_rows!r}")
    if dask_client is not None and not callable(getattr(dask_client, "scheduler_info", None)):
        raise TypeError(f"dask_client must be a distributed.Client; got {type(dask_client).__name__}")
    df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
    if not isinstance(df, pl.DataFrame):
        raise TypeError(
            f"frame must be a polars DataFrame or LazyFrame; got {type(frame).__name__}"
        )
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[step] = round(now - clock, 3)
        clock = now

    feats, cats, mono, ignored = resolve_features(
        df,
        target=target,
        time_column=time_column,
        features=features,
        categorical=categorical,
        monotone=monotone,
        id_columns=id_columns,
    )
    groups = (
        list(id_columns) if id_columns is not None else [c for c in df.columns if _is_id_column(c)]
    )
    split: Split = split_windows(
        df.select(
            [
                c
                for c in dict.fromkeys(
                    [*groups, *([time_column] if time_column else []), target, *feats]
                )
            ]
        ),
        target=target,
        time_column=time_column,
        config=split_config,
        group_columns=groups,
        seed=seed,
    )
    notes = [split.summary.note]
    if ignored:
        notes.append(f"columns ignored (not numeric/boolean/text/categorical): {ignored}")
    spec = FeatureSpec(
        features=tuple(feats),
        categorical=tuple(cats),
        categories=_categories(split.train, cats),
        monotone=mono,
    )
    lap("split")

    # Tuning on a seeded sample of the training window; early stopping on the whole validation window.
    tune_train = _sample_rows(split.train, tuning.tune_max_rows, seed)
    if tune_train.height < split.train.height:
        notes.append(
            f"tuning trials used a seeded sample of {tune_train.height} of {split.train.height} training rows"
        )
    if int(tune_train[target].sum()) in (0, tune_train.height):
        tune_train = split.train
    base = _base_params(spec, tuning, seed)
    if dask_client is not None:
        # xgboost.dask gives each worker's booster the worker's own thread count.
        base.pop("nthread")
    fingerprint = {
        "space": SEARCH_SPACE_VERSION,
        "spec": spec.to_dict(),
        "target": target,
        "split": split.summary.to_dict(),
        "seed": seed,
        "tune_rows": tune_train.height,
        "base": base,
        "rounds": [tuning.max_rounds, tuning.early_stopping_rounds],
    }
    if dask_client is not None:
        fingerprint["engine"] = "xgboost.dask"
        notes.append("boosting ran on a Dask cluster through xgboost.dask; Optuna trials were not pruned")
    study_name = tuning.study_name or _study_name(fingerprint)
    # The validation set is a plain DMatrix on purpose: as an eval set, a
    # QuantileDMatrix cost ~10x more per boosting round (measured on 120k rows).
    dvalid = spec.dmatrix(
        split.validation, label=_labels(split.validation, target), n_threads=tuning.n_threads
    )
    dask_matrices = (
        _DaskMatrices(dask_client, spec, target, tuning) if dask_client is not None else None
    )
    if dask_matrices is not None:
        dtune = dask_matrices.train(tune_train)
        dvalid_fit = dask_matrices.valid(split.validation)
    else:
        dtune = _train_matrix(spec, tune_train, target, tuning)
        dvalid_fit = dvalid
    outcome = tune_xgboost(
        dtune,
        dvalid_fit,
        base_params=base,
        config=tuning,
        seed=seed,
        study_name=study_name,
        on_trial=on_trial,
        dask_client=dask_client,
    )
    lap("tuning")

    # Refit on the whole training window with the best parameters.
    params = {**base, **outcome.best_params}
    if dask_matrices is not None:
        dtrain = dtune if tune_train is split.train else dask_matrices.train(split.train)
        del dtune
        full = _fit_booster_dask(dask_client, params, dtrain, dvalid_fit, tuning)
        del dvalid_fit
    else:
        dtrain = (
            dtune if tune_train is split.train else _train_matrix(spec, split.train, target, tuning)
        )
        del dtune, dvalid_fit
        full = _fit_booster(params, dtrain, dvalid, tuning)
    booster = full[: full.best_iteration + 1]
    del dtrain, full
    lap("refit")

    # Calibration on the validation window.
    y_valid = _labels(split.validation, target)
    raw_valid = booster.predict(dvalid).astype(np.float64)
    del dvalid
    if (
        calibration == "auto"
        and min(y_valid.sum(), y_valid.size - y_valid.sum()) < _MIN_CLASS_ROWS_FOR_CROSS_FIT
    ):
        calibrator = fit_platt(raw_valid, y_valid)
        notes.append(
            f"fewer than {_MIN_CLASS_ROWS_FOR_CROSS_FIT} validation rows of a class: too few to choose the "
            "calibration by cross-fitting, Platt used"
        )
    else:
        calibrator = fit_calibrator(raw_valid, y_valid, method=calibration, seed=seed)  # type: ignore[arg-type]
    model = PdModel(spec=spec, booster=booster, calibrator=calibrator)
    lap("calibration")

    scorecard = fit_scorecard(
        split.train, target=target, features=feats, categorical=cats, monotone=mono, seed=seed
    )
    lap("scorecard")

    metrics: dict[str, dict[str, dict[str, float]]] = {m: {} for m in MODEL_NAMES}
    grade_tables: dict[str, dict[str, pl.DataFrame]] = (
        {m: {} for m in MODEL_NAMES} if band_edges is not None else {}
    )
    for window in REPORT_WINDOWS:
        wdf = split.window(window)
        y = _labels(wdf, target)
        raw = raw_valid if window == _VALIDATION else model.raw_pd(wdf)
        preds = {
            "xgboost": calibrator.apply(raw),
            "xgboost_uncalibrated": raw,
            "scorecard": scorecard.predict_pd(wdf),
        }
        for m, p in preds.items():
            metrics[m][window] = evaluate(p, y, n_bins=ece_bins)
            if band_edges is not None:
                grade_tables[m][window] = default_rate_by_grade(p, y, band_edges)

    gain = booster.get_score(importance_type="gain")
    importance = {f: float(gain.get(f, 0.0)) for f in feats}
    shap_rows = _sample_rows(split.test, shap_max_rows, seed)
    contrib = model.contributions(shap_rows)
    mean_abs = np.abs(contrib[:, :-1]).mean(axis=0)
    mean_abs_shap = {f: float(v) for f, v in zip(feats, mean_abs, strict=True)}

    best_params = {**outcome.best_params, "n_estimators": int(booster.num_boosted_rounds())}
    lap("report")
    return TrainingResult(
        model=model,
        scorecard=scorecard,
        best_params=best_params,
        xgb_params=params,
        n_trials=outcome.n_trials,
        n_trials_run=outcome.n_trials_run,
        n_trials_pruned=outcome.n_pruned,
        study_name=outcome.study_name,
        best_validation_log_loss=outcome.best_value,
        split=split.summary,
        metrics=metrics,
        grade_tables=grade_tables,
        feature_importance=importance,
        mean_abs_shap=mean_abs_shap,
        ignored_columns=ignored,
        notes=notes,
        seed=seed,
        timings_seconds=timings,
    )


__all__ = [
    "FeatureSpec",
    "PdModel",
    "StudyOutcome",
    "TrainingResult",
    "TuningConfig",
    "resolve_features",
    "suggest_params",
    "train_pd_model",
    "tune_xgboost",
]
