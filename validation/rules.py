"""Row rules and routing: parse staged text per the contract and route every row
to bronze (accepted) or quarantine, with a reason.

Pure logic over Polars frames; no file IO (``validation.staging`` reads files).

Three steps, each a plain function:

1. :func:`apply_row_rules` parses the all-text frame from
   ``staging.read_landing_file`` into the contract dtypes
   (``core.schema.Column.dtype``) and checks every rule that one file can
   decide on its own.
2. :func:`apply_cross_file_rules` checks the rules that need what was ingested
   before (ledger only).
3. :func:`split_routed` returns ``(bronze rows with lineage, quarantine rows)``.

Every row keeps ``reason_code`` = the *first* rule it breaks in the order
below, and ``reason_detail`` = every rule it breaks, in the same order,
readable and joined by ``"; "`` (e.g. ``amount: '12.345' has more than 2
fraction digits``). Both are null on an accepted row. The order:

1. ``MALFORMED_ROW``: a field count different from the header (staging marks
   it). Exclusive: the fields of such a row are not aligned with the header, so
   no other rule is checked on it.
2. ``MISSING_REQUIRED``: a required column empty, in contract column order.
3. Value rules, in contract column order, the column's kind giving the code:
   ``BAD_DATE``, ``BAD_DECIMAL`` (decimal and rate), ``BAD_INTEGER``,
   ``BAD_BOOLEAN``, ``BAD_ENUM``, ``BAD_CURRENCY``.
4. ``OUT_OF_RANGE`` (``Column.min_value/max_value/min_exclusive``), column order.
5. Ledger rules: ``DUE_DATE_RULE``, ``DUE_BEFORE_DOCUMENT``, ``APPLIES_TO_RULE``.
6. ``DUPLICATE_KEY``: ``Table.key`` (parsed values, all parts non-empty) seen
   earlier in the file; the first occurrence in file order wins, whether or
   not it is itself accepted.
7. Cross-file (ledger): ``DUPLICATE_ENTRY_ID``, ``UNKNOWN_CUSTOMER``,
   ``UNKNOWN_INVOICE``.

Parsing (values are stripped of surrounding blanks first; an empty value is
null): ``text`` as is; ``date`` ``YYYY-MM-DD`` or ``YYYY/MM/DD`` with two-digit
month and day, real calendar dates only; ``decimal`` ``-?digits[.d{1,2}]`` with
at most 16 integer digits (fits ``Decimal(18, 2)``; checked by regex *before*
the cast, because Polars silently truncates ``1.234``); ``rate`` likewise with
up to 8 fraction digits and 10 integer digits; ``int`` ``-?digits`` (``12.0``
is rejected); ``bool`` ``true/false/1/0`` in any case; ``enum`` exactly one of
``Column.allowed``; ``currency`` three upper-case letters.

The frame :func:`apply_row_rules` returns holds, in this order: every contract
column with its contract dtype (a column absent from the file is all null),
the file's extra columns as text, ``line_number``, ``reason_code``,
``reason_detail``, then the raw text of each contract column the file had as
``_raw_<column>`` (zero-copy: the input's own strings), and ``_raw_record`` for
malformed rows when staging found any. :func:`split_routed` turns the raw text
of quarantined rows into ``raw_values``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

import polars as pl

from creditflow.core.schema import (
    FILE_DATE,
    FILE_SHA256,
    INGESTED_AT,
    LEDGER,
    LINE_NUMBER,
    LINEAGE,
    LINEAGE_DTYPES,
    QUARANTINE,
    REASON_CODES,
    SOURCE_FILE,
    Column,
    Table,
)

REASON_CODE = "reason_code"
REASON_DETAIL = "reason_detail"
RAW_PREFIX = "_raw_"
"""Prefix of the columns that keep each contract column's raw text."""
RAW_RECORD = "_raw_record"
"""Set by staging on a malformed row: the row's raw text, exactly as in the file."""
MALFORMED = "_malformed"
"""Set by staging on a malformed row: why, e.g. ``row has 9 fields; the header has 8``."""
RESERVED_COLUMNS = frozenset(
    {*LINEAGE.names, REASON_CODE, REASON_DETAIL, RAW_RECORD, MALFORMED, "family", "raw_values"}
)
"""Names a landing file may not use for an extra column (they would clash in bronze
or quarantine); ``_raw_*`` names are reserved as well."""

_DATE_RE = r"^(?:\d{4}-\d{2}-\d{2}|\d{4}/\d{2}/\d{2})$"
_INT_RE = r"^-?\d{1,18}$"
_CURRENCY_RE = r"^[A-Z]{3}$"
_BOOL_TRUE = ("true", "1")
_BOOL_VALUES = ("true", "false", "1", "0")
_NUMBER_FORM_RE = r"^-?\d+(?:\.\d+)?$"
_DECIMAL_LAYOUT = {"decimal": (16, 2), "rate": (10, 8)}
"""Integer and fraction digits allowed: Decimal(18, 2) and Decimal(18, 8)."""
_DETAIL_VALUE_CHARS = 60
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_LITERAL_FILTER_MAX_IDS = 1_000_000
"""Up to this many ids, the history is filtered with ``is_in`` (pushed into the Parquet
scan); above, with a semi-join."""


def _frame(base: pl.DataFrame, columns: Sequence[str], *more: pl.Series) -> pl.DataFrame:
    """``base``'s ``columns`` plus ``more``, sharing their buffers.

    Eager DataFrame methods run through the query engine, which can copy every
    column of a 10M-row frame; building the frame from its Series does not.
    """
    return pl.DataFrame([base.get_column(c) for c in columns] + list(more))


def raw_column(name: str) -> str:
    """Name of the column that keeps contract column ``name``'s raw text."""
    return f"{RAW_PREFIX}{name}"


Enrich = Callable[[pl.DataFrame, pl.DataFrame, str], pl.DataFrame]
"""(failing rows, all rows, name of this check's flag column) -> failing rows with
the extra columns the check's detail needs."""


@dataclass(frozen=True)
class _Check:
    code: str
    flag: pl.Expr
    """True where the row breaks the rule (null counts as False)."""
    detail: pl.Expr
    """Readable text; evaluated only on rows that break some rule."""
    enrich: Enrich | None = None

    def unless(self, skip: pl.Expr) -> _Check:
        return _Check(self.code, self.flag.fill_null(False) & ~skip, self.detail, self.enrich)


def _stripped(name: str) -> str:
    return f"__s_{name}"


def _quoted(expr: pl.Expr) -> pl.Expr:
    """``'value'`` for a detail message, shortened when long."""
    short = (
        pl.when(expr.str.len_chars() > _DETAIL_VALUE_CHARS)
        .then(expr.str.slice(0, _DETAIL_VALUE_CHARS) + pl.lit("..."))
        .otherwise(expr)
    )
    return pl.lit("'") + short + pl.lit("'")


def _bound_text(col: Column) -> str:
    lo, hi = col.min_value, col.max_value
    if lo is not None and hi is not None:
        return f"must be {'>' if col.min_exclusive else '>='} {lo} and <= {hi}"
    if lo is not None:
        return f"must be {'>' if col.min_exclusive else '>='} {lo}"
    return f"must be <= {hi}"


def _typed_expr(col: Column, *, has_slash: bool = True) -> pl.Expr:
    """The typed value from the stripped text; null when empty or invalid.

    ``has_slash``: whether a date column holds any ``/`` (else the cheaper parse).
    A present value is valid exactly when its typed value is not null (the regex
    admits only values that the cast can hold).
    """
    s = pl.col(_stripped(col.name))
    kind = col.kind
    if kind == "text":
        return pl.when(s.str.len_bytes() > 0).then(s)
    if kind == "date":
        dashed = s.str.replace_all("/", "-", literal=True) if has_slash else s
        return pl.when(s.str.contains(_DATE_RE)).then(dashed.str.to_date("%Y-%m-%d", strict=False))
    if kind in _DECIMAL_LAYOUT:
        int_digits, frac_digits = _DECIMAL_LAYOUT[kind]
        ok = s.str.contains(rf"^-?\d{{1,{int_digits}}}(?:\.\d{{1,{frac_digits}}})?$")
        return pl.when(ok).then(s).cast(col.dtype, strict=False)
    if kind == "int":
        return pl.when(s.str.contains(_INT_RE)).then(s).cast(pl.Int64, strict=False)
    if kind == "bool":
        lower = s.str.to_lowercase()
        return pl.when(lower.is_in(_BOOL_VALUES)).then(lower.is_in(_BOOL_TRUE))
    if kind == "enum":
        return pl.when(s.is_in(col.allowed)).then(s)
    if kind == "currency":
        return pl.when(s.str.contains(_CURRENCY_RE)).then(s)
    raise ValueError(
        f"column {col.name!r} has output-only kind {kind!r}; landing columns cannot use it"
    )


_BAD_CODE = {
    "date": "BAD_DATE",
    "decimal": "BAD_DECIMAL",
    "rate": "BAD_DECIMAL",
    "int": "BAD_INTEGER",
    "bool": "BAD_BOOLEAN",
    "enum": "BAD_ENUM",
    "currency": "BAD_CURRENCY",
}


def _bad_detail(col: Column) -> pl.Expr:
    s = pl.col(_stripped(col.name))
    head = pl.lit(f"{col.name}: ") + _quoted(s)
    kind = col.kind
    if kind == "date":
        return head + pl.when(s.str.contains(_DATE_RE)).then(
            pl.lit(" is not a real calendar date")
        ).otherwise(pl.lit(" is not a date in YYYY-MM-DD or YYYY/MM/DD form"))
    if kind in _DECIMAL_LAYOUT:
        int_digits, frac_digits = _DECIMAL_LAYOUT[kind]
        frac = s.str.extract(r"\.(\d+)$", 1).str.len_chars()
        return head + (
            pl.when(~s.str.contains(_NUMBER_FORM_RE))
            .then(
                pl.lit(
                    " is not a decimal number (digits with an optional leading '-' and '.', e.g. 1234.50)"
                )
            )
            .when(frac > frac_digits)
            .then(pl.lit(f" has more than {frac_digits} fraction digits"))
            .otherwise(pl.lit(f" has more than {int_digits} integer digits"))
        )
    if kind == "int":
        return head + pl.when(s.str.contains(r"^-?\d+$")).then(
            pl.lit(" is too large for an integer")
        ).otherwise(pl.lit(" is not a whole number"))
    if kind == "bool":
        return head + pl.lit(" is not one of true/false/1/0")
    if kind == "enum":
        return head + pl.lit(f" is not one of {', '.join(col.allowed)}")
    return head + pl.lit(" is not a 3-letter upper-case ISO 4217 currency code")


def _range_flag(col: Column) -> pl.Expr | None:
    if col.kind not in ("int", "decimal", "rate") or (
        col.min_value is None and col.max_value is None
    ):
        return None
    v = pl.col(col.name)
    parts = []
    if col.min_value is not None:
        parts.append(v <= col.min_value if col.min_exclusive else v < col.min_value)
    if col.max_value is not None:
        parts.append(v > col.max_value)
    return pl.any_horizontal(parts)


def _ledger_checks() -> list[_Check]:
    et = pl.col("entry_type")
    due_s, app_s = pl.col(_stripped("due_date")), pl.col(_stripped("applies_to"))
    due_present = due_s.str.len_bytes() > 0
    app_present = app_s.str.len_bytes() > 0
    doc, due = pl.col("document_date"), pl.col("due_date")
    needs_applies_to = et.is_in(("CREDIT_NOTE", "WRITE_OFF"))
    is_invoice = et == "INVOICE"
    checks = [
        _Check(
            "DUE_DATE_RULE",
            (is_invoice & ~due_present) | (~is_invoice & due_present),
            pl.when(is_invoice)
            .then(pl.lit("due_date is required on an INVOICE"))
            .otherwise(
                pl.lit("due_date must be empty on a ")
                + et
                + pl.lit(" (got ")
                + _quoted(due_s)
                + pl.lit(")")
            ),
        ),
        _Check(
            "DUE_BEFORE_DOCUMENT",
            due < doc,
            pl.lit("due_date ")
            + due.dt.to_string("%Y-%m-%d")
            + pl.lit(" is before document_date ")
            + doc.dt.to_string("%Y-%m-%d"),
        ),
        _Check(
            "APPLIES_TO_RULE",
            (needs_applies_to & ~app_present) | (is_invoice & app_present),
            pl.when(is_invoice)
            .then(
                pl.lit("applies_to must be empty on an INVOICE (got ")
                + _quoted(app_s)
                + pl.lit(")")
            )
            .otherwise(pl.lit("applies_to is required on a ") + et),
        ),
    ]
    return checks


def _key_label(key: Sequence[str]) -> pl.Expr:
    if len(key) == 1:
        return pl.lit(f"{key[0]} ") + _quoted(pl.col(key[0]).cast(pl.String))
    values = pl.concat_str([pl.col(k).cast(pl.String) for k in key], separator=", ")
    return pl.lit(f"key ({', '.join(key)}) = (") + values + pl.lit(")")


def _duplicate_key_check(table: Table, *, key_sorted: bool) -> _Check:
    """``key_sorted``: the (single) key column is sorted, so equal keys are adjacent
    and no hash table is needed."""
    key = list(table.key)
    complete = pl.all_horizontal([pl.col(k).is_not_null() for k in key])
    if key_sorted:
        first = (pl.col(key[0]) != pl.col(key[0]).shift(1)).fill_null(True)
    elif len(key) == 1:
        first = pl.col(key[0]).is_first_distinct()
    else:
        first = pl.struct(key).is_first_distinct()
    flag = complete & ~first
    detail = (
        _key_label(key)
        + pl.lit(" appears earlier in this file, on line ")
        + pl.col("__first_line").cast(pl.String)
        + pl.lit(" (the first occurrence wins)")
    )

    def enrich(sub: pl.DataFrame, full: pl.DataFrame, flag_name: str) -> pl.DataFrame:
        # The first line of each duplicated key, looked up only for the failing rows.
        dup_keys = sub.filter(pl.col(flag_name)).select(key).unique()
        firsts = (
            full.lazy()
            .filter(complete & first)
            .join(dup_keys.lazy(), on=key, how="semi")
            .select(*key, pl.col(LINE_NUMBER).alias("__first_line"))
            .collect()
        )
        return sub.join(firsts, on=key, how="left", maintain_order="left", nulls_equal=False)

    return _Check("DUPLICATE_KEY", flag, detail, enrich)


def _route(df: pl.DataFrame, checks: list[_Check]) -> pl.DataFrame:
    """Add (or extend) reason_code/reason_detail for ``checks``, in their order.

    Only the boolean flags are computed on every row; the code and the readable
    detail only on the rows that break something, so clean data pays for booleans.
    """
    flag_names = [f"__chk_{i}" for i in range(len(checks))]
    flags = (
        df.lazy()
        .select([c.flag.fill_null(False).alias(f) for f, c in zip(flag_names, checks, strict=True)])
        .collect()
    )
    idx = flags.select(pl.arg_where(pl.any_horizontal(flag_names))).to_series()

    def column(name: str) -> pl.Series:
        # a fresh Series each: scatter below writes in place
        if name in df.columns:
            return df.get_column(name).clone()
        return pl.repeat(None, df.height, dtype=pl.String, eager=True).alias(name)

    code, detail = column(REASON_CODE), column(REASON_DETAIL)
    if idx.len():
        flagged = _frame(df, df.columns, *flags.get_columns())
        sub = flagged[idx]
        broken = [
            (f, c) for f, c in zip(flag_names, checks, strict=True) if sub.get_column(f).any()
        ]
        for f, c in broken:
            if c.enrich is not None:
                sub = c.enrich(sub, flagged, f)
        first = pl.coalesce([pl.when(pl.col(f)).then(pl.lit(c.code)) for f, c in broken])
        previous_code = [pl.col(REASON_CODE)] if REASON_CODE in sub.columns else []
        previous_detail = [pl.col(REASON_DETAIL)] if REASON_DETAIL in sub.columns else []
        new = sub.select(
            pl.coalesce([*previous_code, first]).alias(REASON_CODE),
            pl.concat_str(
                previous_detail + [pl.when(pl.col(f)).then(c.detail) for f, c in broken],
                separator="; ",
                ignore_nulls=True,
            ).alias(REASON_DETAIL),
        )
        code = code.scatter(idx, new.get_column(REASON_CODE))
        detail = detail.scatter(idx, new.get_column(REASON_DETAIL))
    keep = [c for c in df.columns if c not in (REASON_CODE, REASON_DETAIL)]
    return _frame(df, keep, code.alias(REASON_CODE), detail.alias(REASON_DETAIL))


def _extra_columns(df_columns: Sequence[str], table: Table) -> list[str]:
    contract = set(table.names)
    return [
        c
        for c in df_columns
        if c not in contract
        and c not in (LINE_NUMBER, RAW_RECORD, MALFORMED, REASON_CODE, REASON_DETAIL)
        and not c.startswith(RAW_PREFIX)
    ]


def apply_row_rules(
    raw: pl.DataFrame | pl.LazyFrame, table: Table, *, trimmed: bool = False, slash_free: bool = False
) -> pl.DataFrame:
    """Parse one staged file (all text) per the contract and mark each row that breaks a row rule.

    ``raw`` is ``staging.read_landing_file``'s output: text columns named as in the
    contract (order free; optional ones may be absent), extra text columns,
    ``line_number`` (Int64), and ``_raw_record``/``_malformed`` on malformed rows.
    Returns the frame described in the module docstring: typed contract columns,
    extras, ``line_number``, ``reason_code``/``reason_detail`` (null = accepted)
    and the raw text. Rules and their order: see the module docstring.

    ``trimmed=True`` is the caller's guarantee that no value has blanks around it
    (``staging.values_are_trimmed``): stripping would change nothing, so it is
    skipped (it is the costliest step on a clean 10M-row file). Results are the same.
    ``slash_free=True`` is the caller's guarantee that no value holds a ``/``
    (``staging.values_are_slash_free``): dates are then parsed in the dashed form
    without looking for the slashed one first. Results are the same.
    """
    if not isinstance(table, Table):
        raise TypeError(f"table must be a core.schema.Table; got {type(table).__name__}")
    df = raw.collect() if isinstance(raw, pl.LazyFrame) else raw
    if not isinstance(df, pl.DataFrame):
        raise TypeError(f"raw must be a polars DataFrame or LazyFrame; got {type(raw).__name__}")
    schema = df.schema
    if LINE_NUMBER not in schema:
        raise ValueError(f"raw frame needs a {LINE_NUMBER!r} column; got columns {df.columns}")
    missing = [c for c in table.required if c not in schema]
    if missing:
        raise ValueError(
            f"raw frame lacks required {table.name} column(s) {missing}; got columns {df.columns}"
        )
    extras = _extra_columns(df.columns, table)
    not_text = [c for c in [*table.names, *extras] if c in schema and schema[c] != pl.String]
    if not_text:
        raise ValueError(
            "raw frame columns must be text (pl.String) before parsing; got "
            + ", ".join(f"{c}: {schema[c]}" for c in not_text)
        )
    present = [c for c in table.columns if c.name in schema]
    absent = [c for c in table.columns if c.name not in schema]
    is_malformed = pl.col(MALFORMED).is_not_null() if MALFORMED in schema else pl.lit(False)

    typed_exprs, checks, value_checks, range_checks = [], [], [], []
    if MALFORMED in schema:
        checks.append(_Check("MALFORMED_ROW", is_malformed, pl.col(MALFORMED)))
    for col in present:
        has_slash = col.kind == "date" and not slash_free and bool(
            df.get_column(col.name).str.contains("/", literal=True).any()
        )
        typed_exprs.append(_typed_expr(col, has_slash=has_slash).alias(col.name))
        s = pl.col(_stripped(col.name))
        has_value = (s.str.len_bytes() > 0).fill_null(False)
        if col.required:
            checks.append(
                _Check("MISSING_REQUIRED", ~has_value, pl.lit(f"{col.name} is required but empty"))
            )
        if col.kind in _BAD_CODE:
            value_checks.append(
                _Check(
                    _BAD_CODE[col.kind], has_value & pl.col(col.name).is_null(), _bad_detail(col)
                )
            )
        rng = _range_flag(col)
        if rng is not None:
            range_checks.append(
                _Check(
                    "OUT_OF_RANGE",
                    rng,
                    pl.lit(f"{col.name}: ") + _quoted(s) + pl.lit(f" {_bound_text(col)}"),
                )
            )
    checks += value_checks + range_checks
    names = set(schema)
    if table.name == LEDGER.name:
        # An optional ledger column absent from the file is simply empty.
        for c in ("due_date", "applies_to"):
            if c not in names:
                typed_exprs.append(pl.lit(None, dtype=pl.String).alias(_stripped(c)))
        checks += _ledger_checks()
    new_columns = (
        df.lazy()
        .select(
            [
                (pl.col(c.name) if trimmed else pl.col(c.name).str.strip_chars()).alias(
                    _stripped(c.name)
                )
                for c in present
            ]
        )
        .with_columns(typed_exprs + [pl.lit(None, dtype=c.dtype).alias(c.name) for c in absent])
        .collect()
    )
    staged = _frame(  # the input's text is kept as the raw columns, without a copy
        df,
        [c for c in df.columns if c not in set(table.names)],
        *[df.get_column(c.name).alias(raw_column(c.name)) for c in present],
        *new_columns.get_columns(),
    )
    if table.key:
        key_sorted = len(table.key) == 1 and staged.get_column(table.key[0]).is_sorted()
        checks.append(_duplicate_key_check(table, key_sorted=key_sorted))
    if MALFORMED in schema:
        # Exclusive: a malformed row's fields are not aligned with the header.
        checks = [checks[0]] + [c.unless(is_malformed) for c in checks[1:]]

    routed = _route(staged, checks)
    order = [
        *table.names,
        *extras,
        LINE_NUMBER,
        REASON_CODE,
        REASON_DETAIL,
        *[raw_column(c.name) for c in present],
        *([RAW_RECORD] if RAW_RECORD in schema else []),
    ]
    return _frame(routed, order)


def apply_cross_file_rules(
    parsed: pl.DataFrame,
    table: Table,
    *,
    known_customer_ids: pl.LazyFrame | pl.DataFrame | None = None,
    prior_ledger: pl.LazyFrame | pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Check the rules that need earlier ingests; only the ledger has such rules.

    For ``table`` = LEDGER, on :func:`apply_row_rules` output:

    - ``DUPLICATE_ENTRY_ID``: ``entry_id`` is already in ``prior_ledger``.
    - ``UNKNOWN_CUSTOMER``: ``customer_id`` is not in ``known_customer_ids``.
    - ``UNKNOWN_INVOICE``: ``applies_to`` (on any entry type that has one) is not the
      ``entry_id`` of an INVOICE of the same customer, looked up among
      ``prior_ledger`` and this file's accepted invoices (an invoice is accepted
      when it breaks no row rule and neither rule above; its position in the file
      does not matter).

    ``known_customer_ids`` (column ``customer_id``; required for the ledger) is
    every customer_id of the accepted customer files ingested so far, this run's
    included. ``prior_ledger`` (columns ``entry_id``, ``customer_id``,
    ``entry_type``, optionally ``source_file``) is every accepted ledger row of
    earlier files; None means there are none. Because families are ingested in
    the order customers, fx_rates, bureau, bureau_events, ledger, and within a
    family by file name, a row can only reference what arrived earlier; a row
    whose customer or invoice arrives in a later run stays quarantined and is
    retried by landing it again (in a new file) after its reference.

    Rows that already broke a row rule are checked too (their detail lists every
    rule broken); their ``reason_code`` does not change. Other tables are
    returned unchanged.
    """
    if not isinstance(parsed, pl.DataFrame):
        raise TypeError(
            f"parsed must be a polars DataFrame (apply_row_rules output); got {type(parsed).__name__}"
        )
    for c in (REASON_CODE, REASON_DETAIL, LINE_NUMBER):
        if c not in parsed.columns:
            raise ValueError(
                f"parsed needs column {c!r} (run apply_row_rules first); got columns {parsed.columns}"
            )
    if table.name != LEDGER.name:
        return parsed
    if known_customer_ids is None:
        raise ValueError(
            "known_customer_ids is required for the ledger: pass the customer_id of every accepted "
            "customer row ingested so far (an empty frame if there is none)"
        )
    customers = _as_lazy(known_customer_ids, "known_customer_ids", ["customer_id"])
    prior = (
        _as_lazy(prior_ledger, "prior_ledger", ["entry_id", "customer_id", "entry_type"])
        if prior_ledger is not None
        else pl.LazyFrame(
            schema={"entry_id": pl.String, "customer_id": pl.String, "entry_type": pl.String}
        )
    )
    prior_has_source = SOURCE_FILE in prior.collect_schema().names()
    prior = prior.select(
        pl.col("entry_id").cast(pl.String),
        pl.col("customer_id").cast(pl.String),
        pl.col("entry_type").cast(pl.String),
        *([pl.col(SOURCE_FILE).cast(pl.String)] if prior_has_source else []),
    )
    if prior_ledger is not None:
        # Only prior rows this file mentions matter (its entry_ids and applies_to), so the
        # rest costs what the file costs. A daily file's ids are a literal filter that the
        # Parquet scan of the history evaluates on entry_id first (other columns are
        # decoded only where it matches) and checks against row-group min/max statistics;
        # a bulk file's are a streaming semi-join (a huge literal set is slower). Neither
        # needs a (costly) unique over the file's ids.
        mentioned = pl.concat(
            [parsed.get_column("entry_id").cast(pl.String), parsed.get_column("applies_to").cast(pl.String)]
        ).drop_nulls()
        if mentioned.len() <= _LITERAL_FILTER_MAX_IDS:
            prior = prior.filter(pl.col("entry_id").is_in(mentioned.implode()))
        else:
            prior = prior.join(mentioned.to_frame("entry_id").lazy(), on="entry_id", how="semi")
    prior = prior.collect().lazy()
    prior_ids = prior.select("entry_id").collect().to_series()
    known = customers.select(pl.col("customer_id").cast(pl.String)).unique().collect().to_series()

    lookups = (
        parsed.lazy()
        .select(
            pl.col("entry_id").is_in(prior_ids.implode()).fill_null(False).alias("__dup_entry"),
            (
                pl.col("customer_id").is_not_null()
                & ~pl.col("customer_id").is_in(known.implode()).fill_null(False)
            ).alias("__unknown_customer"),
        )
        .collect()
    )
    flagged = _frame(parsed, parsed.columns, *lookups.get_columns())
    this_file_invoices = (
        flagged.lazy()
        .filter(
            (pl.col("entry_type") == "INVOICE")
            & pl.col(REASON_CODE).is_null()
            & ~pl.col("__dup_entry")
            & ~pl.col("__unknown_customer")
        )
        .select("entry_id", "customer_id")
    )
    prior_invoices = prior.filter(pl.col("entry_type") == "INVOICE").select(
        pl.col("entry_id").cast(pl.String), pl.col("customer_id").cast(pl.String)
    )
    on = {"left_on": ["applies_to", "customer_id"], "right_on": ["entry_id", "customer_id"]}
    found = (
        flagged.lazy()
        .with_row_index("__row")
        .filter(pl.col("applies_to").is_not_null())
        .select("__row", "applies_to", "customer_id")
        .join(prior_invoices, how="anti", **on)
        .join(this_file_invoices, how="anti", **on)
        .select("__row")
        .collect()
        .to_series()
    )
    unknown_invoice = pl.repeat(False, flagged.height, eager=True).alias("__unknown_invoice")
    if found.len():
        unknown_invoice = unknown_invoice.scatter(found, True)
    flagged = _frame(flagged, flagged.columns, unknown_invoice)

    enrich_source = None
    dup_detail = (
        pl.lit("entry_id ")
        + _quoted(pl.col("entry_id"))
        + pl.lit(" was already ingested from an earlier ledger file")
    )
    if prior_has_source:
        dup_detail = dup_detail + pl.when(pl.col("__prior_source").is_not_null()).then(
            pl.lit(" (") + pl.col("__prior_source") + pl.lit(")")
        ).otherwise(pl.lit(""))

        def enrich_source(sub: pl.DataFrame, _full: pl.DataFrame, flag_name: str) -> pl.DataFrame:
            ids = sub.filter(pl.col(flag_name)).select("entry_id").unique()
            src = (
                prior.select(
                    pl.col("entry_id").cast(pl.String), pl.col(SOURCE_FILE).alias("__prior_source")
                )
                .join(ids.lazy(), on="entry_id", how="semi")
                .unique("entry_id", keep="first")
                .collect()
            )
            return sub.join(src, on="entry_id", how="left", maintain_order="left")

    checks = [
        _Check("DUPLICATE_ENTRY_ID", pl.col("__dup_entry"), dup_detail, enrich_source),
        _Check(
            "UNKNOWN_CUSTOMER",
            pl.col("__unknown_customer"),
            pl.lit("customer_id ")
            + _quoted(pl.col("customer_id"))
            + pl.lit(" is not in the customer master ingested so far"),
        ),
        _Check(
            "UNKNOWN_INVOICE",
            pl.col("__unknown_invoice"),
            pl.lit("applies_to ")
            + _quoted(pl.col("applies_to"))
            + pl.lit(" is not an accepted INVOICE of customer ")
            + _quoted(pl.col("customer_id")),
        ),
    ]
    routed = _route(flagged, checks)
    return _frame(routed, parsed.columns)


def _as_lazy(frame: pl.LazyFrame | pl.DataFrame, name: str, needs: list[str]) -> pl.LazyFrame:
    if isinstance(frame, pl.DataFrame):
        frame = frame.lazy()
    if not isinstance(frame, pl.LazyFrame):
        raise TypeError(
            f"{name} must be a polars LazyFrame or DataFrame; got {type(frame).__name__}"
        )
    have = frame.collect_schema().names()
    missing = [c for c in needs if c not in have]
    if missing:
        raise ValueError(f"{name} needs column(s) {missing}; got {have}")
    return frame


def _utc(ingested_at: datetime) -> datetime:
    if not isinstance(ingested_at, datetime):
        raise TypeError(f"ingested_at must be a datetime; got {type(ingested_at).__name__}")
    if ingested_at.tzinfo is None:
        raise ValueError(
            f"ingested_at must be time-zone aware (UTC); got naive {ingested_at.isoformat()}"
        )
    return ingested_at.astimezone(UTC)


def quarantine_ingested_at(ingested_at: datetime) -> pl.Expr:
    """``ingested_at`` as the quarantine table stores it (its dtype comes from core.schema)."""
    at = _utc(ingested_at)
    dtype = QUARANTINE.column(INGESTED_AT).dtype
    if dtype == pl.String:
        return pl.lit(at.isoformat(), dtype=pl.String).alias(INGESTED_AT)
    return pl.lit(at, dtype=LINEAGE_DTYPES[INGESTED_AT]).cast(dtype).alias(INGESTED_AT)


def split_routed(
    parsed: pl.DataFrame,
    table: Table,
    *,
    family: str,
    source_file: str,
    file_sha256: str,
    file_date: date,
    ingested_at: datetime,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split routed rows into (bronze rows, quarantine rows); together they are every row.

    Bronze: rows with a null ``reason_code``: contract columns (contract order,
    contract dtypes), the lineage columns (``core.schema.LINEAGE``, dtypes
    ``LINEAGE_DTYPES``), then the file's extra columns as text.
    Quarantine: the other rows, with the ``core.schema.QUARANTINE`` columns and
    dtypes; ``raw_values`` is a JSON object of column -> raw text of every column
    the file had (``{"_raw_record": "<the line>"}`` for a malformed row).
    ``source_file`` is relative to the landing root; ``ingested_at`` must be
    time-zone aware.
    """
    if family != table.name:
        raise ValueError(
            f"family must be the table's landing family {table.name!r}; got {family!r}"
        )
    if not source_file:
        raise ValueError("source_file must be the file's path relative to the landing root; got ''")
    if not isinstance(file_sha256, str) or not _SHA256_RE.match(file_sha256):
        raise ValueError(f"file_sha256 must be 64 lower-case hex digits; got {file_sha256!r}")
    if not isinstance(file_date, date) or isinstance(file_date, datetime):
        raise TypeError(f"file_date must be a datetime.date; got {type(file_date).__name__}")
    at = _utc(ingested_at)
    for c in (REASON_CODE, LINE_NUMBER):
        if c not in parsed.columns:
            raise ValueError(
                f"parsed needs column {c!r} (run apply_row_rules first); got columns {parsed.columns}"
            )
    unknown = set(parsed.get_column(REASON_CODE).drop_nulls().unique().to_list()) - set(
        REASON_CODES
    )
    if unknown:
        raise ValueError(f"unknown reason codes {sorted(unknown)}; see core.schema.REASON_CODES")

    extras = _extra_columns(parsed.columns, table)
    lineage = {
        SOURCE_FILE: pl.lit(source_file, dtype=LINEAGE_DTYPES[SOURCE_FILE]),
        LINE_NUMBER: pl.col(LINE_NUMBER).cast(LINEAGE_DTYPES[LINE_NUMBER]),
        FILE_SHA256: pl.lit(file_sha256, dtype=LINEAGE_DTYPES[FILE_SHA256]),
        FILE_DATE: pl.lit(file_date, dtype=LINEAGE_DTYPES[FILE_DATE]),
        INGESTED_AT: pl.lit(at, dtype=LINEAGE_DTYPES[INGESTED_AT]),
    }
    accepted = (
        parsed.lazy()
        .filter(pl.col(REASON_CODE).is_null())
        .select(
            [pl.col(c.name).cast(c.dtype) for c in table.columns]
            + [lineage[name].alias(name) for name in LINEAGE.names]
            + [pl.col(c).cast(pl.String) for c in extras]
        )
        .collect()
    )

    file_columns = [c for c in table.names if raw_column(c) in parsed.columns]
    raw_struct = pl.struct(
        [pl.col(raw_column(c)).alias(c) for c in file_columns]
        + [pl.col(c).cast(pl.String) for c in extras]
    ).struct.json_encode()
    if RAW_RECORD in parsed.columns:
        raw_values = (
            pl.when(pl.col(RAW_RECORD).is_not_null())
            .then(pl.struct(pl.col(RAW_RECORD)).struct.json_encode())
            .otherwise(raw_struct)
        )
    else:
        raw_values = raw_struct
    q_schema = QUARANTINE.polars_schema
    quarantine = (
        parsed.lazy()
        .filter(pl.col(REASON_CODE).is_not_null())
        .select(
            pl.lit(family).alias("family"),
            pl.lit(source_file).alias(SOURCE_FILE),
            pl.lit(file_sha256).alias(FILE_SHA256),
            pl.col(LINE_NUMBER),
            pl.col(REASON_CODE),
            pl.col(REASON_DETAIL)
            if REASON_DETAIL in parsed.columns
            else pl.lit(None, dtype=pl.String).alias(REASON_DETAIL),
            raw_values.alias("raw_values"),
            quarantine_ingested_at(at),
        )
        .select([pl.col(n).cast(q_schema[n]) for n in QUARANTINE.names])
        .collect()
    )
    return accepted, quarantine
