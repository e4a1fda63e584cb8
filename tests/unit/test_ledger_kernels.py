"""Small helpers behind the panel's fast paths, on hand-made inputs."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from creditflow.features.ledger import _window_quantile, in_strict_key_order

D = date


def _keys(rows):
    return pl.DataFrame(rows, schema={"customer_id": pl.String, "as_of_date": pl.Date}, orient="row")


def test_strict_key_order_holds_for_sorted_unique_keys():
    assert in_strict_key_order(_keys([("a", D(2024, 1, 31)), ("a", D(2024, 2, 29)), ("b", D(2024, 1, 31))]))


def test_strict_key_order_fails_on_a_repeated_key():
    assert not in_strict_key_order(_keys([("a", D(2024, 1, 31)), ("a", D(2024, 1, 31))]))


def test_strict_key_order_fails_on_a_key_out_of_order():
    assert not in_strict_key_order(_keys([("b", D(2024, 1, 31)), ("a", D(2024, 2, 29))]))


def test_strict_key_order_fails_on_a_null_key():
    assert not in_strict_key_order(_keys([("a", D(2024, 1, 31)), (None, D(2024, 2, 29))]))
    assert not in_strict_key_order(_keys([("a", None)]))


def test_window_quantile_by_hand():
    # customer 0: values 1, 5, 3, 10 on days 1, 2, 3, 10; customer 1: 7 on day 5
    cust = np.array([0, 0, 0, 0, 1])
    day = np.array([1, 2, 3, 10, 5])
    value = np.array([1, 5, 3, 10, 7])
    # window (t - 5, t]: at t=3 -> {1, 5, 3}: sorted 1 3 5, position 0.9 * 2 = 1.8 -> 3 + 0.8 * 2 = 4.6
    # t=10 -> days 6..10 -> {10}; t=20 -> none; customer 1 at t=5 -> {7}; customer 2 has no events
    got = _window_quantile(cust, day, value, np.array([0, 0, 0, 1, 2]), np.array([3, 10, 20, 5, 5]), 5, 0.9)
    assert got[0] == 3 + 0.8 * (5 - 3)
    assert got[1] == 10.0
    assert np.isnan(got[2])
    assert got[3] == 7.0
    assert np.isnan(got[4])
