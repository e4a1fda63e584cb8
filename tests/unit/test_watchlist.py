"""Watchlist triggers one by one, severity, and since_date carried from the previous run."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from creditflow.core.schema import WATCHLIST
from creditflow.policy.policy import load_policy
from creditflow.policy.watchlist import build_watchlist

AS_OF = dt.date(2026, 2, 28)
PREV = dt.date(2026, 1, 31)
OLDER = dt.date(2025, 12, 31)
SCHEMA = {
    "as_of_date": pl.Date,
    "customer_id": pl.String,
    "pd_12m": pl.Float64,
    "dpd_max": pl.Int32,
    "utilization": pl.Float64,
    "events_lawsuit_3m": pl.Int64,
    "events_execution_order_3m": pl.Int64,
    "bureau_score_chg_3m": pl.Int64,
    "tax_arrears": pl.Int8,
    "default_date": pl.Date,
}


@pytest.fixture(scope="module")
def policy():
    return load_policy()


def _row(**kw) -> dict:
    row = {
        "as_of_date": AS_OF,
        "customer_id": "C1",
        "pd_12m": 0.01,
        "dpd_max": 0,
        "utilization": 0.5,
        "events_lawsuit_3m": 0,
        "events_execution_order_3m": 0,
        "bureau_score_chg_3m": 0,
        "tax_arrears": 0,
        "default_date": None,
    }
    row.update(kw)
    return row


def _frame(*rows: dict) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=SCHEMA)


def _prev_scores(*rows: tuple[str, float, str], as_of: dt.date = PREV) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "as_of_date": [as_of] * len(rows),
            "customer_id": [r[0] for r in rows],
            "pd_12m": [r[1] for r in rows],
            "risk_grade": [r[2] for r in rows],
        }
    )


def _watch(*rows: tuple[dt.date, str, dt.date]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "as_of_date": [r[0] for r in rows],
            "customer_id": [r[1] for r in rows],
            "severity": ["LOW"] * len(rows),
            "triggers": [["TAX_ARREARS"]] * len(rows),
            "since_date": [r[2] for r in rows],
        },
        schema=WATCHLIST.polars_schema,
    )


def _listed(policy, *rows, prev_scores=None, prev_watch=None) -> dict[str, tuple[str, list[str]]]:
    out = build_watchlist(_frame(*rows), prev_scores, prev_watch, policy)
    return {r["customer_id"]: (r["severity"], r["triggers"]) for r in out.iter_rows(named=True)}


def test_quiet_customer_is_not_listed(policy):
    assert _listed(policy, _row()) == {}


def test_dpd_30_fires_above_30_days(policy):
    assert _listed(policy, _row(dpd_max=31), _row(customer_id="C2", dpd_max=30)) == {
        "C1": ("MEDIUM", ["DPD_30"])
    }


def test_dpd_60_replaces_dpd_30(policy):
    assert _listed(policy, _row(dpd_max=61)) == {"C1": ("HIGH", ["DPD_60"])}


def test_over_limit_fires_above_full_utilization(policy):
    got = _listed(
        policy,
        _row(utilization=1.01),
        _row(customer_id="C2", utilization=1.0),
        _row(customer_id="C3", utilization=None),
    )
    assert got == {"C1": ("MEDIUM", ["OVER_LIMIT"])}


def test_bureau_score_drop(policy):
    got = _listed(
        policy, _row(bureau_score_chg_3m=-50), _row(customer_id="C2", bureau_score_chg_3m=-49)
    )
    assert got == {"C1": ("MEDIUM", ["BUREAU_SCORE_DROP"])}


def test_new_lawsuit(policy):
    assert _listed(policy, _row(events_lawsuit_3m=1)) == {"C1": ("MEDIUM", ["NEW_LAWSUIT"])}


def test_tax_arrears(policy):
    assert _listed(policy, _row(tax_arrears=1)) == {"C1": ("LOW", ["TAX_ARREARS"])}


def test_tax_arrears_as_boolean(policy):
    frame = _frame(_row()).with_columns(tax_arrears=pl.lit(True))
    out = build_watchlist(frame, None, None, policy)
    assert out.get_column("triggers").to_list() == [["TAX_ARREARS"]]


def test_execution_order(policy):
    assert _listed(policy, _row(events_execution_order_3m=1)) == {
        "C1": ("HIGH", ["EXECUTION_ORDER"])
    }


def test_pd_jump_needs_both_ratio_and_absolute_rise(policy):
    prev = _prev_scores(("C1", 0.01, "R5"), ("C2", 0.003, "R3"), ("C3", 0.10, "R8"))
    got = _listed(
        policy,
        _row(customer_id="C1", pd_12m=0.03),  # x3 and +0.02 (exactly the threshold)
        _row(customer_id="C2", pd_12m=0.009),  # x3 but only +0.006
        _row(customer_id="C3", pd_12m=0.14),  # +0.04 but only x1.4
        prev_scores=prev,
    )  # every move is at most one grade, so GRADE_DOWN_2 stays quiet
    assert got == {"C1": ("HIGH", ["PD_JUMP"])}


def test_grade_down_two_notches(policy):
    prev = _prev_scores(("C1", 0.004, "R3"), ("C2", 0.006, "R4"))
    # PD 0.015 is R5: two notches below R3, one below R4; +0.011 is no PD_JUMP
    got = _listed(
        policy,
        _row(customer_id="C1", pd_12m=0.015),
        _row(customer_id="C2", pd_12m=0.015),
        prev_scores=prev,
    )
    assert got == {"C1": ("MEDIUM", ["GRADE_DOWN_2"])}


def test_migration_triggers_need_a_previous_score(policy):
    prev = _prev_scores(("OTHER", 0.001, "R2"))
    assert _listed(policy, _row(pd_12m=0.5), prev_scores=prev) == {}
    assert _listed(policy, _row(pd_12m=0.5), prev_scores=None) == {}


def test_severity_is_the_highest_trigger_and_triggers_keep_contract_order(policy):
    assert _listed(policy, _row(tax_arrears=1, dpd_max=40)) == {
        "C1": ("MEDIUM", ["DPD_30", "TAX_ARREARS"])
    }


def test_three_triggers_escalate_one_level(policy):
    got = _listed(policy, _row(tax_arrears=1, events_lawsuit_3m=1, utilization=1.5))
    assert got == {"C1": ("HIGH", ["OVER_LIMIT", "NEW_LAWSUIT", "TAX_ARREARS"])}


def test_disabled_trigger_does_not_fire(policy):
    t = policy.watchlist.triggers
    off = policy.model_copy(
        update={
            "watchlist": policy.watchlist.model_copy(
                update={
                    "triggers": t.model_copy(
                        update={"TAX_ARREARS": t.TAX_ARREARS.model_copy(update={"enabled": False})}
                    )
                }
            )
        }
    )
    assert _listed(off, _row(tax_arrears=1)) == {}


def test_customers_in_default_are_left_to_collections(policy):
    assert _listed(policy, _row(dpd_max=120, default_date=dt.date(2026, 1, 15))) == {}


def test_since_date_is_kept_for_a_customer_listed_at_the_previous_run(policy):
    prev_scores = _prev_scores(("C1", 0.01, "R5"), ("C2", 0.01, "R5"), ("C3", 0.01, "R5"))
    prev_watch = _watch(
        (PREV, "C1", dt.date(2025, 11, 30)),  # unbroken stay: keep
        (OLDER, "C2", dt.date(2025, 12, 31)),  # listed two runs ago, not last run: new stay
    )
    out = build_watchlist(
        _frame(*[_row(customer_id=c, tax_arrears=1) for c in ("C1", "C2", "C3")]),
        prev_scores,
        prev_watch,
        policy,
    )
    assert dict(zip(out["customer_id"], out["since_date"], strict=True)) == {
        "C1": dt.date(2025, 11, 30),
        "C2": AS_OF,
        "C3": AS_OF,
    }


def test_an_empty_previous_watchlist_breaks_the_stay(policy):
    # the previous run (2026-01-31, seen in scores) listed nobody; the older stay ended there
    prev_scores = _prev_scores(("C1", 0.01, "R5"))
    prev_watch = _watch((OLDER, "C1", dt.date(2025, 10, 31)))
    out = build_watchlist(_frame(_row(tax_arrears=1)), prev_scores, prev_watch, policy)
    assert out.get_column("since_date").to_list() == [AS_OF]


def test_previous_run_from_the_watchlist_when_no_scores_are_given(policy):
    prev_watch = _watch((PREV, "C1", dt.date(2025, 10, 31)))
    out = build_watchlist(_frame(_row(tax_arrears=1)), None, prev_watch, policy)
    assert out.get_column("since_date").to_list() == [dt.date(2025, 10, 31)]


def test_rerunning_an_as_of_date_ignores_its_own_earlier_output(policy):
    prev_scores = pl.concat(
        [_prev_scores(("C1", 0.01, "R5")), _prev_scores(("C1", 0.01, "R5"), as_of=AS_OF)]
    )
    prev_watch = _watch((AS_OF, "C1", dt.date(2024, 1, 31)))  # from an earlier attempt at this date
    out = build_watchlist(_frame(_row(tax_arrears=1)), prev_scores, prev_watch, policy)
    assert out.get_column("since_date").to_list() == [AS_OF]


def test_output_has_the_contract_columns(policy):
    out = build_watchlist(
        _frame(_row(tax_arrears=1), _row(customer_id="A0", dpd_max=70)), None, None, policy
    )
    assert out.schema == WATCHLIST.polars_schema
    assert out.get_column("customer_id").to_list() == ["A0", "C1"]


def test_one_run_per_call(policy):
    with pytest.raises(ValueError, match="one as_of_date"):
        build_watchlist(_frame(_row(), _row(customer_id="C2", as_of_date=PREV)), None, None, policy)
