"""The lake on disk: atomic writes, the ingest manifest, readers of committed data.

Layout under ``WORKDIR/lake`` (see ``core/paths.py``)::

    bronze/<family>/<sha256>.parquet      accepted rows of one landing file (typed, with lineage)
    quarantine/<family>/<sha256>.parquet  its rejected rows, or the one record of a whole-file reject
    manifest/<sha256>.json                written LAST: its presence means the file is ingested

A file is identified by the sha256 of its bytes. Because the manifest record is
written after the data files, a crash mid-file leaves no record; the next run
ingests that file again and overwrites the half-written outputs of the same name,
so nothing is counted twice. Readers only ever see files that have a record.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from creditflow.core.paths import Paths, file_identity

STATUS_ACCEPTED = "accepted"
"""Every row accepted."""
STATUS_PARTIAL = "accepted_with_quarantine"
"""Some rows quarantined, the rest accepted."""
STATUS_REJECTED = "rejected"
"""Nothing accepted: unreadable file or failed critical validation."""

_CHUNK = 8 * 1024 * 1024

PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 1, "statistics": True}
"""How the lake writes Parquet: standard zstd at level 1 (files within 2% of Polars'
default level, 20-25% less CPU on a 10M-row ledger), with min/max statistics per row
group (readers skip row groups on them)."""


def sha256_file(path: Path) -> str:
    """sha256 of a file's bytes, read in chunks (constant memory)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


_RACY_NS = 2_000_000_000
"""File systems stamp mtime/ctime in ticks of a few ms (ext4) to 2 s (FAT, some network mounts)."""


class FileHashes:
    """sha256 of landing files, remembered so that an unchanged file is not read again.

    A daily run would otherwise re-read every file already in the landing folder (a
    10M-row ledger export: 0.5 s) only to find it ingested, so its cost would grow with
    the history instead of the increment. A remembered hash is used only while the
    file's ``(device, inode, size, mtime_ns, ctime_ns)`` are those seen when it was
    hashed: any write to a file moves its ctime, which no tool can set back (``touch``
    sets mtime only), so a changed file is always hashed again; a chmod also moves it,
    which costs one re-hash and nothing else. A file changed less than 2 s before it was
    hashed is not remembered (a same-size rewrite within one timestamp tick would keep its
    identity). Kept in ``WORKDIR/state/landing_sha256.json``
    (an unreadable cache is ignored); :meth:`save` keeps only the files looked up since
    it was loaded.
    """

    def __init__(self, path: Path):
        self.path = path
        self._known: dict[str, dict[str, Any]] = {}
        self._seen: dict[str, dict[str, Any]] = {}
        self._hashed: dict[str, list[int] | None] = {}
        try:
            known = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(known, dict):
                self._known = {k: v for k, v in known.items() if isinstance(v, dict)}
        except (OSError, ValueError):
            pass

    identity = staticmethod(file_identity)

    def remembered(self, file: Path) -> str | None:
        """The remembered sha256 of ``file`` if its identity is unchanged (a stat, no read)."""
        key = str(Path(file).resolve())
        try:
            identity = self.identity(os.stat(key))
        except OSError:
            return None
        entry = self._known.get(key)
        if entry is None or entry.get("identity") != identity or not isinstance(entry.get("sha256"), str):
            return None
        return entry["sha256"]

    def hashed_identity(self, file: Path) -> list[int] | None:
        """The identity ``file`` had when :meth:`sha256` last gave its hash (None: the file
        changed while it was being read, or was never hashed)."""
        return self._hashed.get(str(Path(file).resolve()))

    def sha256(self, file: Path) -> str:
        """The file's sha256: remembered if its identity is unchanged, else read."""
        key = str(Path(file).resolve())
        identity = self.identity(os.stat(key))
        entry = self._known.get(key)
        self._hashed[key] = identity
        if entry is None or entry.get("identity") != identity or not isinstance(entry.get("sha256"), str):
            started = time.time_ns()
            entry = {"identity": identity, "sha256": sha256_file(Path(key))}
            if self.identity(os.stat(key)) != identity:  # written while being read: do not remember
                self._hashed[key] = None
                return entry["sha256"]
            if started - max(identity[3], identity[4]) < _RACY_NS:
                # Changed within a timestamp tick of being hashed: a same-size rewrite in the
                # same tick would keep this identity (git's "racily clean" entries); hash it
                # again next time rather than trust the identity.
                return entry["sha256"]
        self._seen[key] = entry
        return entry["sha256"]

    def save(self) -> None:
        write_json_atomic(self._seen, self.path)


def _atomic_target(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def write_parquet_atomic(df: pl.DataFrame | pl.LazyFrame, path: Path) -> None:
    """Write Parquet under a temporary name, then rename: readers never see half a file."""
    tmp = _atomic_target(path)
    try:
        if isinstance(df, pl.LazyFrame):
            df.sink_parquet(tmp, **PARQUET_OPTIONS)
        else:
            df.write_parquet(tmp, **PARQUET_OPTIONS)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet_pending(df: pl.DataFrame | pl.LazyFrame, path: Path) -> Path:
    """Write Parquet under a temporary name next to ``path`` and return that name.

    Nothing reads it until :func:`publish_pending` renames it to ``path`` (atomic); the
    caller removes it (``unlink``) if it decides not to publish. Lets a file be written
    while its batch is still being validated.
    """
    tmp = _atomic_target(path)
    try:
        if isinstance(df, pl.LazyFrame):
            df.sink_parquet(tmp, **PARQUET_OPTIONS)
        else:
            df.write_parquet(tmp, **PARQUET_OPTIONS)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def publish_pending(tmp: Path, path: Path) -> None:
    """Give a file written by :func:`write_parquet_pending` its final name (atomic rename)."""
    os.replace(tmp, path)


def write_json_atomic(obj: Any, path: Path) -> None:
    tmp = _atomic_target(path)
    try:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class FileRecord:
    """The manifest record of one ingested landing file."""

    family: str
    source_file: str
    file_sha256: str
    size_bytes: int
    status: str
    rows_read: int
    rows_accepted: int
    rows_quarantined: int
    reason_counts: dict[str, int] = field(default_factory=dict)
    message: str | None = None
    validation: dict[str, Any] | None = None
    file_date: str | None = None
    ingested_at: str | None = None
    run_id: str | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.rows_read != self.rows_accepted + self.rows_quarantined:
            raise ValueError(
                f"{self.source_file}: rows read ({self.rows_read}) != accepted ({self.rows_accepted})"
                f" + quarantined ({self.rows_quarantined}); refusing to record a file that lost rows"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_RECORDS_READ: dict[str, tuple[list[int], FileRecord]] = {}
"""Manifest records already parsed in this process, by path, with the file identity
(``core.paths.file_identity``) they were read at. A record file is written once (atomically, by rename); re-reading every
record for every file of a run made the per-file cost grow with the lake's history."""


def _read_record(entry: os.DirEntry) -> FileRecord:
    identity = file_identity(entry.stat())
    known = _RECORDS_READ.get(entry.path)
    if known is not None and known[0] == identity:
        return known[1]
    rec = FileRecord(**json.loads(Path(entry.path).read_text(encoding="utf-8")))
    _RECORDS_READ[entry.path] = (identity, rec)
    return rec


class Manifest:
    """The set of ingested files, read from ``lake/manifest/*.json``."""

    def __init__(self, paths: Paths):
        self.paths = paths
        self.records: dict[str, FileRecord] = {}
        if paths.manifest.is_dir():
            with os.scandir(paths.manifest) as it:
                entries = sorted((e for e in it if e.name.endswith(".json") and e.is_file()), key=lambda e: e.name)
            for entry in entries:
                rec = _read_record(entry)
                self.records[rec.file_sha256] = rec

    def __contains__(self, sha: str) -> bool:
        return sha in self.records

    def commit(self, record: FileRecord) -> None:
        """Record a file as ingested: the last write of a file's ingest."""
        write_json_atomic(record.to_dict(), self.paths.manifest / f"{record.file_sha256}.json")
        self.records[record.file_sha256] = record

    def bronze_files(self, family: str) -> list[Path]:
        """Committed bronze Parquet files of a family, in ingest order (source file name)."""
        recs = sorted(
            (r for r in self.records.values() if r.family == family and r.rows_accepted > 0),
            key=lambda r: (r.source_file, r.file_sha256),
        )
        return [bronze_path(self.paths, family, r.file_sha256) for r in recs]

    def quarantine_files(self) -> list[Path]:
        recs = sorted(self.records.values(), key=lambda r: (r.family, r.source_file, r.file_sha256))
        return [
            quarantine_path(self.paths, r.family, r.file_sha256) for r in recs if r.rows_quarantined or r.status == STATUS_REJECTED
        ]


def bronze_path(paths: Paths, family: str, sha: str) -> Path:
    return paths.bronze(family) / f"{sha}.parquet"


def quarantine_path(paths: Paths, family: str, sha: str) -> Path:
    return paths.quarantine / family / f"{sha}.parquet"


def scan_bronze(paths: Paths, family: str, columns: Iterable[str] | None = None) -> pl.LazyFrame | None:
    """Lazily scan the committed bronze rows of a family (None when there are none).

    Files are scanned with ``missing_columns="insert"``-like behaviour by selecting
    only contract columns, so an extra column kept in one file does not break the union.
    """
    files = Manifest(paths).bronze_files(family)
    return scan_files(files, columns)


def scan_files(files: list[Path], columns: Iterable[str] | None = None) -> pl.LazyFrame | None:
    if not files:
        return None
    cols = list(columns) if columns is not None else None
    frames = []
    for f in files:
        lf = pl.scan_parquet(f)
        frames.append(lf.select(cols) if cols is not None else lf)
    return pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]


def scan_quarantine(paths: Paths) -> pl.LazyFrame | None:
    return scan_files(Manifest(paths).quarantine_files())
