"""Ingest flow: landing files -> typed bronze Parquet + quarantine, validated by GX.

Reads like a table of contents:

1. discover landing files per family (``customers, fx_rates, bureau, bureau_events,
   ledger``: a family's cross-file rules look up the families before it);
2. skip files whose content hash is already in the manifest (idempotent);
3. per new file, in file-name order: read as text, row rules, cross-file rules,
   GX validation of the accepted batch, write bronze + quarantine, commit the
   manifest record;
4. build the Data Docs site and write the run summary.

On a Dask task runner (``runner: dask``, see ``flows.runner``) step 3 is split: every
new file's read and row rules (the per-file work) run as parallel ``stage-files`` tasks
(contiguous batches of files) on the workers, their parsed rows parked as Parquet under ``state/staging/``; the rest
of step 3 (cross-file rules, GX, writes, manifest) runs in the flow process one file at
a time in the same order as above, so bronze, quarantine, manifest and Data Docs are
exactly those of the sequential run (ledger rows see the same customers and the same
earlier ledger files; the Data Docs site is built from the one validator that saw every
batch).

The flow ends ``Completed`` when every file was accepted (possibly with quarantined
rows under the warning rate) and ``Failed`` (with the same summary) when a file
was rejected, failed critical validation, or quarantined more than the configured
share of its rows: the operator has something to look at, and nothing was lost.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait
from prefect.states import Failed

from creditflow.core import schema
from creditflow.core.config import Settings, load_settings
from creditflow.core.paths import Paths, file_identity
from creditflow.flows.gx_validate import GxValidator
from creditflow.flows.lake import (
    STATUS_ACCEPTED,
    STATUS_PARTIAL,
    STATUS_REJECTED,
    FileHashes,
    FileRecord,
    Manifest,
    bronze_path,
    publish_pending,
    quarantine_path,
    scan_bronze,
    write_json_atomic,
    write_parquet_atomic,
    write_parquet_pending,
)
from creditflow.flows.runner import dask_active, dask_worker_threads
from creditflow.validation.rules import apply_cross_file_rules, apply_row_rules, split_routed
from creditflow.validation.staging import (
    FileRejected,
    file_date_from_name,
    file_rejection_record,
    read_landing_file,
    values_are_slash_free,
    values_are_trimmed,
)

LANDING_SUFFIXES = (".csv", ".parquet", ".txt")
STAGE_BATCHES_PER_THREAD = 4
"""On Dask, new files are staged in up to this many contiguous batches per worker thread:
few enough that task overhead stays small, enough that commits start early."""


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
    as a dict (small: safe to pass between tasks), or ``{"unreadable": ...}`` when the
    file cannot be opened any more (removed since its hash, no permission): then nothing
    is committed for it, and the next run looks at it again. Once read, a file is
    committed even if it is removed meanwhile (nothing of it is needed any more).
    """
    t0 = time.perf_counter()
    job = _FileJob(path, family, file_sha256, landing, workdir, ingested_at, run_id)
    staged = _PRESTAGED.pop((run_id, path), None)
    if staged is not None:
        t0 -= staged.seconds  # read while the hash was computed
    else:
        try:
            staged = _stage(job)
        except OSError as e:
            if not _about(e, Path(path)):
                raise  # e.g. the lake's disk is full: the run stops, as it must
            return {"unreadable": _unreadable(family, Path(path), Path(landing), e)}
    if isinstance(staged.rows, FileRejected):
        return _commit_rejected(job, staged.rows, t0, staged.size_bytes)
    return _commit_parsed(job, staged.rows, docs_dir, base_currency, t0, staged.size_bytes)


@dataclass(frozen=True)
class _FileJob:
    """One new landing file of this run and where its outputs go."""

    path: str
    family: str
    file_sha256: str
    landing: str
    workdir: str
    ingested_at: str
    run_id: str

    @property
    def paths(self) -> Paths:
        return Paths(Path(self.workdir))

    @property
    def table(self) -> schema.Table:
        return schema.INPUT_FAMILIES[self.family]

    @property
    def rel(self) -> str:
        return Path(self.path).relative_to(self.landing).as_posix()

    @property
    def ingested_ts(self) -> datetime:
        return datetime.fromisoformat(self.ingested_at)

    @property
    def file_date(self) -> date:
        return file_date_from_name(Path(self.path).name) or self.ingested_ts.date()

    def common(self, size_bytes: int) -> dict[str, Any]:
        return dict(family=self.family, source_file=self.rel, file_sha256=self.file_sha256,
                    size_bytes=size_bytes, file_date=self.file_date.isoformat(),
                    ingested_at=self.ingested_at, run_id=self.run_id)


@dataclass(frozen=True)
class _Staged:
    """A file read as text with its row rules applied (or why it cannot be read at all)."""

    rows: pl.DataFrame | FileRejected
    size_bytes: int
    identity: list[int]
    """``core.paths.file_identity`` (device, inode, size, mtime, ctime) when reading began."""
    changed: bool
    """The file's identity was different once reading ended (it was written meanwhile)."""
    seconds: float


_PRESTAGED: dict[tuple[str, str], _Staged] = {}
"""(run_id, path) -> a file staged while its hash was still being computed (:func:`_prestage`);
``ingest-file`` takes it instead of reading the file again."""


def _prestage(job: _FileJob) -> None:
    """Stage a file before its hash is known, so that its read and row rules overlap the
    hash (single-threaded sha256: 0.6 s for a 10M-row export) instead of waiting for it.

    Staging needs no hash. If the file turns out to be ingested already, the caller drops
    the rows (:meth:`_Prestager.drop`). An unexpected error here is not raised: the
    ``ingest-file`` task stages the file again and reports it there, as without this step.
    """
    try:
        _PRESTAGED[(job.run_id, job.path)] = _stage(job)
    except Exception:  # noqa: BLE001 - re-raised by the task's own staging
        _PRESTAGED.pop((job.run_id, job.path), None)


def _drop_prestaged(run_id: str) -> None:
    for key in list(_PRESTAGED):
        if key[0] == run_id:
            _PRESTAGED.pop(key, None)


@dataclass(frozen=True)
class _Prestager:
    """What :func:`_new_files` calls for a file whose hash is not ready when its turn comes."""

    make_job: Callable[[Path, str, str], _FileJob]

    def stage(self, file: Path, family: str) -> None:
        _prestage(self.make_job(file, family, ""))

    def drop(self, file: Path, family: str) -> None:
        """The file was skipped after all (its content is ingested already)."""
        job = self.make_job(file, family, "")
        _PRESTAGED.pop((job.run_id, job.path), None)

    def confirm(self, file: Path, family: str, hashed_identity: list[int] | None) -> None:
        """Keep the staged rows only if they were read from exactly the bytes that were hashed
        (a file still being written could be read short but hashed whole: the rows missing
        from the read would never come, as the next run finds that hash in the manifest);
        otherwise drop them, so the file is read again now that it is hashed."""
        job = self.make_job(file, family, "")
        staged = _PRESTAGED.get((job.run_id, job.path))
        if staged is not None and (staged.changed or hashed_identity is None
                                   or staged.identity != list(hashed_identity)):
            _PRESTAGED.pop((job.run_id, job.path), None)


def _stage(job: _FileJob) -> _Staged:
    """Read the file as text and apply the row rules: what one file decides on its own.

    Raises ``OSError`` if the file cannot be opened (see :func:`_about`)."""
    t0 = time.perf_counter()
    paths = job.paths
    tmp_dir = paths.state / "tmp"  # GB18030 files are transcoded here, next to the lake, not in /tmp
    tmp_dir.mkdir(parents=True, exist_ok=True)
    src = Path(job.path)
    before = os.stat(src)
    rows: pl.DataFrame | FileRejected
    try:
        raw = read_landing_file(src, job.table, temp_dir=tmp_dir)
        rows = apply_row_rules(raw, job.table, trimmed=values_are_trimmed(src), slash_free=values_are_slash_free(src))
    except FileRejected as rejected:
        rows = rejected
    try:
        changed = file_identity(os.stat(src)) != file_identity(before)
    except OSError:  # removed after it was read: what was read is the whole file
        changed = False
    return _Staged(rows, before.st_size, file_identity(before), changed, time.perf_counter() - t0)


def _commit_rejected(job: _FileJob, rejected: FileRejected, t0: float, size_bytes: int) -> dict[str, Any]:
    paths = job.paths
    record_df = file_rejection_record(rejected, family=job.family, source_file=job.rel,
                                      file_sha256=job.file_sha256, ingested_at=job.ingested_ts)
    write_parquet_atomic(record_df, quarantine_path(paths, job.family, job.file_sha256))
    record = FileRecord(**job.common(size_bytes), status=STATUS_REJECTED, rows_read=0, rows_accepted=0, rows_quarantined=0,
                        reason_counts={rejected.reason_code: 1}, message=rejected.message,
                        seconds=round(time.perf_counter() - t0, 3))
    Manifest(paths).commit(record)
    return record.to_dict()


def _commit_parsed(job: _FileJob, parsed: pl.DataFrame, docs_dir: str | None, base_currency: str,
                   t0: float, size_bytes: int) -> dict[str, Any]:
    """Cross-file rules, GX validation, bronze + quarantine, then the manifest record (last)."""
    paths = job.paths
    family, file_sha256, rel, table = job.family, job.file_sha256, job.rel, job.table
    manifest = Manifest(paths)
    parsed = apply_cross_file_rules(parsed, table, **_cross_file_context(paths, family))
    route = dict(family=family, source_file=rel, file_sha256=file_sha256, file_date=job.file_date,
                 ingested_at=job.ingested_ts)
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
        **job.common(size_bytes),
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


# ------------------------------------------------------------------ Dask: parallel staging

def _staged_path(job: _FileJob) -> Path:
    return job.paths.state / "staging" / job.run_id / f"{job.file_sha256}.parquet"


def _stage_one(job: _FileJob) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        staged = _stage(job)
    except OSError as e:
        if not _about(e, Path(job.path)):
            raise
        return {"unreadable": _unreadable(job.family, Path(job.path), Path(job.landing), e)}
    parsed = staged.rows
    if isinstance(parsed, FileRejected):
        # FileRejected does not pickle (its args are not its constructor's): send its fields.
        rejected = {"reason_code": parsed.reason_code, "message": parsed.message, "preview": parsed.preview}
        return {"rejected": rejected, "seconds": time.perf_counter() - t0, "size_bytes": staged.size_bytes}
    out = _staged_path(job)
    # No compression: the file is read back once, by the commit a few seconds later.
    out.parent.mkdir(parents=True, exist_ok=True)
    parsed.write_parquet(out, compression="uncompressed", statistics=False)
    return {"staged": str(out), "seconds": time.perf_counter() - t0, "size_bytes": staged.size_bytes}


@task(name="stage-files", cache_policy=NO_CACHE, persist_result=False, retries=1, retry_delay_seconds=2)
def stage_files(jobs: list[_FileJob]) -> list[dict[str, Any]]:
    """On a worker: read a batch of files and apply their row rules; each file's parsed rows go
    to a staging Parquet file under the workdir (never through Prefect results). Returns, per
    file, that path, or the rejection (reason code, message) of a file that cannot be read."""
    return [_stage_one(job) for job in jobs]


def _batches(jobs: list[Any], n: int) -> list[list[Any]]:
    """``jobs`` in ``n`` (or fewer) contiguous batches of near-equal size, order kept."""
    size = -(-len(jobs) // max(1, n)) if jobs else 1
    return [jobs[i:i + size] for i in range(0, len(jobs), size)]


@task(name="commit-file", cache_policy=NO_CACHE, persist_result=False)
def commit_staged_file(job: _FileJob, staged: dict[str, Any], docs_dir: str | None,
                       base_currency: str) -> dict[str, Any]:
    """In the flow process, in ingest order: cross-file rules, GX, bronze/quarantine, manifest."""
    if "unreadable" in staged:
        return staged
    t0 = time.perf_counter() - staged["seconds"]
    if "rejected" in staged:
        r = staged["rejected"]
        return _commit_rejected(job, FileRejected(r["reason_code"], r["message"], preview=r["preview"]), t0,
                                staged["size_bytes"])
    path = Path(staged["staged"])
    parsed = pl.read_parquet(path)
    try:
        return _commit_parsed(job, parsed, docs_dir, base_currency, t0, staged["size_bytes"])
    finally:
        path.unlink(missing_ok=True)


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
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Ingest every new landing file into bronze/quarantine and validate it.

    ``settings``: complete settings as a dict (what the command line loaded); when given,
    ``workdir``, ``landing`` and ``config_file`` are not read. On a Dask task runner
    (``flows.runner``) files are staged in parallel and committed in ingest order.
    """
    logger = get_run_logger()
    s = (
        Settings.model_validate(settings)
        if settings is not None
        else load_settings(Path(config_file) if config_file else None, workdir=Path(workdir),
                           landing=Path(landing) if landing else None)
    )
    return _ingest(s, logger)


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
    hashes = FileHashes(paths.state / "landing_sha256.json")
    total = sum(len(v) for v in found.values())
    logger.info("ingest: %d landing files under %s", total, landing)
    records: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    def make_job(f: Path, family: str, sha: str) -> _FileJob:
        return _FileJob(str(f), family, sha, str(landing), str(paths.workdir), ingested_at, run_id)

    on_dask = dask_active()
    # Sequentially, a file whose hash is not ready yet is read while it is hashed; on Dask
    # the workers stage the files.
    unreadable: list[dict[str, str]] = []
    handed_out: set[str] = set()
    new_files = _new_files(found, landing, manifest, hashes, skipped, make_job,
                           prestager=None if on_dask else _Prestager(make_job), unreadable=unreadable,
                           seen=handed_out)
    docs = str(docs_dir) if docs_dir else None
    staging_dir = paths.state / "staging" / run_id
    futures: list[Any] = []
    stage_batches = 0
    try:
        staged: list[Any] = []
        jobs: Iterable[tuple[int, _FileJob]] = new_files
        if on_dask:
            # The files' reads and row rules run on the workers, in contiguous batches (a task per
            # file costs more than a small file); the commits (cross-file rules, GX, bronze,
            # manifest) follow here one by one in ingest order, exactly as sequentially, each as
            # soon as its batch is staged.
            jobs = list(new_files)
            batches = _batches([job for _, job in jobs], STAGE_BATCHES_PER_THREAD * dask_worker_threads())
            logger.info("ingest: staging %d files on Dask in %d batches, committing them in ingest order",
                        len(jobs), len(batches))
            futures = [stage_files.submit(batch) for batch in batches]
            stage_batches = len(batches)
            staged = [(f, k) for f, batch in zip(futures, batches, strict=True) for k in range(len(batch))]
        for i, (n, job) in enumerate(jobs):
            if on_dask:
                future, k = staged[i]
                rec = commit_staged_file(job, future.result()[k], docs, settings.base_currency)
            else:
                rec = ingest_file(job.path, job.family, job.file_sha256, job.landing, job.workdir, ingested_at,
                                  run_id, docs, settings.base_currency)
            if "unreadable" in rec:
                unreadable.append(rec["unreadable"])
                handed_out.discard(job.file_sha256)  # a copy of it later in the run is still taken
                logger.warning("[%d/%d] %s %s: %s", n, total, job.family, job.rel, rec["unreadable"]["message"])
                continue
            records.append(rec)
            logger.info(
                "[%d/%d] %s %s: read %d, accepted %d, quarantined %d (%s)",
                n, total, job.family, job.rel, rec["rows_read"], rec["rows_accepted"], rec["rows_quarantined"],
                rec["status"],
            )
        hashes.save()
    finally:
        new_files.close()  # stops the hashing of files not reached (after a failure)
        _drop_prestaged(run_id)
        if futures:  # after a failure, let running staging tasks finish before removing their folder
            wait(futures)
        if staging_dir.is_dir():
            shutil.rmtree(staging_dir, ignore_errors=True)
    docs_index = None
    if docs_dir is not None and records:
        docs_index = str(GxValidator.shared(docs_dir, base_currency=settings.base_currency).build_docs())

    summary = _summary(settings, run_id, ingested_at, records, skipped, docs_index, time.perf_counter() - t0,
                       unreadable=unreadable)
    if stage_batches:
        summary["dask_stage_batches"] = stage_batches
    write_json_atomic(summary, paths.runs / f"ingest-{ingested_at[:19].replace(':', '')}-{run_id[:8]}.json")
    problems = summary["problems"]
    if problems:
        return Failed(message=f"ingest finished with {len(problems)} problem file(s): " + "; ".join(problems[:5]),
                      data=summary)
    return summary


def _new_files(
    found: dict[str, list[Path]], landing: Path, manifest: Manifest, hashes: FileHashes,
    skipped: list[dict[str, str]], make_job: Callable[[Path, str, str], _FileJob],
    prestager: _Prestager | None = None, unreadable: list[dict[str, str]] | None = None,
    seen: set[str] | None = None,
) -> Generator[tuple[int, _FileJob], None, None]:
    """The landing files to ingest, in ingest order, each with its number among all files.

    A file is new unless its sha256 is in the manifest or was met earlier in this run
    (those go to ``skipped``). Hashes are computed in order on a background thread, so
    hashing a file (a full read: 0.5 s for a 10M-row export) overlaps the ingest of the
    files before it; the decision on a file waits for its own hash only. ``prestager``, if
    given, stages a file whose hash is not ready when its turn comes (so its read overlaps
    its own hash) and drops those rows if the file is then skipped. A file that cannot be
    read for its hash (removed since the listing, no permission) goes to ``unreadable`` when
    that list is given (else the error is raised); nothing is recorded for it, so the next
    run looks at it again. ``seen`` (default: a new set) holds the hashes handed out so far
    in this run; the caller removes a hash whose file then turned out unreadable, so that a
    copy of it later in the run is still taken.
    """
    listing = [(family, f) for family, files in found.items() for f in files]
    seen_this_run: set[str] = set() if seen is None else seen
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256")
    try:
        ahead = [pool.submit(hashes.sha256, f) for _, f in listing]
        for n, ((family, f), sha_job) in enumerate(zip(listing, ahead, strict=True), start=1):
            if prestager is not None and not sha_job.done() and hashes.remembered(f) is None:
                prestager.stage(f, family)
            try:
                sha = sha_job.result()
            except OSError as e:
                if unreadable is None:
                    raise
                unreadable.append(_unreadable(family, f, landing, e))
                if prestager is not None:
                    prestager.drop(f, family)
                continue
            if sha in manifest or sha in seen_this_run:
                skipped.append({"family": family, "source_file": f.relative_to(landing).as_posix(),
                                "file_sha256": sha})
                if prestager is not None:
                    prestager.drop(f, family)
                continue
            seen_this_run.add(sha)
            if prestager is not None:
                prestager.confirm(f, family, hashes.hashed_identity(f))
            yield n, make_job(f, family, sha)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _about(e: OSError, file: Path) -> bool:
    """Whether ``e`` is about reading ``file`` itself (gone, no permission), not about the lake."""
    return isinstance(e, FileNotFoundError | PermissionError | IsADirectoryError) and e.filename is not None and (
        Path(e.filename) == file or Path(e.filename).resolve() == file.resolve())


def _unreadable(family: str, file: Path, landing: Path, e: OSError) -> dict[str, str]:
    why = e.strerror or type(e).__name__
    return {"family": family, "source_file": file.relative_to(landing).as_posix(),
            "message": f"could not be read ({why}); nothing was recorded for it, the next run looks at it again"}


def _summary(settings: Settings, run_id: str, ingested_at: str, records: list[dict[str, Any]],
             skipped: list[dict[str, str]], docs_index: str | None, seconds: float, *,
             unreadable: list[dict[str, str]] | None = None) -> dict[str, Any]:
    reasons: Counter[str] = Counter()
    unreadable = unreadable or []
    problems = [f"{u['source_file']} {u['message']}" for u in unreadable]
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
        "unreadable": unreadable,
        "totals": {
            "files_new": len(records),
            "files_skipped": len(skipped),
            "files_unreadable": len(unreadable),
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
