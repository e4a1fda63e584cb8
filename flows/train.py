"""Training flow: observation panel (or a modeler's own table) -> a registered, gated PD model.

1. read the training table: the feature panel of the configured feature set, or ``--table FILE``
   (CSV/Parquet) with a binary ``--target`` and an optional ``--time-column``;
2. hash its content (the data hash recorded with the model) and open the parent MLflow run
   in the target's experiment;
3. train (``models.train.train_pd_model``): out-of-time split, Optuna tuning (each trial a
   nested run), refit, calibration, scorecard benchmark, metrics;
4. log parameters, metrics and the report; log the booster (UBJ) + ``pd_model.json`` and
   register it as a new version with alias ``challenger``;
5. promotion gate: the champion is re-scored on this test window; ``champion`` moves only
   when the new version beats it and the scorecard and is calibrated within the bound;
6. model card and run summary (``WORKDIR/runs/train-*.json``).

On a Dask task runner (``runner: dask``, see ``flows.runner``) step 3 boosts on the
flow's Dask cluster through ``xgboost.dask`` (``models.train``: trials stay sequential
and unpruned; the model is within a stated tolerance of the local one, not identical).

``run_train`` / ``format_train`` are what the command line calls.
"""

from __future__ import annotations

import os

# Before xgboost is imported (see flows.tracking).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import optuna
import polars as pl
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from creditflow.core.config import Settings, load_settings
from creditflow.core.paths import Paths
from creditflow.features.panel import AS_OF_DATE, LABEL
from creditflow.features.registry import (
    categorical_features,
    feature_names,
    monotone_constraints,
)
from creditflow.flows import tracking
from creditflow.flows.features import scan_panel
from creditflow.flows.lake import write_json_atomic
from creditflow.flows.runner import dask_scheduler_address, with_runner
from creditflow.models.split import SplitConfig, SplitError, split_windows
from creditflow.models.train import TrainingResult, TuningConfig, train_pd_model
from creditflow.policy.policy import load_policy

PANEL_ID_COLUMNS = ("customer_id",)
_TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
_REPORTED_MODELS = ("xgboost", "scorecard")
_REPORTED_METRICS = ("auc", "gini", "ks", "brier", "log_loss", "ece")


class TrainingInputError(ValueError):
    """The training table or its target cannot be used; the message says why."""


@dataclass(frozen=True)
class TrainingTable:
    """A labelled observation table and how to read it."""

    frame: pl.DataFrame
    target: str
    time_column: str | None
    id_columns: tuple[str, ...]
    features: tuple[str, ...] | None
    """None: every usable column (see models.train.resolve_features)."""
    categorical: tuple[str, ...] | None = None
    monotone: dict[str, int] = field(default_factory=dict)
    feature_set: str = ""
    source: str = ""

    def hashed_columns(self) -> list[str]:
        """The columns the model can see: ids, time, target and the features."""
        if self.features is not None:
            feats = list(self.features)
        else:
            reserved = {self.target, self.time_column, *self.id_columns}
            feats = [c for c in self.frame.columns if c not in reserved]
        cols = [
            *self.id_columns,
            *([self.time_column] if self.time_column else []),
            self.target,
            *feats,
        ]
        return list(dict.fromkeys(cols))


# ------------------------------------------------------------------------------ input


def _is_id_column(name: str) -> bool:
    return name == "id" or name.endswith("_id")


def check_target(frame: pl.DataFrame | pl.LazyFrame, target: str) -> None:
    """The target must exist and be 0/1 (boolean or numeric) with both classes among labelled rows."""
    schema = frame.collect_schema() if isinstance(frame, pl.LazyFrame) else frame.schema
    if target not in schema:
        raise TrainingInputError(
            f"target column {target!r} is not in the table; columns: {list(schema)}"
        )
    dtype = schema[target]
    if not (dtype == pl.Boolean or dtype.is_integer() or dtype.is_float()):
        raise TrainingInputError(f"target {target!r} must be binary 0/1; got dtype {dtype}")
    lf = frame.lazy() if isinstance(frame, pl.DataFrame) else frame
    values = (
        lf.select(pl.col(target).cast(pl.Float64))
        .drop_nulls()
        .drop_nans()
        .unique()
        .collect()
        .get_column(target)
        .sort()
        .to_list()
    )
    bad = [v for v in values if v not in (0.0, 1.0)]
    if bad:
        raise TrainingInputError(
            f"target {target!r} must be binary 0/1; got values such as {bad[:5]}"
        )
    if len(values) < 2:
        what = "no labelled rows" if not values else f"only the class {int(values[0])}"
        raise TrainingInputError(
            f"target {target!r} has {what}: a default model needs both defaulters (1) and non-defaulters (0)"
        )


def _read_table_file(path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise TrainingInputError(f"table {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in _TABLE_SUFFIXES:
        raise TrainingInputError(
            f"table {path} must be CSV or Parquet ({', '.join(_TABLE_SUFFIXES)})"
        )
    try:
        if suffix == ".csv":
            return pl.read_csv(path, try_parse_dates=True, infer_schema_length=10_000)
        return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as e:
        raise TrainingInputError(f"cannot read table {path}: {e}") from None


def _parse_time_column(frame: pl.DataFrame, time_column: str) -> pl.DataFrame:
    if time_column not in frame.columns:
        raise TrainingInputError(
            f"time column {time_column!r} is not in the table; columns: {frame.columns}"
        )
    dtype = frame.schema[time_column]
    if dtype == pl.String:
        col = pl.col(time_column)
        parsed = frame.select(
            pl.coalesce(
                col.str.to_date("%Y-%m-%d", strict=False), col.str.to_date("%Y/%m/%d", strict=False)
            )
        ).to_series()
        bad = frame.filter(parsed.is_null() & frame.get_column(time_column).is_not_null())
        if bad.height:
            raise TrainingInputError(
                f"time column {time_column!r} must hold dates YYYY-MM-DD or YYYY/MM/DD; got values such as "
                f"{bad.get_column(time_column).head(3).to_list()}"
            )
        return frame.with_columns(parsed.alias(time_column))
    if not (dtype.is_temporal() or dtype.is_numeric()):
        raise TrainingInputError(
            f"time column {time_column!r} must be dates or period numbers; got {dtype}"
        )
    return frame


def load_training_table(
    settings: Settings,
    *,
    table: str | Path | None = None,
    target: str | None = None,
    time_column: str | None = None,
    features: Sequence[str] | None = None,
) -> TrainingTable:
    """The observation panel of the configured feature set, or a modeler's CSV/Parquet table."""
    if table is None:
        if target not in (None, LABEL):
            raise TrainingInputError(
                f"the panel's target is {LABEL!r}; --target {target!r} needs --table"
            )
        if time_column not in (None, AS_OF_DATE):
            raise TrainingInputError(
                f"the panel's time column is {AS_OF_DATE!r}; got {time_column!r}"
            )
        fs = settings.features.feature_set
        all_features = feature_names(fs)
        chosen = tuple(features) if features is not None else all_features
        unknown = [f for f in chosen if f not in all_features]
        if unknown:
            raise TrainingInputError(f"features {unknown} are not in feature set {fs!r}")
        frame = (
            scan_panel(Paths(settings.workdir), fs).collect().sort(AS_OF_DATE, *PANEL_ID_COLUMNS)
        )
        check_target(frame, LABEL)
        mono = {f: d for f, d in monotone_constraints(fs).items() if f in chosen and d != 0}
        return TrainingTable(
            frame=frame,
            target=LABEL,
            time_column=AS_OF_DATE,
            id_columns=PANEL_ID_COLUMNS,
            features=chosen,
            categorical=tuple(f for f in categorical_features(fs) if f in chosen),
            monotone=mono,
            feature_set=fs,
            source=f"feature panel {fs} under {Paths(settings.workdir).features / fs}",
        )
    if not target:
        raise TrainingInputError("--table needs --target: the binary 0/1 column to predict")
    path = Path(table)
    frame = _read_table_file(path)
    check_target(frame, target)
    if time_column is not None:
        frame = _parse_time_column(frame, time_column)
    return TrainingTable(
        frame=frame,
        target=target,
        time_column=time_column,
        id_columns=tuple(
            c for c in frame.columns if _is_id_column(c) and c not in (target, time_column)
        ),
        features=tuple(features) if features is not None else None,
        feature_set=f"table:{path.name}",
        source=f"table {path.resolve()}",
    )


# ------------------------------------------------------------------------------ tasks


@task(name="load-training-table", cache_policy=NO_CACHE, persist_result=False)
def load_table_task(
    settings: Settings,
    table: str | None,
    target: str | None,
    time_column: str | None,
    features: list[str] | None,
) -> TrainingTable:
    return load_training_table(
        settings, table=table, target=target, time_column=time_column, features=features
    )


@task(name="hash-training-table", cache_policy=NO_CACHE, persist_result=False)
def hash_task(data: TrainingTable) -> str:
    return tracking.table_hash(data.frame, data.hashed_columns())


@task(name="open-mlflow-run", cache_policy=NO_CACHE, persist_result=False)
def open_run_task(
    tracking_uri: str, data: TrainingTable, data_hash: str, model_name: str, flow_run_id: str
) -> tuple[str, str]:
    experiment_id = tracking.ensure_experiment(tracking_uri, data.target)
    run_id = tracking.start_training_run(
        tracking_uri,
        experiment_id,
        run_name=f"train-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}",
        tags={
            "creditflow.command": "train",
            "creditflow.flow_run_id": flow_run_id,
            "model_name": model_name,
            "data_hash": data_hash,
            "feature_set": data.feature_set,
        },
    )
    return experiment_id, run_id


@task(name="train-pd-model", cache_policy=NO_CACHE, persist_result=False)
def fit_task(
    data: TrainingTable,
    tuning: TuningConfig,
    band_edges: list[float],
    seed: int,
    trial_logger: tracking.TrialLogger,
    dask_address: str | None = None,
) -> TrainingResult:
    """Train in the flow process; with ``dask_address`` the boosting runs on that Dask cluster."""
    if dask_address is None:
        return _fit(data, tuning, band_edges, seed, trial_logger, None)
    from distributed import Client

    with Client(dask_address, set_as_default=False) as client:
        return _fit(data, tuning, band_edges, seed, trial_logger, client)


def _fit(data: TrainingTable, tuning: TuningConfig, band_edges: list[float], seed: int,
         trial_logger: tracking.TrialLogger, client: Any | None) -> TrainingResult:
    return train_pd_model(
        data.frame,
        target=data.target,
        time_column=data.time_column,
        features=list(data.features) if data.features is not None else None,
        categorical=list(data.categorical) if data.categorical is not None else None,
        monotone=data.monotone,
        id_columns=list(data.id_columns),
        tuning=tuning,
        band_edges=band_edges,
        seed=seed,
        on_trial=trial_logger,
        dask_client=client,
    )


def holdout_window(data: TrainingTable, seed: int) -> pl.DataFrame:
    """The training's test window with every column of the table (the split depends only on
    target, time, id columns and seed, so it is the same window the core used)."""
    return split_windows(
        data.frame,
        target=data.target,
        time_column=data.time_column,
        config=SplitConfig(),
        group_columns=list(data.id_columns),
        seed=seed,
    ).test


@task(name="log-and-register", cache_policy=NO_CACHE, persist_result=False)
def register_task(
    tracking_uri: str,
    run_id: str,
    result: TrainingResult,
    model_name: str,
    context: dict[str, Any],
    test: pl.DataFrame,
    target: str,
) -> tracking.LoggedVersion:
    return tracking.log_training(
        tracking_uri,
        run_id,
        result=result,
        model_name=model_name,
        context=context,
        test_frame=test,
        target=target,
    )


@task(name="promotion-gate", cache_policy=NO_CACHE, persist_result=False)
def gate_task(
    tracking_uri: str,
    logged: tracking.LoggedVersion,
    result: TrainingResult,
    test: pl.DataFrame,
    target: str,
    max_calibration_error: float,
) -> tracking.GateOutcome:
    return tracking.apply_gate(
        tracking_uri,
        logged,
        result=result,
        test_frame=test,
        target=target,
        max_calibration_error=max_calibration_error,
    )


# ------------------------------------------------------------------------------- flow


@flow(name="train")
def train_flow(
    workdir: str = "creditflow-work",
    trials: int | None = None,
    timeout: float | None = None,
    table: str | None = None,
    target: str | None = None,
    time_column: str | None = None,
    config_file: str | None = None,
    model_name: str | None = None,
    features: list[str] | None = None,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train, register and gate a PD model on the panel (default) or on ``table``.

    ``settings``: complete settings as a dict (what the command line loaded); when
    given, ``workdir`` and ``config_file`` are not read. ``model_name``: default
    ``train.model_name``. ``features``: a subset of the feature set / table columns.
    On a Dask task runner (``flows.runner``) XGBoost trains through ``xgboost.dask``.
    """
    s = (
        Settings.model_validate(settings)
        if settings is not None
        else load_settings(Path(config_file) if config_file else None, workdir=Path(workdir))
    )
    return _train(
        s,
        trials=trials,
        timeout=timeout,
        table=table,
        target=target,
        time_column=time_column,
        model_name=model_name,
        features=features,
    )


def _train(
    settings: Settings,
    *,
    trials: int | None,
    timeout: float | None,
    table: str | None,
    target: str | None,
    time_column: str | None,
    model_name: str | None,
    features: list[str] | None,
) -> dict[str, Any]:
    logger = get_run_logger()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t0 = time.perf_counter()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    cfg = settings.train
    name = model_name or cfg.model_name
    # One journal under the workdir: a study is named by its data and settings, so an
    # interrupted tuning resumes where it stopped, and a finished one is not redone.
    journal = Paths(settings.workdir).state / "optuna" / "studies.journal"
    journal.parent.mkdir(parents=True, exist_ok=True)
    tuning = TuningConfig(
        n_trials=trials if trials is not None else cfg.trials,
        timeout_seconds=timeout if timeout is not None else cfg.timeout_seconds,
        storage_path=journal,
    )
    uri = settings.tracking_uri
    band_edges = list(load_policy(settings.policy_file).pd_edges)

    data = load_table_task(settings, table, target, time_column, features)
    data_hash = hash_task(data)
    flow_run_id = uuid.uuid4().hex
    experiment_id, run_id = open_run_task(uri, data, data_hash, name, flow_run_id)
    logger.info(
        "train: %s, %d rows, data %s; MLflow run %s in %s",
        data.source,
        data.frame.height,
        data_hash[:19],
        run_id,
        uri,
    )
    try:
        trial_logger = tracking.TrialLogger(uri, experiment_id, run_id)
        # On a Dask task runner: boost on its cluster (None: locally, as always).
        result = fit_task(data, tuning, band_edges, cfg.seed, trial_logger, dask_scheduler_address())
        test = holdout_window(data, cfg.seed)
        context = {
            "target": data.target,
            "time_column": data.time_column,
            "feature_set": data.feature_set,
            "data_hash": data_hash,
            "source": data.source,
            "rows": {"table": data.frame.height},
            "trained_at": started,
            "run_id": run_id,
        }
        logged = register_task(uri, run_id, result, name, context, test, data.target)
        gate = gate_task(uri, logged, result, test, data.target, cfg.max_calibration_error)
        card = tracking.model_card(
            result=result,
            context=context,
            model_name=name,
            version=logged.version,
            gate=gate.to_dict(),
        )
        tracking.log_report_file(uri, run_id, "model_card.md", card)
    except BaseException:
        tracking.end_training_run(uri, run_id, failed=True)
        raise
    tracking.end_training_run(uri, run_id)

    summary = _summary(
        result,
        data,
        data_hash,
        logged,
        gate,
        uri,
        experiment_id,
        started,
        time.perf_counter() - t0,
        trial_logger.logged,
    )
    logger.info(
        "train: %s version %s %s (%s); test AUC xgboost %.4f vs scorecard %.4f, ECE %.4f; %.1f s",
        name,
        logged.version,
        summary["decision"],
        gate.decision.reason,
        result.metrics["xgboost"]["test"]["auc"],
        result.metrics["scorecard"]["test"]["auc"],
        result.metrics["xgboost"]["test"]["ece"],
        summary["seconds"],
    )
    write_json_atomic(
        summary,
        Paths(settings.workdir).runs / f"train-{started.replace(':', '')}-{run_id[:8]}.json",
    )
    return summary


def _clean(v: float) -> float | None:
    return round(float(v), 6) if v is not None and math.isfinite(v) else None


def _summary(
    result: TrainingResult,
    data: TrainingTable,
    data_hash: str,
    logged: tracking.LoggedVersion,
    gate: tracking.GateOutcome,
    uri: str,
    experiment_id: str,
    started: str,
    seconds: float,
    trials_logged: int,
) -> dict[str, Any]:
    windows = {w.name: w for w in result.split.windows}
    return {
        "command": "train",
        "started_at": started,
        "run_id": logged.run_id,
        "experiment": tracking.experiment_name(data.target),
        "experiment_id": experiment_id,
        "tracking_uri": uri,
        "model_name": logged.model_name,
        "model_version": logged.version,
        "model_uri": logged.model_uri,
        "promoted": gate.decision.promote,
        "decision": "promoted" if gate.decision.promote else "rejected",
        "reason": gate.decision.reason,
        "gate": gate.to_dict(),
        "metrics": {
            m: {
                w: {k: _clean(result.metrics[m][w][k]) for k in _REPORTED_METRICS}
                for w in ("validation", "test")
            }
            for m in _REPORTED_MODELS
        },
        "calibration": result.calibrator.method,
        "data_hash": data_hash,
        "source": data.source,
        "target": data.target,
        "time_column": data.time_column,
        "feature_set": data.feature_set,
        "features": len(result.features),
        "rows": {
            "table": data.frame.height,
            "unlabelled_dropped": result.split.n_unlabelled_dropped,
            "gap_dropped": result.split.n_gap_rows_dropped,
            **{k: w.n_rows for k, w in windows.items()},
        },
        "windows": {
            k: {
                "first": w.first_period,
                "last": w.last_period,
                "periods": w.n_periods,
                "rows": w.n_rows,
                "defaults": w.n_defaults,
            }
            for k, w in windows.items()
        },
        "split": result.split.note,
        "trials": {
            "finished": result.n_trials,
            "run": result.n_trials_run,
            "pruned": result.n_trials_pruned,
            "logged": trials_logged,
        },
        "best_params": result.best_params,
        "timings_seconds": result.timings_seconds,
        "seconds": round(seconds, 2),
    }


# -------------------------------------------------------------------------------- CLI


def run_train(
    settings: Settings,
    *,
    trials: int | None = None,
    timeout: float | None = None,
    table: str | Path | None = None,
    target: str | None = None,
    time_column: str | None = None,
    model_name: str | None = None,
    features: Sequence[str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """Run the training flow for the command line: ``(exit code, summary)``.

    Exit 0: trained and registered (promoted or not, the summary says why); 2: the
    table, target or settings cannot be used (``summary["error"]`` says why). Other
    failures raise.
    """
    base = {
        "command": "train",
        "table": str(table) if table is not None else None,
        "target": target,
    }
    try:
        if trials is not None and (not isinstance(trials, int) or trials < 1):
            raise TrainingInputError(f"--trials must be a positive integer; got {trials!r}")
        if timeout is not None and not timeout > 0:
            raise TrainingInputError(f"--timeout must be > 0 seconds; got {timeout!r}")
        if table is not None:
            # A quick look before any Prefect or MLflow start-up: clear errors, fast.
            if not target:
                raise TrainingInputError("--table needs --target: the binary 0/1 column to predict")
            check_target(_read_table_file(Path(table)), target)
        elif target not in (None, LABEL) or time_column not in (None, AS_OF_DATE):
            raise TrainingInputError("--target and --time-column apply to --table trainings")
    except TrainingInputError as e:
        return 2, {**base, "error": str(e)}
    state = with_runner(train_flow, settings)(
        workdir=str(settings.workdir),
        trials=trials,
        timeout=timeout,
        table=str(table) if table is not None else None,
        target=target,
        time_column=time_column,
        model_name=model_name,
        features=list(features) if features is not None else None,
        settings=settings.model_dump(mode="json"),
        return_state=True,
    )
    summary = state.result(raise_on_failure=False)
    if isinstance(summary, TrainingInputError | SplitError | FileNotFoundError):
        return 2, {**base, "error": str(summary)}
    if isinstance(summary, BaseException):
        raise summary
    return (0 if state.is_completed() else 1), summary


def format_train(summary: dict[str, Any]) -> str:
    """The human-readable summary of a training (or its error)."""
    if "error" in summary:
        return f"train: {summary['error']}"
    m = summary["metrics"]
    lines = [
        f"train: {summary['model_name']} version {summary['model_version']} "
        f"{summary['decision'].upper()}: {summary['reason']}",
        f"  data {summary['source']}: {summary['rows']['table']:,} rows, hash {summary['data_hash'][:23]}...",
        f"  {summary['split']}",
    ]
    for k in ("train", "validation", "test"):
        w = summary["windows"][k]
        span = f"{w['first']} .. {w['last']}" if w["first"] else "(random)"
        lines.append(f"    {k:<10} {span:<24} {w['rows']:>9,} rows {w['defaults']:>7,} defaults")
    lines.append(f"  {'':<20}" + "".join(f"{k:>9}" for k in _REPORTED_METRICS))
    for model in _REPORTED_MODELS:
        for window in ("validation", "test"):
            vals = m[model][window]
            cells = "".join(f"{v:>9.4f}" if v is not None else f"{'n/a':>9}" for v in vals.values())
            lines.append(f"  {model + ' ' + window:<20}{cells}")
    t = summary["trials"]
    lines += [
        f"  {t['finished']} Optuna trials ({t['pruned']} pruned), calibration {summary['calibration']}",
        f"  MLflow run {summary['run_id']} ({summary['experiment']}) at {summary['tracking_uri']}",
        f"  {summary['seconds']} s",
    ]
    return "\n".join(lines)


__all__ = [
    "TrainingInputError",
    "TrainingTable",
    "check_target",
    "format_train",
    "load_training_table",
    "run_train",
    "train_flow",
]
