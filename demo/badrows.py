"""Bad input for the demo world: extra rows and files, each with the reason code ingest owes it.

Every injected row is an *extra* row (good rows are never changed, so no good
row can depend on a bad one) and breaks exactly one contract rule:

- rows that need an identity get a fresh one that no good row uses or refers to
  (``INV9...``/``CN9...`` entry ids, ``C8...`` customer ids, ``9199999...``
  registration ids), so accepting or rejecting them cannot change other rows;
- ``DUPLICATE_ENTRY_ID`` repeats a good row of the previous ledger file verbatim;
  ``DUPLICATE_KEY`` repeats a good customer row placed earlier in the same file.

All draws come from a random stream of their own, so the good rows of a world do
not depend on ``bad_rows``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from creditflow.core import schema
from creditflow.demo.writers import FileFormat

FRESH_INVOICE_PREFIX = "INV9"
FRESH_CREDIT_NOTE_PREFIX = "CN9"
MISSING_INVOICE_PREFIX = "INV8"
UNKNOWN_CUSTOMER_PREFIX = "C9"
BAD_CUSTOMER_PREFIX = "C8"
FRESH_REGISTRATION_PREFIX = "9199999"


@dataclass
class BadRowContext:
    rng: np.random.Generator
    rate: float
    counter: int = 0
    prev_ledger: pl.DataFrame | None = None
    """Good rows of the previous ledger file (contract columns), for DUPLICATE_ENTRY_ID."""
    injected: list[tuple[str, str, int, str]] = field(default_factory=list)
    """(family, file, line_number, reason_code) of every injected row."""

    def fresh(self, n: int) -> np.ndarray:
        out = np.arange(self.counter + 1, self.counter + n + 1)
        self.counter += n
        return out


def _pick(ctx: BadRowContext, options: list[str], n: int) -> pl.Series:
    return pl.Series([options[i] for i in ctx.rng.integers(0, len(options), n)], dtype=pl.String)


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pl.Series:
    return pl.Series([f"{prefix}{x:0{width}d}" for x in numbers], dtype=pl.String)


def _null_one_of(t: pl.DataFrame, ctx: BadRowContext, columns: list[str]) -> pl.DataFrame:
    which = ctx.rng.integers(0, len(columns), t.height)
    return t.with_columns(
        [pl.when(pl.Series(which == j)).then(None).otherwise(pl.col(c)).alias(c) for j, c in enumerate(columns)]
    )


def _bad_dates(dates: pl.Series, fmt: FileFormat, ctx: BadRowContext) -> pl.Series:
    """Impossible or foreign-format dates derived from valid ones (2024-13-45, 31/12/2024, 2023-02-30)."""
    parsed = dates.str.to_date(fmt.date_format, strict=False)
    style = ctx.rng.integers(0, 3, dates.len())
    out = []
    for d, s in zip(parsed.to_list(), style, strict=True):
        if d is None:
            out.append("2024-13-45")
        elif s == 0:
            out.append(f"{d.year}-13-{d.day + 17:02d}")
        elif s == 1:
            out.append(f"{d.day:02d}/{d.month:02d}/{d.year}")
        else:
            out.append(f"{d.year}-02-30")
    return pl.Series(out, dtype=pl.String)


def _three_decimals(values: pl.Series, ctx: BadRowContext) -> pl.Series:
    style = ctx.rng.integers(0, 3, values.len())
    out = []
    for v, s in zip(values.to_list(), style, strict=True):
        base = v if v else "1200.00"
        out.append(base + "5" if s == 0 else ("abc" if s == 1 else "12.3.4"))
    return pl.Series(out, dtype=pl.String)


# ------------------------------------------------------------------------ ledger


def _fresh_invoice(t: pl.DataFrame, ctx: BadRowContext) -> pl.DataFrame:
    return t.with_columns(entry_id=_ids(FRESH_INVOICE_PREFIX, ctx.fresh(t.height), 9))


def _ledger_kinds() -> dict[str, Callable[[pl.DataFrame, BadRowContext, FileFormat], pl.DataFrame]]:
    def missing(t, ctx, fmt):
        return _null_one_of(_fresh_invoice(t, ctx), ctx, ["amount", "currency"])

    def bad_date(t, ctx, fmt):
        return _fresh_invoice(t, ctx).with_columns(document_date=_bad_dates(t["document_date"], fmt, ctx))

    def bad_decimal(t, ctx, fmt):
        return _fresh_invoice(t, ctx).with_columns(amount=_three_decimals(t["amount"], ctx))

    def out_of_range(t, ctx, fmt):
        neg = pl.Series(ctx.rng.random(t.height) < 0.75)
        amount = pl.when(neg).then(pl.concat_str([pl.lit("-"), pl.col("amount")])).otherwise(pl.lit("0.00"))
        return _fresh_invoice(t, ctx).with_columns(amount=amount)

    def bad_enum(t, ctx, fmt):
        return _fresh_invoice(t, ctx).with_columns(
            entry_type=_pick(ctx, ["INVOCE", "PAYMNT"], t.height),
            due_date=pl.lit(None, dtype=pl.String),
            applies_to=pl.lit(None, dtype=pl.String),
        )

    def due_before(t, ctx, fmt):
        back = pl.Series(ctx.rng.integers(1, 31, t.height), dtype=pl.Int64)
        doc = pl.col("document_date").str.to_date(fmt.date_format)
        due = (doc - pl.duration(days=pl.lit(back))).dt.to_string(fmt.date_format)
        return _fresh_invoice(t, ctx).with_columns(due_date=due)

    def unknown_customer(t, ctx, fmt):
        return _fresh_invoice(t, ctx).with_columns(
            customer_id=_ids(UNKNOWN_CUSTOMER_PREFIX, ctx.fresh(t.height), 6)
        )

    def _credit_note(t, ctx):
        return t.with_columns(
            entry_id=_ids(FRESH_CREDIT_NOTE_PREFIX, ctx.fresh(t.height), 9),
            entry_type=pl.lit("CREDIT_NOTE"),
            due_date=pl.lit(None, dtype=pl.String),
        )

    def unknown_invoice(t, ctx, fmt):
        return _credit_note(t, ctx).with_columns(
            applies_to=_ids(MISSING_INVOICE_PREFIX, ctx.fresh(t.height), 9)
        )

    def applies_to_rule(t, ctx, fmt):
        return _credit_note(t, ctx).with_columns(applies_to=pl.lit(None, dtype=pl.String))

    def bad_currency(t, ctx, fmt):
        return _fresh_invoice(t, ctx).with_columns(currency=pl.col("currency").str.to_lowercase())

    def due_date_rule(t, ctx, fmt):
        return _fresh_invoice(t, ctx).with_columns(due_date=pl.lit(None, dtype=pl.String))

    return {
        "MISSING_REQUIRED": missing,
        "BAD_DATE": bad_date,
        "BAD_DECIMAL": bad_decimal,
        "OUT_OF_RANGE": out_of_range,
        "BAD_ENUM": bad_enum,
        "DUE_BEFORE_DOCUMENT": due_before,
        "UNKNOWN_CUSTOMER": unknown_customer,
        "UNKNOWN_INVOICE": unknown_invoice,
        "BAD_CURRENCY": bad_currency,
        "DUE_DATE_RULE": due_date_rule,
        "APPLIES_TO_RULE": applies_to_rule,
        "DUPLICATE_ENTRY_ID": None,  # handled in inject: copies of the previous file's rows
    }


# --------------------------------------------------------------------- customers


def _customer_kinds():
    def fresh(t, ctx):
        return t.with_columns(customer_id=_ids(BAD_CUSTOMER_PREFIX, ctx.fresh(t.height), 6))

    def missing(t, ctx, fmt):
        cols = ["customer_name", "onboarding_date", "credit_limit", "payment_terms_days", "currency"]
        return _null_one_of(fresh(t, ctx), ctx, cols)

    def bad_date(t, ctx, fmt):
        return fresh(t, ctx).with_columns(onboarding_date=_bad_dates(t["onboarding_date"], fmt, ctx))

    def bad_decimal(t, ctx, fmt):
        return fresh(t, ctx).with_columns(credit_limit=_three_decimals(t["credit_limit"], ctx))

    def out_of_range(t, ctx, fmt):
        terms = pl.Series(ctx.rng.random(t.height) < 0.6)
        return fresh(t, ctx).with_columns(
            payment_terms_days=pl.when(terms).then(pl.lit("400")).otherwise(pl.col("payment_terms_days")),
            credit_limit=pl.when(terms).then(pl.col("credit_limit")).otherwise(pl.lit("-5000.00")),
        )

    def bad_integer(t, ctx, fmt):
        return fresh(t, ctx).with_columns(
            payment_terms_days=_pick(ctx, ["30.0", "sixty", "45d"], t.height)
        )

    def bad_currency(t, ctx, fmt):
        return fresh(t, ctx).with_columns(currency=_pick(ctx, ["rmb", "cny", "US$"], t.height))

    return {
        "MISSING_REQUIRED": missing,
        "BAD_DATE": bad_date,
        "BAD_DECIMAL": bad_decimal,
        "OUT_OF_RANGE": out_of_range,
        "BAD_INTEGER": bad_integer,
        "BAD_CURRENCY": bad_currency,
        "DUPLICATE_KEY": None,  # handled in inject: a copy of an earlier good row
    }


# ------------------------------------------------------------------------ bureau


def _fresh_registration(t: pl.DataFrame, ctx: BadRowContext) -> pl.DataFrame:
    ids = [f"{FRESH_REGISTRATION_PREFIX}{x:010d}X" for x in ctx.fresh(t.height)]
    return t.with_columns(registration_id=pl.Series(ids, dtype=pl.String))


def _bureau_kinds():
    def missing(t, ctx, fmt):
        cols = ["registration_id", "report_date", "lawsuits_12m", "tax_arrears"]
        return _null_one_of(_fresh_registration(t, ctx), ctx, cols)

    def bad_date(t, ctx, fmt):
        return _fresh_registration(t, ctx).with_columns(report_date=_bad_dates(t["report_date"], fmt, ctx))

    def out_of_range(t, ctx, fmt):
        which = ctx.rng.integers(0, 4, t.height)
        cols = {"bureau_score": "1200", "paydex": "150", "lawsuits_12m": "-1", "years_in_business": "-3"}
        return _fresh_registration(t, ctx).with_columns(
            [pl.when(pl.Series(which == j)).then(pl.lit(v)).otherwise(pl.col(c)).alias(c)
             for j, (c, v) in enumerate(cols.items())]
        )

    def bad_integer(t, ctx, fmt):
        return _fresh_registration(t, ctx).with_columns(paydex=_pick(ctx, ["85.0", "abc", "7e1"], t.height))

    def bad_boolean(t, ctx, fmt):
        return _fresh_registration(t, ctx).with_columns(tax_arrears=_pick(ctx, ["yes", "N", "2"], t.height))

    def bad_decimal(t, ctx, fmt):
        return _fresh_registration(t, ctx).with_columns(revenue=_three_decimals(t["revenue"], ctx))

    return {
        "MISSING_REQUIRED": missing,
        "BAD_DATE": bad_date,
        "OUT_OF_RANGE": out_of_range,
        "BAD_INTEGER": bad_integer,
        "BAD_BOOLEAN": bad_boolean,
        "BAD_DECIMAL": bad_decimal,
    }


def _event_kinds():
    def missing(t, ctx, fmt):
        return _null_one_of(_fresh_registration(t, ctx), ctx, ["registration_id", "event_date", "event_type"])

    def bad_date(t, ctx, fmt):
        return _fresh_registration(t, ctx).with_columns(event_date=_bad_dates(t["event_date"], fmt, ctx))

    def bad_enum(t, ctx, fmt):
        return _fresh_registration(t, ctx).with_columns(
            event_type=_pick(ctx, ["LAWSUITS", "Bankruptcy", "TAX ARREARS"], t.height)
        )

    return {"MISSING_REQUIRED": missing, "BAD_DATE": bad_date, "BAD_ENUM": bad_enum}


KINDS = {
    "ledger": _ledger_kinds(),
    "customers": _customer_kinds(),
    "bureau": _bureau_kinds(),
    "bureau_events": _event_kinds(),
}


def _templates(df: pl.DataFrame, family: str) -> pl.DataFrame:
    if family == "ledger":
        return df.filter(pl.col("entry_type") == "INVOICE")
    return df


def inject(
    df: pl.DataFrame, family: str, file: str, fmt: FileFormat, ctx: BadRowContext
) -> pl.DataFrame:
    """Return ``df`` with about ``ctx.rate`` extra bad rows at random places; record them in ``ctx``."""
    n = df.height
    if ctx.rate <= 0 or n == 0:
        return df
    k = int(ctx.rng.binomial(n, ctx.rate))
    templates = _templates(df, family)
    if k == 0 or templates.height == 0:
        return df
    kinds = KINDS[family]
    names = [
        name for name in kinds
        if not (name == "DUPLICATE_ENTRY_ID" and (ctx.prev_ledger is None or ctx.prev_ledger.height == 0))
    ]
    chosen = np.array([names[i] for i in ctx.rng.integers(0, len(names), k)], dtype=object)
    positions = np.sort(ctx.rng.choice(n + k, size=k, replace=False))
    good_before = positions - np.arange(k)  # good rows placed before each bad row
    if family == "customers":
        chosen = np.where((chosen == "DUPLICATE_KEY") & (good_before == 0), "MISSING_REQUIRED", chosen)
    if family == "ledger":
        # each earlier row is repeated at most once per file, so the repeat is never a same-file duplicate
        dup = np.flatnonzero(chosen == "DUPLICATE_ENTRY_ID")
        if ctx.prev_ledger is not None and dup.size > ctx.prev_ledger.height:
            chosen[dup[ctx.prev_ledger.height:]] = "MISSING_REQUIRED"

    parts: list[pl.DataFrame] = []
    part_positions: list[np.ndarray] = []
    for name in names:
        sel = np.flatnonzero(chosen == name)
        if sel.size == 0:
            continue
        if name == "DUPLICATE_KEY":
            src = (ctx.rng.random(sel.size) * good_before[sel]).astype(np.int64)
            rows = df[src]
        elif name == "DUPLICATE_ENTRY_ID":
            prev = ctx.prev_ledger
            src = ctx.rng.choice(prev.height, size=sel.size, replace=False)
            rows = prev[src]
            for c in df.columns:
                if c not in rows.columns:
                    rows = rows.with_columns(pl.lit(None, dtype=pl.String).alias(c))
            rows = rows.select(df.columns)
        else:
            t = templates[ctx.rng.integers(0, templates.height, sel.size)]
            rows = kinds[name](t, ctx, fmt).select(df.columns)
        parts.append(rows)
        part_positions.append(positions[sel])
        for p in positions[sel]:
            ctx.injected.append((family, file, fmt.line_number(int(p)), name))

    # place the good rows in order around the bad ones: row i of the result comes from source[i]
    is_bad = np.zeros(n + k, dtype=bool)
    is_bad[positions] = True
    source = np.empty(n + k, dtype=np.int64)
    source[~is_bad] = np.arange(n)
    source[np.concatenate(part_positions)] = n + np.arange(k)
    return pl.concat([df, *parts], how="vertical")[source]


# ------------------------------------------------------------------------ bad files


def write_bad_files(
    out_dir: Path,
    *,
    rng: np.random.Generator,
    ledger_sample: pl.DataFrame,
    fx_sample: pl.DataFrame,
    months: list[str],
    snapshot_date: str,
) -> list[dict[str, str]]:
    """Extra files that ingest must reject whole; rejecting them loses no good row.

    ``months`` are ``YYYY-MM`` labels of the world, used to date the file names.
    """

    def month(i: int) -> str:
        return months[min(i, len(months) - 1)]

    out: list[dict[str, str]] = []

    def add(rel: str, family: str, reason: str, data: bytes) -> None:
        assert reason in schema.REASON_CODES
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        out.append({"file": rel, "family": family, "reason_code": reason})

    # no bytes at all
    add(f"ledger/ledger_{month(1)}_empty.csv", "ledger", "FILE_EMPTY", b"")
    # only blank lines: no header (a header with no rows is a valid, empty export)
    add(f"customers/customers_{snapshot_date}_blank.csv", "customers", "FILE_EMPTY", b"\n\r\n  \n")
    # a partial re-export without the amount column (its rows repeat good ones)
    partial = ledger_sample.head(25).drop("amount")
    add(f"ledger/ledger_{month(2)}_partial.csv", "ledger", "FILE_MISSING_COLUMN", partial.write_csv().encode())
    # CSV whose names hold bytes that are neither UTF-8 nor GB18030 (0xFF, 0x80)
    rows = [",".join(schema.BUREAU_EVENTS.names).encode()]
    for i in range(5):
        rows.append(b"91440300MA5F" + f"{i:05d}".encode() + b"X,2022-03-0" + str(i + 1).encode()
                    + b",LAWSUIT,\xff\x80\xfe\x80 legacy export")
    add(f"bureau_events/events_{month(3)}_legacy.csv", "bureau_events", "FILE_UNDECODABLE", b"\n".join(rows) + b"\n")
    # binary junk with a .csv name (a scanned image exported by mistake): NUL bytes say binary
    junk = bytes(rng.integers(0, 256, 4096, dtype=np.uint8))
    add(f"ledger/ledger_{month(4)}_scan.csv", "ledger", "FILE_NOT_CSV", b"\x00\xff\xfe\x80" + junk)
    # a truncated Parquet file: magic bytes, no footer
    add(f"bureau/bureau_{month(5)}_truncated.parquet", "bureau", "FILE_NOT_CSV",
        b"PAR1" + bytes(rng.integers(0, 256, 512, dtype=np.uint8)))
    # a header naming a column twice (its rows repeat good fx rows)
    dup = fx_sample.head(10)
    text = "rate_date,currency,rate_to_base,currency\n" + "".join(
        f"{r[0]},{r[1]},{r[2]},{r[1]}\n" for r in dup.select(schema.FX_RATES.names).iter_rows()
    )
    add(f"fx_rates/fx_{month(6)}_dup.csv", "fx_rates", "FILE_DUPLICATE_COLUMN", text.encode())
    return out
