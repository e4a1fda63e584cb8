"""Credit-limit rules one by one, with answers computed by hand from the default policy.

Base customer (``_row()``): PD 0.03 -> grade R6 (LGD 0.45, max limit 2,500,000, sales
multiple 1.0); current limit 100,000; exposure 50,000; sales 100,000 a month on 30-day
terms; no equity figures; nothing past due; no events. Ceilings: GRADE_CAP 2,500,000,
SALES_MULTIPLE 100,000 x 30/30 x 1.0 = 100,000, MAX_EXPECTED_LOSS 150,000 / (0.03 x 0.45)
= 11,111,111.11, MAX_INCREASE 150,000 -> 100,000 (HOLD, SALES_MULTIPLE).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import polars as pl
import pytest

from creditflow.core.schema import LIMITS
from creditflow.policy.limits import recommend_limits
from creditflow.policy.policy import load_policy

AS_OF = dt.date(2026, 1, 31)
SCHEMA = {
    "as_of_date": pl.Date,
    "customer_id": pl.String,
    "pd_12m": pl.Float64,
    "exposure": pl.Decimal(18, 2),
    "credit_limit": pl.Decimal(18, 2),
    "currency": pl.String,
    "fx_to_limit_currency": pl.Decimal(18, 8),
    "payment_terms_days": pl.Int64,
    "avg_monthly_sales_12m": pl.Decimal(18, 2),
    "equity": pl.Decimal(18, 2),
    "dpd_max": pl.Int32,
    "events_lawsuit_3m": pl.Int64,
    "events_execution_order_3m": pl.Int64,
    "default_date": pl.Date,
}


@pytest.fixture(scope="module")
def policy():
    return load_policy()


def _row(**kw) -> dict:
    row = {
        "as_of_date": AS_OF,
        "customer_id": "C1",
        "pd_12m": 0.03,
        "exposure": D("50000"),
        "credit_limit": D("100000"),
        "currency": "CNY",
        "fx_to_limit_currency": D("1"),
        "payment_terms_days": 30,
        "avg_monthly_sales_12m": D("100000"),
        "equity": None,
        "dpd_max": 0,
        "events_lawsuit_3m": 0,
        "events_execution_order_3m": 0,
        "default_date": None,
    }
    row.update(kw)
    return row


def _one(policy, **kw) -> dict:
    out = recommend_limits(pl.DataFrame([_row(**kw)], schema=SCHEMA), policy)
    assert out.height == 1
    return out.row(0, named=True)


def _check(rec: dict, limit: str, action: str, rule: str) -> None:
    assert (rec["recommended_limit"], rec["action"], rec["binding_rule"]) == (
        D(limit),
        action,
        rule,
    )


def test_base_customer_holds_at_the_sales_multiple(policy):
    rec = _one(policy)
    _check(rec, "100000", "HOLD", "SALES_MULTIPLE")
    assert rec["expected_loss"] == D("1350.00")  # 0.03 x 0.45 x 100,000
    assert rec["utilization"] == pytest.approx(0.5)
    assert rec["policy_version"] == "2026.1"


def test_sales_multiple_scales_with_payment_terms(policy):
    # 80,000 x 45/30 x 1.0 = 120,000 (below +50 % = 150,000)
    _check(
        _one(policy, avg_monthly_sales_12m=D("80000"), payment_terms_days=45),
        "120000",
        "INCREASE",
        "SALES_MULTIPLE",
    )


def test_limit_is_rounded_down_to_the_step(policy):
    # 123,456.78 -> 123,000
    _check(
        _one(policy, avg_monthly_sales_12m=D("123456.78")), "123000", "INCREASE", "SALES_MULTIPLE"
    )


def test_max_increase_per_review(policy):
    # R4 (PD 0.005): 80,000 x 45/30 x 1.4 = 168,000 > 100,000 x 1.5 = 150,000
    _check(
        _one(policy, pd_12m=0.005, avg_monthly_sales_12m=D("80000"), payment_terms_days=45),
        "150000",
        "INCREASE",
        "MAX_INCREASE",
    )


def test_first_limit_is_not_capped_by_max_increase(policy):
    rec = _one(policy, credit_limit=D("0"), exposure=D("0"), avg_monthly_sales_12m=D("80000"))
    _check(rec, "80000", "INCREASE", "SALES_MULTIPLE")
    assert rec["utilization"] is None  # limit 0


def test_grade_cap(policy):
    # R9 (PD 0.2): max 300,000; sales 1,000,000 x 0.4 = 400,000; +50 % of 250,000 = 375,000;
    # EL cap 150,000 / (0.2 x 0.55) = 1,363,636.36
    rec = _one(policy, pd_12m=0.2, credit_limit=D("250000"), avg_monthly_sales_12m=D("1000000"))
    _check(rec, "300000", "INCREASE", "GRADE_CAP")
    assert rec["expected_loss"] == D("33000.00")  # 0.2 x 0.55 x 300,000


def test_worst_grade_gets_no_limit(policy):
    # R10: max limit 0 and sales multiple 0 tie; SALES_MULTIPLE comes first in the priority
    _check(_one(policy, pd_12m=0.5), "0", "DECREASE", "SALES_MULTIPLE")


def test_equity_cap(policy):
    # 10 % of 500,000 = 50,000
    _check(_one(policy, equity=D("500000")), "50000", "DECREASE", "EQUITY_CAP")


def test_missing_equity_does_not_cap(policy):
    _check(_one(policy, equity=None), "100000", "HOLD", "SALES_MULTIPLE")


def test_negative_equity_caps_at_zero(policy):
    _check(_one(policy, equity=D("-1000")), "0", "DECREASE", "EQUITY_CAP")


def test_max_expected_loss(policy):
    tight = policy.model_copy(
        update={"limits": policy.limits.model_copy(update={"max_expected_loss": D("10000")})}
    )
    # 10,000 / (0.03 x 0.45) = 740,740.74 -> 740,000 (sales 1,000,000; +50 % = 900,000)
    rec = _one(tight, credit_limit=D("600000"), avg_monthly_sales_12m=D("1000000"))
    _check(rec, "740000", "INCREASE", "MAX_EXPECTED_LOSS")
    assert rec["expected_loss"] == D("9990.00")  # 0.0135 x 740,000


def test_max_expected_loss_at_an_exact_boundary_is_not_lost_to_float_noise(policy):
    tight = policy.model_copy(
        update={"limits": policy.limits.model_copy(update={"max_expected_loss": D("10000")})}
    )
    # R7 (PD 0.05, LGD 0.5): 10,000 / 0.025 = exactly 400,000 (a float quotient may land a hair below)
    rec = _one(tight, pd_12m=0.05, credit_limit=D("300000"), avg_monthly_sales_12m=D("1000000"))
    _check(rec, "400000", "INCREASE", "MAX_EXPECTED_LOSS")
    assert rec["expected_loss"] == D("10000.00")


def test_dpd_hold_stops_an_increase(policy):
    _check(
        _one(policy, dpd_max=31, avg_monthly_sales_12m=D("120000")), "100000", "HOLD", "DPD_HOLD"
    )


def test_dpd_at_the_threshold_does_not_hold(policy):
    _check(
        _one(policy, dpd_max=30, avg_monthly_sales_12m=D("120000")),
        "120000",
        "INCREASE",
        "SALES_MULTIPLE",
    )


def test_dpd_hold_still_lets_a_lower_base_decrease(policy):
    # min(current 100,000, base 80,000)
    _check(
        _one(policy, dpd_max=45, avg_monthly_sales_12m=D("80000")),
        "80000",
        "DECREASE",
        "SALES_MULTIPLE",
    )


def test_over_limit_exposure_stops_an_increase(policy):
    rec = _one(policy, exposure=D("100000.01"), avg_monthly_sales_12m=D("120000"))
    _check(rec, "100000", "HOLD", "OVER_LIMIT_HOLD")
    assert rec["utilization"] == pytest.approx(1.0000001)


def test_exposure_equal_to_the_limit_is_not_over_limit(policy):
    _check(
        _one(policy, exposure=D("100000"), avg_monthly_sales_12m=D("120000")),
        "120000",
        "INCREASE",
        "SALES_MULTIPLE",
    )


def test_dpd_hold_wins_a_tie_with_over_limit(policy):
    _check(
        _one(policy, dpd_max=90, exposure=D("150000"), avg_monthly_sales_12m=D("120000")),
        "100000",
        "HOLD",
        "DPD_HOLD",
    )


def test_lawsuit_cuts_the_limit(policy):
    # capacity 120,000 x 0.5 = 60,000 < current 100,000
    _check(
        _one(policy, events_lawsuit_3m=1, avg_monthly_sales_12m=D("120000")),
        "60000",
        "DECREASE",
        "LEGAL_EVENT_CUT",
    )


def test_execution_order_cuts_the_limit(policy):
    _check(_one(policy, events_execution_order_3m=2), "50000", "DECREASE", "LEGAL_EVENT_CUT")


def test_legal_cut_does_not_compound_over_the_next_reviews(policy):
    # next month the event is still within 3 months and the limit is already 60,000
    rec = _one(
        policy, events_lawsuit_3m=1, credit_limit=D("60000"), avg_monthly_sales_12m=D("120000")
    )
    _check(rec, "60000", "HOLD", "LEGAL_EVENT_CUT")


def test_customer_in_default_is_suspended(policy):
    rec = _one(policy, default_date=AS_OF)
    _check(rec, "0", "SUSPEND", "DEFAULT_SUSPEND")
    assert rec["expected_loss"] == D("0.00")


def test_default_after_the_as_of_date_does_not_suspend(policy):
    _check(
        _one(policy, default_date=AS_OF + dt.timedelta(days=1)), "100000", "HOLD", "SALES_MULTIPLE"
    )


def test_a_change_below_one_step_keeps_the_current_limit(policy):
    # caps allow 100,600 -> 100,000 would cut a limit (100,500) that breaks no rule
    _check(
        _one(policy, credit_limit=D("100500"), avg_monthly_sales_12m=D("100600")),
        "100500",
        "HOLD",
        "ROUNDING",
    )


def test_a_real_cap_below_the_current_limit_still_decreases(policy):
    _check(
        _one(policy, credit_limit=D("100500"), avg_monthly_sales_12m=D("99999")),
        "99000",
        "DECREASE",
        "SALES_MULTIPLE",
    )


def test_hold_rule_is_reported_when_it_equals_an_odd_current_limit(policy):
    _check(
        _one(policy, credit_limit=D("100500"), dpd_max=40, avg_monthly_sales_12m=D("200000")),
        "100500",
        "HOLD",
        "DPD_HOLD",
    )


def test_amounts_are_converted_to_the_limit_currency(policy):
    # USD limit; base amounts x 0.13888888: exposure 50,000 -> 6,944.444 -> 6,944.44;
    # sales cap 100,000 -> 13,888.88 -> 13,000 (below +50 % of 10,000)
    rec = _one(
        policy, currency="USD", fx_to_limit_currency=D("0.13888888"), credit_limit=D("10000")
    )
    assert rec["currency"] == "USD"
    assert rec["exposure"] == D("6944.44")
    _check(rec, "13000", "INCREASE", "SALES_MULTIPLE")


def test_grade_cap_is_converted_from_base_currency(policy):
    # R9 max 300,000 CNY x 0.13888888 = 41,666.664 -> 41,000 USD
    rec = _one(
        policy,
        pd_12m=0.2,
        currency="USD",
        fx_to_limit_currency=D("0.13888888"),
        credit_limit=D("40000"),
        exposure=D("0"),
        avg_monthly_sales_12m=D("10000000"),
    )
    _check(rec, "41000", "INCREASE", "GRADE_CAP")


def test_converted_exposure_rounds_half_up(policy):
    # 12.25 x 0.5 = 6.125 -> 6.13 (half-to-even would give 6.12)
    assert _one(policy, exposure=D("12.25"), fx_to_limit_currency=D("0.5"))["exposure"] == D("6.13")


def test_output_has_the_contract_columns_sorted(policy):
    frame = pl.DataFrame([_row(customer_id="B"), _row(customer_id="A")], schema=SCHEMA)
    out = recommend_limits(frame.lazy(), policy)
    assert out.schema == LIMITS.polars_schema
    assert out.get_column("customer_id").to_list() == ["A", "B"]


def test_money_as_float_is_rejected(policy):
    frame = pl.DataFrame([_row()], schema=SCHEMA).with_columns(pl.col("exposure").cast(pl.Float64))
    with pytest.raises(ValueError, match="exposure must be a Decimal"):
        recommend_limits(frame, policy)


def test_payment_terms_out_of_range_is_rejected(policy):
    with pytest.raises(ValueError, match="payment_terms_days must be 0..365; got 400"):
        recommend_limits(pl.DataFrame([_row(payment_terms_days=400)], schema=SCHEMA), policy)


def test_missing_column_is_rejected(policy):
    with pytest.raises(ValueError, match=r"missing columns \['equity'\]"):
        recommend_limits(pl.DataFrame([_row()], schema=SCHEMA).drop("equity"), policy)


def test_duplicate_customer_is_rejected(policy):
    frame = pl.DataFrame([_row(), _row(customer_id="C2"), _row()], schema=SCHEMA)
    with pytest.raises(
        ValueError, match="one row per customer_id and as_of_date; got 1 duplicate rows, e.g. 'C1'"
    ):
        recommend_limits(frame, policy)
