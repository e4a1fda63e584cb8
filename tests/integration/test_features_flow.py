"""The real features flow on an ingested generated world: the panel, its labels and the
default dates agree with the generator's ground truth."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest

from creditflow.core.paths import Paths
from creditflow.demo.generator import generate
from creditflow.features.labels import HORIZON_DAYS
from creditflow.features.registry import feature_names
from creditflow.flows.features import features_flow, read_default_dates, scan_panel
from creditflow.flows.ingest import ingest_flow

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def built(tmp_path_factory, prefect_harness):
    root = tmp_path_factory.mktemp("features")
    landing, work = root / "landing", root / "work"
    generate(landing, customers=250, months=30, seed=21, bad_rows=0.0)
    ingest = ingest_flow(workdir=str(work), landing=str(landing), return_state=True)
    assert ingest.is_completed(), ingest.message
    state = features_flow(workdir=str(work), return_state=True)
    assert state.is_completed(), state.message
    return landing, work, state.result()


def test_default_dates_match_the_generators_truth(built):
    landing, work, summary = built
    got = read_default_dates(Paths(work))
    truth = pl.read_parquet(landing / "generator_truth" / "customers.parquet").filter(
        pl.col("expected_default_date").is_not_null()
        & (pl.col("expected_default_date") <= pl.lit(summary["data_end"]).str.to_date())
    )
    assert truth.height >= 5  # the world really has defaults to find
    joined = got.join(truth.select("customer_id", "expected_default_date"), on="customer_id", how="full",
                      coalesce=True)
    wrong = joined.filter(
        pl.col("default_date").is_null()
        | pl.col("expected_default_date").is_null()
        | (pl.col("default_date") != pl.col("expected_default_date"))
    )
    assert wrong.height == 0, wrong


def test_panel_has_every_feature_and_sound_labels(built):
    _, work, summary = built
    paths = Paths(work)
    panel = scan_panel(paths, summary["feature_set"]).collect()
    assert panel.height == summary["observations"] > 1000
    assert set(feature_names(summary["feature_set"])) <= set(panel.columns)
    assert panel.select("customer_id", "as_of_date").is_duplicated().sum() == 0
    # Every as-of date is a month end and unlabelled rows are exactly the immature windows.
    assert (panel["as_of_date"] + timedelta(days=1)).dt.day().unique().to_list() == [1]
    data_end = pl.lit(summary["data_end"]).str.to_date()
    immature = panel.filter(pl.col("as_of_date") + timedelta(days=HORIZON_DAYS) > data_end)
    assert immature["default_12m"].null_count() == immature.height
    mature = panel.filter(pl.col("as_of_date") + timedelta(days=HORIZON_DAYS) <= data_end)
    assert mature["default_12m"].null_count() == 0
    # Nobody in default at t is an observation at t.
    defaults = read_default_dates(paths)
    in_default = panel.join(defaults, on="customer_id").filter(pl.col("default_date") <= pl.col("as_of_date"))
    assert in_default.height == 0
    # A label of 1 means the default date falls in (t, t + 365 days].
    ones = panel.filter(pl.col("default_12m") == 1).join(defaults, on="customer_id")
    assert ones.height == summary["defaults_in_labels"] > 0
    gap = (ones["default_date"] - ones["as_of_date"]).dt.total_days()
    assert gap.min() > 0 and gap.max() <= HORIZON_DAYS
    # Exposure equals the aging buckets it is made of.
    aging = pl.sum_horizontal([pl.col(c).cast(pl.Float64) for c in
                               ("aging_current", "aging_1_30", "aging_31_90", "aging_91_180", "aging_over_180")])
    diff = panel.select((pl.col("exposure").cast(pl.Float64) - aging).abs().max()).item()
    assert diff < 0.011


def test_riskier_customers_by_the_generators_latent_risk_default_more(built):
    landing, work, summary = built
    panel = scan_panel(Paths(work), summary["feature_set"]).filter(pl.col("default_12m").is_not_null()).collect()
    truth = pl.read_parquet(landing / "generator_truth" / "customers.parquet").select("customer_id",
                                                                                       "latent_logit_start")
    df = panel.join(truth, on="customer_id")
    cut = df["latent_logit_start"].median()
    high = df.filter(pl.col("latent_logit_start") > cut)["default_12m"].mean()
    low = df.filter(pl.col("latent_logit_start") <= cut)["default_12m"].mean()
    assert high > 1.5 * low


def test_rebuilding_gives_identical_panel_and_one_date_is_a_slice(built):
    _, work, summary = built
    paths = Paths(work)
    before = scan_panel(paths, summary["feature_set"]).collect()
    last = summary["last_as_of"]
    state = features_flow(workdir=str(work), as_of=last, return_state=True)
    assert state.is_completed()
    after = scan_panel(paths, summary["feature_set"]).collect()
    assert after.equals(before)
