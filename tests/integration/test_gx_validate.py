"""Real Great Expectations on small Polars batches: verdicts, named failures, Data Docs."""

from __future__ import annotations

import os
from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from creditflow.core.schema import BUREAU, LEDGER
from creditflow.flows.gx_validate import GxValidator

pytestmark = pytest.mark.integration

_LEDGER_ROWS = [
    # entry_id, customer_id, entry_type, document_date, due_date, amount, currency, applies_to
    ("E1", "C1", "INVOICE", date(2026, 1, 5), date(2026, 2, 4), "1000.00", "CNY", None),
    ("E2", "C1", "PAYMENT", date(2026, 1, 20), None, "400.00", "CNY", "E1"),
    ("E3", "C2", "INVOICE", date(2026, 1, 7), date(2026, 3, 8), "250.50", "CNY", None),
    ("E4", "C2", "CREDIT_NOTE", date(2026, 1, 9), None, "50.50", "CNY", "E3"),
    ("E5", "C3", "INVOICE", date(2026, 1, 11), date(2026, 2, 10), "99.99", "USD", None),
    ("E6", "C3", "WRITE_OFF", date(2026, 1, 30), None, "0.01", "CNY", "E5"),
]


def _ledger(rows=_LEDGER_ROWS) -> pl.DataFrame:
    df = pl.DataFrame(
        [dict(zip(LEDGER.names, r, strict=True)) for r in rows],
        schema={**LEDGER.polars_schema, "amount": pl.String},
        orient="row",
    ).with_columns(pl.col("amount").cast(LEDGER.column("amount").dtype))
    # bronze rows carry lineage columns too; GX must ignore them
    return df.with_columns(source_file=pl.lit("ledger/l.csv"), line_number=pl.int_range(2, df.height + 2))


def _replace(df: pl.DataFrame, column: str, row: int, value) -> pl.DataFrame:
    return df.with_columns(
        pl.when(pl.int_range(pl.len()) == row).then(pl.lit(value, dtype=df.schema[column]))
        .otherwise(pl.col(column)).alias(column)
    )


@pytest.fixture(scope="module")
def gx_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gx")
    cwd = root / "cwd"
    cwd.mkdir()
    return {"docs": root / "data_docs", "cwd": cwd, "root": root}


@pytest.fixture(scope="module")
def validator(gx_dirs) -> GxValidator:
    # run GX from an empty working directory to catch any file it writes outside data_docs
    old = os.getcwd()
    os.chdir(gx_dirs["cwd"])
    try:
        yield GxValidator(gx_dirs["docs"], base_currency="CNY")
    finally:
        os.chdir(old)


def test_clean_ledger_batch_passes(validator):
    out = validator.validate(_ledger(), LEDGER, batch_name="ledger/clean.csv")
    assert out.success_critical
    assert (out.failed_critical, out.failed_warnings) == ([], [])
    assert (out.evaluated, out.rows) == (21, 6)


def test_duplicate_entry_id_fails_critical_and_names_the_duplicate(validator):
    out = validator.validate(_replace(_ledger(), "entry_id", 5, "E2"), LEDGER, batch_name="ledger/dup.csv")
    assert not out.success_critical
    assert out.failed_critical == ["expect_column_proportion_of_unique_values_to_be_between(entry_id)"]
    failure = out.failures[0]
    assert failure["observed"] == pytest.approx(5 / 6)
    assert (failure["unexpected_count"], failure["examples"]) == (2, ["E2"])


def test_bad_entry_type_fails_critical(validator):
    out = validator.validate(_replace(_ledger(), "entry_type", 1, "REFUND"), LEDGER, batch_name="ledger/type.csv")
    assert out.failed_critical == ["expect_column_values_to_be_in_set(entry_type)"]
    assert (out.failures[0]["unexpected_count"], out.failures[0]["examples"]) == (1, ["REFUND"])


@pytest.mark.parametrize("amount", ["0.00", "-5.00"])
def test_non_positive_amount_fails_critical(validator, amount):
    df = _replace(_ledger(), "amount", 2, Decimal(amount))
    out = validator.validate(df, LEDGER, batch_name=f"ledger/amount{amount}.csv")
    assert out.failed_critical == ["expect_column_values_to_be_between(amount)"]
    assert out.failures[0]["examples"] == [float(amount)]


def test_null_required_value_and_bad_currency_fail_critical(validator):
    df = _replace(_replace(_ledger(), "customer_id", 0, None), "currency", 3, "RMB1")
    out = validator.validate(df, LEDGER, batch_name="ledger/nulls.csv")
    assert out.failed_critical == [
        "expect_column_values_to_not_be_null(customer_id)",
        "expect_column_value_lengths_to_equal(currency)",
    ]


def test_missing_contract_column_fails_critical(validator):
    out = validator.validate(_ledger().drop("applies_to"), LEDGER, batch_name="ledger/missing.csv")
    assert not out.success_critical
    assert out.failed_critical == [
        "expect_table_columns_to_match_set(table)",
        "expect_column_values_to_be_of_type(applies_to)",
    ]
    # lineage columns are extra, which the contract allows
    assert out.failures[0]["mismatched"] == {"missing": ["applies_to"], "unexpected": ["line_number", "source_file"]}


def test_wrong_dtype_fails_the_type_expectation(validator):
    df = _ledger().with_columns(pl.col("document_date").cast(pl.String))
    out = validator.validate(df, LEDGER, batch_name="ledger/dtype.csv")
    assert out.failed_critical == ["expect_column_values_to_be_of_type(document_date)"]


@pytest.mark.parametrize(
    "value", [pl.lit(None, dtype=pl.Int64), pl.lit(["E1"], dtype=pl.List(pl.String))], ids=["int", "list"]
)
def test_wrong_dtype_of_an_optional_column_fails(validator, value):
    # applies_to has only a type expectation: checked on the header, or on the values
    # when pandas holds the column as object (a list column; the header alone would pass)
    df = _ledger().with_columns(value.alias("applies_to"))
    out = validator.validate(df, LEDGER, batch_name="ledger/applies_to.csv")
    assert out.failed_critical == ["expect_column_values_to_be_of_type(applies_to)"]


def test_warning_only_batch_passes_critical_and_reports_the_warning(validator):
    # 4 of 6 rows in USD: non-base share 0.67 > 0.5
    df = _ledger().with_columns(
        pl.when(pl.int_range(pl.len()) < 4).then(pl.lit("USD")).otherwise(pl.col("currency")).alias("currency")
    )
    out = validator.validate(df, LEDGER, batch_name="ledger/usd.csv")
    assert out.success_critical
    assert out.failed_critical == []
    assert out.failed_warnings == ["expect_column_values_to_be_in_set(currency)"]


def _bureau(scores: list[int | None]) -> pl.DataFrame:
    n = len(scores)
    money = pl.Series([Decimal("100.00")] * n, dtype=BUREAU.column("revenue").dtype)
    data = {
        "registration_id": [f"R{i}" for i in range(n)],
        "report_date": [date(2026, 1, 31)] * n,
        "bureau_score": scores,
        "paydex": [80] * n,
        "lawsuits_12m": [0] * n,
        "tax_arrears": [False] * n,
        **{c: money for c in ("revenue", "total_assets", "total_liabilities", "current_assets",
                              "current_liabilities", "net_income")},
        "years_in_business": [10] * n,
    }
    return pl.DataFrame(data, schema=BUREAU.polars_schema)


def test_bureau_score_null_rate_is_a_warning(validator):
    ok = validator.validate(_bureau([700, None, 650, 500]), BUREAU, batch_name="bureau/half.csv")
    assert (ok.success_critical, ok.failed_warnings) == (True, [])
    out = validator.validate(_bureau([700, None, None, None]), BUREAU, batch_name="bureau/sparse.csv")
    assert out.success_critical
    assert out.failed_warnings == ["expect_column_proportion_of_non_null_values_to_be_between(bureau_score)"]
    assert out.failures[0]["observed"] == 0.25


def test_bureau_compound_key_and_range(validator):
    df = _replace(_replace(_bureau([700, 650, 600]), "registration_id", 2, "R0"), "paydex", 1, 101)
    out = validator.validate(df, BUREAU, batch_name="bureau/bad.csv")
    assert out.failed_critical == [
        "expect_column_values_to_be_between(paydex)",
        "expect_compound_columns_to_be_unique(registration_id,report_date)",
    ]


def test_validate_checks_its_arguments(validator):
    with pytest.raises(ValueError, match="batch_name must name the batch"):
        validator.validate(_ledger(), LEDGER, batch_name="")
    with pytest.raises(TypeError, match="df must be a polars DataFrame; got DataFrame"):
        validator.validate(_ledger().to_pandas(), LEDGER, batch_name="x")


def test_data_docs_site_under_the_given_dir_only(validator, gx_dirs):
    validator.validate(_ledger(), LEDGER, batch_name="ledger/docs.csv")
    index = validator.build_docs()
    docs = gx_dirs["docs"]
    assert index == docs.resolve() / "index.html" and index.is_file()
    assert {p.name for p in docs.iterdir()} == {"index.html", "static", "expectations", "validations"}
    suite_page = (docs / "expectations" / "ledger.html").read_text(encoding="utf-8")
    assert "[critical] entry_id: unique within the batch (key)" in suite_page
    assert "[warning] table: between 1 and 50000000 rows" in suite_page
    pages = list((docs / "validations" / "ledger").rglob("*.html"))
    assert any("ledger_docs.csv" in p.name for p in pages)
    # nothing else: no gx/ or uncommitted/ in the working directory, nothing beside data_docs
    assert list(gx_dirs["cwd"].iterdir()) == []
    assert {p.name for p in gx_dirs["root"].iterdir()} == {"cwd", "data_docs"}


def test_validates_without_a_docs_site(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plain = GxValidator(None, base_currency="CNY")
    assert plain.validate(_ledger(), LEDGER, batch_name="ledger/x.csv").success_critical
    with pytest.raises(RuntimeError, match="has no Data Docs directory"):
        plain.build_docs()
    assert list(tmp_path.iterdir()) == []


def test_bounds_must_name_families():
    with pytest.raises(ValueError, match=r"bounds name unknown families \['ledgr'\]"):
        GxValidator(None, bounds={"ledgr": None})


def test_shared_returns_one_validator_per_dir(tmp_path):
    a = GxValidator.shared(tmp_path / "docs")
    assert GxValidator.shared(tmp_path / "docs") is a
    assert GxValidator.shared(tmp_path / "docs", base_currency="CNY") is not a


@pytest.fixture(scope="module")
def polars_key_validator() -> GxValidator:
    # every batch counts as "big": the key uniqueness expectation runs on Polars
    return GxValidator(None, base_currency="CNY", polars_key_min_rows=1)


def test_big_batch_key_uniqueness_runs_on_polars_and_passes(polars_key_validator):
    out = polars_key_validator.validate(_ledger(), LEDGER, batch_name="ledger/clean.csv")
    assert out.success_critical
    assert (out.failed_critical, out.evaluated) == ([], 21)


@pytest.mark.parametrize("order", ["sorted", "unsorted"])
def test_big_batch_duplicate_key_fails_like_gx(validator, polars_key_validator, order):
    dup = _replace(_ledger(), "entry_id", 5, "E2")
    if order == "unsorted":
        dup = dup.reverse()
    gx_out = validator.validate(dup, LEDGER, batch_name="ledger/dup.csv")
    pl_out = polars_key_validator.validate(dup, LEDGER, batch_name="ledger/dup.csv")
    label = "expect_column_proportion_of_unique_values_to_be_between(entry_id)"
    assert pl_out.failed_critical == gx_out.failed_critical == [label]
    got = pl_out.failures[0]
    assert got["observed"] == pytest.approx(5 / 6)
    assert (got["unexpected_count"], got["examples"]) == (2, ["E2"])
    assert (got["unexpected_count"], got["examples"]) == (
        gx_out.failures[0]["unexpected_count"], gx_out.failures[0]["examples"])


def test_big_batch_key_uniqueness_ignores_nulls_like_gx(validator, polars_key_validator):
    # one null key: the proportion is over the 5 non-null ids (unique), the null fails not_null only
    with_null = _replace(_ledger(), "entry_id", 2, None)
    gx_out = validator.validate(with_null, LEDGER, batch_name="ledger/null.csv")
    pl_out = polars_key_validator.validate(with_null, LEDGER, batch_name="ledger/null.csv")
    assert pl_out.failed_critical == gx_out.failed_critical == [
        "expect_column_values_to_not_be_null(entry_id)"]


def test_polars_key_min_rows_is_checked():
    with pytest.raises(ValueError, match="polars_key_min_rows must be >= 1"):
        GxValidator(None, polars_key_min_rows=0)


@pytest.mark.parametrize(
    "broken",
    [
        lambda df: df,
        lambda df: _replace(_replace(df, "customer_id", 0, None), "currency", 3, "RMB1"),
        lambda df: _replace(df, "entry_id", 5, "E2"),
        lambda df: _replace(df, "amount", 1, Decimal("-5.00")),
    ],
    ids=["clean", "null-and-currency", "duplicate-id", "negative-amount"],
)
def test_small_batch_in_one_gx_call_gives_the_grouped_verdicts(validator, monkeypatch, broken):
    # small batches run every column expectation in one GX call; big ones per column group
    df = broken(_ledger())

    def outcome(one_frame_max_rows: int) -> dict:
        monkeypatch.setattr("creditflow.flows.gx_validate.ONE_FRAME_MAX_ROWS", one_frame_max_rows)
        out = validator.validate(df, LEDGER, batch_name="ledger/same.csv").to_dict()
        out.pop("seconds")
        return out

    assert outcome(0) == outcome(1_000)
