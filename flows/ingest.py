"""Ingest flow: landing files -> typed bronze Parquet + quarantine, validated by GX.

Reads like a table of contents:

1. discover landing files per family (``customers, fx_rates, bureau, bureau_events,
   ledger``: a family's cross-file rules look up the families before it);
2. skip files whose content hash is already in the manifest (idempotent);
3. per new file, in file-name order: read as text, row rules, cross-file rules,
   GX validation of the accepted batch, write bronze + quarantine, commit the
   manifest record;
4. build the Data Docs site and write the run summary.

The flow ends ``Completed`` when every file was accepted (possibly with quarantined
rows under the warning rate) and ``Failed`` (with the same summary) when a file
was rejected, failed critical validation, or quarantined more than the configured
share of its rows: the operator has something to look at, and nothing was lost.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed

from creditflow.core import schema
from creditflow.core.config import Settings, load_settings
from creditflow.core.paths import Paths
from creditflow.flows.gx_validate import GxValidator
from creditflow.flows.lake import (
    STATUS_ACCEPTED,
    STATUS_PARTIAL,
    STATUS_REJECTED,
    FileRecord,
    Manifest,
    bronze_path,
    publish_pending,
    quarantine_path,
    scan_bronze,
    sha256_file,
    write_json_atomic,
    write_parquet_atomic,
    write_parquet_pending,
)
from creditflow.validation.rules import apply_cross_file_rules, apply_row_rules, split_routed
from creditflow.validation.staging import (
    FileRejected,
    file_date_from_name,
    file_rejection_record,
    read_landing_file,
    values_are_trimmed,
)

LANDING_SUFFIXES = (".csv", ".parquet", ".txt")


def discover_landing_files(landing: Path) -> dict[str, list[Path]]:
    """Landing files per family, in ingest order: families as in the contract, files by name.

    Hidden files and files with other suffixes are ignored (and listed by the caller).
    """
    found: dict[str, list[Path]] = {}
    for family in schema.INPUT_FAMILIES:
        folder = landing / family
        files = []
        if folder.is_dir():
            files = sorted(
                p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
            )
        found[family] = files
    return found


def _reason_counts(quarantine: pl.DataFrame) -> dict[str, int]:
    if quarantine.height == 0:
        return {}
    counts = quarantine.group_by("reason_code").len().sort("reason_code")
    return {r: int(n) for r, n in counts.iter_rows()}


@task(name="ingest-file", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2)
def ingest_file(
    path: str,
    family: str,
    file_sha256: str,
    landing: str,
    workdir: str,
    ingested_at: str,
    run_id: str,
    docs_dir: str | None,
    base_currency: str,
) -> dict[str, Any]:
    """Ingest one landing file end to end and commit its manifest record.

    Row-level problems go to quarantine; an unreadable file, or one whose accepted
    rows fail a critical expectation, is rejected whole. Returns the manifest record
    as a dict (small: safe to pass between tasks).
    """
    t0 = time.perf_counter()
    paths = Paths(Path(workdir))
    table = schema.INPUT_FAMILIES[family]
    src = Path(path)
    rel = src.relative_to(landing).as_posix()
    ingested_ts = datetime.fromisoformat(ingested_at)
    file_date = file_date_from_name(src.name) or ingested_ts.date()
    common = dict(family=family, source_file=rel, file_sha256=file_sha256, size_bytes=src.stat().st_size,
                  file_date=file_date.isoformat(), ingested_at=ingested_at, run_id=run_id)
    manifest = Manifest(paths)
    tmp_dir = paths.state / "tmp"  # GB18030 files are transcoded here, next to the lake, not in /tmp
    tmp_dir.mkdir(parents=True, exist_ok=True)
    try:
        raw = read_landing_file(src, table, temp_dir=tmp_dir)
    except FileRejected as rejected:
        record_df = file_rejection_record(rejected, family=family, source_file=rel, file_sha256=file_sha256,
                                          ingested_at=ingested_ts)
        write_parquet_atomic(record_df, quarantine_path(paths, family, file_sha256))
        record = FileRecord(**common, status=STATUS_REJECTED, rows_read=0, rows_accepted=0, rows_quarantined=0,
                            reason_counts={rejected.reason_code: 1}, message=rejected.message,
                            seconds=round(time.perf_counter() - t0, 3))
        manifest.commit(record)
        return record.to_dict()

    parsed = apply_row_rules(raw, table, trimmed=values_are_trimmed(src))
    del raw
    parsed = apply_cross_file_rules(parsed, table, **_cross_file_context(paths, family))
    route = dict(family=family, source_file=rel, file_sha256=file_sha256, file_date=file_date,
                 ingested_at=ingested_ts)
    accepted, quarantined = split_routed(parsed, table, **route)
    rows_read = parsed.height
    validation, message, pending = None, None, None
    target = bronze_path(paths, family, file_sha256)
    try:
        if accepted.height:
            validator = GxValidator.shared(Path(docs_dir) if docs_dir else None, base_currency=base_currency)
            outcome, pending = _validate_while_writing(validator, accepted, table, rel, target)
            validation = outcome.to_dict()
            if not outcome.success_critical:
                # The rules and the suite disagree: keep nothing of this file, lose nothing either.
                pending.unlink(missing_ok=True)
                pending = None
                message = "accepted rows failed critical expectations: " + ", ".join(outcome.failed_critical)
                parsed = parsed.with_columns(
                    pl.col("reason_code").fill_null(pl.lit("FILE_VALIDATION_FAILED")),
                    pl.col("reason_detail").fill_null(pl.lit(message)),
                )
                accepted, quarantined = split_routed(parsed, table, **route)
        del parsed

        if pending is not None:
            publish_pending(pending, target)
            pending = None
    finally:
        if pending is not None:
            pending.unlink(missing_ok=True)
    if quarantined.height:
        write_parquet_atomic(quarantined, quarantine_path(paths, family, file_sha256))
    if message is not None:
        status = STATUS_REJECTED
    else:
        status = STATUS_ACCEPTED if quarantined.height == 0 else STATUS_PARTIAL
    record = FileRecord(
        **common,
        status=status,
        rows_read=rows_read,
        rows_accepted=accepted.height,
        rows_quarantined=quarantined.height,
        reason_counts=_reason_counts(quarantined),
        message=message,
        validation=validation,
        seconds=round(time.perf_counter() - t0, 3),
    )
    manifest.commit(record)
    return record.to_dict()


def _validate_while_writing(validator: GxValidator, accepted: pl.DataFrame, table: schema.Table,
                            batch_name: str, target: Path) -> tuple[Any, Path]:
    """GX validates the accepted batch in a second thread while this one writes it to a
    temporary Parquet file next to ``target`` (GX is mostly single-threaded Python, the
    Parquet writer native code that releases the GIL: on 2 cores they overlap). Returns
    the outcome and the unpublished file; the caller publishes or removes it."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gx") as pool:
        future = pool.submit(validator.validate, accepted, table, batch_name=batch_name)
        try:
            pending = write_parquet_pending(accepted, target)
        except BaseException:
            future.cancel()
            raise
        try:
            return future.result(), pending
        except BaseException:
            pending.unlink(missing_ok=True)
            raise


def _cross_file_context(paths: Paths, family: str) -> dict[str, Any]:
    """What a family's cross-file rules look up: only committed (manifested) data."""
    if family != schema.LEDGER.name:
        return {}
    customers = scan_bronze(paths, schema.CUSTOMERS.name, ["customer_id"])
    if customers is None:
        customers = pl.LazyFrame(schema={"customer_id": pl.String})
    prior = scan_bronze(paths, schema.LEDGER.name, ["entry_id", "customer_id", "entry_type", schema.SOURCE_FILE])
    return {"known_customer_ids": customers, "prior_ledger": prior}


@flow(name="ingest", log_prints=False)
def ingest_flow(
    workdir: str = "creditflow-work",
    landing: str | None = None,
    config_file: str | None = None,
) -> dict[str, Any]:
    """Ingest every new landing file into bronze/quarantine and validate it."""
    logger = get_run_logger()
    settings = load_settings(Path(config_file) if config_file else None, workdir=Path(workdir),
                             landing=Path(landing) if landing else None)
    return _ingest(settings, logger)


def _ingest(settings: Settings, logger) -> dict[str, Any] | Failed:
    t0 = time.perf_counter()
    paths = Paths(settings.workdir)
    landing = settings.landing_root
    run_id = uuid.uuid4().hex
    ingested_at = datetime.now(UTC).isoformat(timespec="microseconds")
    if not landing.is_dir():
        return Failed(message=f"landing folder {landing} does not exist", data={"error": "no landing folder"})
    docs_dir = paths.data_docs if settings.ingest.data_docs else None

    found = discover_landing_files(landing)
    manifest = Manifest(paths)
    total = sum(len(v) for v in found.values())
    logger.info("ingest: %d landing files under %s", total, landing)
    records: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    seen_this_run: set[str] = set()
    done = 0
    for family, files in found.items():
        for f in files:
            done += 1
            sha = sha256_file(f)
            rel = f.relative_to(landing).as_posix()
            if sha in manifest or sha in seen_this_run:
                skipped.append({"family": family, "source_file": rel, "file_sha256": sha})
                continue
            seen_this_run.add(sha)
            rec = ingest_file(str(f), family, sha, str(landing), str(paths.workdir), ingested_at, run_id,
                              str(docs_dir) if docs_dir else None, settings.base_currency)
            records.append(rec)
            logger.info(
                "[%d/%d] %s %s: read %d, accepted %d, quarantined %d (%s)",
                done, total, family, rel, rec["rows_read"], rec["rows_accepted"], rec["rows_quarantined"],
                rec["status"],
            )
    docs_index = None
    if docs_dir is not None and records:
        docs_index = str(GxValidator.shared(docs_dir, base_currency=settings.base_currency).build_docs())

    summary = _summary(settings, run_id, ingested_at, records, skipped, docs_index, time.perf_counter() - t0)
    write_json_atomic(summary, paths.runs / f"ingest-{ingested_at[:19].replace(':', '')}-{run_id[:8]}.json")
    problems = summary["problems"]
    if problems:
        return Failed(message=f"ingest finished with {len(problems)} problem file(s): " + "; ".join(problems[:5]),
                      data=summary)
    return summary


def _summary(settings: Settings, run_id: str, ingested_at: str, records: list[dict[str, Any]],
             skipped: list[dict[str, str]], docs_index: str | None, seconds: float) -> dict[str, Any]:
    reasons: Counter[str] = Counter()
    problems = []
    for r in records:
        reasons.update(r["reason_counts"])
        share = r["rows_quarantined"] / r["rows_read"] if r["rows_read"] else 0.0
        if r["status"] == STATUS_REJECTED:
            problems.append(f"{r['source_file']} rejected ({r['message']})")
        elif share > settings.ingest.quarantine_fail_rate:
            problems.append(f"{r['source_file']} quarantined {share:.0%} of its rows")
    return {
        "command": "ingest",
        "run_id": run_id,
        "ingested_at": ingested_at,
        "workdir": str(settings.workdir),
        "landing": str(settings.landing_root),
        "files": records,
        "skipped": skipped,
        "totals": {
            "files_new": len(records),
            "files_skipped": len(skipped),
            "files_rejected": sum(r["status"] == STATUS_REJECTED for r in records),
            "rows_read": sum(r["rows_read"] for r in records),
            "rows_accepted": sum(r["rows_accepted"] for r in records),
            "rows_quarantined": sum(r["rows_quarantined"] for r in records),
            "reason_counts": dict(sorted(reasons.items())),
        },
        "warnings": [
            f"{r['source_file']} quarantined {r['rows_quarantined']}/{r['rows_read']} rows"
            for r in records
            if r["rows_read"] and r["status"] != STATUS_REJECTED
            and r["rows_quarantined"] / r["rows_read"] > settings.ingest.quarantine_warn_rate
        ] + [f"{r['source_file']} has a header but no data rows" for r in records
             if r["rows_read"] == 0 and r["status"] != STATUS_REJECTED],
        "problems": problems,
        "data_docs": docs_index,
        "seconds": round(seconds, 2),
    }
