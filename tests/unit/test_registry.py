"""Feature registry: complete, unique, directions valid, helpers behave."""

from __future__ import annotations

import pytest

from creditflow.features.bureau import BUREAU_FEATURE_COLUMNS, EVENT_FEATURE_COLUMNS
from creditflow.features.customers import MONTHS_SINCE_ONBOARDING
from creditflow.features.registry import (
    FEATURE_SET_VERSION,
    FEATURE_SETS,
    PANEL_CONTEXT_COLUMNS,
    Feature,
    categorical_features,
    feature_names,
    feature_set,
    get_feature,
    monotone_constraints,
    reason_text,
)

LEDGER_NAMES = (
    "utilization",
    "aging_current_share",
    "aging_1_30_share",
    "aging_31_90_share",
    "aging_91_180_share",
    "aging_over_180_share",
    "dpd_max",
    "dpd_weighted",
    "invoices_past_30_12m",
    "invoices_past_60_12m",
    "avg_monthly_sales_12m",
    "sales_growth_3m_vs_12m",
    "pay_delay_avg_12m",
    "pay_delay_p90_12m",
    "share_paid_late_12m",
    "pay_delay_trend",
    "dso_days",
    "credit_note_ratio_12m",
    "invoice_count_12m",
    "months_since_last_invoice",
)


def test_current_version_is_a_registered_set():
    assert FEATURE_SET_VERSION == "pd_features_v1"
    assert FEATURE_SET_VERSION in FEATURE_SETS


@pytest.mark.parametrize("name", sorted(FEATURE_SETS))
def test_every_feature_has_description_reason_and_valid_direction(name):
    for f in feature_set(name):
        assert len(f.description) >= 20, f.name
        assert f.reason.strip(), f.name
        assert f.direction in (-1, 0, 1), f.name
        assert f.kind in ("numeric", "categorical"), f.name
        assert f.source in ("ledger", "bureau", "events", "master"), f.name


@pytest.mark.parametrize("name", sorted(FEATURE_SETS))
def test_feature_names_are_unique(name):
    names = feature_names(name)
    assert len(names) == len(set(names))


def test_v1_lists_every_ledger_feature_by_its_exact_name():
    assert set(LEDGER_NAMES) <= set(feature_names("pd_features_v1"))
    assert all(get_feature(n).source == "ledger" for n in LEDGER_NAMES)


def test_v1_lists_bureau_features_except_money_equity():
    names = set(feature_names("pd_features_v1"))
    assert set(BUREAU_FEATURE_COLUMNS) - names == {"equity"}


def test_v1_lists_event_counts_except_bankruptcy_filings():
    names = set(feature_names("pd_features_v1"))
    assert set(EVENT_FEATURE_COLUMNS) - names == {
        "events_bankruptcy_filing_3m",
        "events_bankruptcy_filing_12m",
    }
    assert {n for n in names if n.startswith("events_")} <= set(EVENT_FEATURE_COLUMNS)


def test_v1_master_features():
    names = feature_names("pd_features_v1")
    for n in (MONTHS_SINCE_ONBOARDING, "payment_terms_days", "industry", "region"):
        assert n in names


def test_raw_money_amounts_are_not_features():
    names = set(feature_names("pd_features_v1"))
    assert {"exposure", "credit_limit", "equity"} <= set(PANEL_CONTEXT_COLUMNS)
    assert not names & set(PANEL_CONTEXT_COLUMNS)


def test_monotone_constraints_exclude_categoricals():
    constraints = monotone_constraints("pd_features_v1")
    assert "industry" not in constraints and "region" not in constraints
    assert set(constraints) == set(feature_names("pd_features_v1")) - set(
        categorical_features("pd_features_v1")
    )
    assert set(constraints.values()) <= {-1, 0, 1}


def test_directions_of_key_features():
    constraints = monotone_constraints()
    assert constraints["dpd_max"] == 1
    assert constraints["utilization"] == 1
    assert constraints["bureau_score"] == -1
    assert constraints["bureau_score_change_3m"] == -1
    assert constraints["leverage"] == 1
    assert constraints["current_ratio"] == -1
    assert constraints["events_lawsuit_3m"] == 1
    assert constraints["avg_monthly_sales_12m"] == 0


def test_categorical_features():
    assert categorical_features("pd_features_v1") == ("industry", "region")


def test_unknown_feature_set_error_lists_known_sets():
    with pytest.raises(
        ValueError,
        match=r"unknown feature set 'pd_features_v9'; known feature sets: \['pd_features_v1'\]",
    ):
        feature_set("pd_features_v9")


def test_reason_text():
    assert reason_text("dpd_max") == "Invoices far past due"
    assert reason_text("bureau_score") == "Low bureau score"
    assert reason_text("events_lawsuit_3m") == "Recent lawsuits (3 months)"


def test_reason_text_unknown_feature():
    with pytest.raises(ValueError, match="'exposure' is not a registered feature"):
        reason_text("exposure")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"direction": 2}, "direction must be one of"),
        ({"direction": True}, "direction must be one of"),
        ({"kind": "ordinal"}, "kind must be one of"),
        ({"source": "crm"}, "source must be one of"),
        ({"kind": "categorical", "direction": 1}, "categorical feature has no direction"),
        ({"description": " "}, "description must not be empty"),
        ({"name": "Bad Name"}, "snake_case"),
    ],
)
def test_feature_rejects_invalid_definitions(kwargs, message):
    base = {
        "name": "x_feature",
        "description": "A test feature.",
        "direction": 1,
        "kind": "numeric",
        "source": "ledger",
        "reason": "Test",
    }
    with pytest.raises(ValueError, match=message):
        Feature(**{**base, **kwargs})
