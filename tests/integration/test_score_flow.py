"""The real score flow on a generated world: champion from MLflow (SQLite), the four Delta tables
with their exact schemas, scores that agree with PDs and contributions, limits within the policy's
caps, collections = customers in default, idempotent re-publish with time travel, clear errors."""

from __future__ import annotations

import shutil
from datetime import date
from decimal import Decimal

import polars as pl
import pytest
from deltalake import DeltaTable

from creditflow.core.config import Settings
from creditflow.core.paths import Paths
from creditflow.core.schema import OUTPUT_TABLES
from creditflow.demo.generator import generate
from creditflow.demo.world import WorldParameters
from creditflow.features.registry import reason_text
from creditflow.flows.features import features_flow, read_default_dates
from creditflow.flows.ingest import ingest_flow
from creditflow.flows.lake import Manifest
from creditflow.flows.publish import RUNS_SCHEMA, read_runs, read_table
from creditflow.flows.score import format_score, panel_as_of_dates, read_observations, run_score
from creditflow.flows.tracking import load_champion
from creditflow.flows.train import run_train
from creditflow.models.scoring import risk_grade
from creditflow.policy.policy import load_policy

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def world(tmp_path_factory, prefect_harness):
    root = tmp_path_factory.mktemp("score")
    landing, work = root / "landing", root / "work"
    # As in the training test: a risky world, so that 300 customers give a promotable model
    # and customers in default at the last month end.
    generate(landing, customers=300, months=30, seed=21, bad_rows=0.0,
             world=WorldParameters(risk_mean_logit=-4.9))
    assert ingest_flow(workdir=str(work), landing=str(landing), return_state=True).is_completed()
    assert features_flow(workdir=str(work), return_state=True).is_completed()
    settings = Settings.model_validate({"workdir": str(work), "train": {"max_calibration_error": 0.1}})
    code, summary = run_train(settings, trials=3)
    assert code == 0 and summary["promoted"], summary
    dates = panel_as_of_dates(Paths(work), "pd_features_v1")
    return {"root": root, "settings": settings, "previous": dates[-2], "latest": dates[-1]}


@pytest.fixture(scope="module")
def runs(world):
    """Score the month before the latest, then the latest twice (the second is a re-publish)."""
    s = world["settings"]
    out = {}
    for key, as_of in (("previous", world["previous"]), ("latest", world["latest"]),
                       ("again", world["latest"])):
        code, summary = run_score(s, as_of.isoformat())
        assert code == 0, summary
        out[key] = summary
    return out


def _paths(world) -> Paths:
    return Paths(world["settings"].workdir)


def _table(world, name, as_of=None, version=None) -> pl.DataFrame:
    return read_table(_paths(world).table(name), OUTPUT_TABLES[name], as_of=as_of, version=version)


def test_the_four_tables_have_the_contract_schemas(world, runs):
    for name, table in OUTPUT_TABLES.items():
        path = _paths(world).table(name)
        assert (path / "_delta_log").is_dir(), name
        raw = pl.read_delta(str(path))  # as any reader sees it, before our own select
        assert dict(raw.schema) == dict(table.polars_schema), name
        assert DeltaTable(str(path)).metadata().partition_columns == ["as_of_date"]
        assert _table(world, name).schema == table.polars_schema
    assert runs["latest"]["rows"]["scores"] > 100 and runs["latest"]["rows"]["collections"] > 0


def test_one_score_per_observation_consistent_with_pd(world, runs):
    as_of = world["latest"]
    obs = read_observations(_paths(world), "pd_features_v1", as_of)
    scores = _table(world, "scores", as_of=as_of)
    assert scores.get_column("customer_id").to_list() == obs.get_column("customer_id").to_list()
    assert scores.select(pl.col("pd_12m").is_between(0, 1, closed="none").all()).item()
    by_pd = scores.sort("pd_12m")
    assert by_pd.select((pl.col("score").diff().drop_nulls() <= 0).all()).item()  # higher PD, never higher score
    policy = load_policy()
    assert by_pd.get_column("risk_grade").to_list() == risk_grade(by_pd.get_column("pd_12m"), policy).to_list()
    assert set(scores.get_column("model_version")) == {runs["latest"]["model_version"]} == {"1"}
    assert set(scores.get_column("run_id")) == {runs["again"]["run_id"]}


def test_reason_codes_are_the_top_positive_contributions(world, runs):
    as_of = world["latest"]
    model, _ = load_champion(world["settings"].tracking_uri, "creditflow-pd-12m")
    obs = read_observations(_paths(world), "pd_features_v1", as_of)
    contrib = model.contributions(obs)[:, : len(model.spec.features)]
    expected = []
    for row in contrib:
        order = sorted(range(len(row)), key=lambda j: (-row[j], j))[:3]
        expected.append([reason_text(model.spec.features[j]) for j in order if row[j] > 0])
    got = _table(world, "scores", as_of=as_of).get_column("reason_codes").to_list()
    assert got == expected
    assert sum(len(r) == 3 for r in got) > len(got) / 2  # most customers have three reasons


def test_limits_stay_within_the_policy_caps(world, runs):
    as_of = world["latest"]
    policy = load_policy()
    obs = read_observations(_paths(world), "pd_features_v1", as_of).select(
        "customer_id", "fx_to_base", "credit_limit")
    limits = (
        _table(world, "limits", as_of=as_of)
        .join(_table(world, "scores", as_of=as_of).select("customer_id", "pd_12m", "risk_grade"),
              on="customer_id", how="left")
        .join(obs, on="customer_id", how="left")
    )
    performing = limits.filter(pl.col("pd_12m").is_not_null())
    assert performing.height == runs["latest"]["rows"]["scores"]
    max_limit = {g.grade: g.max_limit for g in policy.grades}
    lgd = {g.grade: g.lgd for g in policy.grades}
    for r in performing.iter_rows(named=True):
        fx = Decimal(1) / r["fx_to_base"]
        assert r["recommended_limit"] <= max_limit[r["risk_grade"]] * fx + Decimal("0.01"), r
        if r["current_limit"] > 0:
            assert r["recommended_limit"] <= r["current_limit"] * (1 + policy.limits.max_increase_share), r
        assert r["recommended_limit"] % policy.limits.rounding_step == 0 or r["action"] == "HOLD", r
        el = Decimal(str(r["pd_12m"])) * lgd[r["risk_grade"]] * r["recommended_limit"]
        assert abs(r["expected_loss"] - el) <= Decimal("0.01"), r
        assert r["expected_loss"] <= policy.limits.max_expected_loss * fx + Decimal("0.01"), r
    assert set(performing.get_column("action")) <= {"INCREASE", "DECREASE", "HOLD"}
    suspended = limits.filter(pl.col("pd_12m").is_null())
    assert suspended.height > 0
    assert set(suspended.get_column("action")) == {"SUSPEND"}
    assert set(suspended.get_column("binding_rule")) == {"DEFAULT_SUSPEND"}
    assert set(suspended.get_column("recommended_limit")) == {Decimal("0.00")}
    assert set(suspended.get_column("policy_version")) == {policy.version}


def test_collections_are_exactly_the_customers_in_default(world, runs):
    as_of = world["latest"]
    defaults = read_default_dates(_paths(world)).filter(pl.col("default_date") <= as_of)
    coll = _table(world, "collections", as_of=as_of)
    assert coll.select("customer_id", "default_date").rows() == defaults.sort("customer_id").select(
        "customer_id", "default_date").rows()
    buckets = pl.sum_horizontal("bucket_0_30", "bucket_31_90", "bucket_91_180", "bucket_over_180")
    assert coll.select((buckets == pl.col("outstanding")).all()).item()
    assert coll.select((pl.col("provision") <= pl.col("outstanding")).all()).item()
    # nobody in default is scored, and every defaulted customer's limit is suspended
    scored = set(_table(world, "scores", as_of=as_of).get_column("customer_id"))
    assert scored.isdisjoint(coll.get_column("customer_id"))
    suspended = _table(world, "limits", as_of=as_of).filter(pl.col("action") == "SUSPEND")
    assert runs["latest"]["limits_left_out"] == {}  # every currency has a rate in this world
    assert set(suspended.get_column("customer_id")) == set(coll.get_column("customer_id"))
    bankrupt = defaults.filter(pl.col("default_reason") == "BANKRUPTCY").get_column("customer_id")
    actions = dict(coll.select("customer_id", "recommended_action").iter_rows())
    assert all(actions[c] == "WRITE_OFF_REVIEW" for c in bankrupt)


def test_watchlist_uses_the_previous_run(world, runs):
    prev_as_of, as_of = world["previous"], world["latest"]
    assert runs["latest"]["previous_as_of"] == prev_as_of.isoformat()
    assert runs["previous"]["previous_as_of"] is None
    prev = _table(world, "watchlist", as_of=prev_as_of)
    cur = _table(world, "watchlist", as_of=as_of)
    assert prev.height > 0 and cur.height > 0
    assert set(prev.get_column("since_date")) == {prev_as_of}  # first run: everyone starts now
    carried = cur.join(prev.select("customer_id", prev_since="since_date"), on="customer_id", how="left")
    assert carried.filter(pl.col("prev_since").is_not_null()).select(
        (pl.col("since_date") == pl.col("prev_since")).all()).item()
    assert set(carried.filter(pl.col("prev_since").is_null()).get_column("since_date")) <= {as_of}
    assert carried.filter(pl.col("prev_since").is_not_null()).height > 0
    scored = set(_table(world, "scores", as_of=as_of).get_column("customer_id"))
    assert set(cur.get_column("customer_id")) <= scored


def test_republishing_is_idempotent_and_the_prior_version_stays_readable(world, runs):
    as_of = world["latest"]
    first, again = runs["latest"], runs["again"]
    assert again["run_id"] != first["run_id"]
    for name in OUTPUT_TABLES:
        assert again["delta_versions"][name] == first["delta_versions"][name] + 1
        now = _table(world, name)
        before = _table(world, name, version=first["delta_versions"][name])
        assert now.drop("run_id", strict=False).equals(before.drop("run_id", strict=False)), name
    before = _table(world, "scores", as_of=as_of, version=first["delta_versions"]["scores"])
    assert set(before.get_column("run_id")) == {first["run_id"]}
    # the earlier as-of date is untouched by both publishes of the latest one
    assert set(_table(world, "scores", as_of=world["previous"]).get_column("run_id")) == {runs["previous"]["run_id"]}


def test_every_publish_is_recorded(world, runs):
    recorded = read_runs(_paths(world))
    assert recorded.schema == RUNS_SCHEMA
    assert recorded.get_column("run_id").to_list() == [runs[k]["run_id"] for k in ("previous", "latest", "again")]
    last = recorded.row(-1, named=True)
    assert (last["as_of_date"], last["model_name"], last["model_version"], last["policy_version"]) == (
        world["latest"], "creditflow-pd-12m", "1", load_policy().version)
    assert {k: last[f"rows_{k}"] for k in OUTPUT_TABLES} == runs["again"]["rows"]
    manifest = Manifest(_paths(world)).records
    assert {f["file_sha256"] for f in last["input_files"]} == set(manifest) and len(manifest) > 5
    text = format_score(runs["again"])
    assert f"score {world['latest']}" in text and "version 1" in text and "scores v" in text


def test_a_missing_champion_is_a_clear_error_and_publishes_nothing(world, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(world["settings"].workdir / "lake", work / "lake")
    settings = Settings.model_validate({"workdir": str(work)})
    code, summary = run_score(settings, world["latest"].isoformat())
    assert code == 2
    assert "no champion for model 'creditflow-pd-12m'" in summary["error"]
    assert "creditflow train" in summary["error"]
    assert format_score(summary).startswith(f"score {world['latest']}: no champion")
    assert not (work / "published").exists()


def test_an_as_of_date_without_observations_is_a_clear_error(world):
    code, summary = run_score(world["settings"], "2024-06-15")
    assert code == 2 and "no observations at 2024-06-15" in summary["error"]
    assert "creditflow features --as-of 2024-06-15" in summary["error"]
    code, summary = run_score(world["settings"], "June")
    assert code == 2 and "YYYY-MM-DD" in summary["error"]
    assert world["latest"] == date(2024, 6, 30)  # so 2024-06-15 is inside the data, not a month end
