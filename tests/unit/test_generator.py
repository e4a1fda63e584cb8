"""Demo data generator: determinism, the contract on clean rows, injected bad input, defaults, formats.

The landing files are read back the way ingest must read them (raw text, no
type inference) and checked by a small independent rule oracle written from
the contract, so the generator is not tested against its own code.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import math
import re
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from creditflow.core import schema
from creditflow.demo.generator import GenerationSummary, generate

SMALL = {"customers": 60, "months": 12}


# --------------------------------------------------------------------------- reading


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("gb18030")


def read_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and (line_number, {column: raw text}) of a landing file; null/empty is ''."""
    if path.suffix == ".parquet":
        df = pl.read_parquet(path)
        rows = [(i + 1, {k: ("" if v is None else v) for k, v in r.items()}) for i, r in enumerate(df.iter_rows(named=True))]
        return df.columns, rows
    reader = csv.reader(io.StringIO(_decode(path.read_bytes()), newline=""))
    header = next(reader)
    return header, [(i + 2, dict(zip(header, rec, strict=True))) for i, rec in enumerate(reader)]


def hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------------------- oracle

_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$|^(\d{4})/(\d{2})/(\d{2})$")
_DECIMAL = re.compile(r"^-?\d+(\.\d{1,2})?$")
_RATE = re.compile(r"^-?\d+(\.\d{1,8})?$")
_INT = re.compile(r"^-?\d+$")


@functools.cache
def parse_date(v: str) -> date | None:
    m = _DATE.match(v)
    if not m:
        return None
    y, mo, d = (int(x) for x in (m.groups()[:3] if m.group(1) else m.groups()[3:]))
    try:
        return date(y, mo, d)
    except ValueError:
        return None


def column_violations(table: schema.Table, row: dict[str, str]) -> set[str]:
    """Rules of single values (required, kind, allowed values, range), straight from the contract."""
    out: set[str] = set()
    for col in table.columns:
        v = row.get(col.name, "").strip()
        if v == "":
            if col.required:
                out.add("MISSING_REQUIRED")
            continue
        number = None
        if col.kind == "date" and parse_date(v) is None:
            out.add("BAD_DATE")
        elif col.kind == "decimal":
            if _DECIMAL.match(v):
                number = Decimal(v)
            else:
                out.add("BAD_DECIMAL")
        elif col.kind == "rate":
            if _RATE.match(v):
                number = Decimal(v)
            else:
                out.add("BAD_DECIMAL")
        elif col.kind == "int":
            if _INT.match(v):
                number = int(v)
            else:
                out.add("BAD_INTEGER")
        elif col.kind == "bool" and v.lower() not in {"true", "false", "1", "0"}:
            out.add("BAD_BOOLEAN")
        elif col.kind == "enum" and v not in col.allowed:
            out.add("BAD_ENUM")
        elif col.kind == "currency" and not re.fullmatch(r"[A-Z]{3}", v):
            out.add("BAD_CURRENCY")
        if number is not None:
            low = col.min_value is not None and (number <= col.min_value if col.min_exclusive else number < col.min_value)
            high = col.max_value is not None and number > col.max_value
            if low or high:
                out.add("OUT_OF_RANGE")
    return out


def contract_violations(root: Path, summary: GenerationSummary) -> dict[tuple[str, int], set[str]]:
    """Every broken rule of every data row, families in ingest order, files by name."""
    found: dict[tuple[str, int], set[str]] = {}
    master: set[str] = set()
    for rel in sorted(summary.files["customers"]):
        _, rows = read_rows(root / rel)
        seen: set[str] = set()
        for line, r in rows:
            v = column_violations(schema.CUSTOMERS, r)
            if r["customer_id"] in seen:
                v.add("DUPLICATE_KEY")
            seen.add(r["customer_id"])
            found[(rel, line)] = v
            if not v:
                master.add(r["customer_id"])
    for family, table in (("fx_rates", schema.FX_RATES), ("bureau", schema.BUREAU), ("bureau_events", schema.BUREAU_EVENTS)):
        for rel in sorted(summary.files[family]):
            _, rows = read_rows(root / rel)
            keys: set[tuple[str, ...]] = set()
            for line, r in rows:
                v = column_violations(table, r)
                if table.key and not v:
                    key = tuple(r[k] for k in table.key)
                    if key in keys:
                        v.add("DUPLICATE_KEY")
                    keys.add(key)
                found[(rel, line)] = v
    earlier_ids: set[str] = set()
    invoices: dict[str, str] = {}
    for rel in sorted(summary.files["ledger"]):
        _, rows = read_rows(root / rel)
        file_ids: set[str] = set()
        for line, r in rows:
            v = column_violations(schema.LEDGER, r)
            eid, cust, typ = r["entry_id"], r["customer_id"], r["entry_type"]
            if eid in earlier_ids:
                v.add("DUPLICATE_ENTRY_ID")
            elif eid in file_ids:
                v.add("DUPLICATE_KEY")
            if cust and cust not in master:
                v.add("UNKNOWN_CUSTOMER")
            due, doc, applies = r["due_date"].strip(), r["document_date"].strip(), r["applies_to"].strip()
            if typ in schema.ENTRY_TYPES:
                if (typ == "INVOICE") != bool(due):
                    v.add("DUE_DATE_RULE")
                if (typ == "INVOICE" and applies) or (typ in ("CREDIT_NOTE", "WRITE_OFF") and not applies):
                    v.add("APPLIES_TO_RULE")
                if typ != "INVOICE" and applies and invoices.get(applies) != cust:
                    v.add("UNKNOWN_INVOICE")
            if parse_date(due) and parse_date(doc) and parse_date(due) < parse_date(doc):
                v.add("DUE_BEFORE_DOCUMENT")
            found[(rel, line)] = v
            if not v:
                file_ids.add(eid)
                if typ == "INVOICE":
                    invoices[eid] = cust
        earlier_ids |= file_ids
    return found


def contract_default_dates(root: Path, summary: GenerationSummary) -> dict[str, date]:
    """Default date per customer by the contract's definition, computed from the landing files only."""
    entries = []
    for rel in summary.files["ledger"]:
        entries += [r for _, r in read_rows(root / rel)[1]]
    entries.sort(key=lambda r: (parse_date(r["document_date"]), r["entry_type"] != "INVOICE", r["entry_id"]))
    invoices: dict[str, dict] = {}
    by_customer: dict[str, list[str]] = defaultdict(list)
    default: dict[str, date] = {}
    for r in entries:
        d, c, cents = parse_date(r["document_date"]), r["customer_id"], int(Decimal(r["amount"]) * 100)
        if r["entry_type"] == "INVOICE":
            invoices[r["entry_id"]] = {"customer": c, "due": parse_date(r["due_date"]), "amount": cents, "open": cents, "cuts": []}
            by_customer[c].append(r["entry_id"])
            continue
        if r["entry_type"] == "WRITE_OFF":
            default[c] = min(default.get(c, d), d)
        targets = [r["applies_to"]] if r["applies_to"] else sorted(
            (i for i in by_customer[c] if invoices[i]["open"] > 0), key=lambda i: (invoices[i]["due"], i)
        )
        for i in targets:  # cash on account: oldest due date first
            take = cents if r["applies_to"] else min(cents, invoices[i]["open"])
            invoices[i]["open"] -= take
            invoices[i]["cuts"].append((d, take))
            cents -= take
        assert cents == 0, f"payment {r['entry_id']} exceeds the open invoices"
    for inv_id, inv in invoices.items():
        assert inv["open"] >= 0, f"invoice {inv_id} is over-settled"
        t = inv["due"] + timedelta(days=90)
        if inv["amount"] - sum(a for d, a in inv["cuts"] if d <= t) > 100_00:  # all CNY in this world's check
            c = inv["customer"]
            default[c] = min(default.get(c, t), t)
    reg_to_customer = {}
    for rel in summary.files["customers"]:
        for _, r in read_rows(root / rel)[1]:
            if r["registration_id"]:
                reg_to_customer[r["registration_id"]] = r["customer_id"]
    for rel in summary.files["bureau_events"]:
        for _, r in read_rows(root / rel)[1]:
            if r["event_type"] == "BANKRUPTCY_FILING" and r["registration_id"] in reg_to_customer:
                c, d = reg_to_customer[r["registration_id"]], parse_date(r["event_date"])
                default[c] = min(default.get(c, d), d)
    return default


# -------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[Path, GenerationSummary]:
    root = tmp_path_factory.mktemp("clean")
    return root, generate(root, **SMALL)


@pytest.fixture(scope="module")
def dirty(tmp_path_factory) -> tuple[Path, GenerationSummary]:
    root = tmp_path_factory.mktemp("dirty")
    return root, generate(root, **SMALL, bad_rows=0.05)


@pytest.fixture(scope="module")
def default_world(tmp_path_factory) -> tuple[Path, GenerationSummary]:
    """The default demo size (500 customers x 36 months, seed 7)."""
    root = tmp_path_factory.mktemp("default")
    return root, generate(root)


# ----------------------------------------------------------------------------- tests


def test_same_arguments_give_byte_identical_files(clean, dirty, tmp_path):
    root, _ = clean
    generate(tmp_path / "again", **SMALL)
    assert hashes(tmp_path / "again") == hashes(root)
    generate(tmp_path / "again_dirty", **SMALL, bad_rows=0.05)
    assert hashes(tmp_path / "again_dirty") == hashes(dirty[0])


def test_another_seed_gives_other_data(clean, tmp_path):
    root, _ = clean
    generate(tmp_path / "other", **SMALL, seed=8)
    a, b = hashes(root), hashes(tmp_path / "other")
    assert a.keys() == b.keys()
    ledger = [k for k in a if k.startswith("ledger/")]
    assert all(a[k] != b[k] for k in ledger)


def test_files_follow_the_landing_layout(clean):
    root, s = clean
    assert s.files["customers"] == ("customers/customers_2022-01-01.csv", "customers/customers_2022-07-01.csv")
    assert s.files["ledger"] == tuple(f"ledger/ledger_2022-{m:02d}.csv" for m in range(1, 13))
    assert len(s.files["bureau"]) == len(s.files["bureau_events"]) == len(s.files["fx_rates"]) == 12
    on_disk = {p.relative_to(root).as_posix() for f in s.files for p in (root / f).iterdir()}
    assert on_disk == {f for files in s.files.values() for f in files}
    for rel, n in s.rows_by_file.items():
        assert len(read_rows(root / rel)[1]) == n, rel
    for family, files in s.files.items():
        table = schema.INPUT_FAMILIES[family]
        for rel in files:
            header = read_rows(root / rel)[0]
            assert set(table.names) <= set(header), rel


def test_clean_rows_keep_every_contract_rule(clean):
    root, s = clean
    broken = {k: v for k, v in contract_violations(root, s).items() if v}
    assert broken == {}


def test_clean_ledger_rules_spelled_out(clean):
    root, s = clean
    ledger = pl.DataFrame([r for rel in s.files["ledger"] for _, r in read_rows(root / rel)[1]])
    customers = {r["customer_id"] for rel in s.files["customers"] for _, r in read_rows(root / rel)[1]}
    assert ledger.height == sum(s.ledger_entries_by_type.values()) > 1000
    assert ledger["entry_id"].n_unique() == ledger.height
    assert set(ledger["customer_id"]) <= customers
    assert set(ledger["entry_type"]) == {"INVOICE", "PAYMENT", "CREDIT_NOTE"} | (
        {"WRITE_OFF"} if s.ledger_entries_by_type["WRITE_OFF"] else set()
    )
    invoices = ledger.filter(pl.col("entry_type") == "INVOICE").select(
        applies_to="entry_id", invoice_customer="customer_id"
    )
    applied = ledger.filter(pl.col("applies_to") != "").join(invoices, on="applies_to", how="left")
    assert applied["invoice_customer"].null_count() == 0
    assert (applied["invoice_customer"] == applied["customer_id"]).all()
    inv = ledger.filter(pl.col("entry_type") == "INVOICE")
    assert all(parse_date(d) >= parse_date(o) for d, o in zip(inv["due_date"], inv["document_date"], strict=True))
    assert all(re.fullmatch(r"\d+\.\d{2}", a) and Decimal(a) > 0 for a in ledger["amount"])
    assert ledger.filter(pl.col("entry_type") == "PAYMENT", pl.col("applies_to") == "").height > 0  # cash on account


def test_no_bad_input_without_bad_rows(clean):
    root, s = clean
    assert s.bad_rows_by_file == {} and s.bad_rows_by_reason == {} and s.bad_files == ()
    assert pl.read_parquet(root / "generator_truth" / "bad_rows.parquet").height == 0


def test_injected_rows_are_exactly_the_rows_breaking_a_rule(dirty):
    root, s = dirty
    recorded = pl.read_parquet(root / "generator_truth" / "bad_rows.parquet")
    expected = {(f, line): {code} for f, line, code in recorded.select("source_file", "line_number", "reason_code").iter_rows()}
    broken = {k: v for k, v in contract_violations(root, s).items() if v}
    assert broken == expected  # each bad row breaks exactly its one recorded rule; good rows none
    assert len(expected) == recorded.height == s.bad_rows_total


def test_bad_row_counts_are_consistent(dirty, clean):
    root, s = dirty
    _, c = clean
    recorded = pl.read_parquet(root / "generator_truth" / "bad_rows.parquet")
    per_file = recorded.group_by("source_file").len()
    assert dict(per_file.iter_rows()) == {f: sum(v.values()) for f, v in s.bad_rows_by_file.items()}
    per_reason = recorded.group_by("reason_code").len()
    assert dict(per_reason.iter_rows()) == s.bad_rows_by_reason
    assert set(s.bad_rows_by_reason) <= set(schema.REASON_CODES)
    for rel, n in c.rows_by_file.items():  # bad rows come on top of the same good rows
        assert s.rows_by_file[rel] == n + sum(s.bad_rows_by_file.get(rel, {}).values())
    total_good = sum(c.rows_by_file[f] for f in c.files["ledger"])
    assert 0.03 < sum(sum(s.bad_rows_by_file.get(f, {}).values()) for f in s.files["ledger"]) / total_good < 0.07
    must = {"MISSING_REQUIRED", "BAD_DATE", "BAD_DECIMAL", "OUT_OF_RANGE", "BAD_ENUM", "DUE_BEFORE_DOCUMENT",
            "DUPLICATE_ENTRY_ID", "UNKNOWN_CUSTOMER", "UNKNOWN_INVOICE"}
    assert must <= set(s.bad_rows_by_reason)


def test_good_rows_do_not_depend_on_bad_rows(clean, dirty):
    (croot, c), (droot, _) = clean, dirty
    bad_lines = defaultdict(set)
    for f, line in pl.read_parquet(droot / "generator_truth" / "bad_rows.parquet").select("source_file", "line_number").iter_rows():
        bad_lines[f].add(line)
    for rel in c.rows_by_file:
        clean_rows = [r for _, r in read_rows(croot / rel)[1]]
        kept = [r for line, r in read_rows(droot / rel)[1] if line not in bad_lines[rel]]
        assert kept == clean_rows, rel


def test_bad_files_are_extra_and_unreadable_as_recorded(dirty):
    root, s = dirty
    reasons = {b["file"]: b["reason_code"] for b in s.bad_files}
    assert sorted(set(reasons.values())) == [
        "FILE_DUPLICATE_COLUMN", "FILE_EMPTY", "FILE_MISSING_COLUMN", "FILE_NOT_CSV", "FILE_UNDECODABLE",
    ]
    regular = {f for files in s.files.values() for f in files}
    assert not set(reasons) & regular
    for rel, reason in reasons.items():
        raw = (root / rel).read_bytes()
        if reason == "FILE_UNDECODABLE":
            for enc in ("utf-8", "gb18030", "gbk"):
                with pytest.raises(UnicodeDecodeError):
                    raw.decode(enc)
        elif reason == "FILE_EMPTY":
            assert raw == b"" or raw.decode().strip().count("\n") == 0
        elif reason == "FILE_MISSING_COLUMN":
            header = raw.decode().splitlines()[0].split(",")
            assert "amount" not in header and set(header) < set(schema.LEDGER.names)
        elif reason == "FILE_DUPLICATE_COLUMN":
            header = raw.decode().splitlines()[0].split(",")
            assert len(header) > len(set(header))
        elif reason == "FILE_NOT_CSV":
            with pytest.raises(Exception):  # noqa: B017 - any reader error will do
                pl.read_parquet(root / rel)


def test_exported_formats_cover_the_contract(clean):
    root, s = clean
    formats = s.file_formats
    gb = [f for f, d in formats.items() if d.startswith("gb18030")]
    assert gb and all(f.startswith("customers/") for f in gb)
    raw = (root / gb[0]).read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    text = raw.decode("gb18030")
    assert re.search(r"[\u4e00-\u9fff]{4}", text) and "\r\n" in text
    bom = [f for f, d in formats.items() if d.startswith("utf-8-sig")]
    assert bom and all((root / f).read_bytes().startswith(b"\xef\xbb\xbf") for f in bom)
    assert any(b"\r\n" in (root / f).read_bytes() for f, d in formats.items() if "crlf" in d)
    slash = [f for f, d in formats.items() if "slash-dates" in d and f.startswith("ledger/")]
    assert slash and all(r["document_date"][4] == "/" for _, r in read_rows(root / slash[0])[1])
    parquet = [f for f in formats if f.endswith(".parquet")]
    assert parquet and all(dt == pl.String for dt in pl.read_parquet(root / parquet[0]).schema.values())
    extra = [f for f, d in formats.items() if "extra:" in d]
    assert {f.split("/")[0] for f in extra} >= {"ledger", "bureau", "fx_rates"}
    names = [r["customer_name"] for f in s.files["customers"] for _, r in read_rows(root / f)[1]]
    assert any("\n" in n for n in names) and any("," in n or '"' in n for n in names)


def test_identifiers_keep_leading_zeros(clean):
    root, s = clean
    customers = [r for f in s.files["customers"] for _, r in read_rows(root / f)[1]]
    assert all(re.fullmatch(r"C\d{6}", r["customer_id"]) for r in customers)
    regs = {r["registration_id"] for r in customers if r["registration_id"]}
    assert any(x.startswith("0") for x in regs)
    assert sum(len(x) == 18 for x in regs) > 0.8 * len(regs)
    payments = [r["entry_id"] for _, r in read_rows(root / s.files["ledger"][3])[1] if r["entry_type"] == "PAYMENT"]
    assert payments and all(re.fullmatch(r"0\d{11}", p) for p in payments)
    currencies = {r["currency"] for r in customers}
    assert currencies == {"CNY", "USD", "EUR"}


def test_bureau_history_fields_only_count_earlier_events(default_world):
    """lawsuits_12m / tax_arrears of a report count events of the 12 / 6 months before its month."""
    root, s = default_world
    events = pl.concat([pl.DataFrame([r for _, r in read_rows(root / f)[1]], schema=schema.BUREAU_EVENTS.names)
                        for f in s.files["bureau_events"] if read_rows(root / f)[1]])
    events = events.with_columns(month=pl.col("event_date").str.replace_all("/", "-").str.to_date().dt.truncate("1mo"))
    checked = 0
    for rel in s.files["bureau"][12:15]:
        for _, r in read_rows(root / rel)[1][:300]:
            month = parse_date(r["report_date"]).replace(day=1)
            mine = events.filter(pl.col("registration_id") == r["registration_id"], pl.col("month") < month)
            year_ago = date(month.year - 1, month.month, 1)
            half_ago = date(month.year - (month.month <= 6), (month.month - 7) % 12 + 1, 1)
            lawsuits = mine.filter(pl.col("event_type") == "LAWSUIT", pl.col("month") >= year_ago).height
            tax = mine.filter(pl.col("event_type") == "TAX_ARREARS", pl.col("month") >= half_ago).height > 0
            assert int(r["lawsuits_12m"]) == lawsuits
            assert (r["tax_arrears"] in ("true", "1")) == tax
            checked += 1
    assert checked > 500


def test_defaults_are_frequent_enough_and_follow_latent_risk(default_world):
    root, s = default_world
    assert s.defaults >= 40
    assert 0.02 <= s.annual_default_rate <= 0.06
    truth = pl.read_parquet(root / "generator_truth" / "customers.parquet").filter(
        pl.col("latent_logit_start").is_not_null()
    )
    median = truth["latent_logit_start"].median()
    riskier = truth.filter(pl.col("latent_logit_start") > median)["default_month"].is_not_null().sum()
    safer = truth.filter(pl.col("latent_logit_start") <= median)["default_month"].is_not_null().sum()
    # Monthly hazard ~ exp(logit) and the logit's spread is ~1, so the riskier half should default
    # several times as often (~5x at the start, diluted by the random walk). Under "no relation"
    # the split of the defaults is Binomial(n, 1/2): require a one-sided p-value below 0.1%.
    n = riskier + safer
    p_value = sum(math.comb(n, k) for k in range(riskier, n + 1)) / 2**n
    assert riskier >= 2 * safer and p_value < 0.001


def test_default_dates_match_the_contract_definition(default_world):
    """The generator's expected default dates equal those computed from the files by the contract rules."""
    root, s = default_world
    end = date.fromisoformat(s.parameters["end"])
    truth = pl.read_parquet(root / "generator_truth" / "customers.parquet")
    expected = {c: d for c, d in truth.select("customer_id", "expected_default_date").iter_rows() if d and d < end}
    computed = {c: d for c, d in contract_default_dates(root, s).items() if d < end}
    assert len(expected) >= 25
    assert computed == expected
    triggered = truth.filter(pl.col("default_trigger_date").is_not_null())
    assert (triggered["expected_default_date"] > triggered["default_trigger_date"]).all()
    with_wo = triggered.filter(pl.col("write_off_date").is_not_null())
    assert with_wo.height > 0 and (with_wo["write_off_date"] > with_wo["default_trigger_date"]).all()


def test_truth_files_describe_the_world(clean):
    root, s = clean
    doc = json.loads((root / "generator_truth.json").read_text(encoding="utf-8"))
    assert GenerationSummary.from_dict(doc["summary"]) == s
    truth = pl.read_parquet(root / "generator_truth" / "customers.parquet")
    assert truth.height == s.customers == 60 and truth["customer_id"].n_unique() == 60
    assert truth["default_month"].is_not_null().sum() == s.defaults
    panel = pl.read_parquet(root / "generator_truth" / "monthly_risk.parquet")
    assert panel["month"].n_unique() == 12 and panel["distress_hazard"].is_between(0, 1).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"customers": 0}, "customers must be an integer 1..999999; got 0"),
        ({"months": 0}, "months must be an integer 1..600; got 0"),
        ({"bad_rows": 0.9}, "bad_rows must be a rate in 0..0.5; got 0.9"),
        ({"start": date(2022, 1, 15)}, "start must be the first day of a month"),
        ({"base_currency": "XYZ"}, "base_currency must be one of"),
        ({"seed": -1}, "seed must be a non-negative integer; got -1"),
    ],
)
def test_arguments_are_checked(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        generate(tmp_path, **kwargs)


def test_refuses_to_mix_with_existing_output_unless_overwrite(tmp_path):
    generate(tmp_path, customers=5, months=2)
    with pytest.raises(FileExistsError, match="already holds generated data"):
        generate(tmp_path, customers=5, months=2)
    (tmp_path / "keep.txt").write_text("mine")
    s = generate(tmp_path, customers=5, months=1, overwrite=True)
    assert s.files["ledger"] == ("ledger/ledger_2022-01.csv",)
    assert not (tmp_path / "ledger" / "ledger_2022-02.csv").exists()
    assert (tmp_path / "keep.txt").read_text() == "mine"
