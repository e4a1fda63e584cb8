"""Landing-file formats of the demo world: how each file is encoded and laid out.

The contract allows UTF-8 with or without BOM, GB18030, LF or CRLF, dates as
``YYYY-MM-DD`` or ``YYYY/MM/DD``, free column order, extra columns and Parquet.
The generator rotates through these per file index so that a small world
already exercises every variant, always in the same way for the same index.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

DASH = "%Y-%m-%d"
SLASH = "%Y/%m/%d"


@dataclass(frozen=True)
class FileFormat:
    encoding: str = "utf-8"
    """``utf-8``, ``utf-8-sig`` (with BOM) or ``gb18030``."""
    crlf: bool = False
    date_format: str = DASH
    parquet: bool = False
    reorder: bool = False
    """Write the columns in a different order than the contract's."""
    extra_column: str | None = None
    bool_digits: bool = False
    """Booleans as 1/0 instead of true/false."""

    @property
    def suffix(self) -> str:
        return ".parquet" if self.parquet else ".csv"

    def line_number(self, position: int) -> int:
        """Lineage line number of the data row at 0-based ``position`` (header is line 1 in CSV)."""
        return position + (1 if self.parquet else 2)

    def describe(self) -> str:
        parts = ["parquet" if self.parquet else self.encoding]
        if self.crlf:
            parts.append("crlf")
        if self.date_format == SLASH:
            parts.append("slash-dates")
        if self.reorder:
            parts.append("reordered")
        if self.extra_column:
            parts.append(f"extra:{self.extra_column}")
        if self.bool_digits:
            parts.append("bool-digits")
        return ",".join(parts)


def ledger_format(i: int) -> FileFormat:
    return [
        FileFormat(),
        FileFormat(encoding="utf-8-sig"),
        FileFormat(crlf=True),
        FileFormat(date_format=SLASH),
        FileFormat(extra_column="posting_batch"),
        FileFormat(encoding="utf-8-sig", crlf=True, reorder=True),
    ][i % 6]


def customers_format(i: int, gb_index: int) -> FileFormat:
    if i == gb_index:
        return FileFormat(encoding="gb18030", crlf=True)
    return [
        FileFormat(),
        FileFormat(),
        FileFormat(encoding="utf-8-sig", date_format=SLASH),
        FileFormat(reorder=True, extra_column="account_manager"),
    ][i % 4]


def bureau_format(i: int) -> FileFormat:
    return [
        FileFormat(),
        FileFormat(encoding="utf-8-sig", bool_digits=True),
        FileFormat(crlf=True, date_format=SLASH, extra_column="bureau_name"),
        FileFormat(parquet=True, reorder=True),
    ][i % 4]


def events_format(i: int) -> FileFormat:
    return [FileFormat(), FileFormat(crlf=True), FileFormat(encoding="utf-8-sig", date_format=SLASH)][i % 3]


def fx_format(i: int) -> FileFormat:
    return [FileFormat(), FileFormat(extra_column="source")][i % 2]


def money(cents: pl.Expr) -> pl.Expr:
    """Integer cents as a decimal string with exactly 2 fraction digits (exact Decimal arithmetic, no float)."""
    return (cents.cast(pl.Decimal(20, 2)) / 100).cast(pl.Decimal(18, 2)).cast(pl.String)


def day_series(days: np.ndarray, fmt: str, is_null: np.ndarray | None = None) -> pl.Series:
    """Days since 1970-01-01 as date strings, null where ``is_null``.

    Formats each distinct day of the range once and gathers: a month of ledger
    rows spans a few hundred distinct days, so this is much cheaper than
    formatting every row.
    """
    days = np.asarray(days, dtype=np.int64)
    valid = days if is_null is None else days[~is_null]
    if valid.size == 0:
        return pl.Series([None] * days.size, dtype=pl.String)
    lo, hi = int(valid.min()), int(valid.max())
    table = pl.Series(np.arange(lo, hi + 1, dtype=np.int32)).cast(pl.Date).dt.to_string(fmt)
    idx = pl.Series(np.where(is_null, 0, days - lo) if is_null is not None else days - lo, dtype=pl.Int64)
    if is_null is not None:
        idx = pl.select(pl.when(pl.lit(pl.Series(is_null))).then(None).otherwise(pl.lit(idx))).to_series()
    return table.gather(idx)


def padded(prefix: str, number: pl.Expr, width: int) -> pl.Expr:
    return pl.concat_str([pl.lit(prefix), number.cast(pl.String).str.zfill(width)])


def column_order(names: list[str], fmt: FileFormat) -> list[str]:
    """Contract order, or a fixed rotation of it when the format reorders columns."""
    cols = list(names)
    if fmt.reorder:
        k = len(cols) // 2
        cols = cols[k:][::-1] + cols[:k]
    if fmt.extra_column:
        cols.insert(min(3, len(cols)), fmt.extra_column)
    return cols


def write_frame(df: pl.DataFrame, path: Path, fmt: FileFormat) -> None:
    """Write an all-string frame in ``fmt``; the frame's column order is kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt.parquet:
        df.write_parquet(path, compression="zstd", statistics=False)
        return
    terminator = "\r\n" if fmt.crlf else "\n"
    if fmt.encoding == "gb18030":
        text = df.write_csv(line_terminator=terminator)
        path.write_bytes(text.encode("gb18030"))
    else:
        df.write_csv(path, include_bom=fmt.encoding == "utf-8-sig", line_terminator=terminator)
