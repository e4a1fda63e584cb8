"""Suites derived from the schema, result reading and GX's input frame (no GX run here)."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pandas as pd
import polars as pl
import pytest
from great_expectations.core.expectation_validation_result import ExpectationValidationResult
from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

from creditflow.core.schema import (
    BUREAU,
    BUREAU_EVENTS,
    CUSTOMERS,
    FX_RATES,
    INPUT_FAMILIES,
    LEDGER,
)
from creditflow.validation.expectations import (
    CRITICAL,
    WARNING,
    WarningBounds,
    build_suite,
    expectation_label,
    group_expectations,
    gx_frame,
    severity_of,
    summarise_result,
)


def _by_label(suite):
    return {expectation_label(e): e for e in suite.expectations}


def _severities(suite):
    return {expectation_label(e): severity_of(e) for e in suite.expectations}


# ------------------------------------------------------------------------ suites


def test_ledger_suite_has_exactly_the_schema_rules():
    labels = _severities(build_suite(LEDGER, base_currency="CNY"))
    typed = ["entry_id", "customer_id", "entry_type", "document_date", "due_date", "amount", "currency", "applies_to"]
    required = ["entry_id", "customer_id", "entry_type", "document_date", "amount", "currency"]
    expected = {"expect_table_columns_to_match_set(table)": CRITICAL}
    expected |= {f"expect_column_values_to_be_of_type({c})": CRITICAL for c in typed}
    expected |= {f"expect_column_values_to_not_be_null({c})": CRITICAL for c in required}
    expected |= {
        "expect_column_values_to_be_in_set(entry_type)": CRITICAL,
        "expect_column_values_to_be_between(amount)": CRITICAL,
        "expect_column_value_lengths_to_equal(currency)": CRITICAL,
        "expect_column_proportion_of_unique_values_to_be_between(entry_id)": CRITICAL,
        "expect_table_row_count_to_be_between(table)": WARNING,
        "expect_column_values_to_be_in_set(currency)": WARNING,
    }
    assert labels == expected


@pytest.mark.parametrize(
    ("table", "n_critical", "n_warning"),
    [
        # colset + 9 types + 6 not-null + 2 ranges + currency length + key; rows + 3 null rates + currency share
        (CUSTOMERS, 20, 5),
        # colset + 3 types + 3 not-null + rate > 0 + currency length + compound key; rows
        (FX_RATES, 10, 1),
        # colset + 13 types + 4 not-null + 4 ranges + compound key; rows + 9 optional columns' null rates
        (BUREAU, 23, 10),
        # colset + 4 types + 3 not-null + event_type set (no key); rows (detail is free text: no null bound)
        (BUREAU_EVENTS, 9, 1),
        # see test_ledger_suite_has_exactly_the_schema_rules
        (LEDGER, 19, 2),
    ],
)
def test_suite_sizes_per_family(table, n_critical, n_warning):
    sev = list(_severities(build_suite(table, base_currency="CNY")).values())
    assert (sev.count(CRITICAL), sev.count(WARNING)) == (n_critical, n_warning)


@pytest.mark.parametrize("family", list(INPUT_FAMILIES))
def test_every_expectation_carries_its_severity_in_meta_and_description(family):
    for e in build_suite(INPUT_FAMILIES[family], base_currency="CNY").expectations:
        sev = e.meta["severity"]
        assert sev in (CRITICAL, WARNING)
        assert e.description.startswith(f"[{sev}] ")
        assert e.meta["rule"]


def test_ranges_follow_min_exclusive_and_decimal_bounds():
    ledger = _by_label(build_suite(LEDGER))
    amount = ledger["expect_column_values_to_be_between(amount)"]
    assert (amount.min_value, amount.max_value, amount.strict_min) == (0, None, True)
    bureau = _by_label(build_suite(BUREAU))
    score = bureau["expect_column_values_to_be_between(bureau_score)"]
    assert (score.min_value, score.max_value, score.strict_min) == (0, 1000, False)
    terms = _by_label(build_suite(CUSTOMERS))["expect_column_values_to_be_between(payment_terms_days)"]
    assert (terms.min_value, terms.max_value) == (0, 365)


def test_value_sets_come_from_the_schema():
    ledger = _by_label(build_suite(LEDGER))
    assert ledger["expect_column_values_to_be_in_set(entry_type)"].value_set == [
        "INVOICE", "PAYMENT", "CREDIT_NOTE", "WRITE_OFF"
    ]


def test_compound_key_uses_compound_uniqueness():
    bureau = _by_label(build_suite(BUREAU))
    key = bureau["expect_compound_columns_to_be_unique(registration_id,report_date)"]
    assert key.column_list == ["registration_id", "report_date"]
    assert severity_of(key) == CRITICAL


def test_currency_share_needs_a_base_currency_and_uses_mostly():
    assert "expect_column_values_to_be_in_set(currency)" not in _by_label(build_suite(LEDGER))
    bounds = WarningBounds(max_non_base_currency_share=0.2)
    share = _by_label(build_suite(LEDGER, base_currency="EUR", bounds=bounds))[
        "expect_column_values_to_be_in_set(currency)"
    ]
    assert (share.value_set, share.mostly) == (["EUR"], 0.8)


def test_fx_rates_get_no_currency_share_even_with_a_base_currency():
    assert "expect_column_values_to_be_in_set(currency)" not in _by_label(build_suite(FX_RATES, base_currency="CNY"))


def test_null_rate_bound_default_and_override():
    default = _by_label(build_suite(BUREAU))
    assert default["expect_column_proportion_of_non_null_values_to_be_between(bureau_score)"].min_value == 0.5
    tuned = _by_label(build_suite(BUREAU, bounds=WarningBounds(null_rate_overrides={"bureau_score": 0.2,
                                                                                       "paydex": 1.0})))
    assert tuned["expect_column_proportion_of_non_null_values_to_be_between(bureau_score)"].min_value == 0.8
    assert "expect_column_proportion_of_non_null_values_to_be_between(paydex)" not in tuned


def test_row_count_bounds():
    rows = _by_label(build_suite(LEDGER, bounds=WarningBounds(min_rows=10, max_rows=None)))[
        "expect_table_row_count_to_be_between(table)"
    ]
    assert (rows.min_value, rows.max_value) == (10, None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(max_null_rate=1.5), "max_null_rate must be in 0..1; got 1.5"),
        (dict(min_rows=-1), "min_rows must be >= 0; got -1"),
        (dict(min_rows=5, max_rows=4), "max_rows must be >= min_rows (5); got 4"),
        (dict(null_rate_overrides={"paydex": -0.1}), "null_rate_overrides['paydex'] must be in 0..1; got -0.1"),
    ],
)
def test_warning_bounds_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        WarningBounds(**kwargs)


def test_build_suite_checks_its_arguments():
    with pytest.raises(ValueError, match="base_currency must be a 3-letter upper-case ISO 4217 code; got 'cny'"):
        build_suite(LEDGER, base_currency="cny")
    with pytest.raises(ValueError, match=r"null_rate_overrides name columns that 'ledger' lacks: \['paydex'\]"):
        build_suite(LEDGER, bounds=WarningBounds(null_rate_overrides={"paydex": 0.1}))
    with pytest.raises(TypeError, match="table must be a creditflow.core.schema.Table; got str"):
        build_suite("ledger")


def test_suite_name_and_schema_version():
    suite = build_suite(LEDGER, name="ledger_v1")
    assert suite.name == "ledger_v1"
    assert suite.meta["family"] == "ledger"
    assert build_suite(LEDGER).name == "ledger"


def test_groups_are_by_columns_read():
    groups = group_expectations(build_suite(LEDGER, base_currency="CNY").expectations)
    assert [expectation_label(e) for e in groups[("amount",)]] == [
        "expect_column_values_to_be_of_type(amount)",
        "expect_column_values_to_not_be_null(amount)",
        "expect_column_values_to_be_between(amount)",
    ]
    assert sorted(expectation_label(e) for e in groups[()]) == [
        "expect_table_columns_to_match_set(table)",
        "expect_table_row_count_to_be_between(table)",
    ]
    bureau = group_expectations(build_suite(BUREAU).expectations)
    assert ("registration_id", "report_date") in bureau


# ------------------------------------------------------------------ reading results


def _result(type_, column, severity, success, **result):
    meta = {"severity": severity} if severity else {}
    cfg = ExpectationConfiguration(type=type_, kwargs={"column": column}, meta=meta)
    return ExpectationValidationResult(success=success, expectation_config=cfg, result=result)


def test_summarise_splits_critical_from_warning():
    results = [
        _result("expect_column_values_to_be_in_set", "entry_type", CRITICAL, False, unexpected_count=1,
                partial_unexpected_list=["REFUND"]),
        _result("expect_column_values_to_not_be_null", "entry_id", CRITICAL, True),
        _result("expect_column_proportion_of_non_null_values_to_be_between", "paydex", WARNING, False,
                observed_value=0.25),
    ]
    out = summarise_result(results, family="ledger", batch_name="ledger/a.csv", rows=7, seconds=0.5)
    assert out.success_critical is False
    assert out.failed_critical == ["expect_column_values_to_be_in_set(entry_type)"]
    assert out.failed_warnings == ["expect_column_proportion_of_non_null_values_to_be_between(paydex)"]
    assert (out.evaluated, out.rows) == (3, 7)
    assert out.failures[0]["examples"] == ["REFUND"]
    assert out.failures[1]["observed"] == 0.25
    json.dumps(out.to_dict())


def test_summarise_passes_when_only_warnings_fail():
    out = summarise_result(
        [_result("expect_column_values_to_be_in_set", "currency", WARNING, False)],
        family="ledger", batch_name="b", rows=1, seconds=0,
    )
    assert out.success_critical is True
    assert out.has_warnings


def test_missing_or_unknown_severity_counts_as_critical():
    results = [
        _result("expect_column_values_to_not_be_null", "a", None, False),
        _result("expect_column_values_to_not_be_null", "b", "info", False),
    ]
    out = summarise_result(results, family="ledger", batch_name="b", rows=1, seconds=0)
    assert out.failed_critical == [
        "expect_column_values_to_not_be_null(a)",
        "expect_column_values_to_not_be_null(b)",
    ]


def test_summarise_checks_its_arguments():
    with pytest.raises(ValueError, match="family and batch_name must be non-empty"):
        summarise_result([], family="", batch_name="b", rows=0, seconds=0)
    with pytest.raises(ValueError, match="rows and seconds must be >= 0; got -1, 0"):
        summarise_result([], family="ledger", batch_name="b", rows=-1, seconds=0)


# ------------------------------------------------------------------------ GX frame


def test_gx_frame_dtypes_match_the_suite_types():
    df = pl.DataFrame(
        {
            "registration_id": ["R1", "R2"],
            "report_date": [date(2026, 1, 31), date(2026, 2, 28)],
            "bureau_score": [700, None],
            "tax_arrears": [True, None],
            "revenue": [Decimal("0.01"), None],
        },
        schema_overrides={"revenue": pl.Decimal(18, 2)},
    )
    frame = gx_frame(df, BUREAU)
    assert list(frame.columns) == ["registration_id", "report_date", "bureau_score", "tax_arrears", "revenue"]
    assert frame["registration_id"].dtype == pd.StringDtype("pyarrow", na_value=float("nan"))
    assert str(frame["report_date"].dtype) == "datetime64[ms]"
    assert frame["bureau_score"].dtype == pd.Int64Dtype()  # nulls do not turn ints into floats
    assert frame["tax_arrears"].dtype == pd.BooleanDtype()
    assert frame["revenue"].dtype == "float64"
    assert frame["revenue"].iloc[0] == 0.01 and frame["revenue"].iloc[0] > 0
    assert frame["bureau_score"].isna().tolist() == [False, True]


def test_gx_frame_rejects_unknown_columns_and_non_polars():
    df = pl.DataFrame({"entry_id": ["E1"]})
    with pytest.raises(ValueError, match=r"columns \['amount'\] are not in the batch"):
        gx_frame(df, LEDGER, ["amount"])
    with pytest.raises(TypeError, match="df must be a polars DataFrame; got DataFrame"):
        gx_frame(df.to_pandas(), LEDGER)
