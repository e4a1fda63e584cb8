"""Staging: read one landing file into an all-text frame, or reject it whole.

This is the only module in ``validation/`` that reads files. It does no
parsing of values: every column is read as text, so identifiers keep their
leading zeros and one bad value never changes a column's type;
``validation.rules.apply_row_rules`` parses per the contract afterwards.

Public API:

- :func:`read_landing_file` ``(path, table) -> pl.DataFrame``; raises
  :class:`FileRejected` (``reason_code``, ``message``) for a file that cannot be
  read at all.
- :func:`file_rejection_record` - the one quarantine row of a rejected file.
- :func:`file_sha256` - the file's identity; :func:`file_date_from_name`.
- :func:`values_are_trimmed` - whether the bytes prove no value has blanks around it
  (then ``apply_row_rules(trimmed=True)`` may skip stripping).
- :func:`values_are_slash_free` - whether the bytes prove no value holds a ``/``
  (then ``apply_row_rules(slash_free=True)`` parses dates in the dashed form only).

What is read (``../shared/contract.md``):

- CSV with a header row: comma separated, ``"`` quoting (a quote opens a quoted
  field only as the field's first character; ``""`` inside is a quote; quoted
  fields may hold commas and line breaks), LF or CRLF. Encodings: UTF-8 with or
  without BOM, else GB18030 (a superset of GBK), detected from the bytes and
  transcoded to a temporary UTF-8 file before scanning. A file whose start is
  valid UTF-8 with non-ASCII text but that has an invalid byte later is corrupt
  UTF-8 and is rejected rather than guessed as GB18030.
- Parquet (recognised by its ``PAR1`` magic bytes), the same column names;
  each value is read through its text form (``cast(pl.String)``), so it meets
  the same rules as CSV text (a Parquet float ``0.1 + 0.2`` fails BAD_DECIMAL
  rather than being rounded; a timestamp column where a date is expected fails
  BAD_DATE).

Header: names are stripped of blanks and a BOM; order is free; contract
columns are matched by exact (case-sensitive) name; an empty name becomes
``unnamed_<position>``; columns beyond the contract are kept as text. A
missing *optional* contract column is allowed (its values are empty).

Whole-file rejects (``FileRejected.reason_code``): ``FILE_EMPTY`` (0 bytes, or only
blank lines: no header). A file with a header and no data rows is NOT rejected: a
month without bureau alerts is a real export; it is read as 0 rows (the flow's
summary warns about it), ``FILE_UNDECODABLE`` (neither UTF-8 nor GB18030;
UTF-16/32), ``FILE_NOT_CSV`` (broken quoting, binary content, unreadable
Parquet), ``FILE_MISSING_COLUMN`` (names the missing required columns and the
columns found), ``FILE_DUPLICATE_COLUMN`` (a name twice, or an extra column
named like a column the pipeline adds: ``core.schema.LINEAGE``,
``reason_code``, ``reason_detail``, ``_raw_*``).

Rows: every CSV record after the header is a row, numbered by
``line_number`` = record number counting the header as 1 (the physical line
unless a quoted field spans lines; Parquet: 1-based row number). Completely
blank lines are not rows (they are skipped but still counted in the
numbering). A record with more or fewer fields than the header is never padded
or truncated: its fields are null, ``_raw_record`` holds its exact text and
``_malformed`` says what is wrong, and ``apply_row_rules`` quarantines it as
``MALFORMED_ROW``.

Speed: the common case (no ``"`` byte, no lone CR) is one vectorised pass over the bytes
(quotes, blanks, commas and line feeds counted) and one multi-threaded Polars CSV parse:
when the comma count proves that every line has exactly the header's number of fields,
records are lines and nothing else is scanned. Otherwise a second Polars scan counts each
line's fields (commas outside quoted fields), still with no per-row Python. Files the fast
paths cannot prove right (quoted line breaks, lone CRs, quoting Polars rejects, a record
count that does not match) are read again with Python's ``csv`` module (strict quoting),
which defines the semantics; a quoting error there rejects the file (FILE_NOT_CSV)
naming the line. Memory: the text frame (about the file's size) plus small
per-line counters; a GB18030 file is transcoded in a streaming pass.
"""

from __future__ import annotations

import codecs
import csv
import errno
import functools
import hashlib
import io
import json
import mmap
import re
import tempfile
from calendar import monthrange
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from creditflow.core.paths import file_identity
from creditflow.core.schema import (
    FILE_SHA256,
    LINE_NUMBER,
    QUARANTINE,
    REASON_CODES,
    SOURCE_FILE,
    Table,
)
from creditflow.validation.rules import (
    MALFORMED,
    RAW_PREFIX,
    RAW_RECORD,
    REASON_CODE,
    REASON_DETAIL,
    RESERVED_COLUMNS,
    quarantine_ingested_at,
)

_PREFIX_BYTES = 1 << 20
_CHUNK_BYTES = 1 << 24
_PREVIEW_CHARS = 300
_QUOTED_FIELD_RE = r'(^|,)"[^"]*"'
"""A complete quoted field (opening quote at the start of a field), once ``""`` pairs are gone."""
_OPEN_FIELD_RE = r'(^|,)"'
"""After removing complete quoted fields: a quoted field still open at the line's end."""


class FileRejected(Exception):
    """A landing file that cannot be read at all; it goes to quarantine whole.

    ``reason_code`` is one of the ``FILE_*`` codes of ``core.schema.REASON_CODES``;
    ``message`` tells the operator what is wrong and, where it helps, how to fix
    the export; ``preview`` is the file's first characters (or header), safely
    decoded, for the quarantine record.
    """

    def __init__(self, reason_code: str, message: str, *, preview: str | None = None) -> None:
        if reason_code not in REASON_CODES or not reason_code.startswith("FILE_"):
            raise ValueError(
                f"reason_code must be a FILE_* code of core.schema.REASON_CODES; got {reason_code!r}"
            )
        super().__init__(f"{reason_code}: {message}")
        self.reason_code = reason_code
        self.message = message
        self.preview = preview


# --------------------------------------------------------------------------- file facts


def file_sha256(path: Path) -> str:
    """sha256 (hex) of the file's bytes: the file's identity in lineage and quarantine."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


_FULL_DATE_RE = re.compile(r"(?<!\d)((?:19|20)\d{2})([-_]?)(\d{2})\2(\d{2})(?!\d)")
_MONTH_RE = re.compile(r"(?<!\d)((?:19|20)\d{2})[-_](\d{2})(?![-_]?\d)")


def file_date_from_name(name: str) -> date | None:
    """The date a landing file's name carries, or None.

    Recognised anywhere in the name (the first valid one wins): ``YYYY-MM-DD``,
    ``YYYY_MM_DD``, ``YYYYMMDD``; and a month ``YYYY-MM`` / ``YYYY_MM``, taken as
    the month's *last* day (a monthly export describes the month as of its
    end). Years 1900-2099; impossible dates (``20241301``) are ignored.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a file name string; got {type(name).__name__}")
    base = Path(name).name
    for m in _FULL_DATE_RE.finditer(base):
        try:
            return date(int(m.group(1)), int(m.group(3)), int(m.group(4)))
        except ValueError:
            continue
    for m in _MONTH_RE.finditer(base):
        year, month = int(m.group(1)), int(m.group(2))
        if 1 <= month <= 12:
            return date(year, month, monthrange(year, month)[1])
    return None


def file_rejection_record(
    error: FileRejected,
    *,
    family: str,
    source_file: str,
    file_sha256: str,
    ingested_at: datetime,
) -> pl.DataFrame:
    """The one quarantine row (``core.schema.QUARANTINE``) of a file rejected whole.

    ``line_number`` is null; ``reason_detail`` is the operator message;
    ``raw_values`` is ``{"file_start": <first characters of the file>}``.
    """
    if not isinstance(error, FileRejected):
        raise TypeError(f"error must be a FileRejected; got {type(error).__name__}")
    if not family or not source_file:
        raise ValueError(
            f"family and source_file must be non-empty; got {family!r}, {source_file!r}"
        )
    raw = (
        json.dumps({"file_start": error.preview}, ensure_ascii=False)
        if error.preview is not None
        else None
    )
    row = pl.DataFrame(
        {
            "family": [family],
            SOURCE_FILE: [source_file],
            FILE_SHA256: [file_sha256],
            LINE_NUMBER: pl.Series([None], dtype=pl.Int64),
            REASON_CODE: [error.reason_code],
            REASON_DETAIL: [error.message],
            "raw_values": pl.Series([raw], dtype=pl.String),
        }
    ).with_columns(quarantine_ingested_at(ingested_at))
    return row.select([pl.col(n).cast(t) for n, t in QUARANTINE.polars_schema.items()])


# ------------------------------------------------------------------------------ reading

_BLANK_BYTES = (b" ", b"\t", b"\r", b"\x0b", b"\x0c")
"""ASCII bytes that ``str.strip_chars()`` removes besides the line feed; every other
character it removes (Unicode White_Space) is non-ASCII."""
_COMMA, _LF, _CR = ord(","), ord("\n"), ord("\r")


def values_are_trimmed(path: Path) -> bool:
    """True when no value of this landing CSV can have blanks around it, so stripping
    each value is a no-op (``apply_row_rules(..., trimmed=True)`` skips it).

    Decided from the bytes: no ``"`` (a line break is then always a record
    separator), no space, tab, CR, VT or FF, and no byte >= 0x80. False for Parquet
    files and for anything else. One memchr-speed pass per byte value, shared with
    the reader's quote check (cached per path and file identity).
    """
    facts = _csv_byte_facts(path)
    return facts is not None and not facts.has_quote and not facts.has_blank


class _ByteFacts(NamedTuple):
    """What one pass over a file's bytes proves (see :func:`_byte_facts`)."""

    has_quote: bool
    """The file holds a ``"`` byte."""
    has_blank: bool
    """The file holds a blank byte (``_BLANK_BYTES``) or a byte >= 0x80."""
    has_slash: bool
    commas: int
    newlines: int
    ends_with_newline: bool
    last_line_commas: int
    """Commas after the last line feed (on a last line without one)."""
    has_lone_cr: bool
    """A carriage return not followed by a line feed (neither LF nor CRLF ends that line)."""


_FACTS_CHUNK = 1 << 22  # 4 MiB: each chunk's comparisons stay in cache


def values_are_slash_free(path: Path) -> bool:
    """True when no value of this landing CSV holds a ``/``: the file has no ``/`` byte
    (in UTF-8 and in GB18030 that byte is only ever the character), so
    ``apply_row_rules(..., slash_free=True)`` may parse dates in the dashed form only.
    False for Parquet files and for anything else."""
    facts = _csv_byte_facts(path)
    return facts is not None and not facts.has_slash


def _csv_byte_facts(path: Path) -> _ByteFacts | None:
    """:func:`_byte_facts` of a non-empty file that is not Parquet; None otherwise."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return None
    with open(path, "rb") as f:
        if f.read(4) == b"PAR1":
            return None
    return _byte_facts(path)


def _byte_facts(path: Path) -> _ByteFacts:
    """One vectorised pass over the bytes (cached per path and the file's identity: inode,
    size, mtime and ctime, so a rewritten file is read again)."""
    return _byte_facts_cached(str(path.resolve()), tuple(file_identity(path.stat())))


@functools.lru_cache(maxsize=16)
def _byte_facts_cached(path: str, identity: tuple[int, ...]) -> _ByteFacts:
    size = identity[2]
    if size == 0:
        return _ByteFacts(False, False, False, 0, 0, False, 0, False)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        has_quote = mm.find(b'"') >= 0
        has_cr = mm.find(b"\r") >= 0
        has_blank = any(mm.find(b) >= 0 for b in _BLANK_BYTES)  # CR included
        has_slash = mm.find(b"/") >= 0
        ends_with_newline = mm[size - 1:size] == b"\n"
        last_line_commas = 0 if ends_with_newline else mm[mm.rfind(b"\n") + 1:].count(b",")
        commas, newlines, high, carriage_returns, crlf = _count_bytes(mm, size, count_cr=has_cr,
                                                                      find_high=not has_blank)
        has_blank = has_blank or high
    return _ByteFacts(has_quote, has_blank, has_slash, commas, newlines, ends_with_newline, last_line_commas,
                      carriage_returns != crlf)


def _count_bytes(mm: mmap.mmap, size: int, *, count_cr: bool, find_high: bool) -> tuple[int, int, bool, int, int]:
    """(commas, line feeds, any byte >= 0x80 (looked for only if ``find_high``), CRs, CRs
    followed by a LF), chunk by chunk.

    A function of its own so that every view of the mmap is gone when it returns (the
    caller closes the mmap)."""
    data = np.frombuffer(mm, dtype=np.uint8)
    commas = newlines = carriage_returns = crlf = 0
    high = False
    for start in range(0, size, _FACTS_CHUNK):
        chunk = data[start:start + _FACTS_CHUNK]
        commas += int(np.count_nonzero(chunk == _COMMA))
        newlines += int(np.count_nonzero(chunk == _LF))
        if find_high and not high:
            high = bool(chunk.max() >= 0x80)
        if count_cr:  # is every CR followed by a LF (the next chunk's first byte included)?
            cr = chunk == _CR
            carriage_returns += int(np.count_nonzero(cr))
            after = data[start + 1:start + _FACTS_CHUNK + 1]
            crlf += int(np.count_nonzero(cr[:after.size] & (after == _LF)))
    return commas, newlines, high, carriage_returns, crlf


def read_landing_file(path: Path, table: Table, *, temp_dir: Path | None = None) -> pl.DataFrame:
    """Read one landing file (CSV or Parquet) of ``table``'s family as text.

    Returns the contract columns found in the file (contract order), then the
    extra columns (file order), all ``pl.String``; ``line_number`` (Int64); and,
    only when the file has malformed records, ``_raw_record`` and ``_malformed``
    (see the module docstring). Raises :class:`FileRejected` for a file that
    cannot be read at all. ``temp_dir`` holds the UTF-8 copy of a GB18030 file
    while it is read (default: the system temp dir).
    """
    path = Path(path)
    if not isinstance(table, Table):
        raise TypeError(f"table must be a core.schema.Table; got {type(table).__name__}")
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "landing file does not exist", str(path))
    if path.stat().st_size == 0:
        raise FileRejected("FILE_EMPTY", "the file is empty (0 bytes)", preview="")
    with open(path, "rb") as f:
        head = f.read(_PREFIX_BYTES)
    if head.startswith(b"PAR1"):
        return _read_parquet(path, table, _preview(head))
    whole = len(head) == path.stat().st_size
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise FileRejected(
            "FILE_UNDECODABLE",
            "the file is UTF-16/UTF-32 text (it starts with a UTF-16 byte-order mark); "
            "re-export it as UTF-8 (or GB18030)",
            preview=_preview(head),
        )
    if head.startswith(b"PK\x03\x04"):
        raise FileRejected(
            "FILE_NOT_CSV",
            "the file is a ZIP archive (an Excel .xlsx workbook?), not CSV; export the sheet as CSV",
            preview=_preview(head),
        )
    nul = head.find(b"\x00")
    if nul >= 0:
        raise FileRejected(
            "FILE_NOT_CSV",
            f"the file contains NUL bytes (first at byte {nul}): it is binary, not CSV text",
            preview=_preview(head),
        )
    encoding = _sniff_encoding(head, whole)
    with tempfile.TemporaryDirectory(prefix="creditflow-staging-", dir=temp_dir) as tmp:
        if encoding == "gb18030":
            return _read_csv(_transcode_gb18030(path, Path(tmp)), table, transcoded=True)
        try:
            return _read_csv(path, table, transcoded=False)
        except _NotUtf8 as e:
            return _read_csv(_transcode_gb18030(path, Path(tmp), after=e), table, transcoded=True)


class _NotUtf8(Exception):
    """The UTF-8 fast path met bytes that are not UTF-8 after an ASCII-only start."""

    def __init__(self, offset: int) -> None:
        super().__init__(offset)
        self.offset = offset


def _preview(data: bytes) -> str:
    head = data[: _PREVIEW_CHARS * 4]
    for enc in ("utf-8-sig", "gb18030"):
        try:
            return codecs.getincrementaldecoder(enc)("strict").decode(head, final=False)[
                :_PREVIEW_CHARS
            ]
        except UnicodeDecodeError:
            continue
    return head[:_PREVIEW_CHARS].decode("utf-8", errors="backslashreplace")


def _line_of(path: Path, offset: int) -> int:
    """1-based physical line holding byte ``offset``."""
    n, done = 1, 0
    with open(path, "rb") as f:
        while done < offset and (chunk := f.read(min(_CHUNK_BYTES, offset - done))):
            n += chunk.count(b"\n")
            done += len(chunk)
    return n


def _sniff_encoding(head: bytes, whole: bool) -> str:
    """'utf-8' or 'gb18030' from the file's first bytes."""
    try:
        codecs.getincrementaldecoder("utf-8")("strict").decode(head, final=whole)
        return "utf-8"
    except UnicodeDecodeError as e:
        valid = head[: e.start]
        if valid.startswith(codecs.BOM_UTF8) or not valid.isascii():
            # UTF-8 text (BOM or multi-byte characters) with a bad byte: corrupt, not GB18030.
            raise FileRejected(
                "FILE_UNDECODABLE",
                f"the file starts as UTF-8 text but byte {e.start} (0x{head[e.start]:02X}) is not valid "
                "UTF-8; the file is damaged or mixes encodings - re-export it as UTF-8",
                preview=_preview(head),
            ) from None
        return "gb18030"


def _check_rest_is_utf8(path: Path) -> None:
    """Raise _NotUtf8 / FileRejected if the file is not UTF-8 throughout."""
    dec = codecs.getincrementaldecoder("utf-8")("strict")
    offset, ascii_so_far = 0, True
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_CHUNK_BYTES)
            try:
                dec.decode(chunk, final=not chunk)
            except UnicodeDecodeError as e:
                bad = max(offset + e.start - len(dec.getstate()[0]), 0)
                if ascii_so_far and chunk[: max(e.start, 0)].isascii():
                    raise _NotUtf8(bad) from None
                raise FileRejected(
                    "FILE_UNDECODABLE",
                    f"the file is UTF-8 text but has an invalid byte near byte {bad} (line "
                    f"{_line_of(path, bad)}); the file is damaged or mixes encodings - re-export it as UTF-8",
                    preview=_preview(_head(path)),
                ) from None
            if not chunk:
                return
            ascii_so_far = ascii_so_far and chunk.isascii()
            offset += len(chunk)


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(_PREVIEW_CHARS * 4)


def _transcode_gb18030(path: Path, tmp: Path, after: _NotUtf8 | None = None) -> Path:
    """Stream-decode ``path`` as GB18030 into a UTF-8 file in ``tmp``."""
    out = tmp / (path.name + ".utf8.csv")
    dec = codecs.getincrementaldecoder("gb18030")("strict")
    offset = 0
    with open(path, "rb") as fi, open(out, "w", encoding="utf-8", newline="") as fo:
        while True:
            chunk = fi.read(_CHUNK_BYTES)
            try:
                fo.write(dec.decode(chunk, final=not chunk))
            except UnicodeDecodeError as e:
                bad = max(offset + e.start - len(dec.getstate()[0]), 0)
                first_bad = after.offset if after is not None else bad
                raise FileRejected(
                    "FILE_UNDECODABLE",
                    f"the file is neither UTF-8 (invalid byte near byte {first_bad}, line "
                    f"{_line_of(path, first_bad)}) nor GB18030/GBK (invalid byte near byte {bad}, line "
                    f"{_line_of(path, bad)}); re-export it as UTF-8",
                    preview=_preview(_head(path)),
                ) from None
            if not chunk:
                return out
            offset += len(chunk)


def _clean_names(raw_names: list[str], table: Table, preview: str, *, where: str) -> list[str]:
    """Header names stripped of blanks/BOM and checked against the contract."""
    names = [n.strip().strip("\ufeff").strip() for n in raw_names]
    names = [n if n else f"unnamed_{i}" for i, n in enumerate(names, start=1)]
    seen: dict[str, list[int]] = {}
    for i, n in enumerate(names, start=1):
        seen.setdefault(n, []).append(i)
    dups = {n: pos for n, pos in seen.items() if len(pos) > 1}
    if dups:
        listed = "; ".join(
            f"{n!r} at positions {', '.join(map(str, pos))}" for n, pos in dups.items()
        )
        raise FileRejected(
            "FILE_DUPLICATE_COLUMN",
            f"the {where} names a column more than once: {listed}",
            preview=preview,
        )
    contract = set(table.names)
    clash = [
        n
        for n in names
        if n not in contract and (n in RESERVED_COLUMNS or n.startswith(RAW_PREFIX))
    ]
    if clash:
        raise FileRejected(
            "FILE_DUPLICATE_COLUMN",
            f"the {where} has column(s) {', '.join(map(repr, clash))}, which clash with columns the pipeline "
            "adds (lineage, reason and raw-value columns); rename them in the export",
            preview=preview,
        )
    missing = [c for c in table.required if c not in names]
    if missing:
        hints = []
        lower = {n.lower(): n for n in names}
        for m in missing:
            if m.lower() in lower:
                hints.append(
                    f"{lower[m.lower()]!r} differs from {m!r} only in case (names are case-sensitive)"
                )
        if len(names) == 1:
            for sep, label in ((";", "semicolons"), ("\t", "tabs"), ("|", "pipes")):
                if sep in names[0]:
                    hints.append(
                        f"the header is one column containing {label}: the file must be comma separated"
                    )
                    break
        found = (
            ", ".join(names)
            if len(names) <= 40
            else ", ".join(names[:40]) + f", ... ({len(names)} in all)"
        )
        raise FileRejected(
            "FILE_MISSING_COLUMN",
            f"missing required {table.name} column(s): {', '.join(missing)}; the {where} has "
            f"{len(names)} column(s): {found}" + ("".join(f". Hint: {h}" for h in hints)),
            preview=preview,
        )
    return names


def _ordered(names: list[str], table: Table) -> list[str]:
    contract = [c for c in table.names if c in names]
    return contract + [n for n in names if n not in set(table.names)]


def _read_parquet(path: Path, table: Table, preview: str) -> pl.DataFrame:
    try:
        pf = pq.ParquetFile(path)
        arrow_names = list(pf.schema_arrow.names)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise FileRejected(
            "FILE_NOT_CSV", f"the file starts like Parquet but cannot be read: {e}", preview=preview
        ) from e
    names = _clean_names(arrow_names, table, preview=", ".join(arrow_names), where="Parquet schema")
    try:
        df = pl.from_arrow(pf.read())
    except Exception as e:
        raise FileRejected(
            "FILE_NOT_CSV", f"the Parquet file cannot be read: {e}", preview=preview
        ) from e
    assert isinstance(df, pl.DataFrame)
    df.columns = names
    nested = [f"{n} ({t})" for n, t in df.schema.items() if t.is_nested()]
    if nested:
        raise FileRejected(
            "FILE_NOT_CSV",
            f"Parquet column(s) {', '.join(nested)} are nested (lists/structs) and have no text form",
            preview=", ".join(arrow_names),
        )
    try:
        text = df.select(pl.col(n).cast(pl.String) for n in _ordered(names, table))
    except pl.exceptions.PolarsError as e:
        raise FileRejected(
            "FILE_UNDECODABLE",
            f"a Parquet column cannot be read as UTF-8 text: {e}",
            preview=", ".join(arrow_names),
        ) from e
    return (
        text.with_row_index(LINE_NUMBER, offset=1)
        .with_columns(pl.col(LINE_NUMBER).cast(pl.Int64))
        .select(*_ordered(names, table), LINE_NUMBER)
    )


def _read_header(path: Path) -> tuple[list[str], str]:
    """The header record's fields and the file's first characters (UTF-8 file)."""
    with open(path, "rb") as f:
        head = f.read(_PREFIX_BYTES)
        at_end = not f.read(1)
    text = codecs.getincrementaldecoder("utf-8-sig")("strict").decode(head, final=at_end)
    preview = text[:_PREVIEW_CHARS]
    if not text.strip():
        raise FileRejected(
            "FILE_EMPTY", "the file holds only blank lines: no header, no rows", preview=preview
        )
    if not at_end and "\n" not in text:
        raise FileRejected(
            "FILE_NOT_CSV",
            f"no line break in the first {_PREFIX_BYTES} bytes: this is not a CSV file",
            preview=preview,
        )
    try:
        header = next(csv.reader(io.StringIO(text, newline=""), strict=True), [])
    except csv.Error as e:
        raise FileRejected(
            "FILE_NOT_CSV", f"the header line cannot be parsed as CSV: {e}", preview=preview
        ) from e
    if not header:
        raise FileRejected(
            "FILE_NOT_CSV",
            "line 1 is blank: the first line must be the header (column names)",
            preview=preview,
        )
    return header, preview


def _read_csv(path: Path, table: Table, *, transcoded: bool) -> pl.DataFrame:
    raw_header, preview = _read_header(path)
    names = _clean_names(raw_header, table, preview, where="header")
    try:
        df = _read_csv_fast(path, names)
    except pl.exceptions.PolarsError:
        if not transcoded:
            _check_rest_is_utf8(path)  # raises _NotUtf8 for a GB18030 file with an ASCII start
        df = None
    if df is None:
        df = _read_csv_python(path, names)
    order = [
        *_ordered(names, table),
        LINE_NUMBER,
        *[c for c in (RAW_RECORD, MALFORMED) if c in df.columns],
    ]
    return pl.DataFrame([df.get_column(c) for c in order])  # no copy, unlike an eager select


def _scan_text(path: Path, names: list[str], *, ragged: bool) -> pl.LazyFrame:
    """The file's records as text columns named ``names``, numbered from line 2."""
    return (
        pl.scan_csv(
            path,
            has_header=True,
            new_columns=names,
            infer_schema=False,
            quote_char='"',
            empty_string_is_null=False,
            truncate_ragged_lines=ragged,
            raise_if_empty=False,
            encoding="utf8",
        )
        .with_row_index(LINE_NUMBER, offset=2)
        .with_columns(pl.col(LINE_NUMBER).cast(pl.Int64))
    )


def _read_csv_plain(path: Path, names: list[str], facts: _ByteFacts) -> pl.DataFrame | None:
    """The CSV parse alone, when the bytes prove every record is one well-formed line.

    Only for a file with no ``"`` byte and no lone CR: every comma then separates
    fields and every line feed ends a line. Polars raises on a record with more fields
    than the header (so no line has more than ``fields - 1`` commas; a last line that
    no line feed ends may slip one empty field more past Polars, so its commas are
    counted on their own), while a record with
    fewer fields would read its missing fields as empty text; the file's comma count
    rules that out: it equals ``(fields - 1) x lines`` only when every line, the
    header included, has exactly ``fields - 1`` commas. An empty line has none, so
    the equality also proves there is no blank line, and the records are the lines
    after the header (checked against the row count): the row index is the line
    number. None when any of this does not hold; the line scan then decides.
    """
    if facts.has_quote or facts.has_lone_cr or len(names) < 2:
        return None
    lines = facts.newlines + (0 if facts.ends_with_newline else 1)
    if facts.commas != (len(names) - 1) * lines:
        return None
    if not facts.ends_with_newline and facts.last_line_commas != len(names) - 1:
        # Polars lets the last line carry one empty field too many when no line feed ends it
        return None
    try:
        data = _scan_text(path, names, ragged=False).collect()
    except pl.exceptions.PolarsError:
        return None
    return data if data.height == lines - 1 else None


def _read_csv_fast(path: Path, names: list[str]) -> pl.DataFrame | None:
    """Polars scans; None when the file needs the exact (Python csv) reader."""
    facts = _byte_facts(path)
    if facts.has_lone_cr:
        return None  # the exact reader ends a record there; Polars would keep the CR in a value
    plain = _read_csv_plain(path, names, facts)
    if plain is not None:
        return plain
    data_lf = _scan_text(path, names, ragged=True)
    data, stats = pl.collect_all([data_lf, _line_stats(path, quotes=facts.has_quote)])
    if stats.height < 1 or data.height != stats.height - 1:
        return None  # Polars and the line count disagree (a quoted line break, say)
    complex_lines = stats.get_column("needs_parse")
    if complex_lines.any():
        exact = _exact_field_counts(path)
        if exact.get_column("open").any():
            return None  # a quoted field spans lines: records are not lines
        stats = stats.with_columns(
            stats.get_column("fields").scatter(
                exact.get_column("__line"), exact.get_column("fields")
            )
        )
    stats = stats.slice(1)
    n = len(names)
    blank = stats.get_column("blank")
    if blank.any():
        keep = ~blank
        data, stats = data.filter(keep), stats.filter(keep)
    fields = stats.get_column("fields")
    bad = fields != n
    if not bad.any():
        return data
    # No record spans lines on this path, so a record's number is its physical line.
    where = bad.arg_true()
    bad_lines = data.get_column(LINE_NUMBER).gather(where)
    raw_text = (
        pl.scan_lines(path, row_index_name="__line", row_index_offset=1)
        .with_columns(pl.col("__line").cast(pl.Int64))
        .filter(pl.col("__line").is_in(bad_lines.implode()))
        .sort("__line")
        .collect()
        .get_column("line")
    )
    details = pl.Series(
        [f"row has {k} field(s); the header has {n}" for k in fields.gather(where).to_list()]
    )

    def spread(values: pl.Series, name: str) -> pl.Series:
        return (
            pl.repeat(None, data.height, dtype=pl.String, eager=True)
            .scatter(where, values)
            .alias(name)
        )

    return data.with_columns(
        *[pl.when(~bad).then(pl.col(c)).alias(c) for c in names],
        spread(raw_text, RAW_RECORD),
        spread(details, MALFORMED),
    )


def _line_stats(path: Path, *, quotes: bool = True) -> pl.LazyFrame:
    """Per physical line: fields if no comma sits inside quotes, blank, and whether to look closer.

    ``quotes=False`` (the file holds no ``"`` byte at all): every comma separates
    fields, so no line needs a closer look and the quote scan is skipped.

    Removing every ``""`` pair keeps the quoting structure (inside a quoted field it
    is an escaped quote, at a field's start an empty quoted field, mid-field two
    literal quotes); a line with no quote left has no quoted comma, so its field
    count is its comma count + 1. Only lines that still hold a quote need the
    regex of :func:`_exact_field_counts`.
    """
    line = pl.col("line")
    return pl.scan_lines(path).select(
        (line.str.count_matches(",", literal=True) + 1).cast(pl.Int32).alias("fields"),
        (line.str.len_bytes() == 0).alias("blank"),
        (_needs_parse(line) if quotes else pl.lit(False)).alias("needs_parse"),
    )


def _needs_parse(line: pl.Expr) -> pl.Expr:
    return line.str.replace_all('""', "", literal=True).str.contains('"', literal=True)


def _exact_field_counts(path: Path) -> pl.DataFrame:
    """Field counts of the lines that hold quotes, by removing complete quoted fields."""
    line = pl.col("line")
    unpaired = line.str.replace_all('""', "", literal=True)
    unquoted = unpaired.str.replace_all(_QUOTED_FIELD_RE, "$1")
    return (
        pl.scan_lines(path, row_index_name="__line")
        .filter(_needs_parse(line))
        .select(
            pl.col("__line"),
            (unquoted.str.count_matches(",", literal=True) + 1).cast(pl.Int32).alias("fields"),
            unquoted.str.contains(_OPEN_FIELD_RE).alias("open"),
        )
        .collect()
    )


def _read_csv_python(path: Path, names: list[str]) -> pl.DataFrame:
    """The exact reader: Python csv, strict quoting; keeps each record's raw text."""
    n = len(names)
    columns: list[list[str | None]] = [[] for _ in names]
    line_numbers: list[int] = []
    raw_records: list[str | None] = []
    details: list[str | None] = []
    any_bad = False
    consumed: list[str] = []
    with open(path, encoding="utf-8-sig", newline="") as f:

        def lines() -> Iterator[str]:
            for ln in f:
                consumed.append(ln)
                yield ln

        reader = csv.reader(lines(), strict=True)
        record = 0
        try:
            for row in reader:
                record += 1
                raw = "".join(consumed)
                consumed.clear()
                if record == 1 or not row:
                    continue  # the header; a blank line
                line_numbers.append(record)
                if len(row) == n:
                    for col, value in zip(columns, row, strict=True):
                        col.append(value)
                    raw_records.append(None)
                    details.append(None)
                else:
                    any_bad = True
                    for col in columns:
                        col.append(None)
                    raw_records.append(raw.rstrip("\r\n"))
                    details.append(f"row has {len(row)} field(s); the header has {n}")
        except csv.Error as e:
            raise FileRejected(
                "FILE_NOT_CSV",
                f"CSV quoting is broken in the record starting on line {reader.line_num - len(consumed) + 1}"
                f" (record {record + 1}): {e}. A field holding a comma, a quote or a line break must be "
                'enclosed in double quotes, with inner quotes doubled ("")',
                preview=_preview(_head(path)),
            ) from e
    frame = pl.DataFrame(
        {
            name: pl.Series(name, col, dtype=pl.String)
            for name, col in zip(names, columns, strict=True)
        }
        | {LINE_NUMBER: pl.Series(LINE_NUMBER, line_numbers, dtype=pl.Int64)}
    )
    if any_bad:
        frame = frame.with_columns(
            pl.Series(RAW_RECORD, raw_records, dtype=pl.String),
            pl.Series(MALFORMED, details, dtype=pl.String),
        )
    return frame
