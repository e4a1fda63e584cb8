"""The credit policy YAML: the packaged default loads, and bad policies fail clearly."""

from __future__ import annotations

import copy
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from creditflow.policy.policy import CreditPolicy, PolicyError, load_policy, policy_from_dict

POLICY_FILE = Path(__file__).resolve().parents[2] / "policy" / "credit_policy.yaml"


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(POLICY_FILE.read_text(encoding="utf-8"))


def _broken(raw: dict, change) -> str:
    data = copy.deepcopy(raw)
    change(data)
    with pytest.raises(PolicyError) as err:
        policy_from_dict(data, "test")
    return str(err.value)


def test_packaged_default_policy_loads_with_a_version():
    policy = load_policy()
    assert isinstance(policy, CreditPolicy)
    assert policy.version == "2026.1"
    assert policy.grade_names == [f"R{i}" for i in range(1, 11)]
    assert policy.pd_edges == [0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3]
    assert policy.limits.rounding_step == Decimal(1000)
    assert policy.grades[0].lgd == Decimal("0.40")  # exact decimal, not a float


def test_load_policy_from_a_path(tmp_path, raw):
    data = copy.deepcopy(raw)
    data["version"] = "2027.2"
    p = tmp_path / "policy.yaml"
    p.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert load_policy(p).version == "2027.2"


def test_numeric_version_is_kept_as_text(raw):
    data = copy.deepcopy(raw)
    data["version"] = 3.1
    assert policy_from_dict(data).version == "3.1"


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(PolicyError, match="does not exist"):
        load_policy(tmp_path / "nope.yaml")


def test_invalid_yaml_is_a_clear_error(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("version: [unclosed\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(p)


def test_missing_version_is_reported(raw):
    msg = _broken(raw, lambda d: d.pop("version"))
    assert "version: Field required" in msg


def test_band_edges_must_increase(raw):
    def change(d):
        d["grades"][3]["pd_below"] = 0.004  # R4 below R3 (0.005)

    msg = _broken(raw, change)
    assert "PD band edges must increase" in msg
    assert "R4.pd_below (0.004) is not above R3.pd_below (0.005)" in msg


def test_worst_grade_must_reach_pd_one(raw):
    def change(d):
        d["grades"][9]["pd_below"] = 0.9

    assert "must reach PD 1" in _broken(raw, change)


def test_grades_must_be_r1_to_r10_in_order(raw):
    def change(d):
        d["grades"][0]["grade"] = "A"

    assert "R1, R2, R3" in _broken(raw, change)


def test_lgd_outside_zero_one_is_named_by_grade(raw):
    def change(d):
        d["grades"][2]["lgd"] = 1.2

    msg = _broken(raw, change)
    assert "grades[R3].lgd" in msg
    assert "got 1.2" in msg


def test_negative_age_lgd_is_rejected(raw):
    def change(d):
        d["collections"]["lgd_by_age"]["bucket_0_30"] = -0.1

    assert "collections.lgd_by_age.bucket_0_30" in _broken(raw, change)


def test_age_lgd_must_not_decrease_with_age(raw):
    def change(d):
        d["collections"]["lgd_by_age"]["bucket_91_180"] = 0.1

    assert "must not decrease with the age" in _broken(raw, change)


def test_money_with_more_than_two_decimals_is_rejected(raw):
    def change(d):
        d["limits"]["rounding_step"] = 0.001

    assert "limits.rounding_step: money has at most 2 fraction digits" in _broken(raw, change)


def test_unknown_key_is_rejected(raw):
    def change(d):
        d["limits"]["rouding_step"] = 500  # a typo must not be silently ignored

    assert "limits.rouding_step: Extra inputs are not permitted" in _broken(raw, change)


def test_unknown_severity_is_rejected(raw):
    def change(d):
        d["watchlist"]["triggers"]["TAX_ARREARS"]["severity"] = "SEVERE"

    assert "watchlist.triggers.TAX_ARREARS.severity" in _broken(raw, change)


def test_dpd_60_must_be_above_dpd_30(raw):
    def change(d):
        d["watchlist"]["triggers"]["DPD_60"]["over_days"] = 20

    assert "DPD_60.over_days must be above DPD_30.over_days" in _broken(raw, change)


def test_collections_rules_need_a_final_catch_all(raw):
    def change(d):
        d["collections"]["actions"].pop()

    assert "last collections rule must be a catch-all" in _broken(raw, change)


def test_every_problem_is_listed_at_once(raw):
    def change(d):
        d["grades"][2]["lgd"] = 1.2
        d["limits"]["legal_event_cut_factor"] = 2

    msg = _broken(raw, change)
    assert "grades[R3].lgd" in msg and "limits.legal_event_cut_factor" in msg
