"""MLflow IO of a training: runs, artefacts, the registered model and the promotion gate.

- One MLflow experiment per training target (``creditflow/<target>``); one parent
  run per training; every Optuna trial is a nested run (``mlflow.parentRunId``)
  with its parameters, validation log loss and state.
- The parent run holds the parameters (tuned XGBoost parameters, seed, feature
  set version, data hash, split), the metrics of both models on both windows
  (``xgboost.test.auc``, ``scorecard.validation.ece``, ...), row counts, and the
  report under ``report/``: ROC and calibration plots, feature importance, a
  SHAP summary, the grade table and a model card.
- The booster is logged in XGBoost's own UBJ format with a signature and an
  input example, and registered as a new version of the model name with alias
  ``challenger``. The rest of the scoring model (feature list, categorical
  levels, calibrator) travels inside the same logged model as
  ``extra_files/pd_model.json``. Loading reads these two files; nothing is
  ever unpickled.
- The promotion gate (:func:`decide`, pure) gives the version alias
  ``champion`` only if, on the challenger's test window, it beats both the
  current champion (re-scored on that window) and the scorecard, and its
  calibration error is within the bound. The decision and its numbers are
  written as ``gate.*`` tags of the model version.

Local stores: a ``sqlite:///.../mlflow.db`` tracking URI keeps its artefacts in
an ``artifacts/`` folder beside the database file (MLflow's own default would be
``./mlruns`` under whatever the current directory is).
"""

from __future__ import annotations

import os

# Before xgboost/mlflow are imported: OpenMP threads that spin while waiting made
# each boosting round ~4x slower on a shared 2-core machine; no telemetry; no
# progress bars on stderr.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import contextlib
import hashlib
import json
import math
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import mlflow
import numpy as np
import optuna
import polars as pl
import xgboost as xgb
import yaml
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from creditflow.models.metrics import auc as auc_of
from creditflow.models.metrics import calibration_table
from creditflow.models.train import PdModel, TrainingResult

CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_ARTIFACT = "model"
PD_MODEL_FILE = "pd_model.json"
PD_MODEL_FORMAT = 1
REPORT_DIR = "report"
_CATEGORY_PARAM_MAX = 500  # MLflow's limit on a parameter value


class ChampionNotFoundError(LookupError):
    """The registered model has no version with alias ``champion``."""


# ------------------------------------------------------------------------- the gate


@dataclass(frozen=True)
class ChallengerMetrics:
    """The challenger's numbers on its test window."""

    auc: float
    ece: float


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.4f}"


def decide(
    challenger: ChallengerMetrics,
    champion_auc: float | None,
    scorecard_auc: float,
    max_calibration_error: float,
    *,
    champion_problem: str | None = None,
) -> Decision:
    """The promotion rule, on one test window (the challenger's).

    Promote only if the challenger's AUC is strictly above the scorecard's and
    above the current champion's (``champion_auc``; None = no champion yet),
    and its expected calibration error is at most ``max_calibration_error``.
    ``champion_problem``: why an existing champion could not be re-scored on
    this window (then there is no fair comparison, and the challenger is not
    promoted). Every failed condition is named in the reason.
    """
    if not 0 < max_calibration_error < 1:
        raise ValueError(f"max_calibration_error must be in (0, 1); got {max_calibration_error}")
    if champion_problem is not None and champion_auc is not None:
        raise ValueError("give champion_auc or champion_problem, not both")
    a, e = challenger.auc, challenger.ece
    failed: list[str] = []
    if not math.isfinite(a):
        failed.append("the challenger's test AUC is undefined (the test window holds one class)")
    if not (math.isfinite(e) and e <= max_calibration_error):
        failed.append(f"calibration error {_fmt(e)} is above the bound {max_calibration_error}")
    if math.isfinite(a) and not (math.isfinite(scorecard_auc) and a > scorecard_auc):
        failed.append(f"test AUC {_fmt(a)} does not beat the scorecard's {_fmt(scorecard_auc)}")
    if champion_problem is not None:
        failed.append(champion_problem)
    elif champion_auc is not None and math.isfinite(a) and not a > champion_auc:
        failed.append(
            f"test AUC {_fmt(a)} does not beat the champion's {_fmt(champion_auc)} on the same "
            "test window (equal is not better)"
        )
    if failed:
        return Decision(False, "; ".join(failed))
    beaten = (
        f"the champion's {_fmt(champion_auc)} and the scorecard's {_fmt(scorecard_auc)}"
        if champion_auc is not None
        else f"the scorecard's {_fmt(scorecard_auc)} (no champion yet)"
    )
    return Decision(
        True,
        f"test AUC {_fmt(a)} beats {beaten}; calibration error {_fmt(e)} within {max_calibration_error}",
    )


# ------------------------------------------------------------------------ the store


def artifact_root(tracking_uri: str) -> str | None:
    """Where a new experiment keeps its artefacts: beside a local SQLite database; else the server's choice."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme != "sqlite":
        return None
    db = Path(unquote(parsed.path))
    return (db.parent / "artifacts").resolve().as_uri()


def _prepare_store(tracking_uri: str) -> None:
    parsed = urlparse(tracking_uri)
    if parsed.scheme == "sqlite":
        Path(unquote(parsed.path)).parent.mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def _fluent_tracking(tracking_uri: str) -> Iterator[None]:
    """MLflow's fluent API (needed by ``log_model``) pointed at ``tracking_uri`` for the block."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def experiment_name(target: str) -> str:
    """One MLflow experiment per training target."""
    return f"creditflow/{target}"


def ensure_experiment(tracking_uri: str, target: str) -> str:
    """The id of the target's experiment, created on first use."""
    _prepare_store(tracking_uri)
    client = MlflowClient(tracking_uri)
    name = experiment_name(target)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=artifact_root(tracking_uri))


def start_training_run(
    tracking_uri: str, experiment_id: str, run_name: str, tags: Mapping[str, str]
) -> str:
    """Open the parent run of one training; returns its run id."""
    run = MlflowClient(tracking_uri).create_run(
        experiment_id, run_name=run_name, tags={k: str(v) for k, v in tags.items()}
    )
    return run.info.run_id


def end_training_run(tracking_uri: str, run_id: str, *, failed: bool = False) -> None:
    MlflowClient(tracking_uri).set_terminated(run_id, "FAILED" if failed else "FINISHED")


class TrialLogger:
    """Optuna trial hook: logs each finished trial as a nested run of the training's parent run."""

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str) -> None:
        self._client = MlflowClient(tracking_uri)
        self._experiment_id = experiment_id
        self._parent = parent_run_id
        self.logged = 0

    def __call__(self, trial: optuna.trial.FrozenTrial) -> None:
        state = trial.state.name
        run = self._client.create_run(
            self._experiment_id,
            run_name=f"trial-{trial.number:03d}",
            tags={"mlflow.parentRunId": self._parent, "optuna.state": state},
        )
        now = int(time.time() * 1000)
        metrics = []
        if trial.value is not None:
            metrics.append(Metric("validation_log_loss", float(trial.value), now, 0))
        elif trial.intermediate_values:
            step = max(trial.intermediate_values)
            metrics.append(
                Metric("validation_log_loss", float(trial.intermediate_values[step]), now, step)
            )
        if trial.duration is not None:
            metrics.append(Metric("seconds", trial.duration.total_seconds(), now, 0))
        if "best_iteration" in trial.user_attrs:
            metrics.append(
                Metric("best_iteration", float(trial.user_attrs["best_iteration"]), now, 0)
            )
        params = [Param(k, str(v)) for k, v in sorted(trial.params.items())]
        params.append(Param("trial_number", str(trial.number)))
        self._client.log_batch(run.info.run_id, metrics=metrics, params=params)
        self._client.set_terminated(
            run.info.run_id, "FINISHED" if trial.state.is_finished() else "FAILED"
        )
        self.logged += 1


# ------------------------------------------------------------------------ data hash


def table_hash(frame: pl.DataFrame, columns: Sequence[str]) -> str:
    """A stable hash of a training table's content: sha256 over a canonical CSV.

    The columns are taken in name order with their dtypes, the rows sorted by
    every column (nulls last), so the hash does not depend on file layout, row
    order or column order; any changed value, row or dtype changes it. (It can
    differ across Polars versions if their CSV number formatting changes.)
    """
    cols = sorted(dict.fromkeys(columns))
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise ValueError(f"cannot hash columns {missing}: not in the table")
    df = frame.select(cols).sort(cols, nulls_last=True, maintain_order=True)
    h = hashlib.sha256()
    h.update(json.dumps([[c, str(df.schema[c])] for c in cols]).encode())
    step = 100_000
    for start in range(0, df.height, step):
        h.update(df.slice(start, step).write_csv(include_header=False).encode())
    return "sha256:" + h.hexdigest()


# -------------------------------------------------------------------------- reports


def _roc_points(p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-p, kind="mergesort")
    p, y = p[order], y[order]
    last = np.r_[p[1:] != p[:-1], True]
    tps = np.cumsum(y)[last]
    fps = np.cumsum(1 - y)[last]
    return np.r_[0.0, fps / max(fps[-1], 1)], np.r_[0.0, tps / max(tps[-1], 1)]


def _figure(width: float = 6.0, height: float = 5.0):
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    return Figure(figsize=(width, height), dpi=100)


def plot_roc(path: Path, curves: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str) -> None:
    fig = _figure()
    ax = fig.subplots()
    for name, (p, y) in curves.items():
        fpr, tpr = _roc_points(p, y)
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc_of(p, y):.3f})")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set(
        xlabel="false positive rate (non-defaulters)",
        ylabel="true positive rate (defaulters)",
        title=title,
    )
    ax.legend(loc="lower right")
    fig.savefig(path)


def plot_calibration(
    path: Path, curves: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str
) -> None:
    fig = _figure()
    ax = fig.subplots()
    top = 0.0
    for name, (p, y) in curves.items():
        t = calibration_table(p, y, 10)
        ax.plot(t["mean_pd"], t["observed_default_rate"], marker="o", label=name)
        top = max(top, float(t["mean_pd"].max()), float(t["observed_default_rate"].max()))
    top = min(1.0, top * 1.05 + 1e-3)
    ax.plot([0, top], [0, top], linestyle=":", color="grey", label="perfect calibration")
    ax.set(
        xlabel="mean predicted PD (10 equal-count bins)",
        ylabel="observed default rate",
        title=title,
        xlim=(0, top),
        ylim=(0, top),
    )
    ax.legend(loc="upper left")
    fig.savefig(path)


def _barh(ax, values: Mapping[str, float], top: int, xlabel: str, title: str) -> list[str]:
    items = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))[:top][::-1]
    names = [k for k, _ in items]
    ax.barh(range(len(items)), [v for _, v in items])
    ax.set_yticks(range(len(items)), names, fontsize=8)
    ax.set(xlabel=xlabel, title=title)
    return names[::-1]


def plot_importance(path: Path, gain: Mapping[str, float], top: int = 20) -> None:
    fig = _figure(7, 6)
    _barh(
        fig.subplots(),
        gain,
        top,
        "average gain of the splits on the feature",
        "XGBoost feature importance (gain)",
    )
    fig.tight_layout()
    fig.savefig(path)


def plot_shap(
    path: Path,
    model: PdModel,
    mean_abs_shap: Mapping[str, float],
    sample: pl.DataFrame,
    top: int = 15,
) -> None:
    """Bar chart of mean |SHAP| and a beeswarm of per-row contributions (colour: feature value rank)."""
    fig = _figure(13, 6)
    ax_bar, ax_swarm = fig.subplots(1, 2)
    names = _barh(ax_bar, mean_abs_shap, top, "mean |SHAP| (log-odds)", "SHAP: mean impact")
    if sample.height:
        contrib = model.contributions(sample)
        design = model.spec.design_matrix(sample)
        index = {f: j for j, f in enumerate(model.spec.features)}
        rng = np.random.default_rng(0)
        for row, name in enumerate(names[::-1]):
            j = index[name]
            x = contrib[:, j]
            v = design[:, j].astype(np.float64)
            finite = np.isfinite(v)
            colour = np.full(v.size, 0.5)
            if finite.sum() > 1:
                ranks = np.argsort(np.argsort(v[finite], kind="mergesort"), kind="mergesort")
                colour[finite] = ranks / max(finite.sum() - 1, 1)
            jitter = rng.uniform(-0.3, 0.3, x.size)
            ax_swarm.scatter(
                x, row + jitter, c=colour, cmap="coolwarm", s=4, alpha=0.6, vmin=0, vmax=1
            )
        ax_swarm.set_yticks(range(len(names)), names[::-1], fontsize=8)
        ax_swarm.axvline(0, color="grey", linewidth=0.8)
        ax_swarm.set(
            xlabel="SHAP contribution to the log-odds of default",
            title="SHAP per row (blue low, red high, grey missing)",
        )
    fig.tight_layout()
    fig.savefig(path)


def grade_table(result: TrainingResult) -> pl.DataFrame:
    """Default rate per master-scale grade, every model x window, one frame."""
    parts = [
        t.select(pl.lit(m).alias("model"), pl.lit(w).alias("window"), pl.all())
        for m, by_window in result.grade_tables.items()
        for w, t in by_window.items()
    ]
    return pl.concat(parts) if parts else pl.DataFrame()


_METRIC_KEYS = ("auc", "gini", "ks", "brier", "log_loss", "ece")


def metrics_markdown(metrics: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    lines = [
        "| model | window | " + " | ".join(_METRIC_KEYS) + " |",
        "|---|---|" + "---|" * len(_METRIC_KEYS),
    ]
    for m, by_window in metrics.items():
        for w, vals in by_window.items():
            lines.append(
                f"| {m} | {w} | " + " | ".join(_fmt(vals.get(k)) for k in _METRIC_KEYS) + " |"
            )
    return "\n".join(lines)


def _frame_markdown(df: pl.DataFrame) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.4f}"
        return str(v)

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * df.width]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.iter_rows()]
    return "\n".join(lines)


def model_card(
    *,
    result: TrainingResult,
    context: Mapping[str, Any],
    model_name: str,
    version: str,
    gate: Mapping[str, Any],
) -> str:
    """A short markdown model card: data, split windows, metrics, calibration, decision, limitations."""
    s = result.split
    windows = "\n".join(
        f"| {w.name} | {w.first_period or '-'} | {w.last_period or '-'} | "
        f"{w.n_periods if w.n_periods is not None else '-'} | {w.n_rows:,} | {w.n_defaults:,} | "
        f"{w.default_rate:.4f} |"
        for w in s.windows
    )
    cal = result.calibrator
    selection = ", ".join(f"{k} {v:.5f}" for k, v in sorted(cal.selection.items()))
    grades = ""
    if "xgboost" in result.grade_tables and "test" in result.grade_tables["xgboost"]:
        grades = (
            "\n## Grades (xgboost, test window)\n\n"
            + _frame_markdown(result.grade_tables["xgboost"]["test"])
            + "\n"
        )
    params = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in sorted(result.best_params.items())
    )
    notes = "\n".join(f"- {n}" for n in result.notes)
    return f"""# Model card: {model_name} version {version}

Probability that an observation defaults on `{context["target"]}` (1 = default within the
horizon), from an XGBoost model calibrated on the validation window, benchmarked against a
WoE logistic scorecard. Trained {context["trained_at"]} (run `{context["run_id"]}`).

## Data

- source: {context["source"]}
- feature set: `{context["feature_set"]}` ({len(result.features)} features); data hash `{context["data_hash"]}`
- rows: {context["rows"]["table"]:,} in the table, {s.n_unlabelled_dropped:,} unlabelled (immature) left out,
  {s.n_gap_rows_dropped:,} gap rows dropped
- split: {s.note}

| window | first | last | periods | rows | defaults | default rate |
|---|---|---|---|---|---|---|
{windows}

## Tuning

{result.n_trials} Optuna trials ({result.n_trials_pruned} pruned), seed {result.seed}, objective: validation
log loss (best {result.best_validation_log_loss:.5f}). Best parameters: {params}.

## Calibration

Method: **{cal.method}**, fitted on the validation window{f" (cross-fitted log loss: {selection})" if selection else ""};
PDs clipped to [1e-6, 1 - 1e-6].

## Metrics

{metrics_markdown(result.metrics)}
{grades}
## Promotion

Decision: **{gate.get("decision", "n/a")}**: {gate.get("reason", "")}

## Notes

{notes}

## Limitations

- The validation window chose the hyper-parameters, the stopping round and the calibration: its
  metrics are optimistic. The test window is the honest estimate, and it is small
  ({s.window("test").n_rows:,} rows, {s.window("test").n_defaults:,} defaults): read AUC differences of a
  few thousandths as noise.
- A 12-month target needs 12 months of hindsight: the latest observations are unlabelled, so
  the test window ends a year before the data does; drift since then is not measured here.
- PDs are calibrated to the default rate of the validation window; a change in the portfolio's
  default rate needs recalibration.
- The logged model's pyfunc flavour returns the *uncalibrated* booster probability on the coded
  design matrix (categoricals as level codes). Score with `creditflow.flows.tracking.load_champion`,
  which rebuilds the calibrated model from `extra_files/{PD_MODEL_FILE}`.
"""


def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return str(v)


def _finite(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


# ------------------------------------------------------------------- logging a run


@dataclass(frozen=True)
class LoggedVersion:
    model_name: str
    version: str
    model_uri: str
    run_id: str


def _signature_and_example(model: PdModel, test_frame: pl.DataFrame):
    """The booster's own input: the design matrix (categoricals as level codes), as float columns."""
    import pandas as pd
    from mlflow.models import infer_signature

    rows = test_frame.head(5)
    design = model.spec.design_matrix(rows).astype(np.float64)
    example = pd.DataFrame(design, columns=list(model.spec.features))
    pred = model.booster.predict(model.spec.dmatrix(rows))
    return infer_signature(example, pred), example


def log_training(
    tracking_uri: str,
    run_id: str,
    *,
    result: TrainingResult,
    model_name: str,
    context: Mapping[str, Any],
    test_frame: pl.DataFrame,
    target: str,
) -> LoggedVersion:
    """Log parameters, metrics and artefacts of a finished training to its run; register the model.

    ``context``: target, time_column, feature_set, data_hash, source, rows (dict of
    counts), trained_at. ``test_frame``: the test window (with the model's
    features and the target), for the plots and the input example. The new
    version gets alias ``challenger`` and descriptive tags.
    """
    client = MlflowClient(tracking_uri)
    now = int(time.time() * 1000)
    params = {
        "target": target,
        "time_column": context.get("time_column") or "",
        "feature_set": context["feature_set"],
        "data_hash": context["data_hash"],
        "split_method": result.split.method,
        "seed": result.seed,
        "n_features": len(result.features),
        "n_trials": result.n_trials,
        "n_trials_pruned": result.n_trials_pruned,
        "study_name": result.study_name,
        "calibration": result.calibrator.method,
        **{f"xgb.{k}": v for k, v in sorted(result.best_params.items())},
    }
    metrics: dict[str, float] = {}
    for m, by_window in result.metrics.items():
        for w, vals in by_window.items():
            for k, v in vals.items():
                if math.isfinite(v):
                    metrics[f"{m}.{w}.{k}"] = float(v)
    for w in result.split.windows:
        metrics[f"rows.{w.name}"] = float(w.n_rows)
        metrics[f"defaults.{w.name}"] = float(w.n_defaults)
    metrics["rows.table"] = float(context["rows"]["table"])
    metrics["rows.unlabelled_dropped"] = float(result.split.n_unlabelled_dropped)
    metrics["best_validation_log_loss"] = result.best_validation_log_loss
    for step, sec in result.timings_seconds.items():
        metrics[f"seconds.{step}"] = float(sec)
    client.log_batch(
        run_id,
        metrics=[Metric(k, v, now, 0) for k, v in sorted(metrics.items())],
        params=[Param(k, str(v)[:_CATEGORY_PARAM_MAX]) for k, v in params.items()],
        tags=[
            RunTag("data_hash", context["data_hash"]),
            RunTag("feature_set", context["feature_set"]),
        ],
    )

    with tempfile.TemporaryDirectory(prefix="creditflow-train-") as tmp:
        tmpdir = Path(tmp)
        report = tmpdir / REPORT_DIR
        report.mkdir()
        y = test_frame.get_column(target).cast(pl.Float64).to_numpy()
        curves = {
            "xgboost": (result.model.predict_pd(test_frame), y),
            "scorecard": (result.scorecard.predict_pd(test_frame), y),
        }
        plot_roc(report / "roc_test.png", curves, "ROC, test window")
        plot_calibration(report / "calibration_test.png", curves, "Calibration, test window")
        plot_importance(report / "feature_importance.png", result.feature_importance)
        sample = test_frame.sample(n=min(test_frame.height, 2_000), seed=result.seed)
        plot_shap(report / "shap_summary.png", result.model, result.mean_abs_shap, sample)
        pl.DataFrame(
            {
                "feature": list(result.features),
                "gain": [result.feature_importance[f] for f in result.features],
                "mean_abs_shap": [result.mean_abs_shap[f] for f in result.features],
            }
        ).sort("mean_abs_shap", descending=True).write_csv(report / "feature_importance.csv")
        grades = grade_table(result)
        if grades.height:
            grades.write_csv(report / "grade_table.csv")
        (report / "metrics.json").write_text(
            json.dumps(result.metrics, indent=2, default=_json_default, allow_nan=True)
        )
        (report / "training.json").write_text(
            json.dumps(
                {
                    "context": dict(context),
                    "split": result.split.to_dict(),
                    "best_params": result.best_params,
                    "xgb_params": result.xgb_params,
                    "n_trials": result.n_trials,
                    "n_trials_pruned": result.n_trials_pruned,
                    "notes": result.notes,
                    "ignored_columns": result.ignored_columns,
                    "timings_seconds": result.timings_seconds,
                },
                indent=2,
                default=_json_default,
            )
        )
        (report / "scorecard.json").write_text(
            json.dumps(result.scorecard.to_dict(), indent=2, default=_json_default)
        )
        client.log_artifacts(run_id, str(report), REPORT_DIR)

        pd_model_path = tmpdir / PD_MODEL_FILE
        pd_model_path.write_text(
            json.dumps(
                {"format_version": PD_MODEL_FORMAT, "target": target, **result.model.to_dict()},
                indent=2,
            )
        )
        signature, example = _signature_and_example(result.model, test_frame)
        with _fluent_tracking(tracking_uri), mlflow.start_run(run_id=run_id):
            info = mlflow.xgboost.log_model(
                result.booster,
                name=MODEL_ARTIFACT,
                signature=signature,
                input_example=example,
                model_format="ubj",
                registered_model_name=model_name,
                pip_requirements=[f"xgboost=={xgb.__version__}"],
                extra_files=[str(pd_model_path)],
                metadata={
                    "creditflow": {
                        "pd_model_file": f"extra_files/{PD_MODEL_FILE}",
                        "target": target,
                        "feature_set": context["feature_set"],
                        "data_hash": context["data_hash"],
                    }
                },
            )
    version = str(info.registered_model_version)
    version_tags = {
        "target": target,
        "feature_set": context["feature_set"],
        "data_hash": context["data_hash"],
        "run_id": run_id,
        "test.auc": _fmt(result.metrics["xgboost"]["test"]["auc"]),
        "test.ece": _fmt(result.metrics["xgboost"]["test"]["ece"]),
        "calibration": result.calibrator.method,
    }
    for k, v in version_tags.items():
        client.set_model_version_tag(model_name, version, k, v)
    client.set_registered_model_alias(model_name, CHALLENGER, version)
    return LoggedVersion(model_name, version, f"models:/{model_name}/{version}", run_id)


def log_report_file(tracking_uri: str, run_id: str, name: str, text: str) -> None:
    """Write one text file (e.g. the model card) into the run's report folder."""
    with tempfile.TemporaryDirectory(prefix="creditflow-report-") as tmp:
        path = Path(tmp) / name
        path.write_text(text, encoding="utf-8")
        MlflowClient(tracking_uri).log_artifact(run_id, str(path), REPORT_DIR)


# --------------------------------------------------------------------- loading models


@dataclass(frozen=True)
class ModelVersionInfo:
    """A registered model version as scoring needs to record it."""

    model_name: str
    version: str
    run_id: str | None
    aliases: tuple[str, ...]
    tags: dict[str, str] = field(default_factory=dict)
    model_sha256: str = ""
    """sha256 of the version's UBJ booster file."""

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model_name}/{self.version}"

    @property
    def feature_set(self) -> str | None:
        return self.tags.get("feature_set")

    @property
    def data_hash(self) -> str | None:
        return self.tags.get("data_hash")


def _is_missing(e: MlflowException) -> bool:
    return e.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE")


def load_model_version(
    tracking_uri: str, model_name: str, version: str | int
) -> tuple[PdModel, ModelVersionInfo]:
    """Rebuild the scoring model of one registered version from its UBJ booster and JSON spec (no pickle)."""
    client = MlflowClient(tracking_uri)
    mv = client.get_model_version(model_name, str(version))
    with tempfile.TemporaryDirectory(prefix="creditflow-model-") as tmp:
        # The version's own artefact location, resolved by this client (a models:/ URI would be
        # resolved against the process-wide registry URI instead).
        location = client.get_model_version_download_uri(model_name, str(mv.version))
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=location, dst_path=tmp, tracking_uri=tracking_uri
            )
        )
        mlmodel = yaml.safe_load((local / "MLmodel").read_text(encoding="utf-8"))
        flavor = (mlmodel.get("flavors") or {}).get("xgboost")
        if not flavor:
            raise ValueError(f"{model_name} version {mv.version} is not an XGBoost model")
        fmt = flavor.get("model_format")
        if fmt not in ("ubj", "json"):
            raise ValueError(
                f"{model_name} version {mv.version} is stored as {fmt!r}; only XGBoost's own "
                "ubj/json formats are loaded (never pickle)"
            )
        booster_path = local / flavor["data"]
        raw = booster_path.read_bytes()
        meta = (mlmodel.get("metadata") or {}).get("creditflow") or {}
        spec_path = local / meta.get("pd_model_file", f"extra_files/{PD_MODEL_FILE}")
        if not spec_path.is_file():
            raise ValueError(
                f"{model_name} version {mv.version} has no {PD_MODEL_FILE}: it was not logged by creditflow"
            )
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
    if spec.get("format_version") != PD_MODEL_FORMAT:
        raise ValueError(
            f"{PD_MODEL_FILE} of {model_name} version {mv.version} has format_version "
            f"{spec.get('format_version')!r}; this creditflow reads {PD_MODEL_FORMAT}"
        )
    booster = xgb.Booster()
    booster.load_model(bytearray(raw))
    model = PdModel.from_dict(spec, booster)
    if tuple(booster.feature_names or ()) != model.spec.features:
        raise ValueError(
            f"{model_name} version {mv.version}: booster features {booster.feature_names} do not match "
            f"{PD_MODEL_FILE} features {list(model.spec.features)}"
        )
    info = ModelVersionInfo(
        model_name=model_name,
        version=str(mv.version),
        run_id=mv.run_id,
        aliases=tuple(getattr(mv, "aliases", ()) or ()),
        tags=dict(mv.tags or {}),
        model_sha256=hashlib.sha256(raw).hexdigest(),
    )
    return model, info


def champion_version(tracking_uri: str, model_name: str) -> str | None:
    """The version holding alias ``champion``, or None."""
    _prepare_store(tracking_uri)
    try:
        mv = MlflowClient(tracking_uri).get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException as e:
        if _is_missing(e):
            return None
        raise
    return str(mv.version)


def load_champion(tracking_uri: str, model_name: str) -> tuple[PdModel, ModelVersionInfo]:
    """The current champion of ``model_name`` as a scoring model, with its version info.

    Raises :class:`ChampionNotFoundError` when no version holds alias ``champion``.
    """
    version = champion_version(tracking_uri, model_name)
    if version is None:
        raise ChampionNotFoundError(
            f"no champion for model {model_name!r} in {tracking_uri}: run `creditflow train` first"
        )
    return load_model_version(tracking_uri, model_name, version)


# ------------------------------------------------------------------------- the gate IO


@dataclass(frozen=True)
class GateOutcome:
    decision: Decision
    challenger_auc: float
    scorecard_auc: float
    ece: float
    max_calibration_error: float
    champion_version: str | None
    champion_auc: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": "promoted" if self.decision.promote else "rejected",
            "promoted": self.decision.promote,
            "reason": self.decision.reason,
            "challenger_auc": _finite(self.challenger_auc),
            "scorecard_auc": _finite(self.scorecard_auc),
            "ece": _finite(self.ece),
            "max_calibration_error": self.max_calibration_error,
            "champion_version": self.champion_version,
            "champion_auc": _finite(self.champion_auc) if self.champion_auc is not None else None,
        }


def rescore_champion(
    tracking_uri: str, model_name: str, test_frame: pl.DataFrame, target: str
) -> tuple[str | None, float | None, str | None]:
    """``(champion version, its AUC on test_frame, problem)``; all None when there is no champion."""
    version = champion_version(tracking_uri, model_name)
    if version is None:
        return None, None, None
    model, info = load_model_version(tracking_uri, model_name, version)
    champion_target = info.tags.get("target")
    if champion_target is not None and champion_target != target:
        return (
            version,
            None,
            (
                f"the champion (version {version}) predicts {champion_target!r}, this model {target!r}: "
                "not comparable; train it under another model name (train.model_name)"
            ),
        )
    missing = [f for f in model.spec.features if f not in test_frame.columns]
    if missing:
        return (
            version,
            None,
            (
                f"the champion (version {version}) cannot be re-scored on this test window: the table lacks "
                f"its features {missing}; promote by hand (MlflowClient().set_registered_model_alias) if intended"
            ),
        )
    y = test_frame.get_column(target).cast(pl.Float64).to_numpy()
    return version, auc_of(model.predict_pd(test_frame), y), None


def apply_gate(
    tracking_uri: str,
    logged: LoggedVersion,
    *,
    result: TrainingResult,
    test_frame: pl.DataFrame,
    target: str,
    max_calibration_error: float,
) -> GateOutcome:
    """Compare the new version with the champion on its test window; tag it; move ``champion`` if earned."""
    xgb_test = result.metrics["xgboost"]["test"]
    challenger = ChallengerMetrics(auc=xgb_test["auc"], ece=xgb_test["ece"])
    scorecard_auc = result.metrics["scorecard"]["test"]["auc"]
    champ_version, champ_auc, problem = rescore_champion(
        tracking_uri, logged.model_name, test_frame, target
    )
    decision = decide(
        challenger, champ_auc, scorecard_auc, max_calibration_error, champion_problem=problem
    )
    outcome = GateOutcome(
        decision=decision,
        challenger_auc=challenger.auc,
        scorecard_auc=scorecard_auc,
        ece=challenger.ece,
        max_calibration_error=max_calibration_error,
        champion_version=champ_version,
        champion_auc=champ_auc,
    )
    client = MlflowClient(tracking_uri)
    tags = {
        "gate.decision": "promoted" if decision.promote else "rejected",
        "gate.reason": decision.reason,
        "gate.challenger_auc": _fmt(challenger.auc),
        "gate.champion_auc": _fmt(champ_auc),
        "gate.champion_version": champ_version or "none",
        "gate.scorecard_auc": _fmt(scorecard_auc),
        "gate.ece": _fmt(challenger.ece),
        "gate.max_calibration_error": str(max_calibration_error),
        "gate.decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    for k, v in tags.items():
        client.set_model_version_tag(logged.model_name, logged.version, k, v[:5000])
    client.set_tag(logged.run_id, "gate.decision", tags["gate.decision"])
    if decision.promote:
        client.set_registered_model_alias(logged.model_name, CHAMPION, logged.version)
    return outcome


__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "ChallengerMetrics",
    "ChampionNotFoundError",
    "Decision",
    "GateOutcome",
    "LoggedVersion",
    "ModelVersionInfo",
    "TrialLogger",
    "apply_gate",
    "champion_version",
    "decide",
    "end_training_run",
    "ensure_experiment",
    "experiment_name",
    "load_champion",
    "load_model_version",
    "log_training",
    "model_card",
    "start_training_run",
    "table_hash",
]
