"""Point in time, for the whole panel: appending data dated after t changes no feature of
any observation at an as-of date <= t, and no label whose window ends on or before t.

Runs the real staging + panel code on a generated world (clean rows), cutting it at
month ends Hypothesis picks.
"""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from creditflow.core import schema
from creditflow.features.labels import HORIZON_DAYS, month_ends
from creditflow.features.panel import build_panel

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bronze(tmp_path_factory, typed_world):
    return typed_world(tmp_path_factory.mktemp("pit"), customers=80, months=30, seed=11)


def _panel(frames, cut: date | None, as_of_dates):
    def upto(family, col):
        df = frames[family]
        return (df if cut is None else df.filter(pl.col(col) <= cut)).lazy()

    return build_panel(
        ledger=upto("ledger", "document_date"),
        customers=upto("customers", schema.FILE_DATE),
        bureau=upto("bureau", "report_date"),
        events=upto("bureau_events", "event_date"),
        fx_rates=upto("fx_rates", "rate_date"),
        base_currency="CNY",
        as_of_dates=as_of_dates,
        data_end=cut,
    )


@pytest.fixture(scope="module")
def full(bronze):
    end = bronze["ledger"]["document_date"].max()
    dates = month_ends(bronze["ledger"]["document_date"].min(), end)
    return _panel(bronze, None, dates), dates


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_appending_later_data_changes_nothing_before_the_cut(bronze, full, data):
    result, dates = full
    cut = data.draw(st.sampled_from(dates[3:-1]), label="cut")
    early = [d for d in dates if d <= cut]
    before = _panel(bronze, cut, early).panel
    after = result.panel.filter(pl.col("as_of_date") <= cut)
    assert before.height > 50
    feature_cols = [c for c in before.columns if c != "default_12m"]
    assert before.select(feature_cols).equals(after.select(feature_cols))
    # Labels whose 12-month window ends on or before the cut were fully observed in both.
    mature = pl.col("as_of_date") + timedelta(days=HORIZON_DAYS) <= cut
    assert before.filter(mature).get_column("default_12m").equals(
        after.filter(mature).get_column("default_12m")
    )
