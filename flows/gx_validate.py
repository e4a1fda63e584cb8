"""Great Expectations on the ingest path: run a family's suite on one accepted batch and
keep a Data Docs site on disk.

Plain Python (no Prefect): the ingest flow builds one ``GxValidator`` per run (or takes
``GxValidator.shared(dir)``), calls ``validate`` once per new landing file's accepted batch
and ``build_docs`` at the end. The GX context is ephemeral (in memory, no
``great_expectations.yml``); the only thing GX writes is the Data Docs site under the
directory it is given.

How a batch is run (measured in ``docs/validation.md``; the fast path keeps GX's own
expectations and verdicts, it only feeds each one less data):

1. Expectations are grouped by the columns they read; each group is validated on a pandas
   frame of just those columns (``validation.expectations.gx_frame``), so GX's per-
   expectation null filtering copies one column, not the whole batch. Table-level
   expectations get the batch's column names (no rows) or its row count (no columns).
2. GX's batch fingerprint (an md5 over every cell of every pandas batch under 1 GB, used
   only as a batch marker) is switched off for this process: it cost more than all the
   checks together. Lineage already identifies the batch (``file_sha256``).
3. The group results are merged into one suite validation result per batch, stored in the
   context and rendered as one Data Docs page.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
import polars as pl
from great_expectations.core.expectation_validation_result import (
    ExpectationSuiteValidationResult,
    ExpectationValidationResult,
)
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.data_context.types.resource_identifiers import (
    ExpectationSuiteIdentifier,
    ValidationResultIdentifier,
)
from great_expectations.execution_engine import pandas_execution_engine as _pandas_engine

from creditflow.core.schema import INPUT_FAMILIES, Table
from creditflow.validation.expectations import (
    ValidationOutcome,
    WarningBounds,
    build_suite,
    expectation_label,
    group_expectations,
    gx_frame,
    summarise_result,
)

log = logging.getLogger(__name__)

_UNIQUE_PROPORTION = "expect_column_proportion_of_unique_values_to_be_between"

POLARS_KEY_MIN_ROWS = 1_000_000
"""From this batch size on, the single-column key uniqueness expectation is evaluated with
Polars (:func:`key_uniqueness_result`), not GX's pandas engine (docs/validation.md)."""
ONE_FRAME_MAX_ROWS = 100_000
"""Up to this batch size, the column expectations run in one GX call on one pandas frame; from
there on, one call per column group on narrow frames (docs/validation.md)."""
POLARS_EVALUATED = "polars (creditflow.flows.gx_validate.key_uniqueness_result)"

DATA_DOCS_SITE = "creditflow"
RESULT_FORMAT = "SUMMARY"
"""Up to 20 unexpected values per failed expectation, shown in Data Docs and kept (5) in
the outcome; COMPLETE (every failing index) is not needed to reject a file."""

_NAMES_ONLY = frozenset({
    "expect_table_columns_to_match_set",
    "expect_table_columns_to_match_ordered_list",
    "expect_table_column_count_to_equal",
    "expect_table_column_count_to_be_between",
})
"""Table-level expectations that read only the batch's column names."""

_DTYPE_ONLY = frozenset({"expect_column_values_to_be_of_type", "expect_column_values_to_be_in_type_list"})
"""Expectations that read only a column's dtype (unless the dtype is object)."""


def disable_batch_fingerprint() -> None:
    """Stop GX from md5-hashing every pandas batch (a batch marker we do not use).

    GX 1.x fingerprints any pandas batch under ``HASH_THRESHOLD`` bytes with
    ``pandas.util.hash_pandas_object``: 0.45 cpu-s per million ledger rows, more than the
    expectations themselves. Process-wide and idempotent.
    """
    if hasattr(_pandas_engine, "HASH_THRESHOLD"):
        _pandas_engine.HASH_THRESHOLD = 0


class GxValidator:
    """One ephemeral GX context for an ingest run: suites per family, results per batch,
    Data Docs under ``data_docs_dir``."""

    _shared: ClassVar[dict[tuple[Path | None, str | None], GxValidator]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        data_docs_dir: Path | str | None,
        *,
        base_currency: str | None = None,
        bounds: Mapping[str, WarningBounds] | None = None,
        polars_key_min_rows: int | None = POLARS_KEY_MIN_ROWS,
    ) -> None:
        """``data_docs_dir``: where the Data Docs site goes (``Paths.data_docs``); None
        validates without a site. ``base_currency`` (``Settings.base_currency``) enables the
        non-base currency share warning. ``bounds``: per-family warning bounds.
        ``polars_key_min_rows``: from this many rows on, the single-column key uniqueness
        expectation is evaluated with Polars instead of GX's pandas engine (same
        expectation, same verdict; see :func:`key_uniqueness_result`); None never does."""
        if polars_key_min_rows is not None and polars_key_min_rows < 1:
            raise ValueError(f"polars_key_min_rows must be >= 1 or None; got {polars_key_min_rows}")
        self.polars_key_min_rows = polars_key_min_rows
        if data_docs_dir is not None and not str(data_docs_dir):
            raise ValueError("data_docs_dir must be a directory path or None; got ''")
        unknown = set(bounds or {}) - set(INPUT_FAMILIES)
        if unknown:
            raise ValueError(f"bounds name unknown families {sorted(unknown)}; families: {list(INPUT_FAMILIES)}")
        self.data_docs_dir = Path(data_docs_dir).resolve() if data_docs_dir is not None else None
        self.base_currency = base_currency
        self.bounds = dict(bounds or {})
        disable_batch_fingerprint()
        # one GX run at a time: the context is not documented as thread-safe, and GX's
        # pandas engine is single-threaded anyway
        self._lock = threading.RLock()
        # in-memory stores and no default docs site: GX's own default would point a second
        # site at a temporary directory
        config = DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
            progress_bars=ProgressBarsConfig(globally=False),
            analytics_enabled=False,
        )
        self._ctx = gx.get_context(mode="ephemeral", project_config=config)
        if self.data_docs_dir is not None:
            self._ctx.add_data_docs_site(
                DATA_DOCS_SITE,
                {
                    "class_name": "SiteBuilder",
                    "store_backend": {
                        "class_name": "TupleFilesystemStoreBackend",
                        "base_directory": str(self.data_docs_dir),
                    },
                    "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                },
            )
        self._source = self._ctx.data_sources.add_pandas("creditflow")
        self._batch_defs: dict[str, Any] = {}
        self._suites: dict[str, gx.ExpectationSuite] = {}

    @classmethod
    def shared(cls, data_docs_dir: Path | str | None, *, base_currency: str | None = None) -> GxValidator:
        """The process's validator for ``data_docs_dir`` and ``base_currency`` (built on
        first use: GX takes seconds to import and set up, so one ingest run shares one)."""
        key = (Path(data_docs_dir).resolve() if data_docs_dir is not None else None, base_currency)
        with cls._shared_lock:
            if key not in cls._shared:
                cls._shared[key] = cls(data_docs_dir, base_currency=base_currency)
            return cls._shared[key]

    # ----------------------------------------------------------------------- suites

    def suite(self, table: Table) -> gx.ExpectationSuite:
        """The family's suite, built from the schema and added to the context once."""
        with self._lock:
            if table.name not in self._suites:
                built = build_suite(table, base_currency=self.base_currency, bounds=self.bounds.get(table.name))
                self._suites[table.name] = self._ctx.suites.add(built)
                asset = self._source.add_dataframe_asset(table.name)
                self._batch_defs[table.name] = asset.add_batch_definition_whole_dataframe("accepted")
            return self._suites[table.name]

    # ------------------------------------------------------------------- validation

    def validate(self, df: pl.DataFrame, table: Table, *, batch_name: str) -> ValidationOutcome:
        """Validate one accepted batch (a file's bronze rows) against its family's suite.

        ``batch_name`` names the batch in Data Docs and in the outcome (the landing file's
        path relative to the landing root). The batch fails when a critical expectation
        fails; warnings are returned and logged.
        """
        if not isinstance(df, pl.DataFrame):
            raise TypeError(f"df must be a polars DataFrame; got {type(df).__name__}")
        if not isinstance(table, Table):
            raise TypeError(f"table must be a creditflow.core.schema.Table; got {type(table).__name__}")
        if not batch_name:
            raise ValueError("batch_name must name the batch (e.g. the landing file); got ''")
        with self._lock:
            t0 = time.perf_counter()
            suite = self.suite(table)
            batch_def = self._batch_defs[table.name]
            results: list[Any] = []
            groups = group_expectations(suite.expectations)
            if df.height <= ONE_FRAME_MAX_ROWS and not self._key_in_polars(df, table):
                # A small batch: every column expectation whose columns are all there runs in
                # one GX call on one frame (GX's fixed cost per call outweighs its copies here).
                together = {cols: exps for cols, exps in groups.items() if cols and all(c in df.columns for c in cols)}
                if together:
                    used = sorted({c for cols in together for c in cols}, key=df.columns.index)
                    chunk = [e for exps in together.values() for e in exps]
                    sub = gx.ExpectationSuite(name=suite.name, expectations=[e.configuration for e in chunk])
                    batch = batch_def.get_batch(batch_parameters={"dataframe": gx_frame(df, table, used)})
                    results.extend(batch.validate(sub, result_format=RESULT_FORMAT).results)
                    groups = {cols: exps for cols, exps in groups.items() if cols not in together}
            for columns, expectations in groups.items():
                if self._key_in_polars(df, table):
                    on_polars = [e for e in expectations if _is_key_uniqueness(e, table)]
                    results.extend(key_uniqueness_result(df, e) for e in on_polars)
                    expectations = [e for e in expectations if not _is_key_uniqueness(e, table)]
                    if not expectations:
                        continue
                for frame, chunk in self._frames(df, table, columns, expectations):
                    sub = gx.ExpectationSuite(name=suite.name, expectations=[e.configuration for e in chunk])
                    batch = batch_def.get_batch(batch_parameters={"dataframe": frame})
                    results.extend(batch.validate(sub, result_format=RESULT_FORMAT).results)
            order = {expectation_label(e): i for i, e in enumerate(suite.expectations)}
            results.sort(key=lambda r: order[expectation_label(r.expectation_config)])
            outcome = summarise_result(results, family=table.name, batch_name=batch_name, rows=df.height,
                                       seconds=time.perf_counter() - t0)
            self._explain_duplicates(outcome, results, df, table, batch_def)
            self._store(suite, results, outcome, table)
        if not outcome.success_critical:
            log.error(outcome.summary())
        elif outcome.failed_warnings:
            log.warning(outcome.summary())
        else:
            log.info(outcome.summary())
        return outcome

    def _key_in_polars(self, df: pl.DataFrame, table: Table) -> bool:
        return (
            self.polars_key_min_rows is not None
            and df.height >= self.polars_key_min_rows
            and len(table.key) == 1
            and table.key[0] in df.columns
            and df.get_column(table.key[0]).null_count() < df.height
        )

    @staticmethod
    def _explain_duplicates(outcome: ValidationOutcome, results: list[Any], df: pl.DataFrame, table: Table,
                            batch_def: Any) -> None:
        """Name the duplicated key values of a failed uniqueness check (failure path only:
        the suite's aggregate check is cheap but reports just the unique proportion)."""
        for r in results:
            cfg = r.expectation_config
            if r.success or cfg.type != _UNIQUE_PROPORTION or cfg.kwargs["column"] not in df.columns:
                continue
            if (r.meta or {}).get("evaluated_by") == POLARS_EVALUATED:
                continue  # key_uniqueness_result named the duplicates already
            column = cfg.kwargs["column"]
            batch = batch_def.get_batch(batch_parameters={"dataframe": gx_frame(df, table, [column])})
            dup = batch.validate(gxe.ExpectColumnValuesToBeUnique(column=column), result_format=RESULT_FORMAT)
            for failure in outcome.failures:
                if failure["expectation"] == expectation_label(cfg):
                    failure["unexpected_count"] = dup.result.get("unexpected_count")
                    failure["examples"] = sorted({str(v) for v in dup.result.get("partial_unexpected_list") or []})[:5]

    @staticmethod
    def _frames(df: pl.DataFrame, table: Table, columns: tuple[str, ...], expectations: list[Any]):
        """The frame(s) one group of expectations runs on."""
        if columns:
            present = [c for c in columns if c in df.columns]
            if not present:
                # its expectations raise inside GX and so fail; the column-set check names it
                yield pd.DataFrame(index=pd.RangeIndex(df.height)), expectations
                return
            if all(e.expectation_type in _DTYPE_ONLY for e in expectations):
                # GX reads only the dtype of a non-object column, and gx_frame's dtypes
                # depend on the Polars dtype alone: the header is enough
                header = gx_frame(df.head(0), table, present)
                if not any(header[c].dtype == object for c in present):
                    yield header, expectations
                    return
            yield gx_frame(df, table, present), expectations
            return
        names_only = [e for e in expectations if e.expectation_type in _NAMES_ONLY]
        rest = [e for e in expectations if e.expectation_type not in _NAMES_ONLY]
        if names_only:
            yield pd.DataFrame({c: pd.Series(dtype="object") for c in df.columns}), names_only
        if rest:
            yield pd.DataFrame(index=pd.RangeIndex(df.height)), rest

    def _store(self, suite: gx.ExpectationSuite, results: list[Any], outcome: ValidationOutcome,
               table: Table) -> None:
        """Keep the merged result of one batch in the context (Data Docs render it)."""
        run_id = RunIdentifier(run_name=_safe_name(outcome.batch_name), run_time=datetime.now(UTC))
        meta = {
            "great_expectations_version": gx.__version__,
            "batch_spec": {"data_asset_name": table.name, "batch_name": outcome.batch_name,
                           "rows": outcome.rows, "batch_data": "polars batch, one pandas frame per column group"},
            "batch_markers": {"ge_load_time": run_id.run_time.strftime("%Y%m%dT%H%M%S.%fZ")},
            "run_id": run_id,
            "validation_time": run_id.run_time,
            "severity_rule": "a failed critical expectation rejects the batch; a failed warning is recorded",
        }
        successes = sum(1 for r in results if r.success)
        merged = ExpectationSuiteValidationResult(
            # the page's verdict is the flow's: failed warnings do not fail the batch
            success=outcome.success_critical,
            results=results,
            suite_name=suite.name,
            statistics={
                "evaluated_expectations": len(results),
                "successful_expectations": successes,
                "unsuccessful_expectations": len(results) - successes,
                "success_percent": 100.0 * successes / len(results) if results else None,
            },
            meta=meta,
            batch_id=f"{suite.name}-{_safe_name(outcome.batch_name)}",
        )
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite.name),
            run_id=run_id,
            batch_identifier=merged.batch_id,
        )
        with self._lock:
            self._ctx.validation_results_store.store_validation_results(
                suite_validation_result=merged,
                suite_validation_result_identifier=key,
                expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite.name),
            )

    # -------------------------------------------------------------------- Data Docs

    def build_docs(self) -> Path:
        """Render the Data Docs site (suites and this run's batch results); returns index.html."""
        if self.data_docs_dir is None:
            raise RuntimeError("this GxValidator has no Data Docs directory (data_docs_dir=None)")
        with self._lock:
            self._ctx.build_data_docs(site_names=[DATA_DOCS_SITE])
        index = self.data_docs_dir / "index.html"
        if not index.is_file():
            raise RuntimeError(f"GX did not write the Data Docs index at {index}")
        return index


def _is_key_uniqueness(expectation: Any, table: Table) -> bool:
    cfg = expectation.configuration if isinstance(expectation, gxe.Expectation) else expectation
    return cfg.type == _UNIQUE_PROPORTION and tuple(table.key) == (cfg.kwargs.get("column"),)


def key_uniqueness_result(df: pl.DataFrame, expectation: Any) -> ExpectationValidationResult:
    """Evaluate ``expect_column_proportion_of_unique_values_to_be_between`` with Polars.

    Same metric as GX (distinct non-null values / non-null values, checked against the
    expectation's ``min_value``/``max_value``) and the same result shape, computed on the
    accepted batch itself (independent of the row rules' ``DUPLICATE_KEY``): one pass
    over a strictly increasing key (the usual ledger export, sorted by ``entry_id``),
    else a hash count. GX's pandas ``nunique`` costs 2-4 s on a 10M-row batch. On failure
    the result names the duplicated values (``unexpected_count``: rows whose value
    repeats; ``partial_unexpected_list``: up to 20 such values, sorted).
    """
    cfg = expectation.configuration if isinstance(expectation, gxe.Expectation) else expectation
    column = cfg.kwargs["column"]
    s = df.get_column(column).drop_nulls()
    n = s.len()
    if n == 0:
        raise ValueError(f"column {column!r} has no non-null values; GX defines no unique proportion")
    increasing = n == 1 or bool((s.slice(1) > s.slice(0, n - 1)).all())
    distinct = n if increasing else s.n_unique()
    observed = distinct / n
    lo, hi = cfg.kwargs.get("min_value"), cfg.kwargs.get("max_value")
    strict_lo, strict_hi = cfg.kwargs.get("strict_min", False), cfg.kwargs.get("strict_max", False)
    success = (lo is None or (observed > lo if strict_lo else observed >= lo)) and (
        hi is None or (observed < hi if strict_hi else observed <= hi)
    )
    result: dict[str, Any] = {"observed_value": observed}
    if distinct < n:
        dup = s.is_duplicated()
        result["unexpected_count"] = int(dup.sum())
        result["partial_unexpected_list"] = sorted({str(v) for v in s.filter(dup).head(20).to_list()})
    return ExpectationValidationResult(
        success=success,
        expectation_config=cfg,
        result=result,
        meta={"evaluated_by": POLARS_EVALUATED},
        exception_info={"raised_exception": False, "exception_traceback": None, "exception_message": None},
    )


def _safe_name(text: str) -> str:
    """A batch name usable as one path segment of the Data Docs site."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "batch"
