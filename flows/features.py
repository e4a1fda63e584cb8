"""Features flow: committed bronze -> point-in-time observation panel + default dates.

1. scan the committed bronze of every family (only files the manifest records);
2. build the panel of the configured feature set at every month end (or one as-of date);
3. write it, one Parquet file per as-of date, under ``lake/features/<feature_set>/``,
   and every customer's default date under ``lake/silver/default_dates.parquet``;
4. write the run summary.

Outputs are replaced per as-of date with an atomic rename, so a re-run on the same
bronze writes the same rows and readers never see a half-written date.

On a Dask task runner (``runner: dask``, see ``flows.runner``) step 2 is split by customer:
every feature, label and default date of a customer reads only that customer's ledger,
master rows and the bureau rows of its registration ids (``features.panel``), so the
customers are dealt round-robin (in customer_id order) into shards, each shard's panel is
built in a task on a worker with the global data end and as-of dates, and parked as
Parquet under ``state/features/<run>/``; then tasks over groups of as-of dates gather the
shards and write each date's file exactly as step 3 does (same rows, same order after the
same sort). Only paths and counts travel through Prefect.
"""

from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from creditflow.core import schema
from creditflow.core.config import Settings, load_settings
from creditflow.core.paths import Paths
from creditflow.features.customers import sort_by_keys
from creditflow.features.panel import (
    AS_OF_DATE,
    LABEL,
    PanelResult,
    build_panel,
    data_end_of,
    panel_as_of_dates,
)
from creditflow.flows.lake import scan_bronze, write_json_atomic, write_parquet_atomic
from creditflow.flows.runner import dask_active, dask_worker_threads, results_in_order

DEFAULT_DATES_FILE = "default_dates.parquet"


def panel_dir(paths: Paths, feature_set: str) -> Path:
    return paths.features / feature_set


def scan_panel(paths: Paths, feature_set: str) -> pl.LazyFrame:
    """The stored panel of a feature set (every as-of date built so far)."""
    files = sorted(panel_dir(paths, feature_set).glob("as_of_date=*.parquet"))
    if not files:
        raise FileNotFoundError(
            f"no feature panel {feature_set!r} under {panel_dir(paths, feature_set)}: run `creditflow features` first"
        )
    return pl.scan_parquet(files)


def read_default_dates(paths: Paths) -> pl.DataFrame:
    return pl.read_parquet(paths.silver / DEFAULT_DATES_FILE)


@dataclass(frozen=True)
class PanelInputs:
    """The committed bronze a panel is built from, as lazy scans of the contract columns."""

    ledger: pl.LazyFrame
    customers: pl.LazyFrame
    bureau: pl.LazyFrame | None
    events: pl.LazyFrame | None
    fx_rates: pl.LazyFrame | None


_CUSTOMER_LINEAGE = [schema.FILE_DATE, schema.SOURCE_FILE, schema.LINE_NUMBER]
"""The customer master as of t needs the snapshot's file date (and order to break ties)."""


def scan_panel_inputs(paths: Paths) -> PanelInputs:
    """Scan every family the panel reads; ledger and customers are required, the rest optional."""

    def scan(table: schema.Table, extra: list[str] | None = None) -> pl.LazyFrame | None:
        return scan_bronze(paths, table.name, table.names + (extra or []))

    ledger, customers = scan(schema.LEDGER), scan(schema.CUSTOMERS, _CUSTOMER_LINEAGE)
    for table, lf in ((schema.LEDGER, ledger), (schema.CUSTOMERS, customers)):
        if lf is None:
            raise FileNotFoundError(
                f"no accepted {table.name} rows in {paths.bronze(table.name)}: run `creditflow ingest` first"
            )
    return PanelInputs(ledger=ledger, customers=customers, bureau=scan(schema.BUREAU),
                       events=scan(schema.BUREAU_EVENTS), fx_rates=scan(schema.FX_RATES))


def build_from(inputs: PanelInputs, base_currency: str, materiality_threshold: str, feature_set: str, *,
               as_of_dates: list[date] | None, data_end: date | None = None) -> PanelResult:
    """:func:`build_panel` on scanned inputs (the whole lake, or one customer shard)."""
    return build_panel(
        ledger=inputs.ledger,
        customers=inputs.customers,
        bureau=inputs.bureau,
        events=inputs.events,
        fx_rates=inputs.fx_rates,
        base_currency=base_currency,
        materiality_threshold=Decimal(materiality_threshold),
        as_of_dates=as_of_dates,
        data_end=data_end,
        feature_set=feature_set,
    )


@task(name="build-panel", cache_policy=NO_CACHE)
def build_and_write_panel(workdir: str, as_of: str | None, base_currency: str, materiality_threshold: str,
                          feature_set: str) -> dict[str, Any]:
    """Build the panel from committed bronze and write it; returns a small summary."""
    t0 = time.perf_counter()
    paths = Paths(Path(workdir))
    result = build_from(scan_panel_inputs(paths), base_currency, materiality_threshold, feature_set,
                        as_of_dates=[date.fromisoformat(as_of)] if as_of else None)
    out_dir = panel_dir(paths, feature_set)
    panel = result.panel
    for (d,), part in panel.partition_by(AS_OF_DATE, as_dict=True, maintain_order=True).items():
        write_parquet_atomic(part, out_dir / f"as_of_date={d.isoformat()}.parquet")
    if as_of is None:
        # A full rebuild also drops as-of dates the data no longer supports.
        keep = {f"as_of_date={d.isoformat()}.parquet" for d in result.as_of_dates}
        for stale in out_dir.glob("as_of_date=*.parquet"):
            if stale.name not in keep:
                stale.unlink()
    write_parquet_atomic(result.default_dates, paths.silver / DEFAULT_DATES_FILE)
    labelled = panel.filter(pl.col(LABEL).is_not_null())
    return {
        "feature_set": feature_set,
        "as_of_dates": [d.isoformat() for d in result.as_of_dates],
        "first_as_of": result.as_of_dates[0].isoformat(),
        "last_as_of": result.as_of_dates[-1].isoformat(),
        "data_end": result.data_end.isoformat(),
        "observations": panel.height,
        "customers": panel.get_column("customer_id").n_unique(),
        "features": panel.width,
        "labelled": labelled.height,
        "defaults_in_labels": int(labelled.get_column(LABEL).sum() or 0),
        "default_rate": round(float(labelled.get_column(LABEL).mean() or 0.0), 5),
        "customers_in_default": result.default_dates.height,
        "panel_dir": str(out_dir),
        "seconds": round(time.perf_counter() - t0, 2),
    }


# ------------------------------------------------------------------ Dask: customer shards

SHARD = "shard"


def assign_shards(ledger_ids: pl.Series, master_ids: pl.Series, n_shards: int) -> pl.DataFrame:
    """(customer_id, shard): customers dealt round-robin into ``n_shards`` shards in customer_id order.

    Customers with ledger entries are dealt first, so that every shard has some when there are
    at least ``n_shards`` of them (a shard without ledger rows has nothing to build); customers
    only in the master (they can still default through a bankruptcy filing) are dealt after them.
    """
    if not isinstance(n_shards, int) or n_shards < 1:
        raise ValueError(f"n_shards must be a positive integer; got {n_shards!r}")
    with_ledger = ledger_ids.drop_nulls().unique().sort()
    master_only = master_ids.drop_nulls().unique().sort()
    master_only = master_only.filter(~master_only.is_in(with_ledger.implode()))
    ids = pl.concat([with_ledger, master_only]).rename("customer_id")
    return pl.DataFrame({"customer_id": ids, SHARD: pl.int_range(0, ids.len(), eager=True) % n_shards}).with_columns(
        pl.col(SHARD).cast(pl.Int32)
    )


def _shard_inputs(inputs: PanelInputs, ids: pl.Series) -> PanelInputs:
    """The panel inputs of one shard's customers (row order kept: ``is_in`` filters, no joins)."""
    keep = pl.col("customer_id").is_in(ids.implode())
    customers = inputs.customers.filter(keep)
    reg_ids = customers.select(pl.col("registration_id").drop_nulls().unique()).collect().to_series()
    by_reg = pl.col("registration_id").is_in(reg_ids.implode())
    return PanelInputs(
        ledger=inputs.ledger.filter(keep),
        customers=customers,
        bureau=inputs.bureau.filter(by_reg) if inputs.bureau is not None else None,
        events=inputs.events.filter(by_reg) if inputs.events is not None else None,
        fx_rates=inputs.fx_rates,
    )


@task(name="build-panel-shard", cache_policy=NO_CACHE, persist_result=False)
def build_panel_shard(workdir: str, shard_map: str, shard: int, out_dir: str, as_of_dates: list[str],
                      data_end: str, base_currency: str, materiality_threshold: str,
                      feature_set: str) -> dict[str, Any]:
    """On a worker: build the panel of one shard's customers; write it and their default dates
    as Parquet under ``out_dir`` and return the paths and counts."""
    ids = pl.read_parquet(shard_map).filter(pl.col(SHARD) == shard).get_column("customer_id")
    result = build_from(_shard_inputs(scan_panel_inputs(Paths(Path(workdir))), ids), base_currency,
                        materiality_threshold, feature_set,
                        as_of_dates=[date.fromisoformat(d) for d in as_of_dates],
                        data_end=date.fromisoformat(data_end))
    out = Path(out_dir)
    panel_file, defaults_file = out / f"panel-{shard:04d}.parquet", out / f"default_dates-{shard:04d}.parquet"
    write_parquet_atomic(result.panel, panel_file)
    write_parquet_atomic(result.default_dates, defaults_file)
    labels = result.panel.get_column(LABEL)
    return {
        "panel": str(panel_file),
        "default_dates": str(defaults_file),
        "observations": result.panel.height,
        "customers": result.panel.get_column("customer_id").n_unique(),
        "features": result.panel.width,
        "labelled": int(labels.is_not_null().sum()),
        "defaults_in_labels": int(labels.sum() or 0),
        "customers_in_default": result.default_dates.height,
    }


@task(name="write-panel-dates", cache_policy=NO_CACHE, persist_result=False)
def write_panel_dates(shard_panels: list[str], as_of_dates: list[str], out_dir: str) -> int:
    """On a worker: gather the shards' rows of some as-of dates and write one file per date,
    sorted as the sequential path sorts the whole panel (customer_id, as_of_date)."""
    days = [date.fromisoformat(d) for d in as_of_dates]
    rows = pl.scan_parquet(shard_panels).filter(pl.col(AS_OF_DATE).is_in(pl.Series(days, dtype=pl.Date).implode()))
    frame = rows.collect()
    written = 0
    for d in days:
        part = sort_by_keys(frame.filter(pl.col(AS_OF_DATE) == d))
        if part.height:
            write_parquet_atomic(part, Path(out_dir) / f"as_of_date={d.isoformat()}.parquet")
            written += 1
    return written


def _build_and_write_panel_sharded(settings: Settings, as_of: str | None, run_id: str, logger) -> dict[str, Any]:
    t0 = time.perf_counter()
    paths = Paths(settings.workdir)
    feature_set = settings.features.feature_set
    inputs = scan_panel_inputs(paths)
    # What the whole panel shares: the end of the data (label maturity) and the as-of dates.
    end = data_end_of(inputs.ledger)
    dates = [date.fromisoformat(as_of)] if as_of else panel_as_of_dates(inputs.ledger, end)
    if not dates:
        raise ValueError(f"no month end between the first ledger entry and {end}: nothing to build")
    late = [d for d in dates if d > end]
    if late:
        raise ValueError(f"as-of dates after the end of the data ({end}) cannot be built yet: {late[:3]}")
    ledger_ids = inputs.ledger.select(pl.col("customer_id").unique()).collect().to_series()
    master_ids = inputs.customers.select(pl.col("customer_id").unique()).collect().to_series()
    n_shards = max(1, min(2 * dask_worker_threads(), ledger_ids.drop_nulls().n_unique()))
    work = paths.state / "features" / run_id
    work.mkdir(parents=True, exist_ok=True)
    try:
        shard_map = work / "shards.parquet"
        assign_shards(ledger_ids, master_ids, n_shards).write_parquet(shard_map)
        day_text = [d.isoformat() for d in dates]
        futures = [
            build_panel_shard.submit(str(paths.workdir), str(shard_map), k, str(work), day_text, end.isoformat(),
                                     settings.base_currency, str(settings.materiality_threshold), feature_set)
            for k in range(n_shards)
        ]
        shards = results_in_order(futures)
        logger.info("features: %d customer shards built on Dask", n_shards)
        out_dir = panel_dir(paths, feature_set)
        out_dir.mkdir(parents=True, exist_ok=True)
        panels = [s["panel"] for s in shards]
        groups = [day_text[i::n_shards] for i in range(min(n_shards, len(day_text)))]
        results_in_order([write_panel_dates.submit(panels, g, str(out_dir)) for g in groups])
        if as_of is None:
            keep = {f"as_of_date={d}.parquet" for d in day_text}
            for stale in out_dir.glob("as_of_date=*.parquet"):
                if stale.name not in keep:
                    stale.unlink()
        defaults = pl.concat([pl.read_parquet(s["default_dates"]) for s in shards]).sort("customer_id")
        write_parquet_atomic(defaults, paths.silver / DEFAULT_DATES_FILE)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    labelled = sum(s["labelled"] for s in shards)
    defaults_in_labels = sum(s["defaults_in_labels"] for s in shards)
    return {
        "feature_set": feature_set,
        "as_of_dates": day_text,
        "first_as_of": day_text[0],
        "last_as_of": day_text[-1],
        "data_end": end.isoformat(),
        "observations": sum(s["observations"] for s in shards),
        "customers": sum(s["customers"] for s in shards),
        "features": max(s["features"] for s in shards),
        "labelled": labelled,
        "defaults_in_labels": defaults_in_labels,
        "default_rate": round(defaults_in_labels / labelled, 5) if labelled else 0.0,
        "customers_in_default": defaults.height,
        "panel_dir": str(out_dir),
        "shards": n_shards,
        "seconds": round(time.perf_counter() - t0, 2),
    }


# ------------------------------------------------------------------------------- flow


@flow(name="features")
def features_flow(workdir: str = "creditflow-work", as_of: str | None = None,
                  config_file: str | None = None, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the point-in-time observation panel (all month ends, or one ``as_of`` date).

    ``settings``: complete settings as a dict (what the command line loaded); when given,
    ``workdir`` and ``config_file`` are not read. On a Dask task runner (``flows.runner``)
    the panel is built in customer shards on the workers.
    """
    logger = get_run_logger()
    s = (
        Settings.model_validate(settings)
        if settings is not None
        else load_settings(Path(config_file) if config_file else None, workdir=Path(workdir))
    )
    return _features(s, as_of, logger)


def _features(settings: Settings, as_of: str | None, logger) -> dict[str, Any]:
    if as_of is not None:
        date.fromisoformat(as_of)  # a clear error before any work
    run_id = uuid.uuid4().hex
    started = datetime.now(UTC).isoformat(timespec="seconds")
    if dask_active():
        summary = _build_and_write_panel_sharded(settings, as_of, run_id, logger)
    else:
        summary = build_and_write_panel(str(settings.workdir), as_of, settings.base_currency,
                                        str(settings.materiality_threshold), settings.features.feature_set)
    summary = {"command": "features", "run_id": run_id, "started_at": started, **summary}
    logger.info(
        "features %s: %d observations of %d customers at %d as-of dates (%s .. %s), %d labelled, "
        "default rate %.2f%%, %.1f s",
        summary["feature_set"], summary["observations"], summary["customers"], len(summary["as_of_dates"]),
        summary["first_as_of"], summary["last_as_of"], summary["labelled"], 100 * summary["default_rate"],
        summary["seconds"],
    )
    paths = Paths(settings.workdir)
    write_json_atomic(summary, paths.runs / f"features-{started.replace(':', '')}-{run_id[:8]}.json")
    return summary
