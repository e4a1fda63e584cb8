"""Features flow: committed bronze -> point-in-time observation panel + default dates.

1. scan the committed bronze of every family (only files the manifest records);
2. build the panel of the configured feature set at every month end (or one as-of date);
3. write it, one Parquet file per as-of date, under ``lake/features/<feature_set>/``,
   and every customer's default date under ``lake/silver/default_dates.parquet``;
4. write the run summary.

Outputs are replaced per as-of date with an atomic rename, so a re-run on the same
bronze writes the same rows and readers never see a half-written date.
"""

from __future__ import annotations

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
from creditflow.features.panel import AS_OF_DATE, LABEL, build_panel
from creditflow.flows.lake import scan_bronze, write_json_atomic, write_parquet_atomic

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


@task(name="build-panel", cache_policy=NO_CACHE)
def build_and_write_panel(workdir: str, as_of: str | None, base_currency: str, materiality_threshold: str,
                          feature_set: str) -> dict[str, Any]:
    """Build the panel from committed bronze and write it; returns a small summary."""
    t0 = time.perf_counter()
    paths = Paths(Path(workdir))
    inputs = scan_panel_inputs(paths)
    result = build_panel(
        ledger=inputs.ledger,
        customers=inputs.customers,
        bureau=inputs.bureau,
        events=inputs.events,
        fx_rates=inputs.fx_rates,
        base_currency=base_currency,
        materiality_threshold=Decimal(materiality_threshold),
        as_of_dates=[date.fromisoformat(as_of)] if as_of else None,
        feature_set=feature_set,
    )
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


@flow(name="features")
def features_flow(workdir: str = "creditflow-work", as_of: str | None = None,
                  config_file: str | None = None) -> dict[str, Any]:
    """Build the point-in-time observation panel (all month ends, or one ``as_of`` date)."""
    logger = get_run_logger()
    settings = load_settings(Path(config_file) if config_file else None, workdir=Path(workdir))
    return _features(settings, as_of, logger)


def _features(settings: Settings, as_of: str | None, logger) -> dict[str, Any]:
    if as_of is not None:
        date.fromisoformat(as_of)  # a clear error before any work
    run_id = uuid.uuid4().hex
    started = datetime.now(UTC).isoformat(timespec="seconds")
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
