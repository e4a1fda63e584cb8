"""Row rules, cross-file rules and routing on tiny hand-built text frames."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import polars as pl
import pytest

from creditflow.core.schema import (
    BUREAU,
    CUSTOMERS,
    FX_RATES,
    LEDGER,
    LINE_NUMBER,
    LINEAGE,
    LINEAGE_DTYPES,
    QUARANTINE,
)
from creditflow.validation.rules import (
    MALFORMED,
    RAW_RECORD,
    apply_cross_file_rules,
    apply_row_rules,
    raw_column,
    split_routed,
)

GOOD = {
    "entry_id": "E1",
    "customer_id": "C1",
    "entry_type": "INVOICE",
    "document_date": "2024-01-31",
    "due_date": "2024-02-29",
    "amount": "100.00",
    "currency": "CNY",
    "applies_to": "",
}
AT = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
SHA = "0" * 64


def ledger(*rows: dict[str, str], extra: dict[str, list[str]] | None = None) -> pl.DataFrame:
    """A staged ledger frame: each row is GOOD with some fields replaced."""
    full = [GOOD | r for r in rows]
    data = {c: [r[c] for r in full] for c in LEDGER.names} | (extra or {})
    return pl.DataFrame(data, schema={c: pl.String for c in data}).with_columns(
        pl.int_range(2, len(full) + 2, dtype=pl.Int64).alias(LINE_NUMBER)
    )


def codes(df: pl.DataFrame) -> list[str | None]:
    return df.get_column("reason_code").to_list()


def details(df: pl.DataFrame) -> list[str | None]:
    return df.get_column("reason_detail").to_list()


def one(table, **fields: str) -> pl.DataFrame:
    """A one-row staged frame of any table (all columns given as text)."""
    return pl.DataFrame(
        {k: [v] for k, v in fields.items()}, schema={k: pl.String for k in fields}
    ).with_columns(pl.lit(2, dtype=pl.Int64).alias(LINE_NUMBER))


# ------------------------------------------------------------------------ parsing


def test_clean_row_is_accepted_with_contract_dtypes():
    out = apply_row_rules(ledger({}), LEDGER)
    assert codes(out) == [None] and details(out) == [None]
    assert {c: out.schema[c] for c in LEDGER.names} == dict(LEDGER.polars_schema)
    row = out.row(0, named=True)
    assert row["document_date"] == date(2024, 1, 31)
    assert row["amount"] == Decimal("100.00")
    assert row["applies_to"] is None  # empty text is null


def test_values_are_stripped_and_slash_dates_parsed():
    out = apply_row_rules(
        ledger({"entry_id": " 007 ", "document_date": "2024/01/31 ", "amount": " 5.5"}), LEDGER
    )
    row = out.row(0, named=True)
    assert (row["entry_id"], row["document_date"], row["amount"]) == (
        "007",
        date(2024, 1, 31),
        Decimal("5.50"),
    )
    assert row[raw_column("entry_id")] == " 007 "  # the raw text is kept as it came


def test_bureau_kinds_int_bool_and_negative_decimal():
    raw = one(
        BUREAU,
        registration_id="91X",
        report_date="2024-06-30",
        bureau_score="700",
        lawsuits_12m="0",
        tax_arrears="TRUE",
        net_income="-1234.5",
        paydex="",
    )
    row = apply_row_rules(raw, BUREAU).row(0, named=True)
    assert row["reason_code"] is None
    assert (row["bureau_score"], row["tax_arrears"], row["net_income"], row["paydex"]) == (
        700,
        True,
        Decimal("-1234.50"),
        None,
    )


def test_rate_keeps_eight_fraction_digits():
    out = apply_row_rules(
        one(FX_RATES, rate_date="2024-01-31", currency="USD", rate_to_base="7.12345678"), FX_RATES
    )
    assert out.row(0, named=True)["rate_to_base"] == Decimal("7.12345678")
    bad = apply_row_rules(
        one(FX_RATES, rate_date="2024-01-31", currency="USD", rate_to_base="7.123456789"), FX_RATES
    )
    assert codes(bad) == ["BAD_DECIMAL"]


# ------------------------------------------------------------------- each reason code


@pytest.mark.parametrize(
    ("change", "code", "detail"),
    [
        ({"customer_id": "  "}, "MISSING_REQUIRED", "customer_id is required but empty"),
        (
            {"document_date": "31.01.2024"},
            "BAD_DATE",
            "document_date: '31.01.2024' is not a date in YYYY-MM-DD or YYYY/MM/DD form",
        ),
        (
            {"document_date": "2024-1-31"},
            "BAD_DATE",
            "document_date: '2024-1-31' is not a date in YYYY-MM-DD or YYYY/MM/DD form",
        ),
        (
            {"due_date": "2023-02-29"},
            "BAD_DATE",
            "due_date: '2023-02-29' is not a real calendar date",
        ),
        ({"amount": "12.345"}, "BAD_DECIMAL", "amount: '12.345' has more than 2 fraction digits"),
        ({"amount": "1,200.00"}, "BAD_DECIMAL", "amount: '1,200.00' is not a decimal number"),
        ({"amount": "12345678901234567"}, "BAD_DECIMAL", "has more than 16 integer digits"),
        (
            {"entry_type": "Invoice"},
            "BAD_ENUM",
            "entry_type: 'Invoice' is not one of INVOICE, PAYMENT, CREDIT_NOTE, WRITE_OFF",
        ),
        (
            {"currency": "RMB1"},
            "BAD_CURRENCY",
            "currency: 'RMB1' is not a 3-letter upper-case ISO 4217 currency code",
        ),
        ({"amount": "0"}, "OUT_OF_RANGE", "amount: '0' must be > 0"),
        ({"due_date": ""}, "DUE_DATE_RULE", "due_date is required on an INVOICE"),
        (
            {"entry_type": "PAYMENT"},
            "DUE_DATE_RULE",
            "due_date must be empty on a PAYMENT (got '2024-02-29')",
        ),
        (
            {"due_date": "2024-01-30"},
            "DUE_BEFORE_DOCUMENT",
            "due_date 2024-01-30 is before document_date 2024-01-31",
        ),
        (
            {"applies_to": "E0"},
            "APPLIES_TO_RULE",
            "applies_to must be empty on an INVOICE (got 'E0')",
        ),
        (
            {"entry_type": "WRITE_OFF", "due_date": ""},
            "APPLIES_TO_RULE",
            "applies_to is required on a WRITE_OFF",
        ),
    ],
)
def test_ledger_row_rule(change, code, detail):
    out = apply_row_rules(ledger(change), LEDGER)
    assert codes(out) == [code]
    assert detail in details(out)[0]


def test_bad_integer_and_range_on_customers():
    base = {
        "customer_id": "C1",
        "customer_name": "A",
        "onboarding_date": "2024-01-01",
        "credit_limit": "0",
        "currency": "CNY",
    }
    out = apply_row_rules(one(CUSTOMERS, **base, payment_terms_days="30.0"), CUSTOMERS)
    assert codes(out) == ["BAD_INTEGER"] and details(out) == [
        "payment_terms_days: '30.0' is not a whole number"
    ]
    out = apply_row_rules(one(CUSTOMERS, **base, payment_terms_days="400"), CUSTOMERS)
    assert codes(out) == ["OUT_OF_RANGE"] and details(out) == [
        "payment_terms_days: '400' must be >= 0 and <= 365"
    ]


def test_bad_boolean():
    raw = one(
        BUREAU, registration_id="9", report_date="2024-01-01", lawsuits_12m="1", tax_arrears="yes"
    )
    out = apply_row_rules(raw, BUREAU)
    assert codes(out) == ["BAD_BOOLEAN"] and details(out) == [
        "tax_arrears: 'yes' is not one of true/false/1/0"
    ]


def test_first_rule_is_the_code_and_detail_lists_every_rule_in_order():
    out = apply_row_rules(
        ledger({"amount": "-1.234", "currency": "", "due_date": "2024-13-01"}), LEDGER
    )
    assert codes(out) == ["MISSING_REQUIRED"]
    assert details(out) == [
        "currency is required but empty; "
        "due_date: '2024-13-01' is not a real calendar date; "
        "amount: '-1.234' has more than 2 fraction digits"
    ]


def test_duplicate_key_first_occurrence_wins():
    out = apply_row_rules(
        ledger({}, {"entry_id": "E2"}, {"entry_id": " E1"}, {"entry_id": "", "customer_id": "C2"}),
        LEDGER,
    )
    assert codes(out) == [None, None, "DUPLICATE_KEY", "MISSING_REQUIRED"]
    assert (
        details(out)[2]
        == "entry_id 'E1' appears earlier in this file, on line 2 (the first occurrence wins)"
    )


def test_duplicate_key_on_unsorted_keys():
    out = apply_row_rules(
        ledger({"entry_id": "E9"}, {"entry_id": "E1"}, {"entry_id": "E9"}), LEDGER
    )
    assert codes(out) == [None, None, "DUPLICATE_KEY"]


def test_duplicate_of_a_bad_row_is_still_a_duplicate():
    out = apply_row_rules(ledger({"amount": "x"}, {}), LEDGER)
    assert codes(out) == ["BAD_DECIMAL", "DUPLICATE_KEY"]


def test_duplicate_two_column_key_compares_parsed_values():
    raw = pl.DataFrame(
        {
            "rate_date": ["2024-01-31", "2024/01/31", "2024-01-31"],
            "currency": ["USD", "USD", "EUR"],
            "rate_to_base": ["7.1", "7.2", "7.8"],
            LINE_NUMBER: [2, 3, 4],
        },
        schema_overrides={LINE_NUMBER: pl.Int64},
    )
    out = apply_row_rules(raw, FX_RATES)
    assert codes(out) == [None, "DUPLICATE_KEY", None]
    assert (
        details(out)[1]
        == "key (rate_date, currency) = (2024-01-31, USD) appears earlier in this file, on line 2 (the first occurrence wins)"
    )


def test_malformed_row_is_exclusive():
    raw = (
        ledger({}, {})
        .with_columns(
            pl.when(pl.col(LINE_NUMBER) == 3)
            .then(pl.lit(None, dtype=pl.String))
            .otherwise(pl.col(c))
            .alias(c)
            for c in LEDGER.names
        )
        .with_columns(
            pl.when(pl.col(LINE_NUMBER) == 3).then(pl.lit("E1,C1")).alias(RAW_RECORD),
            pl.when(pl.col(LINE_NUMBER) == 3)
            .then(pl.lit("row has 2 field(s); the header has 8"))
            .alias(MALFORMED),
        )
    )
    out = apply_row_rules(raw, LEDGER)
    assert codes(out) == [None, "MALFORMED_ROW"]
    assert details(out) == [None, "row has 2 field(s); the header has 8"]


def test_absent_optional_column_is_null_and_checked():
    raw = ledger({"entry_type": "PAYMENT"}).drop("due_date", "applies_to")
    out = apply_row_rules(raw, LEDGER)
    assert codes(out) == [None]
    assert out.schema["due_date"] == pl.Date and out.get_column("due_date").to_list() == [None]


def test_argument_checks():
    with pytest.raises(ValueError, match="line_number"):
        apply_row_rules(ledger({}).drop(LINE_NUMBER), LEDGER)
    with pytest.raises(ValueError, match="lacks required ledger column"):
        apply_row_rules(ledger({}).drop("amount"), LEDGER)
    with pytest.raises(ValueError, match="must be text"):
        apply_row_rules(ledger({}).with_columns(pl.lit(1).alias("amount")), LEDGER)


# -------------------------------------------------------------------- cross-file


KNOWN = pl.LazyFrame({"customer_id": ["C1", "C2"]})
PRIOR = pl.LazyFrame(
    {
        "entry_id": ["P1", "P2", "P3"],
        "customer_id": ["C1", "C1", "C2"],
        "entry_type": ["INVOICE", "PAYMENT", "INVOICE"],
        "source_file": ["ledger/2024-01.csv"] * 3,
    }
)


def cross(*rows: dict[str, str]) -> pl.DataFrame:
    return apply_cross_file_rules(
        apply_row_rules(ledger(*rows), LEDGER), LEDGER, known_customer_ids=KNOWN, prior_ledger=PRIOR
    )


CREDIT = {"entry_type": "CREDIT_NOTE", "due_date": ""}


def test_duplicate_entry_id_names_the_earlier_file():
    out = cross({"entry_id": "P2"})
    assert codes(out) == ["DUPLICATE_ENTRY_ID"]
    assert details(out) == [
        "entry_id 'P2' was already ingested from an earlier ledger file (ledger/2024-01.csv)"
    ]


def test_unknown_customer():
    out = cross({"customer_id": "C9"})
    assert codes(out) == ["UNKNOWN_CUSTOMER"]
    assert details(out) == ["customer_id 'C9' is not in the customer master ingested so far"]


def test_applies_to_a_prior_invoice_of_the_same_customer():
    out = cross(
        CREDIT | {"applies_to": "P1"},
        CREDIT | {"entry_id": "E2", "applies_to": "P3"},
        CREDIT | {"entry_id": "E3", "applies_to": "P2"},
    )
    assert codes(out) == [
        None,
        "UNKNOWN_INVOICE",
        "UNKNOWN_INVOICE",
    ]  # other customer's invoice; a payment
    assert details(out)[1] == "applies_to 'P3' is not an accepted INVOICE of customer 'C1'"


def test_applies_to_an_invoice_of_the_same_file_in_any_position():
    pay = {"entry_type": "PAYMENT", "due_date": ""}
    out = cross(pay | {"entry_id": "E2", "applies_to": "E1"}, {"entry_id": "E1"})
    assert codes(out) == [None, None]


def test_applies_to_a_rejected_invoice_of_the_same_file_is_unknown():
    out = cross(
        {"entry_id": "E1", "customer_id": "C9"},
        CREDIT | {"entry_id": "E2", "applies_to": "E1", "customer_id": "C9"},
        {"entry_id": "E3", "amount": "0"},
        CREDIT | {"entry_id": "E4", "applies_to": "E3"},
    )
    assert codes(out) == ["UNKNOWN_CUSTOMER", "UNKNOWN_CUSTOMER", "OUT_OF_RANGE", "UNKNOWN_INVOICE"]
    assert "applies_to 'E1' is not an accepted INVOICE" in details(out)[1]


def test_cross_file_rules_add_to_the_detail_of_rows_already_rejected():
    out = cross({"entry_id": "P1", "amount": "abc"})
    assert codes(out) == ["BAD_DECIMAL"]
    assert details(out)[0].startswith("amount: 'abc' is not a decimal number")
    assert details(out)[0].endswith(
        "entry_id 'P1' was already ingested from an earlier ledger file (ledger/2024-01.csv)"
    )


def test_no_prior_ledger_means_first_ingest():
    out = apply_cross_file_rules(
        apply_row_rules(ledger({}), LEDGER), LEDGER, known_customer_ids=KNOWN
    )
    assert codes(out) == [None]


def test_ledger_needs_known_customers_and_other_tables_pass_through():
    parsed = apply_row_rules(ledger({}), LEDGER)
    with pytest.raises(ValueError, match="known_customer_ids is required"):
        apply_cross_file_rules(parsed, LEDGER)
    fx = apply_row_rules(
        one(FX_RATES, rate_date="2024-01-01", currency="USD", rate_to_base="7"), FX_RATES
    )
    assert apply_cross_file_rules(fx, FX_RATES).equals(fx)


# ------------------------------------------------------------------------ routing


def route(parsed: pl.DataFrame):
    return split_routed(
        parsed,
        LEDGER,
        family="ledger",
        source_file="ledger/l_2024-01-31.csv",
        file_sha256=SHA,
        file_date=date(2024, 1, 31),
        ingested_at=AT,
    )


def test_split_routed_bronze_has_contract_lineage_then_extras():
    parsed = apply_row_rules(
        ledger({}, {"entry_id": "E2", "amount": "x"}, extra={"note": ["a", "b"]}), LEDGER
    )
    accepted, quarantine = route(parsed)
    assert accepted.columns == [*LEDGER.names, *LINEAGE.names, "note"]
    assert dict(accepted.schema) == dict(LEDGER.polars_schema) | LINEAGE_DTYPES | {
        "note": pl.String
    }
    row = accepted.row(0, named=True)
    assert (
        row["source_file"],
        row[LINE_NUMBER],
        row["file_date"],
        row["ingested_at"],
        row["note"],
    ) == (
        "ledger/l_2024-01-31.csv",
        2,
        date(2024, 1, 31),
        AT,
        "a",
    )
    assert quarantine.schema == QUARANTINE.polars_schema
    q = quarantine.row(0, named=True)
    assert (q["family"], q[LINE_NUMBER], q["reason_code"]) == ("ledger", 3, "BAD_DECIMAL")
    assert q["ingested_at"] == AT.isoformat()
    assert json.loads(q["raw_values"]) == GOOD | {"entry_id": "E2", "amount": "x", "note": "b"}


def test_split_routed_keeps_the_raw_text_of_a_malformed_row():
    raw = ledger({}).with_columns(
        *[pl.lit(None, dtype=pl.String).alias(c) for c in LEDGER.names],
        pl.lit('E1,"C1"').alias(RAW_RECORD),
        pl.lit("row has 2 field(s); the header has 8").alias(MALFORMED),
    )
    _, quarantine = route(apply_row_rules(raw, LEDGER))
    assert json.loads(quarantine.get_column("raw_values")[0]) == {"_raw_record": 'E1,"C1"'}


def test_split_routed_loses_no_row():
    parsed = apply_row_rules(
        ledger({}, {"entry_id": "E2"}, {"entry_id": "E1"}, {"currency": "x"}), LEDGER
    )
    accepted, quarantine = route(parsed)
    assert accepted.height + quarantine.height == parsed.height
    assert sorted(
        accepted.get_column(LINE_NUMBER).to_list() + quarantine.get_column(LINE_NUMBER).to_list()
    ) == [2, 3, 4, 5]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"family": "customers"}, "family must be"),
        ({"file_sha256": "abc"}, "64 lower-case hex"),
        ({"ingested_at": datetime(2026, 1, 1)}, "time-zone aware"),
        ({"file_date": datetime(2026, 1, 1, tzinfo=UTC)}, "datetime.date"),
    ],
)
def test_split_routed_checks_arguments(kwargs, message):
    args = {
        "family": "ledger",
        "source_file": "ledger/x.csv",
        "file_sha256": SHA,
        "file_date": date(2024, 1, 1),
        "ingested_at": AT,
    } | kwargs
    with pytest.raises((ValueError, TypeError), match=message):
        split_routed(apply_row_rules(ledger({}), LEDGER), LEDGER, **args)


# ------------------------------------------------------------------ fast paths


def test_trimmed_skips_stripping_with_the_same_result():
    # values without surrounding blanks: trimmed=True must give the very same frame,
    # failing rows (bad date, bad amount, missing due date) included
    df = ledger({}, {"entry_id": "E2", "document_date": "2024-02-30"},
                {"entry_id": "E3", "amount": "1.234"}, {"entry_id": "E4", "due_date": ""})
    assert apply_row_rules(df, LEDGER, trimmed=True).equals(apply_row_rules(df, LEDGER))
    assert codes(apply_row_rules(df, LEDGER, trimmed=True)) == [None, "BAD_DATE", "BAD_DECIMAL",
                                                               "DUE_DATE_RULE"]


def test_slash_free_parses_dashed_dates_only_with_the_same_result():
    # no value holds a '/': slash_free=True must give the very same frame, bad dates included
    df = ledger({}, {"entry_id": "E2", "document_date": "2024-02-30"},
                {"entry_id": "E3", "document_date": "2024-1-05"}, {"entry_id": "E4", "due_date": "20240301"})
    assert apply_row_rules(df, LEDGER, slash_free=True).equals(apply_row_rules(df, LEDGER))
    assert codes(apply_row_rules(df, LEDGER, slash_free=True)) == [None, "BAD_DATE", "BAD_DATE", "BAD_DATE"]


@pytest.mark.parametrize("literal_max", [0, 1_000_000])
def test_history_lookup_by_filter_or_semi_join_agrees(monkeypatch, literal_max):
    # daily files filter the history with is_in; bulk files semi-join it: same verdicts
    monkeypatch.setattr("creditflow.validation.rules._LITERAL_FILTER_MAX_IDS", literal_max)
    out = cross({"entry_id": "P2"}, {"entry_id": "N1", "customer_id": "C9"},
                {"entry_id": "N2", **CREDIT, "applies_to": "P1"})
    assert codes(out)[:2] == ["DUPLICATE_ENTRY_ID", "UNKNOWN_CUSTOMER"]
    assert details(out)[0] == (
        "entry_id 'P2' was already ingested from an earlier ledger file (ledger/2024-01.csv)")
    expected = codes(cross({"entry_id": "N2", **CREDIT, "applies_to": "P1"}))
    assert codes(out)[2] == expected[0]
