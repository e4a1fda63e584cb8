"""Purging training periods whose outcome windows overlap the validation window."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from creditflow.models.split import SplitConfig, SplitError, outcome_window_periods, split_windows


def _month_end(i: int) -> dt.date:
    y, m = divmod(i + 1, 12)
    return dt.date(2022 + y, m + 1, 1) - dt.timedelta(days=1)


def horizon_panel(n_periods: int, horizon: int, n_customers: int = 6) -> pl.DataFrame:
    """Customer c (c >= 1) defaults after period 2c+3 and leaves: its last ``horizon`` rows are 1.

    Customer 0 never defaults and is observed in every period.
    """
    rows = []
    for c in range(n_customers):
        last = n_periods - 1 if c == 0 else min(n_periods - 1, 2 * c + 3)
        for p in range(last + 1):
            y = int(c > 0 and p > last - horizon)
            rows.append({"customer_id": f"C{c}", "as_of_date": _month_end(p), "default_12m": y})
    return pl.DataFrame(rows, schema_overrides={"default_12m": pl.Int64})


def test_outcome_window_is_the_longest_run_of_ones_before_a_customer_leaves():
    df = horizon_panel(20, horizon=3)
    assert (
        outcome_window_periods(
            df, target="default_12m", time_column="as_of_date", group_columns=["customer_id"]
        )
        == 3
    )


def test_outcome_window_is_unknown_when_labels_switch_back_or_without_groups():
    df = horizon_panel(20, horizon=3)
    # C1 is 1 at periods 3..5; a 0 after them means labels can switch back
    back = pl.concat(
        [
            df,
            pl.DataFrame(
                {"customer_id": ["C1"], "as_of_date": [_month_end(6)], "default_12m": [0]}
            ),
        ]
    )
    assert (
        outcome_window_periods(
            back, target="default_12m", time_column="as_of_date", group_columns=["customer_id"]
        )
        == 0
    )
    assert (
        outcome_window_periods(df, target="default_12m", time_column="as_of_date", group_columns=[])
        == 0
    )


def test_inferred_purge_drops_horizon_minus_one_periods_before_validation():
    # 30 periods with a 3-period outcome window: 6 test, 6 validation, 18 -> 16 train, 2 purged
    df = horizon_panel(30, horizon=3, n_customers=12)
    s = split_windows(
        df, target="default_12m", time_column="as_of_date", group_columns=["customer_id"]
    )
    assert s.summary.n_purge_periods == 2
    assert [w.n_periods for w in s.summary.windows] == [16, 6, 6]
    assert s.summary.window("train").last_period == str(_month_end(15))
    assert s.summary.window("validation").first_period == str(_month_end(18))
    assert "2 training period(s) before validation were purged" in s.summary.note


def test_inferred_purge_keeps_half_of_the_training_periods():
    # 20 periods, 12-period window: 4 test, 4 validation, 12 train -> 11 wanted, 6 allowed
    df = horizon_panel(20, horizon=12, n_customers=10)
    s = split_windows(
        df, target="default_12m", time_column="as_of_date", group_columns=["customer_id"]
    )
    assert s.summary.n_purge_periods == 6
    assert [w.n_periods for w in s.summary.windows] == [6, 4, 4]
    assert "of the 11 needed" in s.summary.note


def test_no_purge_without_group_columns_or_when_set_to_zero():
    df = horizon_panel(30, horizon=3, n_customers=12)
    for s in (
        split_windows(df, target="default_12m", time_column="as_of_date"),
        split_windows(
            df,
            target="default_12m",
            time_column="as_of_date",
            group_columns=["customer_id"],
            config=SplitConfig(purge_periods=0),
        ),
    ):
        assert s.summary.n_purge_periods == 0
        assert [w.n_periods for w in s.summary.windows] == [18, 6, 6]


def test_explicit_purge_is_applied_or_refused_when_it_does_not_fit():
    df = horizon_panel(30, horizon=3, n_customers=12)
    s = split_windows(
        df, target="default_12m", time_column="as_of_date", config=SplitConfig(purge_periods=5)
    )
    assert [w.n_periods for w in s.summary.windows] == [13, 6, 6]
    # purged periods 13..17 hold C0 plus the customers still present (C5.. leave after 2c+3):
    # 8 + 7 + 7 + 6 + 6 rows
    assert s.summary.n_gap_rows_dropped == 34
    with pytest.raises(SplitError, match="16 purge periods"):
        split_windows(
            df, target="default_12m", time_column="as_of_date", config=SplitConfig(purge_periods=16)
        )


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_purge_periods_is_checked(bad):
    with pytest.raises(ValueError, match="purge_periods must be None"):
        SplitConfig(purge_periods=bad)
