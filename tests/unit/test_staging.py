"""Staging: reading landing files as text, and whole-file rejects."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from creditflow.core.schema import CUSTOMERS, LEDGER, LINE_NUMBER, QUARANTINE
from creditflow.validation import staging
from creditflow.validation.rules import MALFORMED, RAW_RECORD
from creditflow.validation.staging import (
    FileRejected,
    file_date_from_name,
    file_rejection_record,
    file_sha256,
    read_landing_file,
)

HEADER = "entry_id,customer_id,entry_type,document_date,due_date,amount,currency,applies_to"
ROW1 = "007,C01,INVOICE,2024-01-31,2024-02-29,10.50,CNY,"
ROW2 = "008,C01,PAYMENT,2024/02/05,,10.50,CNY,007"


def write(tmp_path: Path, data: bytes, name: str = "ledger_2024-01-31.csv") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def csv_bytes(*lines: str, eol: str = "\n", encoding: str = "utf-8") -> bytes:
    return (eol.join(lines) + eol).encode(encoding)


def rejected(path: Path, table=LEDGER) -> FileRejected:
    with pytest.raises(FileRejected) as info:
        read_landing_file(path, table)
    return info.value


# ----------------------------------------------------------------------------- reading


def test_reads_every_column_as_text_and_keeps_leading_zeros(tmp_path):
    df = read_landing_file(write(tmp_path, csv_bytes(HEADER, ROW1, ROW2)), LEDGER)
    assert df.columns == [*LEDGER.names, LINE_NUMBER]
    assert all(df.schema[c] == pl.String for c in LEDGER.names)
    assert df.schema[LINE_NUMBER] == pl.Int64
    assert df.get_column("entry_id").to_list() == ["007", "008"]
    assert df.get_column(LINE_NUMBER).to_list() == [2, 3]
    # empty stays an empty string here; apply_row_rules turns it into null
    assert df.get_column("due_date").to_list() == ["2024-02-29", ""]


def test_utf8_bom_and_crlf(tmp_path):
    data = b"\xef\xbb\xbf" + csv_bytes(HEADER, ROW1, ROW2, eol="\r\n")
    df = read_landing_file(write(tmp_path, data), LEDGER)
    assert df.columns[0] == "entry_id"
    assert df.get_column("applies_to").to_list() == ["", "007"]  # no stray \r
    assert df.get_column(LINE_NUMBER).to_list() == [2, 3]


def test_gb18030_with_chinese_text(tmp_path):
    data = csv_bytes(HEADER + ",备注", ROW1 + ",中文备注：货款", ROW2 + ",付款", encoding="gb18030")
    df = read_landing_file(write(tmp_path, data), LEDGER)
    assert df.get_column("备注").to_list() == ["中文备注：货款", "付款"]


def test_gb18030_with_an_ascii_start_is_detected_after_the_sniffed_prefix(tmp_path, monkeypatch):
    monkeypatch.setattr(staging, "_PREFIX_BYTES", 200)  # the sniffed prefix sees only ASCII
    rows = [ROW1.replace("007", f"{i:03d}") + ",x" for i in range(10)]
    data = csv_bytes(HEADER + ",note", *rows, ROW2 + ",客户名称", encoding="gb18030")
    assert data[:200].isascii()
    df = read_landing_file(write(tmp_path, data), LEDGER)
    assert df.height == 11
    assert df.get_column("note").to_list()[-1] == "客户名称"


def test_quoted_comma_quote_and_newline_keep_record_numbers(tmp_path):
    data = csv_bytes(
        HEADER + ",note",
        ROW1 + ',"a, b"',
        ROW2 + ',"line one\nline two"',
        ROW1.replace("007", "009") + ',"say ""hi"""',
    )
    df = read_landing_file(write(tmp_path, data), LEDGER)
    assert df.get_column("note").to_list() == ["a, b", "line one\nline two", 'say "hi"']
    # record numbers: the record after the two-line record is record 4, on physical line 5
    assert df.get_column(LINE_NUMBER).to_list() == [2, 3, 4]
    assert RAW_RECORD not in df.columns


def test_column_order_is_free_and_extra_columns_are_kept(tmp_path):
    cols = HEADER.split(",")
    reordered = ",".join(["region_note", *reversed(cols)])
    row = ",".join(["north", *reversed(ROW1.split(","))])
    df = read_landing_file(write(tmp_path, csv_bytes(reordered, row)), LEDGER)
    assert df.columns == [*LEDGER.names, "region_note", LINE_NUMBER]
    assert df.row(0, named=True)["entry_id"] == "007"
    assert df.row(0, named=True)["region_note"] == "north"


def test_header_names_are_stripped_and_empty_names_numbered(tmp_path):
    header = " entry_id ,customer_id,entry_type,document_date,due_date,amount,currency,applies_to,"
    df = read_landing_file(write(tmp_path, csv_bytes(header, ROW1 + ",x")), LEDGER)
    assert df.columns == [*LEDGER.names, "unnamed_9", LINE_NUMBER]


def test_optional_contract_column_may_be_absent(tmp_path):
    header = "entry_id,customer_id,entry_type,document_date,amount,currency"
    df = read_landing_file(
        write(tmp_path, csv_bytes(header, "E1,C1,PAYMENT,2024-01-01,5,CNY")), LEDGER
    )
    assert "due_date" not in df.columns and "applies_to" not in df.columns


def test_blank_lines_are_not_rows_but_count_in_numbering(tmp_path):
    df = read_landing_file(write(tmp_path, csv_bytes(HEADER, ROW1, "", ROW2, "")), LEDGER)
    assert df.get_column(LINE_NUMBER).to_list() == [2, 4]


@pytest.mark.parametrize("quoted_newline", [False, True], ids=["fast-path", "python-path"])
def test_short_and_long_rows_are_marked_malformed_never_padded(tmp_path, quoted_newline):
    note = '"two\nlines"' if quoted_newline else "plain"
    short = "009,C01,INVOICE,2024-01-31,2024-02-29,10.50,CNY"  # 7 fields
    long = "010,C01,INVOICE,2024-01-31,2024-02-29,10.50,CNY,,x,y"  # 10 fields
    data = csv_bytes(HEADER + ",note", ROW1 + "," + note, short, long, ROW2 + ",z")
    df = read_landing_file(write(tmp_path, data), LEDGER)
    # record numbers, whether or not the first record spans two lines
    assert df.get_column(LINE_NUMBER).to_list() == [2, 3, 4, 5]
    assert df.get_column(RAW_RECORD).to_list() == [None, short, long, None]
    assert df.get_column(MALFORMED).to_list() == [
        None,
        "row has 7 field(s); the header has 9",
        "row has 10 field(s); the header has 9",
        None,
    ]
    assert df.get_column("entry_id").to_list() == ["007", None, None, "008"]


def test_quote_inside_an_unquoted_field_is_a_literal_character(tmp_path):
    # ` "x,y" ` does not open a quoted field (the quote is not the field's first
    # character), so the row has 9 fields, not 8; a"b is a literal quote.
    data = csv_bytes(HEADER, ROW1 + ' "x,y" ', ROW2.replace("007", 'a"b'))
    df = read_landing_file(write(tmp_path, data), LEDGER)
    assert df.get_column(MALFORMED).to_list() == ["row has 9 field(s); the header has 8", None]
    assert df.get_column("applies_to").to_list() == [None, 'a"b']


def test_fast_and_exact_readers_agree(tmp_path):
    data = csv_bytes(HEADER + ",note", ROW1 + ',"a,""b"""', "", "1,2", ROW2 + ",", ROW2 + ",,extra")
    path = write(tmp_path, data)
    names = [*HEADER.split(","), "note"]
    fast = staging._read_csv_fast(path, names)
    exact = staging._read_csv_python(path, names)
    assert fast is not None
    assert fast.select(exact.columns).equals(exact)
    assert exact.get_column(LINE_NUMBER).to_list() == [2, 4, 5, 6]


# ------------------------------------------------------------------------------ Parquet


def test_parquet_values_are_read_through_their_text_form(tmp_path):
    frame = pl.DataFrame(
        {
            "payment_terms_days": [30, 60],
            "customer_id": ["0001", "0002"],
            "customer_name": ["A", "B"],
            "onboarding_date": [date(2024, 1, 31), date(2023, 5, 1)],
            "credit_limit": pl.Series(
                [Decimal("1000.50"), Decimal("0.00")], dtype=pl.Decimal(18, 2)
            ),
            "currency": ["CNY", "USD"],
            "crm_flag": [True, False],
        }
    )
    path = tmp_path / "customers_2024-01-31.parquet"
    frame.write_parquet(path)
    df = read_landing_file(path, CUSTOMERS)
    assert df.columns == [
        "customer_id",
        "customer_name",
        "onboarding_date",
        "credit_limit",
        "payment_terms_days",
        "currency",
        "crm_flag",
        LINE_NUMBER,
    ]
    assert df.row(0) == ("0001", "A", "2024-01-31", "1000.50", "30", "CNY", "true", 1)
    assert df.get_column(LINE_NUMBER).to_list() == [1, 2]


def test_parquet_without_rows_is_zero_rows(tmp_path):
    path = tmp_path / "customers.parquet"
    pl.DataFrame(schema={c: pl.String for c in CUSTOMERS.names}).write_parquet(path)
    df = read_landing_file(path, CUSTOMERS)
    assert df.height == 0
    assert set(CUSTOMERS.names) <= set(df.columns)


def test_damaged_parquet_is_not_csv(tmp_path):
    err = rejected(write(tmp_path, b"PAR1" + b"\x01\x02garbage" * 10, "ledger.parquet"))
    assert err.reason_code == "FILE_NOT_CSV"
    assert "Parquet" in err.message


def test_parquet_missing_required_column(tmp_path):
    path = tmp_path / "customers.parquet"
    pl.DataFrame({"customer_id": ["1"]}).write_parquet(path)
    err = rejected(path, CUSTOMERS)
    assert err.reason_code == "FILE_MISSING_COLUMN"
    assert "customer_name" in err.message


# ------------------------------------------------------------------- whole-file rejects


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "0 bytes"),
        (b"\n\n  \r\n", "only blank lines"),
    ],
    ids=["zero-bytes", "blank-lines"],
)
def test_file_empty(tmp_path, data, says):
    err = rejected(write(tmp_path, data))
    assert err.reason_code == "FILE_EMPTY"
    assert says in err.message


@pytest.mark.parametrize("data", [csv_bytes(HEADER), csv_bytes(HEADER, "", "")], ids=["header", "header-blanks"])
def test_header_only_file_is_read_as_zero_rows(tmp_path, data):
    # A month without bureau alerts is a real export: zero rows, not a broken file.
    df = read_landing_file(write(tmp_path, data), LEDGER)
    assert df.height == 0
    assert set(LEDGER.required) <= set(df.columns)


def test_undecodable_bytes(tmp_path):
    err = rejected(write(tmp_path, csv_bytes(HEADER) + b"\xff\xfe\xfa,\x80\n"))
    assert err.reason_code == "FILE_UNDECODABLE"
    assert "neither UTF-8" in err.message and "line 2" in err.message


def test_utf16_is_undecodable(tmp_path):
    err = rejected(write(tmp_path, csv_bytes(HEADER, ROW1, encoding="utf-16")))
    assert err.reason_code == "FILE_UNDECODABLE"
    assert "UTF-16" in err.message


def test_corrupt_utf8_is_not_guessed_as_gb18030(tmp_path):
    data = csv_bytes(HEADER + ",note", ROW1 + ",中文") + b"\xff\n"
    err = rejected(write(tmp_path, data))
    assert err.reason_code == "FILE_UNDECODABLE"
    assert "starts as UTF-8" in err.message


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"PK\x03\x04" + b"\x00" * 40, "ZIP"),
        (b"entry_id\x00,customer_id\n", "NUL"),
        (csv_bytes(HEADER, ROW1 + '"unclosed', ROW2), "line 2"),
        (csv_bytes(HEADER, ROW1 + '"x"y'), "line 2"),
    ],
    ids=["zip", "nul-bytes", "unclosed-quote", "text-after-closing-quote"],
)
def test_file_not_csv(tmp_path, data, says):
    err = rejected(write(tmp_path, data))
    assert err.reason_code == "FILE_NOT_CSV"
    assert says in err.message


def test_missing_column_names_missing_and_found(tmp_path):
    header = "entry_id,customer_id,entry_type,document_date,due_date,currency"
    err = rejected(write(tmp_path, csv_bytes(header, "1,2,3,4,5,6")))
    assert err.reason_code == "FILE_MISSING_COLUMN"
    assert "missing required ledger column(s): amount;" in err.message
    assert (
        "the header has 6 column(s): entry_id, customer_id, entry_type, document_date, due_date, currency"
        in err.message
    )


def test_missing_column_hints_at_separator_and_case(tmp_path):
    err = rejected(write(tmp_path, csv_bytes(HEADER.replace(",", ";"), ROW1.replace(",", ";"))))
    assert "comma separated" in err.message
    err = rejected(write(tmp_path, csv_bytes(HEADER.replace("amount", "Amount"), ROW1)))
    assert "'Amount' differs from 'amount' only in case" in err.message


def test_duplicate_column_after_stripping(tmp_path):
    err = rejected(write(tmp_path, csv_bytes(HEADER + ", amount ", ROW1 + ",1")))
    assert err.reason_code == "FILE_DUPLICATE_COLUMN"
    assert "'amount' at positions 6, 9" in err.message


def test_extra_column_clashing_with_lineage_is_rejected(tmp_path):
    err = rejected(write(tmp_path, csv_bytes(HEADER + ",line_number", ROW1 + ",7")))
    assert err.reason_code == "FILE_DUPLICATE_COLUMN"
    assert "line_number" in err.message


def test_rejection_keeps_a_preview_of_the_file(tmp_path):
    err = rejected(write(tmp_path, csv_bytes("foo,bar", "1,2")))
    assert err.preview.startswith("foo,bar\n1,2")


# ------------------------------------------------------------------------- file facts


def test_file_sha256(tmp_path):
    path = write(tmp_path, b"abc")
    assert file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ledger_2024-03-15.csv", date(2024, 3, 15)),
        ("ledger_2024_03_15.csv", date(2024, 3, 15)),
        ("export20240315_v2.csv", date(2024, 3, 15)),
        ("landing/ledger/2023-01-01/ledger_2024-02.csv", date(2024, 2, 29)),
        ("ledger_2024_11.parquet", date(2024, 11, 30)),
        ("ledger_20241301_2024-05-06.csv", date(2024, 5, 6)),
        ("ledger_123456789.csv", None),
        ("ledger.csv", None),
    ],
)
def test_file_date_from_name(name, expected):
    assert file_date_from_name(name) == expected


def test_file_rejection_record(tmp_path):
    err = FileRejected(
        "FILE_MISSING_COLUMN", "missing required ledger column(s): amount", preview="a,b\n1,2"
    )
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    rec = file_rejection_record(
        err, family="ledger", source_file="ledger/x.csv", file_sha256="ab" * 32, ingested_at=at
    )
    assert rec.schema == QUARANTINE.polars_schema
    row = rec.row(0, named=True)
    assert row[LINE_NUMBER] is None
    assert row["reason_code"] == "FILE_MISSING_COLUMN"
    assert row["reason_detail"] == "missing required ledger column(s): amount"
    assert json.loads(row["raw_values"]) == {"file_start": "a,b\n1,2"}


def test_file_rejected_accepts_only_file_codes():
    with pytest.raises(ValueError, match="FILE_"):
        FileRejected("BAD_DATE", "not a file-level code")


def test_missing_file_is_an_error_not_a_reject(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_landing_file(tmp_path / "nope.csv", LEDGER)


# ------------------------------------------------------------- trimmed-values check


@pytest.mark.parametrize(
    ("row", "trimmed"),
    [
        (ROW1, True),
        (ROW1.replace("C01", " C01"), False),  # a space
        (ROW1.replace("C01", "C01\t"), False),  # a tab
        (ROW1.replace("C01", '"C01"'), False),  # a quote: line breaks may sit inside fields
        (ROW1.replace("C01", "C01\u3000"), False),  # an ideographic space (non-ASCII)
        (ROW1.replace("C01", "客户"), False),  # any non-ASCII byte: conservative
    ],
)
def test_values_are_trimmed_from_the_bytes(tmp_path, row, trimmed):
    assert staging.values_are_trimmed(write(tmp_path, csv_bytes(HEADER, row))) is trimmed


def test_values_are_slash_free_from_the_bytes(tmp_path):
    assert staging.values_are_slash_free(write(tmp_path, csv_bytes(HEADER, ROW1), name="a.csv"))
    assert not staging.values_are_slash_free(write(tmp_path, csv_bytes(HEADER, ROW1, ROW2), name="b.csv"))
    assert not staging.values_are_slash_free(write(tmp_path, b"", name="empty.csv"))
    pq_path = tmp_path / "c.parquet"
    pl.DataFrame({"entry_id": ["1"]}).write_parquet(pq_path)
    assert not staging.values_are_slash_free(pq_path)


def test_values_are_trimmed_is_false_for_crlf_parquet_and_empty(tmp_path):
    assert not staging.values_are_trimmed(write(tmp_path, csv_bytes(HEADER, ROW1, eol="\r\n")))
    assert not staging.values_are_trimmed(write(tmp_path, b"", name="empty.csv"))
    pq_path = tmp_path / "ledger.parquet"
    pl.DataFrame({"entry_id": ["1"]}).write_parquet(pq_path)
    assert not staging.values_are_trimmed(pq_path)


def test_quote_free_file_still_counts_fields_per_line(tmp_path):
    # no quote in the file: the cheap line scan must still catch short and long rows
    path = write(tmp_path, csv_bytes(HEADER, ROW1, "009,C01,PAYMENT", ROW2 + ",x"))
    df = read_landing_file(path, LEDGER)
    assert df.get_column(MALFORMED).to_list() == [
        None, "row has 3 field(s); the header has 8", "row has 9 field(s); the header has 8"]
    assert df.get_column(LINE_NUMBER).to_list() == [2, 3, 4]


SHORT = "009,C01,PAYMENT,2024-02-01,,1.00,CNY"  # 7 fields
LONG = ROW2 + ",x"  # 9 fields


@pytest.mark.parametrize(
    ("lines", "eol", "final_eol", "plain"),
    [
        ([ROW1, ROW2], "\n", True, True),
        ([ROW1, ROW2], "\r\n", True, True),
        ([ROW1, ROW2], "\n", False, True),
        ([], "\n", True, True),
        ([ROW1, "", ROW2], "\n", True, False),  # a blank line: no commas on it
        ([ROW1, ROW2, ""], "\r\n", True, False),
        ([ROW1, SHORT, ROW2], "\n", True, False),
        ([ROW1, LONG, ROW2], "\n", True, False),
        ([SHORT, LONG], "\n", True, False),  # one comma short, one too many: Polars refuses the long one
        ([ROW1 + "\r" + ROW2], "\n", True, False),  # a lone CR inside a line
        ([SHORT, ROW2 + ","], "\n", False, False),  # Polars lets an unterminated last line have one more
    ],
    ids=["lf", "crlf", "no-final-eol", "header-only", "blank", "blank-crlf", "short", "long",
         "short-and-long", "lone-cr", "short-and-unterminated-long-last"],
)
def test_plain_read_only_when_the_bytes_prove_one_record_per_line(tmp_path, lines, eol, final_eol, plain):
    data = eol.join([HEADER, *lines]) + (eol if final_eol else "")
    path = write(tmp_path, data.encode())
    names = HEADER.split(",")
    fast = staging._read_csv_plain(path, names, staging._byte_facts(path))
    assert (fast is not None) is plain
    if plain:
        exact = staging._read_csv_python(path, names)
        assert fast.select(exact.columns).equals(exact)
        read = read_landing_file(path, LEDGER)
        assert read.equals(fast.select(read.columns))
        assert fast.get_column(LINE_NUMBER).to_list() == list(range(2, 2 + len(lines)))


@pytest.mark.parametrize(
    "data",
    [
        b"a,b,c\n1,2\n3,4,5,",  # a short line balanced by an unterminated last line with an extra field
        b"a,b\n\r\n1,2,",
        b"a,b\n1\n1,2,",
        b"a,b,c\n1,2\r3,4\n",  # a lone CR ends a record for the reference reader
        b"a,b,c\n1,2,3\n\r4,5,6\n",
        b"a,b,c\n1,2,3\r\n4,5\r6\n",
    ],
)
def test_fast_reader_agrees_with_the_exact_reader_on_crafted_line_ends(tmp_path, data):
    path = write(tmp_path, data, name="x.csv")
    names = data.split(b"\n", 1)[0].decode().split(",")
    fast = staging._read_csv_fast(path, names)
    exact = staging._read_csv_python(path, names)
    if fast is not None:  # None: handed to the exact reader
        assert fast.select(exact.columns).equals(exact)
