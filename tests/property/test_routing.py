"""Routing loses no row: every record of a landing file ends in bronze or quarantine, once.

Files are generated as bytes (good and bad values, malformed records, blank lines,
quoted commas/quotes/line breaks, free column order, UTF-8 with or without BOM or
GB18030, LF or CRLF), run through staging, row rules, cross-file rules and
``split_routed``, and compared with a plain-Python oracle of the contract rules.
"""

from __future__ import annotations

import csv
import io
import re
import tempfile
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from creditflow.core.schema import ENTRY_TYPES, LEDGER, LINE_NUMBER
from creditflow.validation import staging
from creditflow.validation.rules import apply_cross_file_rules, apply_row_rules, split_routed
from creditflow.validation.staging import read_landing_file

KNOWN_CUSTOMERS = {"C1", "C2"}
PRIOR = {"P1": ("C1", "INVOICE"), "P2": ("C1", "PAYMENT"), "P3": ("C2", "INVOICE")}

BAD = {
    "entry_id": ["", "P2", "DUP"],  # P2 was ingested before; DUP repeats the previous row's id
    "customer_id": ["", "C9"],  # C9 is not a known customer
    "entry_type": ["invoice", ""],
    "document_date": ["2023-02-29", "2024-13-01", "31.01.2024", "2024-01/31", ""],
    "due_date": ["", "2024-01-15", "2024-02-30", "2024-03-01"],
    "amount": ["0", "-5", "1.234", "abc", "", "12345678901234567"],
    "currency": ["cny", "", "CNY1"],
    "applies_to": ["", "X", "P2", "P3", "001"],
}
NOTE = st.text(alphabet=st.sampled_from(list('ab ,"\n中文')), max_size=6)


@st.composite
def good_row(draw, i: int) -> dict[str, str]:
    """Row ``i`` breaking no row rule (a cross-file rule may still apply when it
    refers to an invoice of this file, ``001``)."""
    # row 1 is mostly an invoice of C1, so that later rows can refer to it as "001"
    entry_type = draw(
        st.sampled_from(["INVOICE"] * 6 + list(ENTRY_TYPES) if i == 1 else ENTRY_TYPES)
    )
    customer = draw(st.sampled_from(["C1"] * 4 + ["C2"] if i == 1 else ["C1", " C1", "C2"]))
    own_invoice = "P1" if customer.strip() == "C1" else "P3"
    row = {
        "entry_id": draw(st.sampled_from([f"{i:03d}", f" E{i} "])),
        "customer_id": customer,
        "entry_type": entry_type,
        "document_date": draw(st.sampled_from(["2024-01-31", "2024/02/29"])),
        "due_date": "2024-03-01" if entry_type == "INVOICE" else "",
        "amount": draw(st.sampled_from(["12.50", "0.01", "7"])),
        "currency": draw(st.sampled_from(["CNY", "USD"])),
        "applies_to": ""
        if entry_type == "INVOICE"
        else draw(st.sampled_from([own_invoice, "001"])),
    }
    if entry_type == "PAYMENT":
        row["applies_to"] = draw(st.sampled_from(["", own_invoice, "001"]))
    return row


@st.composite
def ledger_files(draw):
    n = draw(st.integers(1, 16))
    rows = []
    for i in range(1, n + 1):
        kind = draw(st.sampled_from(["row"] * 7 + ["short", "long", "blank"]))
        values = draw(good_row(i))
        n_faults = draw(st.sampled_from([0, 0, 1, 1, 1, 2]))
        for col in draw(
            st.lists(st.sampled_from(list(BAD)), min_size=n_faults, max_size=n_faults, unique=True)
        ):
            values[col] = draw(st.sampled_from(BAD[col]))
        if values["entry_id"] == "DUP":
            values["entry_id"] = rows[-1][1]["entry_id"] if rows else ""
        rows.append((kind, values | {"note": draw(NOTE)}))
    columns = draw(st.permutations([*LEDGER.names, "note"]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "gb18030"]))
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    return rows, list(columns), encoding, eol


def render(rows, columns, encoding, eol) -> tuple[bytes, dict[int, tuple[str, dict]]]:
    """The file's bytes and, per record number, what was written there."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator=eol)
    writer.writerow(columns)
    expected, record = {}, 1
    for kind, values in rows:
        record += 1
        fields = [values[c] for c in columns]
        if kind == "blank":
            buf.write(eol)
            continue
        if kind == "short":
            fields = fields[:-2]
        elif kind == "long":
            fields = [*fields, "surplus"]
        writer.writerow(fields)
        expected[record] = (kind, values)
    return buf.getvalue().encode(encoding), expected


# ------------------------------------------------------------------------- the oracle

_DATE = re.compile(r"^(\d{4})[-/](\d{2})[-/](\d{2})$")


def _date(text: str) -> tuple[date | None, bool]:
    """(value, is_bad) for a stripped date text."""
    m = _DATE.match(text)
    if not text:
        return None, False
    if not m or text[4] != text[7]:
        return None, True
    try:
        return date(int(m[1]), int(m[2]), int(m[3])), False
    except ValueError:
        return None, True


def oracle(expected: dict[int, tuple[str, dict]]) -> dict[int, str | None]:
    """Expected reason_code per record number (None = accepted), by the documented order."""
    out: dict[int, list[str]] = {}
    parsed: dict[int, dict] = {}
    seen_ids: set[str] = set()
    for line, (kind, raw) in sorted(expected.items()):
        if kind != "row":
            out[line] = ["MALFORMED_ROW"]
            continue
        v = {c: raw[c].strip() for c in LEDGER.names}
        codes: list[str] = []
        required = [c.name for c in LEDGER.columns if c.required]
        codes += ["MISSING_REQUIRED" for c in required if not v[c]]
        entry_type = v["entry_type"] if v["entry_type"] in ENTRY_TYPES else None
        doc, doc_bad = _date(v["document_date"])
        due, due_bad = _date(v["due_date"])
        amount_ok = re.fullmatch(r"-?\d{1,16}(\.\d{1,2})?", v["amount"]) is not None
        amount = Decimal(v["amount"]) if amount_ok else None
        for col, bad in [
            ("BAD_ENUM", v["entry_type"] and entry_type is None),
            ("BAD_DATE", doc_bad),
            ("BAD_DATE", due_bad),
            ("BAD_DECIMAL", v["amount"] and not amount_ok),
            ("BAD_CURRENCY", v["currency"] and re.fullmatch(r"[A-Z]{3}", v["currency"]) is None),
        ]:
            if bad:
                codes.append(col)
        if amount is not None and amount <= 0:
            codes.append("OUT_OF_RANGE")
        if entry_type is not None and (entry_type == "INVOICE") != bool(v["due_date"]):
            codes.append("DUE_DATE_RULE")
        if doc is not None and due is not None and due < doc:
            codes.append("DUE_BEFORE_DOCUMENT")
        if (entry_type in ("CREDIT_NOTE", "WRITE_OFF") and not v["applies_to"]) or (
            entry_type == "INVOICE" and v["applies_to"]
        ):
            codes.append("APPLIES_TO_RULE")
        if v["entry_id"] and v["entry_id"] in seen_ids:
            codes.append("DUPLICATE_KEY")
        if v["entry_id"]:
            seen_ids.add(v["entry_id"])
        if v["entry_id"] in PRIOR:
            codes.append("DUPLICATE_ENTRY_ID")
        if v["customer_id"] and v["customer_id"] not in KNOWN_CUSTOMERS:
            codes.append("UNKNOWN_CUSTOMER")
        out[line] = codes
        parsed[line] = {**v, "entry_type": entry_type, "amount": amount, "document_date": doc}
    invoices = {(e, c) for e, (c, t) in PRIOR.items() if t == "INVOICE"}
    invoices |= {
        (p["entry_id"], p["customer_id"])
        for line, p in parsed.items()
        if p["entry_type"] == "INVOICE" and not out[line]
    }
    for line, p in parsed.items():
        if p["applies_to"] and (p["applies_to"], p["customer_id"] or None) not in invoices:
            out[line].append("UNKNOWN_INVOICE")
    return {line: (codes[0] if codes else None) for line, codes in out.items()}, parsed


def run_pipeline(path: Path):
    raw = read_landing_file(path, LEDGER)
    # as the flow calls it: the byte-proven shortcuts apply whenever the file allows them
    parsed = apply_row_rules(raw, LEDGER, trimmed=staging.values_are_trimmed(path),
                             slash_free=staging.values_are_slash_free(path))
    prior = pl.LazyFrame(
        {
            "entry_id": list(PRIOR),
            "customer_id": [c for c, _ in PRIOR.values()],
            "entry_type": [t for _, t in PRIOR.values()],
        }
    )
    known = pl.LazyFrame({"customer_id": sorted(KNOWN_CUSTOMERS)})
    crossed = apply_cross_file_rules(parsed, LEDGER, known_customer_ids=known, prior_ledger=prior)
    return raw, split_routed(
        crossed,
        LEDGER,
        family="ledger",
        source_file="ledger/p.csv",
        file_sha256="f" * 64,
        file_date=date(2024, 1, 31),
        ingested_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ledger_files())
def test_routing_loses_no_row_and_accepts_only_valid_rows(case):
    rows, columns, encoding, eol = case
    data, expected = render(rows, columns, encoding, eol)
    if not expected:
        return  # only blank lines: a whole-file reject, covered by the unit tests
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.csv"
        path.write_bytes(data)
        raw, (accepted, quarantine) = run_pipeline(path)

    # rows read = rows accepted + rows quarantined; every record exactly once
    assert raw.height == len(expected) == accepted.height + quarantine.height
    acc_lines = accepted.get_column(LINE_NUMBER).to_list()
    q_lines = quarantine.get_column(LINE_NUMBER).to_list()
    assert sorted(acc_lines + q_lines) == sorted(expected)
    assert len(set(acc_lines + q_lines)) == len(expected)

    want, parsed = oracle(expected)
    got = dict(zip(q_lines, quarantine.get_column("reason_code").to_list(), strict=True))
    got |= {line: None for line in acc_lines}
    assert got == want
    event(
        f"accepted {'some' if acc_lines else 'none'}; quarantined {'some' if q_lines else 'none'}"
    )

    # accepted rows hold the parsed values of what was written, extra column untouched
    for row in accepted.iter_rows(named=True):
        p = parsed[row[LINE_NUMBER]]
        assert (row["entry_id"], row["amount"], row["document_date"]) == (
            p["entry_id"],
            p["amount"],
            p["document_date"],
        )
        assert row["note"] == expected[row[LINE_NUMBER]][1]["note"]


@settings(max_examples=50, deadline=None)
@given(ledger_files())
def test_fast_reader_agrees_with_the_exact_reader(case):
    rows, columns, _, eol = case
    data, expected = render(rows, columns, "utf-8", eol)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.csv"
        path.write_bytes(data)
        fast = staging._read_csv_fast(path, columns)
        exact = staging._read_csv_python(path, columns)
    assert sorted(exact.get_column(LINE_NUMBER).to_list()) == sorted(expected)
    event("fast path" if fast is not None else "exact reader")
    if fast is not None:  # None: the fast path handed the file to the exact reader
        assert fast.select(exact.columns).equals(exact)
