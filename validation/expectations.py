"""Great Expectations suites derived from the schema module, and how to read their results.

Every landing family gets one suite, built from its ``core.schema.Table``; nothing here
restates a column's type or rule. Each expectation carries its severity in GX ``meta``
(``{"severity": "critical" | "warning"}``) so the rule lives in the suite and shows in
Data Docs:

- **critical** (the batch is wrong; the ingest flow rejects the file's batch with
  ``FILE_VALIDATION_FAILED`` and ends failed): contract columns present, column types,
  required -> not null, key unique (compound keys too), enum -> value set,
  ``min_value``/``max_value`` -> range (``min_exclusive`` -> strict), currency -> length 3.
- **warning** (the batch is plausible but unusual; recorded and logged, never stops the
  flow): row count within bounds, null rate of optional columns, share of rows in a
  currency other than the base currency.

GX never sees Polars: ``gx_frame`` hands it a pandas frame whose dtypes are fixed per
column kind (``GX_PANDAS_TYPE``). Money (``Decimal(18, 2)``) and rates become float64
there, only for GX's range checks; the verdicts stay exact because the contract's bounds
are integers of at most 1000 (exact in float64) and float64 rounding moves a value by less
than 1e-15 of itself, far less than the 0.01 (money) or 1e-8 (rates) a value must differ
from a bound by.
Formats (dates, decimals, ISO codes) are not re-checked with regexes: the Polars row rules
parsed every value already, and regex expectations cost seconds per million rows.

Uniqueness uses ``expect_column_proportion_of_unique_values_to_be_between(min=1)`` for a
single-column key: GX computes it as distinct count / non-null count (one hash pass),
which is faster than ``expect_column_values_to_be_unique`` (marks every duplicated row)
on large batches; it is undefined on an empty batch, which the flow never validates.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

import great_expectations as gx
import great_expectations.expectations as gxe
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa

from creditflow.core.schema import (
    BUREAU_EVENTS,
    LEDGER,
    SCHEMA_VERSION,
    Column,
    Table,
)

SEVERITY = "severity"
CRITICAL = "critical"
WARNING = "warning"
SEVERITIES = (CRITICAL, WARNING)

GX_PANDAS_TYPE: dict[str, str] = {
    "text": "str",
    "enum": "str",
    "currency": "str",
    "date": "datetime64",
    "decimal": "float64",
    "rate": "float64",
    "float": "float64",
    "int": "int64",
    "int32": "int32",
    "bool": "bool",
}
"""Type name GX's ``expect_column_values_to_be_of_type`` checks per column kind; it
matches the pandas dtype ``gx_frame`` produces (``list_text`` has none: output only)."""

_FLOAT_KINDS = ("decimal", "rate", "float")

_NULL_BY_RULE: dict[str, tuple[str, ...]] = {
    LEDGER.name: (LEDGER.column("due_date").name, LEDGER.column("applies_to").name),
    BUREAU_EVENTS.name: (BUREAU_EVENTS.column("detail").name,),
}
"""Optional columns whose null rate is set by a contract rule (``due_date`` is empty on
every non-INVOICE, ``applies_to`` on every INVOICE) or is free text; a null-rate bound on
them would only measure the entry-type mix, so they get none."""


@dataclass(frozen=True)
class WarningBounds:
    """Batch-level bounds whose breach is a warning, not a rejection.

    ``max_null_rate`` applies to every optional column except those null by a contract
    rule; ``null_rate_overrides`` sets one column's bound (1.0 switches it off).
    ``max_non_base_currency_share`` bounds the share of rows whose ``currency`` is not the
    base currency (only when a base currency is given).
    """

    min_rows: int = 1
    max_rows: int | None = 50_000_000
    max_null_rate: float = 0.5
    null_rate_overrides: Mapping[str, float] = field(default_factory=dict)
    max_non_base_currency_share: float = 0.5

    def __post_init__(self) -> None:
        if self.min_rows < 0:
            raise ValueError(f"min_rows must be >= 0; got {self.min_rows}")
        if self.max_rows is not None and self.max_rows < self.min_rows:
            raise ValueError(f"max_rows must be >= min_rows ({self.min_rows}); got {self.max_rows}")
        for label, rate in [
            ("max_null_rate", self.max_null_rate),
            ("max_non_base_currency_share", self.max_non_base_currency_share),
            *((f"null_rate_overrides[{k!r}]", v) for k, v in self.null_rate_overrides.items()),
        ]:
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{label} must be in 0..1; got {rate}")


DEFAULT_BOUNDS = WarningBounds()


def build_suite(
    table: Table,
    *,
    base_currency: str | None = None,
    bounds: WarningBounds | None = None,
    name: str | None = None,
) -> gx.ExpectationSuite:
    """The GX suite of one family, derived from its schema table (not yet added to a context).

    Critical, per column in contract order: present (one table-level column-set check),
    of type ``GX_PANDAS_TYPE[kind]``, not null when required, in ``allowed``, between
    ``min_value``/``max_value``, length 3 for currencies; then the key's uniqueness.
    Warning: row count in ``[min_rows, max_rows]``, null rate of optional columns, and
    with ``base_currency`` the share of rows in another currency.
    """
    if not isinstance(table, Table):
        raise TypeError(f"table must be a creditflow.core.schema.Table; got {type(table).__name__}")
    if base_currency is not None and not (
        isinstance(base_currency, str)
        and len(base_currency) == 3
        and base_currency.isalpha()
        and base_currency.isupper()
    ):
        raise ValueError(
            f"base_currency must be a 3-letter upper-case ISO 4217 code; got {base_currency!r}"
        )
    bounds = bounds or DEFAULT_BOUNDS
    unknown = set(bounds.null_rate_overrides) - set(table.names)
    if unknown:
        raise ValueError(
            f"null_rate_overrides name columns that {table.name!r} lacks: {sorted(unknown)}"
        )

    expectations: list[gxe.Expectation] = [
        gxe.ExpectTableColumnsToMatchSet(
            column_set=table.names,
            exact_match=False,
            **_tags(CRITICAL, "table", "has every contract column (extra columns allowed)"),
        )
    ]
    for col in table.columns:
        expectations.extend(_column_critical(col, table))
    expectations.extend(_key_critical(table))

    expectations.append(
        gxe.ExpectTableRowCountToBeBetween(
            min_value=bounds.min_rows,
            max_value=bounds.max_rows,
            **_tags(WARNING, "table", _row_rule(bounds)),
        )
    )
    exempt = set(_NULL_BY_RULE.get(table.name, ()))
    for col in table.columns:
        if col.required:
            continue
        rate = bounds.null_rate_overrides.get(
            col.name, None if col.name in exempt else bounds.max_null_rate
        )
        if rate is None or rate >= 1.0:
            continue
        expectations.append(
            gxe.ExpectColumnProportionOfNonNullValuesToBeBetween(
                column=col.name,
                min_value=round(1.0 - rate, 10),
                **_tags(WARNING, col.name, f"null rate at most {rate:g}"),
            )
        )
    currency = _money_currency_column(table)
    if base_currency is not None and currency is not None:
        share = bounds.max_non_base_currency_share
        expectations.append(
            gxe.ExpectColumnValuesToBeInSet(
                column=currency.name,
                value_set=[base_currency],
                mostly=round(1.0 - share, 10),
                **_tags(
                    WARNING,
                    currency.name,
                    f"share of rows not in {base_currency} at most {share:g}",
                ),
            )
        )

    labels = [expectation_label(e) for e in expectations]
    dupes = {x for x in labels if labels.count(x) > 1}
    if dupes:  # labels name failures in outcomes; they must be unique within a suite
        raise AssertionError(
            f"suite {table.name!r} has ambiguous expectation labels {sorted(dupes)}"
        )
    return gx.ExpectationSuite(
        name=name or table.name,
        expectations=expectations,
        meta={"schema_version": SCHEMA_VERSION, "family": table.name},
    )


def _tags(severity: str, target: str, rule: str) -> dict[str, Any]:
    """Severity and rule: in ``meta`` for code, in ``description`` for Data Docs, which
    shows the description in place of GX's generated sentence on every page."""
    return {
        "meta": {SEVERITY: severity, "rule": rule},
        "description": f"[{severity}] {target}: {rule}",
    }


def _column_critical(col: Column, table: Table) -> list[gxe.Expectation]:
    out: list[gxe.Expectation] = []
    gx_type = GX_PANDAS_TYPE.get(col.kind)
    if gx_type is not None:
        out.append(
            gxe.ExpectColumnValuesToBeOfType(
                column=col.name,
                type_=gx_type,
                **_tags(CRITICAL, col.name, f"of pandas type {gx_type} (contract kind {col.kind})"),
            )
        )
    if col.required:
        out.append(
            gxe.ExpectColumnValuesToNotBeNull(
                column=col.name, **_tags(CRITICAL, col.name, "never empty (required)")
            )
        )
    if col.allowed:
        out.append(
            gxe.ExpectColumnValuesToBeInSet(
                column=col.name,
                value_set=list(col.allowed),
                **_tags(CRITICAL, col.name, "one of " + ", ".join(col.allowed)),
            )
        )
    if col.min_value is not None or col.max_value is not None:
        lo, hi = _bound(col.min_value), _bound(col.max_value)
        low = (
            f"{'greater than' if col.min_exclusive else 'at least'} {lo}" if lo is not None else ""
        )
        rule = " and ".join(x for x in (low, f"at most {hi}" if hi is not None else "") if x)
        out.append(
            gxe.ExpectColumnValuesToBeBetween(
                column=col.name,
                min_value=lo,
                max_value=hi,
                strict_min=col.min_exclusive,
                **_tags(CRITICAL, col.name, rule),
            )
        )
    if col.kind == "currency":
        out.append(
            gxe.ExpectColumnValueLengthsToEqual(
                column=col.name, value=3, **_tags(CRITICAL, col.name, "3-letter ISO 4217 code")
            )
        )
    if col.unique and table.key != (col.name,):
        out.extend(_unique(col.name, "unique within the batch"))
    return out


def _key_critical(table: Table) -> list[gxe.Expectation]:
    if not table.key:
        return []
    if len(table.key) == 1:
        return _unique(table.key[0], "unique within the batch (key)")
    return [
        gxe.ExpectCompoundColumnsToBeUnique(
            column_list=list(table.key),
            **_tags(CRITICAL, ", ".join(table.key), "unique within the batch (key)"),
        )
    ]


def _unique(column: str, rule: str) -> list[gxe.Expectation]:
    return [
        gxe.ExpectColumnProportionOfUniqueValuesToBeBetween(
            column=column, min_value=1.0, max_value=1.0, **_tags(CRITICAL, column, rule)
        )
    ]


def _row_rule(bounds: WarningBounds) -> str:
    if bounds.max_rows is None:
        return f"at least {bounds.min_rows} rows"
    return f"between {bounds.min_rows} and {bounds.max_rows} rows"


def _bound(v: int | Decimal | None) -> int | float | None:
    if v is None:
        return None
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    return v


def _money_currency_column(table: Table) -> Column | None:
    """The ``currency`` column of a table that holds money amounts (not the fx table)."""
    cur = [c for c in table.columns if c.kind == "currency"]
    has_money = any(c.kind == "decimal" for c in table.columns)
    return cur[0] if len(cur) == 1 and has_money else None


# --------------------------------------------------------------------------- reading


def expectation_label(expectation: Any) -> str:
    """A short, stable name of an expectation: ``type(column)``, e.g.
    ``expect_column_values_to_be_in_set(entry_type)``; table-level ones get ``(table)``."""
    cfg = expectation.configuration if isinstance(expectation, gxe.Expectation) else expectation
    kw = cfg.kwargs
    if kw.get("column") is not None:
        target = kw["column"]
    elif kw.get("column_list"):
        target = ",".join(kw["column_list"])
    elif kw.get("column_A") is not None:
        target = f"{kw['column_A']},{kw['column_B']}"
    else:
        target = "table"
    return f"{cfg.type}({target})"


def severity_of(expectation: Any) -> str:
    """The expectation's severity from its meta; anything unset or unknown counts as critical."""
    cfg = expectation.configuration if isinstance(expectation, gxe.Expectation) else expectation
    sev = (cfg.meta or {}).get(SEVERITY)
    return sev if sev in SEVERITIES else CRITICAL


def expectation_columns(expectation: Any) -> tuple[str, ...]:
    """The batch columns an expectation reads; () for table-level ones."""
    cfg = expectation.configuration if isinstance(expectation, gxe.Expectation) else expectation
    kw = cfg.kwargs
    if kw.get("column") is not None:
        return (kw["column"],)
    if kw.get("column_list"):
        return tuple(kw["column_list"])
    if kw.get("column_A") is not None:
        return (kw["column_A"], kw["column_B"])
    return ()


@dataclass
class ValidationOutcome:
    """What GX said about one batch: critical verdict, failed expectation labels, timing."""

    family: str
    batch_name: str
    success_critical: bool
    failed_critical: list[str]
    failed_warnings: list[str]
    evaluated: int
    rows: int
    seconds: float
    failures: list[dict[str, Any]] = field(default_factory=list)
    """One dict per failed expectation: label, severity, rule, observed value, unexpected
    count and up to 5 example values (JSON-safe)."""

    @property
    def has_warnings(self) -> bool:
        return bool(self.failed_warnings)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One log line: verdict and failed expectations."""
        verdict = "passed" if self.success_critical else "FAILED critical"
        parts = [
            f"GX {self.family} {self.batch_name}: {verdict} ({self.evaluated} expectations, "
            f"{self.rows} rows, {self.seconds:.2f}s)"
        ]
        if self.failed_critical:
            parts.append("critical: " + ", ".join(self.failed_critical))
        if self.failed_warnings:
            parts.append("warnings: " + ", ".join(self.failed_warnings))
        return "; ".join(parts)


def summarise_result(
    result: Any,
    *,
    family: str,
    batch_name: str,
    rows: int,
    seconds: float,
) -> ValidationOutcome:
    """Read a GX suite validation result (or an iterable of expectation results) into a
    ``ValidationOutcome``: the batch passes when no critical expectation failed, and an
    expectation that raised counts as failed."""
    if not family or not batch_name:
        raise ValueError(f"family and batch_name must be non-empty; got {family!r}, {batch_name!r}")
    if rows < 0 or seconds < 0:
        raise ValueError(f"rows and seconds must be >= 0; got {rows}, {seconds}")
    results = list(result.results if hasattr(result, "results") else result)
    failed: dict[str, list[str]] = {CRITICAL: [], WARNING: []}
    details: list[dict[str, Any]] = []
    for r in results:
        if r.success:
            continue
        cfg = r.expectation_config
        label, sev = expectation_label(cfg), severity_of(cfg)
        failed[sev].append(label)
        details.append(_failure_detail(r, label, sev))
    return ValidationOutcome(
        family=family,
        batch_name=batch_name,
        success_critical=not failed[CRITICAL],
        failed_critical=failed[CRITICAL],
        failed_warnings=failed[WARNING],
        evaluated=len(results),
        rows=int(rows),
        seconds=round(float(seconds), 3),
        failures=details,
    )


def _failure_detail(r: Any, label: str, severity: str) -> dict[str, Any]:
    res = r.result or {}
    exc = r.exception_info or {}
    raised = exc.get("raised_exception") if isinstance(exc, Mapping) else None
    detail: dict[str, Any] = {
        "expectation": label,
        "severity": severity,
        "rule": (r.expectation_config.meta or {}).get("rule"),
        "observed": _jsonable(res.get("observed_value")),
        "unexpected_count": _jsonable(res.get("unexpected_count")),
        "examples": [_jsonable(v) for v in (res.get("partial_unexpected_list") or [])[:5]],
    }
    mismatched = (res.get("details") or {}).get("mismatched")
    if mismatched:
        detail["mismatched"] = _jsonable(mismatched)
    if raised:
        detail["error"] = str(exc.get("exception_message"))[:500]
    return detail


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if isinstance(v, np.generic):
        return _jsonable(v.item())
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple | set):
        return [_jsonable(x) for x in v]
    return str(v)


# ------------------------------------------------------------------------ GX's input


def gx_frame(df: pl.DataFrame, table: Table, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The pandas frame GX validates: ``columns`` (default: the table's columns present in
    ``df``) with the dtypes ``GX_PANDAS_TYPE`` names.

    text -> pandas ``str`` (Arrow-backed), int -> nullable ``Int64``, bool -> nullable
    ``boolean``, date -> ``datetime64[ms]``, money and rates -> float64 (for GX's range
    checks only; see the module docstring). Columns outside the table keep pandas' default.
    The dtypes depend on the Polars dtypes only, never on the values (no int -> float on
    nulls), so a zero-row frame has the same dtypes as the full one.
    """
    if not isinstance(df, pl.DataFrame):
        raise TypeError(f"df must be a polars DataFrame; got {type(df).__name__}")
    names = [n for n in table.names if n in df.columns] if columns is None else list(columns)
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise ValueError(f"columns {missing} are not in the batch; batch columns: {df.columns}")
    kinds = {c.name: c.kind for c in table.columns}
    schema = df.schema
    # Built from the Series, not with an eager ``select`` (which runs the query engine and
    # can copy every selected column of a 10M-row batch): only money is converted.
    frame = pl.DataFrame(
        [
            df.get_column(n).cast(pl.Float64)
            if kinds.get(n) in _FLOAT_KINDS and schema[n].is_decimal()
            else df.get_column(n)
            for n in names
        ]
    )
    return frame.to_pandas(types_mapper=_pandas_type)


_NULLABLE_INTS = {8: pd.Int8Dtype(), 16: pd.Int16Dtype(), 32: pd.Int32Dtype(), 64: pd.Int64Dtype()}
_NULLABLE_UINTS = {8: pd.UInt8Dtype(), 16: pd.UInt16Dtype(), 32: pd.UInt32Dtype(), 64: pd.UInt64Dtype()}


def _pandas_type(t: pa.DataType) -> Any:
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pd.StringDtype("pyarrow", na_value=np.nan)
    if pa.types.is_signed_integer(t):
        return _NULLABLE_INTS[t.bit_width]
    if pa.types.is_unsigned_integer(t):
        return _NULLABLE_UINTS[t.bit_width]
    if pa.types.is_boolean(t):
        return pd.BooleanDtype()
    return None


def group_expectations(expectations: Iterable[Any]) -> dict[tuple[str, ...], list[Any]]:
    """Expectations grouped by the columns they read, so each group can be validated on a
    frame of just those columns; table-level ones under ``()``."""
    groups: dict[tuple[str, ...], list[Any]] = {}
    for e in expectations:
        groups.setdefault(expectation_columns(e), []).append(e)
    return groups
