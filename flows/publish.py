"""Publishing: the output tables as Delta Lake tables, one partition per as-of date.

Layout under ``WORKDIR/published`` (``core.paths.Paths.table``)::

    scores/  limits/  watchlist/  collections/   Delta tables partitioned by as_of_date
    runs/                                        Delta table, one row per publish (audit)

- **Exact schemas.** A frame is checked against its contract table
  (``core.schema.OUTPUT_TABLES``) before it is written: the same column names,
  in contract order, with the same dtypes, every row at the as-of date being
  published, one row per customer. Readers here select the columns back in
  contract order (Delta returns partition columns wherever it likes) and check
  them again.
- **One commit per table and as-of date.** ``write_delta(mode="overwrite")`` with
  the predicate ``as_of_date = 'YYYY-MM-DD'`` removes that partition's files and
  adds the new ones in a single Delta commit: a reader sees the old partition or
  the new one, never a mix, and other as-of dates are untouched. Re-publishing
  the same rows is idempotent in content (it adds a version; earlier versions
  stay readable with ``version=N``: time travel for audit).
- **The run record last.** The four tables are four Delta tables, so a publish is
  four commits; the ``runs`` row (run id, as-of date, model name and version,
  policy version, input file hashes from the ingest manifest, row counts and the
  Delta version each table reached) is appended after all four succeeded. Its
  presence marks a complete publish; :func:`latest_run` is what a careful reader
  consults first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
from deltalake import DeltaTable

from creditflow.core.paths import Paths
from creditflow.core.schema import OUTPUT_TABLES, SCHEMA_VERSION, Table
from creditflow.flows.lake import Manifest

AS_OF_DATE = "as_of_date"
RUNS_TABLE = "runs"

INPUT_FILE = pl.Struct(
    {"family": pl.String, "source_file": pl.String, "file_sha256": pl.String, "status": pl.String}
)
RUNS_SCHEMA = pl.Schema(
    {
        "run_id": pl.String,
        "as_of_date": pl.Date,
        "published_at": pl.Datetime("us", "UTC"),
        "model_name": pl.String,
        "model_version": pl.String,
        "policy_version": pl.String,
        "feature_set": pl.String,
        "schema_version": pl.String,
        "input_files": pl.List(INPUT_FILE),
        **{f"rows_{name}": pl.Int64 for name in OUTPUT_TABLES},
        **{f"delta_version_{name}": pl.Int64 for name in OUTPUT_TABLES},
    }
)
"""Columns of the ``runs`` table: one row per publish, appended, never rewritten."""


class PublishError(ValueError):
    """A frame does not match its contract table, or a published table is not what it should be."""


@dataclass(frozen=True)
class RunInfo:
    """What a publish records about the run that produced the tables."""

    run_id: str
    model_name: str
    model_version: str
    policy_version: str
    feature_set: str


# ---------------------------------------------------------------------------- schema


def schema_problems(schema: Mapping[str, pl.DataType], table: Table) -> list[str]:
    """Every difference between ``schema`` and the contract table (names, order, dtypes)."""
    expected = table.polars_schema
    got = dict(schema)
    problems = []
    missing = [c for c in expected if c not in got]
    extra = [c for c in got if c not in expected]
    if missing:
        problems.append(f"missing columns {missing}")
    if extra:
        problems.append(f"unexpected columns {extra}")
    for c, dtype in expected.items():
        if c in got and got[c] != dtype:
            problems.append(f"{c} must be {dtype}; got {got[c]}")
    if not missing and not extra and list(got) != list(expected):
        problems.append(f"columns must be in contract order {list(expected)}; got {list(got)}")
    return problems


def check_schema(frame: pl.DataFrame, table: Table) -> None:
    """Raise :class:`PublishError` unless ``frame`` has exactly the contract's columns, order and dtypes."""
    problems = schema_problems(frame.schema, table)
    if problems:
        raise PublishError(f"{table.name}: " + "; ".join(problems))


def _check_rows(frame: pl.DataFrame, table: Table, as_of: date) -> None:
    other = frame.filter(pl.col(AS_OF_DATE) != as_of).get_column(AS_OF_DATE).unique().sort()
    if other.len():
        raise PublishError(
            f"{table.name}: every row must be at as_of_date {as_of}; got rows at {other.to_list()[:3]}"
        )
    nulls = [c.name for c in table.columns if c.required and frame.get_column(c.name).null_count()]
    if nulls:
        raise PublishError(f"{table.name}: required columns hold nulls: {nulls}")
    if table.key:
        dup = frame.select(pl.struct(list(table.key)).is_duplicated().sum()).item()
        if dup:
            raise PublishError(f"{table.name}: {dup} rows share a key {list(table.key)}")


# ---------------------------------------------------------------------------- tables


def table_path(paths: Paths, name: str) -> Path:
    return paths.table(name)


def delta_version(path: Path) -> int | None:
    """The current Delta version of the table at ``path``; None when there is no table."""
    if not (path / "_delta_log").is_dir():
        return None
    return DeltaTable(str(path)).version()


def _predicate(as_of: date) -> str:
    return f"{AS_OF_DATE} = '{as_of.isoformat()}'"


def write_partition(path: Path, frame: pl.DataFrame, table: Table, as_of: date) -> int:
    """Replace the ``as_of`` partition of the Delta table at ``path`` with ``frame`` in one commit.

    ``frame`` must match ``table`` exactly (see :func:`check_schema`) and hold only
    rows at ``as_of`` (it may be empty: the partition is then emptied). Creates the
    table, partitioned by ``as_of_date``, on first use. Returns the new Delta version.
    """
    if not isinstance(as_of, date) or isinstance(as_of, datetime):
        raise TypeError(f"as_of must be a datetime.date; got {as_of!r}")
    check_schema(frame, table)
    _check_rows(frame, table, as_of)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_delta(
        str(path),
        mode="overwrite",
        delta_write_options={"partition_by": list(table.partition_by), "predicate": _predicate(as_of)},
    )
    version = delta_version(path)
    assert version is not None
    return version


def scan_table(path: Path, table: Table, version: int | None = None) -> pl.LazyFrame:
    """Lazily read a published table (optionally at a Delta ``version``), columns in contract order."""
    if delta_version(path) is None:
        raise FileNotFoundError(f"no published {table.name} table at {path}: run `creditflow score` first")
    lf = pl.scan_delta(str(path), version=version)
    problems = schema_problems(lf.collect_schema(), table)
    # partition columns may come back anywhere: only names and dtypes matter before the select
    problems = [p for p in problems if not p.startswith("columns must be in contract order")]
    if problems:
        raise PublishError(f"published {table.name} at {path}: " + "; ".join(problems))
    return lf.select(table.names)


def read_table(
    path: Path, table: Table, *, version: int | None = None, as_of: date | None = None
) -> pl.DataFrame:
    """A published table (all as-of dates, or one), in contract order, sorted by its key."""
    lf = scan_table(path, table, version)
    if as_of is not None:
        lf = lf.filter(pl.col(AS_OF_DATE) == as_of)
    return lf.collect().sort(list(table.key) or table.names[:1])


def published_as_of_dates(path: Path) -> list[date]:
    """The as-of dates present in the table's current version (from the Delta log, no data read)."""
    if delta_version(path) is None:
        return []
    # each add action records its partition value; an emptied partition has no files and no date
    values = DeltaTable(str(path)).partitions()
    return sorted({date.fromisoformat(p[AS_OF_DATE]) for p in values if p.get(AS_OF_DATE)})


def read_previous(path: Path, table: Table, before: date) -> pl.DataFrame | None:
    """The rows of the latest as-of date before ``before`` (None when there is none)."""
    dates = [d for d in published_as_of_dates(path) if d < before]
    if not dates:
        return None
    return read_table(path, table, as_of=dates[-1])


# ------------------------------------------------------------------------------ runs


def input_files(paths: Paths) -> list[dict[str, str]]:
    """Every ingested landing file of the manifest: family, source file, sha256 and status."""
    recs = sorted(Manifest(paths).records.values(), key=lambda r: (r.family, r.source_file, r.file_sha256))
    return [
        {"family": r.family, "source_file": r.source_file, "file_sha256": r.file_sha256, "status": r.status}
        for r in recs
    ]


def run_record(
    run: RunInfo,
    as_of: date,
    files: list[dict[str, str]],
    rows: Mapping[str, int],
    versions: Mapping[str, int],
    published_at: datetime | None = None,
) -> pl.DataFrame:
    """The one-row ``runs`` frame of a publish."""
    missing = [n for n in OUTPUT_TABLES if n not in rows or n not in versions]
    if missing:
        raise PublishError(f"run record needs row counts and versions of every table; missing {missing}")
    row: dict[str, Any] = {
        "run_id": run.run_id,
        "as_of_date": as_of,
        "published_at": published_at or datetime.now(UTC),
        "model_name": run.model_name,
        "model_version": run.model_version,
        "policy_version": run.policy_version,
        "feature_set": run.feature_set,
        "schema_version": SCHEMA_VERSION,
        "input_files": files,
        **{f"rows_{n}": int(rows[n]) for n in OUTPUT_TABLES},
        **{f"delta_version_{n}": int(versions[n]) for n in OUTPUT_TABLES},
    }
    return pl.DataFrame([row], schema=RUNS_SCHEMA)


def read_runs(paths: Paths) -> pl.DataFrame:
    """Every publish recorded so far, oldest first."""
    path = paths.table(RUNS_TABLE)
    if delta_version(path) is None:
        return pl.DataFrame(schema=RUNS_SCHEMA)
    return pl.read_delta(str(path)).select(list(RUNS_SCHEMA)).sort("published_at", "run_id")


def latest_run(paths: Paths, as_of: date | None = None) -> dict[str, Any] | None:
    """The last complete publish (of ``as_of``, or of the latest as-of date); None when none."""
    runs = read_runs(paths)
    if as_of is not None:
        runs = runs.filter(pl.col(AS_OF_DATE) == as_of)
    elif runs.height:
        runs = runs.filter(pl.col(AS_OF_DATE) == runs.get_column(AS_OF_DATE).max())
    return runs.row(-1, named=True) if runs.height else None


def publish(
    paths: Paths, as_of: date, tables: Mapping[str, pl.DataFrame], run: RunInfo
) -> dict[str, Any]:
    """Publish the four output tables of one as-of date, then record the run.

    ``tables`` maps each name of ``core.schema.OUTPUT_TABLES`` to its frame. Every
    frame is checked before anything is written, so a bad frame publishes nothing.
    Returns ``{"tables": {name: {"rows", "delta_version", "path"}}, "run": record}``.
    """
    unknown = sorted(set(tables) - set(OUTPUT_TABLES))
    missing = sorted(set(OUTPUT_TABLES) - set(tables))
    if unknown or missing:
        raise PublishError(f"publish needs exactly the tables {list(OUTPUT_TABLES)}; missing {missing}, unknown {unknown}")
    for name, table in OUTPUT_TABLES.items():
        check_schema(tables[name], table)
        _check_rows(tables[name], table, as_of)
    versions: dict[str, int] = {}
    rows: dict[str, int] = {}
    for name, table in OUTPUT_TABLES.items():
        versions[name] = write_partition(paths.table(name), tables[name], table, as_of)
        rows[name] = tables[name].height
    record = run_record(run, as_of, input_files(paths), rows, versions)
    runs_path = paths.table(RUNS_TABLE)
    runs_path.parent.mkdir(parents=True, exist_ok=True)
    recorded = read_runs(paths).filter((pl.col("run_id") == run.run_id) & (pl.col(AS_OF_DATE) == as_of))
    if recorded.height == 0:  # a retried publish whose append had landed records the run once
        record.write_delta(str(runs_path), mode="append")
    return {
        "tables": {
            name: {"rows": rows[name], "delta_version": versions[name], "path": str(paths.table(name))}
            for name in OUTPUT_TABLES
        },
        "run": {k: v for k, v in record.row(0, named=True).items() if k != "input_files"}
        | {"input_files": len(record.get_column("input_files")[0])},
    }


__all__ = [
    "INPUT_FILE",
    "RUNS_SCHEMA",
    "RUNS_TABLE",
    "PublishError",
    "RunInfo",
    "check_schema",
    "delta_version",
    "input_files",
    "latest_run",
    "publish",
    "published_as_of_dates",
    "read_previous",
    "read_runs",
    "read_table",
    "run_record",
    "scan_table",
    "schema_problems",
    "write_partition",
]
