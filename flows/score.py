"""Score flow: observation panel at one as-of date + champion model -> published Delta tables.

1. read the observations at the as-of date (the feature panel's rows at that date) and
   the customers in default at that date (``default_date <= as_of``);
2. load the champion model by alias (never a fixed version) and the credit policy;
3. ``scores``: calibrated ``pd_12m``, points, grade and reason codes from the model's
   own per-feature contributions;
4. ``limits``: the policy's limit engine for every observation, plus ``SUSPEND`` for
   every customer in default;
5. ``watchlist``: early-warning triggers, against the previous published scores and
   watchlist (``PD_JUMP``, ``GRADE_DOWN_2``, ``since_date`` carry-over);
6. ``collections``: customers in default; their aging comes from the ledger features
   of the committed bronze at the as-of date (they are not observations, so they are
   not in the panel);
7. publish the four tables (one partition replace per table) and the run record;
   write the run summary.

On a Dask task runner (``runner: dask``, see ``flows.runner``) step 3 runs in chunks of
observations on the workers (prediction and TreeSHAP contributions are the cost); the
chunks' scores come back as Parquet under ``state/score/<run>/`` and are concatenated in
order, so the tables are those of the sequential run.

``run_score`` / ``format_score`` are what the command line calls.
"""

from __future__ import annotations

import os

# Before xgboost is imported (see flows.tracking).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import math
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from creditflow.core import schema
from creditflow.core.config import Settings, load_settings
from creditflow.core.paths import Paths
from creditflow.core.schema import COLLECTIONS, LIMITS, MONEY, SCORES, WATCHLIST
from creditflow.features.customers import customer_master_asof
from creditflow.features.labels import BANKRUPTCY_FILING
from creditflow.features.ledger import AGING_COLUMNS, ledger_features
from creditflow.features.panel import AS_OF_DATE, FX_TO_BASE, SALES_MONEY, limit_fx_to_base
from creditflow.features.registry import get_feature
from creditflow.flows import publish as pub
from creditflow.flows.features import panel_dir, read_default_dates, scan_panel_inputs
from creditflow.flows.lake import write_json_atomic
from creditflow.flows.runner import dask_active, dask_worker_threads, results_in_order, with_runner
from creditflow.flows.tracking import ChampionNotFoundError, champion_version, load_champion
from creditflow.models.scoring import build_scores
from creditflow.models.scoring import contributions as tree_contributions
from creditflow.models.train import PdModel
from creditflow.policy.collections import BANKRUPTCY_COLUMN, build_collections
from creditflow.policy.limits import recommend_limits
from creditflow.policy.policy import CreditPolicy, PolicyError, load_policy
from creditflow.policy.watchlist import build_watchlist

FX_LIMIT = "fx_to_limit_currency"
FX_DTYPE = pl.Decimal(18, 8)
PD_IN_DEFAULT = float(np.nextafter(1.0, 0.0))
"""The PD handed to the limit engine for a customer in default. The engine needs a PD in
(0, 1) for every row; a defaulted customer gets limit 0 (``DEFAULT_SUSPEND``) whatever its
PD, so its expected loss is 0 and this value only has to be valid (it grades as R10)."""

_WATCH_RENAMES = {"bureau_score_change_3m": "bureau_score_chg_3m"}
_LIMIT_PANEL_COLUMNS = (
    "exposure", "credit_limit", "currency", FX_TO_BASE, "payment_terms_days", SALES_MONEY, "equity",
    "dpd_max", "events_lawsuit_3m", "events_execution_order_3m",
)


class ScoreInputError(ValueError):
    """The as-of date, the panel or the model cannot be scored; the message says why and what to run."""


# ---------------------------------------------------------------------------- inputs


def parse_as_of(value: str | date) -> date:
    """The as-of date from ``YYYY-MM-DD`` text or a date."""
    if isinstance(value, datetime):
        raise ScoreInputError(f"--as-of must be a date YYYY-MM-DD; got {value!r}")
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ScoreInputError(f"--as-of must be a date YYYY-MM-DD; got {value!r}") from None


def panel_as_of_dates(paths: Paths, feature_set: str) -> list[date]:
    """The as-of dates stored in a feature panel (from the file names)."""
    return sorted(
        date.fromisoformat(p.stem.removeprefix("as_of_date="))
        for p in panel_dir(paths, feature_set).glob("as_of_date=*.parquet")
    )


def observation_file(paths: Paths, feature_set: str, as_of: date) -> Path:
    """The panel file of one as-of date; a clear error when it was not built."""
    dates = panel_as_of_dates(paths, feature_set)
    if not dates:
        raise ScoreInputError(
            f"no feature panel {feature_set!r} under {panel_dir(paths, feature_set)}: "
            "run `creditflow ingest` and `creditflow features` first"
        )
    if as_of not in dates:
        raise ScoreInputError(
            f"the feature panel {feature_set!r} has no observations at {as_of}; it holds {len(dates)} "
            f"month ends {dates[0]} .. {dates[-1]}: score one of them, or run "
            f"`creditflow features --as-of {as_of}` first"
        )
    return panel_dir(paths, feature_set) / f"as_of_date={as_of.isoformat()}.parquet"


def read_observations(paths: Paths, feature_set: str, as_of: date) -> pl.DataFrame:
    """The observations at ``as_of``: the panel rows at that date, sorted by customer_id."""
    return pl.read_parquet(observation_file(paths, feature_set, as_of)).sort("customer_id")


def model_feature_set(info_feature_set: str | None, configured: str) -> str:
    """The panel a model scores on: the feature set it was trained on (else the configured one)."""
    if info_feature_set and not info_feature_set.startswith("table:"):
        return info_feature_set
    return configured


def fx_to_limit_currency(fx_to_base: pl.Series) -> pl.Series:
    """``1 / fx_to_base`` as Decimal(18, 8), exact to 8 digits (half to even), null where the rate is null.

    Computed with Python's decimal arithmetic over the few distinct rates, never in float.
    """
    rates = fx_to_base.cast(FX_DTYPE)
    inverse: dict[Decimal, Decimal] = {}
    with localcontext() as ctx:
        ctx.prec = 40
        for r in rates.drop_nulls().unique().to_list():
            if r <= 0:
                raise ValueError(f"fx_to_base must be > 0; got {r}")
            inverse[r] = (Decimal(1) / r).quantize(Decimal("1e-8"), rounding=ROUND_HALF_EVEN)
    if not inverse:
        return pl.Series(FX_LIMIT, [None] * rates.len(), dtype=FX_DTYPE)
    lut = pl.DataFrame(
        {"_rate": list(inverse), FX_LIMIT: list(inverse.values())},
        schema={"_rate": FX_DTYPE, FX_LIMIT: FX_DTYPE},
    )
    return (
        rates.to_frame("_rate").join(lut, on="_rate", how="left", maintain_order="left").get_column(FX_LIMIT)
    )


_DEFAULTED_SCHEMA = {
    AS_OF_DATE: pl.Date, "customer_id": pl.String, "default_date": pl.Date, "default_reason": pl.String,
    BANKRUPTCY_COLUMN: pl.Boolean, "exposure": MONEY, **{c: MONEY for c in AGING_COLUMNS},
    "dpd_max": pl.Int32, SALES_MONEY: MONEY, "credit_limit": MONEY, "currency": pl.String,
    "payment_terms_days": pl.Int64, FX_TO_BASE: FX_DTYPE,
}


def read_defaulted(paths: Paths, as_of: date, base_currency: str) -> pl.DataFrame:
    """Customers in default at ``as_of`` (``default_date <= as_of``) with what the policy needs.

    They are not observations, so the panel does not hold them: their exposure, aging
    amounts and days past due are the ledger features of the committed bronze at
    ``as_of`` (only their own entries dated on or before it: cash application is per
    customer, and point in time); limit, currency and terms come from the customer master
    in force at ``as_of``. ``has_bankruptcy_filing``: default reason BANKRUPTCY, or a
    bankruptcy filing event of the customer's company dated on or before ``as_of``.
    """
    defaults = read_default_dates(paths).filter(pl.col("default_date") <= as_of).sort("customer_id")
    if defaults.height == 0:
        return pl.DataFrame(schema=_DEFAULTED_SCHEMA)
    ids = defaults.get_column("customer_id").implode()
    inputs = scan_panel_inputs(paths)
    ledger = inputs.ledger.filter(pl.col("customer_id").is_in(ids) & (pl.col("document_date") <= as_of))
    fx_rates, customers = inputs.fx_rates, inputs.customers
    grid = defaults.select("customer_id", pl.lit(as_of).alias(AS_OF_DATE))
    feats = ledger_features(ledger, fx_rates, grid, [as_of], base_currency=base_currency).collect()
    master = (
        customer_master_asof(customers.filter(pl.col("customer_id").is_in(ids)), [as_of])
        .select("customer_id", "credit_limit", "currency", "payment_terms_days", "registration_id")
        .collect()
    )
    fx = limit_fx_to_base(fx_rates, [as_of], base_currency=base_currency).collect()
    events = inputs.events
    filed = (
        events.filter((pl.col("event_type") == BANKRUPTCY_FILING) & (pl.col("event_date") <= as_of))
        .select("registration_id")
        .unique()
        .collect()
        .get_column("registration_id")
        if events is not None
        else pl.Series("registration_id", [], dtype=pl.String)
    )
    out = (
        defaults.with_columns(pl.lit(as_of).alias(AS_OF_DATE))
        .join(feats.drop(AS_OF_DATE), on="customer_id", how="left", maintain_order="left")
        .join(master, on="customer_id", how="left", maintain_order="left")
        .with_columns(pl.lit(as_of).alias(AS_OF_DATE))
        .join(fx, on=["currency", AS_OF_DATE], how="left", maintain_order="left")
        .with_columns(
            (
                (pl.col("default_reason") == "BANKRUPTCY")
                | pl.col("registration_id").is_in(filed.implode()).fill_null(False)
            ).alias(BANKRUPTCY_COLUMN),
            pl.col("avg_monthly_sales_12m").alias(SALES_MONEY),
        )
    )
    return out.select([pl.col(c).cast(t) for c, t in _DEFAULTED_SCHEMA.items()])


# ---------------------------------------------------------------------------- tables


def reason_texts(features: tuple[str, ...] | list[str]) -> dict[str, str]:
    """Analyst wording of each model feature (the feature name where the registry has none)."""
    out = {}
    for f in features:
        try:
            out[f] = get_feature(f).reason
        except (KeyError, ValueError):
            out[f] = f
    return out


def score_observations(
    observations: pl.DataFrame, model: PdModel, policy: CreditPolicy, *, model_name: str,
    model_version: str, run_id: str, approx_reasons: bool = False,
) -> pl.DataFrame:
    """The ``scores`` table: calibrated PD, points, grade, and reason codes from the model's contributions.

    Contributions are exact TreeSHAP by default, computed by
    :func:`creditflow.models.scoring.contributions` (bit-identical to XGBoost's
    ``pred_contribs``; each shallow tree is evaluated once per decision pattern instead of
    once per row: the tuned 545-tree depth-2 model costs ~8 cpu-s per 1M customers). Deep
    trees (more than 16 splits) fall back to XGBoost's own call, ~1 h cpu per 1M customers
    for hundreds of depth-6 trees; ``approx_reasons`` then uses XGBoost's approximate
    (Saabas) path contributions instead, same sign convention, but the ranking of close
    features can differ from SHAP.
    """
    missing = [f for f in model.spec.features if f not in observations.columns]
    if missing:
        raise ScoreInputError(
            f"the panel lacks features the model needs: {missing}; rebuild the panel with the model's feature set"
        )
    if observations.height == 0:
        return schema.empty_frame(SCORES)
    # One design matrix for both predictions (PdModel.predict_pd / .contributions would build it twice).
    dmatrix = model.spec.dmatrix(observations)
    pd_12m = model.calibrator.apply(model.booster.predict(dmatrix).astype(np.float64))
    contributions = tree_contributions(model.booster, dmatrix, approx=approx_reasons)
    frame = observations.select(AS_OF_DATE, "customer_id").with_columns(pl.Series("pd_12m", pd_12m))
    return build_scores(
        frame, contributions, policy, model_name=model_name, model_version=model_version, run_id=run_id,
        feature_names=list(model.spec.features), reason_text=reason_texts(model.spec.features),
    )


def limits_input(
    observations: pl.DataFrame, scores: pl.DataFrame, defaulted: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The limit engine's input (observations with their PD, and defaulted customers), and the
    rows left out because their limit currency has no fx rate at the as-of date or they have no
    customer master row: ``(input, left_out)``; ``left_out`` holds customer_id and reason."""
    perf = observations.select(
        AS_OF_DATE, "customer_id", *[c for c in _LIMIT_PANEL_COLUMNS],
    ).join(scores.select("customer_id", "pd_12m"), on="customer_id", how="left", maintain_order="left")
    perf = perf.with_columns(pl.lit(None, dtype=pl.Date).alias("default_date"))
    dflt = defaulted.select(
        AS_OF_DATE, "customer_id", "exposure", "credit_limit", "currency", FX_TO_BASE, "payment_terms_days",
        SALES_MONEY,
        pl.lit(None, dtype=MONEY).alias("equity"),
        "dpd_max",
        pl.lit(0, dtype=pl.Int32).alias("events_lawsuit_3m"),
        pl.lit(0, dtype=pl.Int32).alias("events_execution_order_3m"),
        pl.lit(PD_IN_DEFAULT).alias("pd_12m"),
        "default_date",
    )
    both = pl.concat([perf, dflt.select(perf.columns)], how="vertical_relaxed")
    both = both.with_columns(fx_to_limit_currency(both.get_column(FX_TO_BASE)))
    reason = (
        pl.when(pl.col("credit_limit").is_null() | pl.col("currency").is_null())
        .then(pl.lit("NO_CUSTOMER_MASTER"))
        .when(pl.col(FX_LIMIT).is_null())
        .then(pl.lit("NO_FX_RATE"))
    )
    flagged = both.with_columns(reason.alias("_left_out"))
    left_out = flagged.filter(pl.col("_left_out").is_not_null()).select(
        "customer_id", "currency", pl.col("_left_out").alias("reason")
    )
    usable = flagged.filter(pl.col("_left_out").is_null()).drop("_left_out")
    return usable.rename({SALES_MONEY: "avg_monthly_sales_12m"}), left_out


def watchlist_input(observations: pl.DataFrame, scores: pl.DataFrame) -> pl.DataFrame:
    """The watchlist builder's input: the observations' warning signals with their PD."""
    cols = ["dpd_max", "utilization", "events_lawsuit_3m", "events_execution_order_3m",
            "bureau_score_change_3m", "tax_arrears"]
    present = [pl.col(c) if c in observations.columns else pl.lit(None).alias(c) for c in cols]
    return (
        observations.select(AS_OF_DATE, "customer_id", *present)
        .rename(_WATCH_RENAMES)
        .join(scores.select("customer_id", "pd_12m"), on="customer_id", how="left", maintain_order="left")
    )


def collections_input(defaulted: pl.DataFrame) -> pl.DataFrame:
    """The collections builder's input: defaulted customers' aging and days past due."""
    return defaulted.select(AS_OF_DATE, "customer_id", "default_date", "dpd_max", *AGING_COLUMNS, BANKRUPTCY_COLUMN)


def build_tables(
    observations: pl.DataFrame,
    defaulted: pl.DataFrame,
    scores: pl.DataFrame,
    policy: CreditPolicy,
    previous_scores: pl.DataFrame | None,
    previous_watchlist: pl.DataFrame | None,
    timings: dict[str, float] | None = None,
) -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:
    """limits, watchlist and collections for one as-of date (scores given); plus the rows left
    out of limits (see :func:`limits_input`)."""
    timings = timings if timings is not None else {}
    with _lap(timings, "limits"):
        lim_in, left_out = limits_input(observations, scores, defaulted)
        limits = recommend_limits(lim_in, policy) if lim_in.height else schema.empty_frame(LIMITS)
    with _lap(timings, "watchlist"):
        watch = build_watchlist(watchlist_input(observations, scores), previous_scores, previous_watchlist, policy)
    with _lap(timings, "collections"):
        coll = (
            build_collections(collections_input(defaulted), policy)
            if defaulted.height else schema.empty_frame(COLLECTIONS)
        )
    return {"scores": scores, "limits": limits, "watchlist": watch, "collections": coll}, left_out


@contextmanager
def _lap(timings: dict[str, float], step: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[step] = round(timings.get(step, 0.0) + time.perf_counter() - t0, 3)


def _counts(frame: pl.DataFrame, column: str) -> dict[str, int]:
    if frame.height == 0:
        return {}
    vc = frame.get_column(column).value_counts()
    # grades in master-scale order (R2 before R10), other labels alphabetically
    key = (lambda k: (len(k), k)) if column == "risk_grade" else (lambda k: k)
    return {str(k): int(v) for k, v in sorted(vc.iter_rows(), key=lambda kv: key(str(kv[0])))}


# ------------------------------------------------------------------------------ tasks


def _is_io_error(task, task_run, state) -> bool:
    """Retry only what storage or the network raised (OSError, incl. timeouts and connection errors)."""
    try:
        state.result()
    except OSError:
        return True
    except Exception:  # noqa: BLE001 - any other failure is not worth a retry
        return False
    return False


_IO_RETRIES = {"retries": 1, "retry_delay_seconds": 2, "retry_condition_fn": _is_io_error}
"""Storage and registry reads/writes retry once on an IO error (a flaky share or server);
bad input and computation never retry: they would fail the same way again."""


@task(name="read-observations", cache_policy=NO_CACHE, persist_result=False, **_IO_RETRIES)
def observations_task(workdir: str, feature_set: str, as_of: date) -> pl.DataFrame:
    return read_observations(Paths(Path(workdir)), feature_set, as_of)


@task(name="read-defaulted", cache_policy=NO_CACHE, persist_result=False)
def defaulted_task(workdir: str, as_of: date, base_currency: str) -> pl.DataFrame:
    return read_defaulted(Paths(Path(workdir)), as_of, base_currency)


@task(name="load-champion", cache_policy=NO_CACHE, persist_result=False, **_IO_RETRIES)
def champion_task(tracking_uri: str, model_name: str):
    return load_champion(tracking_uri, model_name)


@task(name="score", cache_policy=NO_CACHE, persist_result=False)
def score_task(observations, model, policy, model_name, model_version, run_id, approx_reasons) -> pl.DataFrame:
    return score_observations(
        observations, model, policy, model_name=model_name, model_version=model_version, run_id=run_id,
        approx_reasons=approx_reasons,
    )


@task(name="score-chunk", cache_policy=NO_CACHE, persist_result=False)
def score_chunk_task(chunk_file: str, model, policy, model_name, model_version, run_id, approx_reasons,
                     out_file: str) -> str:
    """On a worker: the scores of one chunk of observations (predict + contributions), written to
    ``out_file``; returns its path (frames never travel through Prefect results)."""
    scores = score_observations(
        pl.read_parquet(chunk_file), model, policy, model_name=model_name, model_version=model_version,
        run_id=run_id, approx_reasons=approx_reasons,
    )
    scores.write_parquet(out_file, compression="uncompressed", statistics=False)
    return out_file


def score_chunks_on_dask(observations: pl.DataFrame, model, policy, model_name: str, model_version: str,
                         run_id: str, approx_reasons: bool, work: Path, chunks: int) -> pl.DataFrame:
    """The ``scores`` table computed in ``chunks`` contiguous slices of the observations (sorted by
    customer_id), one task each on the Dask workers, concatenated in order: the same rows as
    :func:`score_observations` on the whole frame (every score, grade and reason of a row depends
    on that row only, and the result is sorted by as_of_date, customer_id)."""
    if not isinstance(chunks, int) or chunks < 1:
        raise ValueError(f"chunks must be a positive integer; got {chunks!r}")
    if observations.height == 0:
        return score_observations(observations, model, policy, model_name=model_name,
                                  model_version=model_version, run_id=run_id, approx_reasons=approx_reasons)
    size = math.ceil(observations.height / chunks)
    work.mkdir(parents=True, exist_ok=True)
    futures = []
    for k, offset in enumerate(range(0, observations.height, size)):
        chunk_file = work / f"observations-{k:04d}.parquet"
        observations.slice(offset, size).write_parquet(chunk_file, compression="uncompressed", statistics=False)
        futures.append(score_chunk_task.submit(
            str(chunk_file), model, policy, model_name, model_version, run_id, approx_reasons,
            str(work / f"scores-{k:04d}.parquet"),
        ))
    return pl.concat([pl.read_parquet(path) for path in results_in_order(futures)])


@task(name="read-previous", cache_policy=NO_CACHE, persist_result=False, **_IO_RETRIES)
def previous_task(workdir: str, as_of: date) -> tuple[pl.DataFrame | None, pl.DataFrame | None]:
    paths = Paths(Path(workdir))
    return (
        pub.read_previous(paths.table(SCORES.name), SCORES, as_of),
        pub.read_previous(paths.table(WATCHLIST.name), WATCHLIST, as_of),
    )


@task(name="limits-watchlist-collections", cache_policy=NO_CACHE, persist_result=False)
def tables_task(observations, defaulted, scores, policy, previous_scores, previous_watchlist):
    timings: dict[str, float] = {}
    tables, left_out = build_tables(
        observations, defaulted, scores, policy, previous_scores, previous_watchlist, timings
    )
    return tables, left_out, timings


@task(name="publish", cache_policy=NO_CACHE, persist_result=False, **_IO_RETRIES)
def publish_task(workdir: str, as_of: date, tables: dict[str, pl.DataFrame], run: pub.RunInfo) -> dict[str, Any]:
    return pub.publish(Paths(Path(workdir)), as_of, tables, run)


# ------------------------------------------------------------------------------- flow


@flow(name="score")
def score_flow(
    as_of: str,
    workdir: str = "creditflow-work",
    config_file: str | None = None,
    settings: dict[str, Any] | None = None,
    approx_reasons: bool = False,
) -> dict[str, Any]:
    """Score every observation at ``as_of`` with the champion model and publish the four tables.

    ``settings``: complete settings as a dict (what the command line loaded); when given,
    ``workdir`` and ``config_file`` are not read. ``approx_reasons``: reason codes from
    approximate contributions (see :func:`score_observations`). On a Dask task runner
    (``flows.runner``) the observations are scored in chunks on the workers.
    """
    s = (
        Settings.model_validate(settings)
        if settings is not None
        else load_settings(Path(config_file) if config_file else None, workdir=Path(workdir))
    )
    return _score(s, parse_as_of(as_of), approx_reasons)


def _score(settings: Settings, as_of: date, approx_reasons: bool = False) -> dict[str, Any]:
    logger = get_run_logger()
    t0 = time.perf_counter()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    run_id = uuid.uuid4().hex
    paths = Paths(settings.workdir)
    workdir = str(settings.workdir)
    timings: dict[str, float] = {}
    policy = load_policy(settings.policy_file)
    name = settings.train.model_name

    with _lap(timings, "load_champion"):
        model, info = champion_task(settings.tracking_uri, name)
    feature_set = model_feature_set(info.feature_set, settings.features.feature_set)
    with _lap(timings, "read_inputs"):
        observations = observations_task(workdir, feature_set, as_of)
        defaulted = defaulted_task(workdir, as_of, settings.base_currency)
        previous_scores, previous_watchlist = previous_task(workdir, as_of)
    with _lap(timings, "score"):
        if dask_active():
            work = paths.state / "score" / run_id
            try:
                scores = score_chunks_on_dask(observations, model, policy, info.model_name, info.version, run_id,
                                              approx_reasons, work, chunks=2 * dask_worker_threads())
            finally:
                shutil.rmtree(work, ignore_errors=True)
        else:
            scores = score_task(observations, model, policy, info.model_name, info.version, run_id, approx_reasons)
    tables, left_out, table_timings = tables_task(
        observations, defaulted, scores, policy, previous_scores, previous_watchlist
    )
    timings.update(table_timings)
    run = pub.RunInfo(
        run_id=run_id, model_name=info.model_name, model_version=info.version,
        policy_version=policy.version, feature_set=feature_set,
    )
    with _lap(timings, "publish"):
        published = publish_task(workdir, as_of, tables, run)

    summary = {
        "command": "score",
        "run_id": run_id,
        "started_at": started,
        "as_of_date": as_of.isoformat(),
        "model_name": info.model_name,
        "model_version": info.version,
        "model_sha256": info.model_sha256,
        "policy_version": policy.version,
        "feature_set": feature_set,
        "reason_contributions": "approximate (Saabas)" if approx_reasons else "exact TreeSHAP",
        "observations": observations.height,
        "customers_in_default": defaulted.height,
        "previous_as_of": (
            previous_scores.get_column(AS_OF_DATE).max().isoformat() if previous_scores is not None else None
        ),
        "rows": {k: v["rows"] for k, v in published["tables"].items()},
        "delta_versions": {k: v["delta_version"] for k, v in published["tables"].items()},
        "published_dir": str(paths.published),
        "grades": _counts(tables["scores"], "risk_grade"),
        "limit_actions": _counts(tables["limits"], "action"),
        "limits_left_out": _counts(left_out, "reason"),
        "watchlist_severity": _counts(tables["watchlist"], "severity"),
        "collections_actions": _counts(tables["collections"], "recommended_action"),
        "input_files": published["run"]["input_files"],
        "timings_seconds": timings,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if left_out.height:
        logger.warning(
            "score %s: %d customers have no limit recommendation (%s)", as_of, left_out.height,
            summary["limits_left_out"],
        )
    logger.info(
        "score %s: %d scored with %s version %s, %d limits, %d on the watchlist, %d in collections; %.1f s",
        as_of, summary["rows"]["scores"], info.model_name, info.version, summary["rows"]["limits"],
        summary["rows"]["watchlist"], summary["rows"]["collections"], summary["seconds"],
    )
    write_json_atomic(summary, paths.runs / f"score-{started.replace(':', '')}-{run_id[:8]}.json")
    return summary


# -------------------------------------------------------------------------------- CLI

_INPUT_ERRORS = (ScoreInputError, ChampionNotFoundError, PolicyError, FileNotFoundError)


def run_score(
    settings: Settings, as_of: str | date, *, approx_reasons: bool = False
) -> tuple[int, dict[str, Any]]:
    """Run the score flow for the command line: ``(exit code, summary)``.

    Exit 0: scored and published; 2: nothing to score with (bad date, no panel at that
    date, no champion model, invalid policy; ``summary["error"]`` says why and nothing is
    published); 1: the flow failed otherwise (``summary["error"]``).
    """
    base = {"command": "score", "as_of_date": str(as_of)}
    try:
        day = parse_as_of(as_of)
        load_policy(settings.policy_file)
        # Quick checks before any Prefect start-up: clear errors, fast, nothing published.
        if champion_version(settings.tracking_uri, settings.train.model_name) is None:
            raise ChampionNotFoundError(
                f"no champion for model {settings.train.model_name!r} in {settings.tracking_uri}: "
                "run `creditflow train` first (a model is scored only once the promotion gate made it champion)"
            )
        observation_file(Paths(settings.workdir), settings.features.feature_set, day)
    except _INPUT_ERRORS as e:
        return 2, {**base, "error": str(e)}
    state = with_runner(score_flow, settings)(
        as_of=day.isoformat(), settings=settings.model_dump(mode="json"), approx_reasons=approx_reasons,
        return_state=True,
    )
    summary = state.result(raise_on_failure=False)
    if isinstance(summary, _INPUT_ERRORS):
        return 2, {**base, "error": str(summary)}
    if isinstance(summary, BaseException):
        return 1, {**base, "error": f"{type(summary).__name__}: {summary}"}
    return (0 if state.is_completed() else 1), summary


def format_score(summary: dict[str, Any]) -> str:
    """The human-readable summary of a scoring run (or its error)."""
    if "error" in summary:
        return f"score {summary.get('as_of_date', '')}: {summary['error']}"
    rows = summary["rows"]
    lines = [
        f"score {summary['as_of_date']}: {rows['scores']:,} customers scored with {summary['model_name']} "
        f"version {summary['model_version']} (policy {summary['policy_version']}), run {summary['run_id']}",
        f"  grades       {_fmt_counts(summary['grades'])}",
        f"  limits       {rows['limits']:,} rows: {_fmt_counts(summary['limit_actions'])}",
        f"  watchlist    {rows['watchlist']:,} rows: {_fmt_counts(summary['watchlist_severity'])}"
        + (f" (previous run {summary['previous_as_of']})" if summary["previous_as_of"] else " (no previous run)"),
        f"  collections  {rows['collections']:,} rows: {_fmt_counts(summary['collections_actions'])}",
    ]
    if summary["limits_left_out"]:
        lines.append(f"  no limit for {_fmt_counts(summary['limits_left_out'])}")
    versions = ", ".join(f"{k} v{v}" for k, v in summary["delta_versions"].items())
    lines += [
        f"  published to {summary['published_dir']} ({versions})",
        f"  {summary['seconds']} s",
    ]
    return "\n".join(lines)


def _fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in counts.items()) or "none"


__all__ = [
    "PD_IN_DEFAULT",
    "ScoreInputError",
    "build_tables",
    "collections_input",
    "format_score",
    "fx_to_limit_currency",
    "limits_input",
    "observation_file",
    "parse_as_of",
    "read_defaulted",
    "read_observations",
    "reason_texts",
    "run_score",
    "score_chunks_on_dask",
    "score_flow",
    "score_observations",
    "watchlist_input",
]
