"""Train / validation / test windows: out of time, whole periods, clear errors."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from creditflow.models.split import SplitConfig, SplitError, split_windows


def _month_end(i: int) -> dt.date:
    y, m = divmod(i + 1, 12)
    return dt.date(2022 + y, m + 1, 1) - dt.timedelta(days=1)


def panel(n_periods: int, rows_per_period: int = 4, targets=None) -> pl.DataFrame:
    """``rows_per_period`` customers per month end; by default customer 0 defaults every month."""
    rows = []
    for p in range(n_periods):
        for c in range(rows_per_period):
            y = targets(p, c) if targets else int(c == 0)
            rows.append(
                {
                    "customer_id": f"C{c}",
                    "as_of_date": _month_end(p),
                    "x": float(c),
                    "default_12m": y,
                }
            )
    return pl.DataFrame(rows, schema_overrides={"default_12m": pl.Int64})


def test_windows_are_out_of_time_and_whole_periods():
    df = panel(10)
    s = split_windows(df, target="default_12m", time_column="as_of_date")
    # 10 periods, 20% + 20% -> 2 test, 2 validation, 6 train periods
    assert s.train["as_of_date"].max() < s.validation["as_of_date"].min()
    assert s.validation["as_of_date"].max() < s.test["as_of_date"].min()
    assert [w.n_periods for w in s.summary.windows] == [6, 2, 2]
    assert (s.train.height, s.validation.height, s.test.height) == (24, 8, 8)
    assert s.summary.method == "out_of_time"
    assert s.summary.window("test").first_period == "2022-09-30"
    assert s.summary.window("test").last_period == "2022-10-31"
    assert s.summary.window("train").default_rate == pytest.approx(0.25)


def test_fractions_are_configurable():
    s = split_windows(
        panel(20),
        target="default_12m",
        time_column="as_of_date",
        config=SplitConfig(valid_fraction=0.15, test_fraction=0.25),
    )
    # round(20 * .25) = 5 test, round(20 * .15) = 3 validation, 12 train
    assert [w.n_periods for w in s.summary.windows] == [12, 3, 5]


def test_gap_periods_are_dropped_between_windows():
    s = split_windows(
        panel(12), target="default_12m", time_column="as_of_date", config=SplitConfig(gap_periods=1)
    )
    # 12 periods: 2 test + 2 validation + 2 gaps -> 6 train; gap months 7 and 10 (0-based 6 and 9) dropped
    assert [w.n_periods for w in s.summary.windows] == [6, 2, 2]
    assert s.summary.n_gap_rows_dropped == 8
    assert s.train["as_of_date"].max() == _month_end(5)
    assert s.validation["as_of_date"].min() == _month_end(7)
    assert s.test["as_of_date"].min() == _month_end(10)


def test_unlabelled_rows_are_left_out_and_counted():
    df = panel(10).with_columns(
        pl.when(pl.col("as_of_date") == _month_end(9))
        .then(None)
        .otherwise(pl.col("default_12m"))
        .alias("default_12m")
    )
    s = split_windows(df, target="default_12m", time_column="as_of_date")
    assert s.summary.n_unlabelled_dropped == 4
    assert sum(w.n_rows for w in s.summary.windows) == 36
    assert s.test["as_of_date"].max() == _month_end(8)


def test_too_few_periods_is_a_clear_error():
    with pytest.raises(
        SplitError, match=r"too few periods.*4 distinct 'as_of_date' values.*need at least 5"
    ):
        split_windows(panel(4), target="default_12m", time_column="as_of_date")


def test_single_class_window_is_a_clear_error():
    # nobody defaults in the last two months -> the test window has one class
    df = panel(10, targets=lambda p, c: int(c == 0 and p < 8))
    with pytest.raises(
        SplitError,
        match=r"the test window \(2022-09-30\.\.2022-10-31, 2 periods\) has only non-defaulters",
    ):
        split_windows(df, target="default_12m", time_column="as_of_date")


def test_constant_target_is_a_clear_error():
    with pytest.raises(SplitError, match=r"is constant \(all 0 in 40 labelled rows\)"):
        split_windows(
            panel(10, targets=lambda p, c: 0), target="default_12m", time_column="as_of_date"
        )


def test_target_must_be_zero_one():
    with pytest.raises(SplitError, match=r"must be 0/1; got values such as \[2(\.0)?\]"):
        split_windows(
            panel(10, targets=lambda p, c: 2 * int(c == 0)),
            target="default_12m",
            time_column="as_of_date",
        )


def test_missing_columns_are_named():
    with pytest.raises(SplitError, match="time column 'month' is not in the table"):
        split_windows(panel(10), target="default_12m", time_column="month")
    with pytest.raises(SplitError, match="target column 'bad' is not in the table"):
        split_windows(panel(10), target="bad", time_column="as_of_date")


def test_null_dates_are_refused():
    df = panel(10).with_columns(
        pl.when(pl.col("x") == 1.0).then(None).otherwise(pl.col("as_of_date")).alias("as_of_date")
    )
    with pytest.raises(SplitError, match="has 10 null values"):
        split_windows(df, target="default_12m", time_column="as_of_date")


def test_without_time_column_falls_back_to_seeded_stratified_split():
    df = panel(25, rows_per_period=8).drop("as_of_date")  # 200 rows, 25 defaults
    a = split_windows(df, target="default_12m", time_column=None, seed=3)
    b = split_windows(df, target="default_12m", time_column=None, seed=3)
    assert a.summary.method == "stratified_random"
    assert "NOT out of time" in a.summary.note
    # stratified: 5 of 25 defaults and 35 of 175 non-defaults in each of validation and test
    assert (a.validation.height, a.test.height, a.train.height) == (40, 40, 120)
    assert a.validation["default_12m"].sum() == 5 and a.test["default_12m"].sum() == 5
    assert a.train.equals(b.train) and a.test.equals(b.test)


def test_grouped_fallback_keeps_each_customer_in_one_window():
    df = panel(6, rows_per_period=40, targets=lambda p, c: int(c % 5 == 0 and p == 3)).drop(
        "as_of_date"
    )
    s = split_windows(
        df, target="default_12m", time_column=None, group_columns=["customer_id"], seed=1
    )
    assert s.summary.method == "grouped_stratified_random"
    ids = [set(w["customer_id"].to_list()) for w in (s.train, s.validation, s.test)]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert sum(len(i) for i in ids) == 40
    # 8 defaulting customers: round(8 * .2) = 2 in validation and 2 in test
    assert s.validation["default_12m"].sum() == 2 and s.test["default_12m"].sum() == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"valid_fraction": 0.0}, r"valid_fraction must be in \(0, 0.5\)"),
        ({"test_fraction": 0.6}, r"test_fraction must be in \(0, 0.5\)"),
        ({"valid_fraction": 0.45, "test_fraction": 0.45}, "at least 20% for training"),
        ({"gap_periods": -1}, "gap_periods must be an integer >= 0"),
    ],
)
def test_split_config_is_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SplitConfig(**kwargs)
