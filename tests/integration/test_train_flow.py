"""The real training flow on a generated world: MLflow (SQLite in a temp workdir), nested trial
runs, registration, the promotion gate, reproducible model bytes and loading the champion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from mlflow.tracking import MlflowClient

from creditflow.core.config import Settings
from creditflow.core.paths import Paths
from creditflow.demo.generator import generate
from creditflow.demo.world import WorldParameters
from creditflow.flows.features import features_flow, scan_panel
from creditflow.flows.ingest import ingest_flow
from creditflow.flows.tracking import (
    CHAMPION,
    ChampionNotFoundError,
    load_champion,
    load_model_version,
    table_hash,
)
from creditflow.flows.train import format_train, holdout_window, load_training_table, run_train
from creditflow.models.metrics import evaluate

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TRIALS = 5
REPORT_FILES = {
    "report/roc_test.png",
    "report/calibration_test.png",
    "report/feature_importance.png",
    "report/feature_importance.csv",
    "report/shap_summary.png",
    "report/grade_table.csv",
    "report/model_card.md",
    "report/metrics.json",
    "report/training.json",
    "report/scorecard.json",
}


@pytest.fixture(scope="module")
def settings(tmp_path_factory, prefect_harness) -> Settings:
    root = tmp_path_factory.mktemp("train")
    landing, work = root / "landing", root / "work"
    # A riskier world than the default so that 300 customers give ~70 defaults per test window.
    generate(
        landing,
        customers=300,
        months=30,
        seed=21,
        bad_rows=0.0,
        world=WorldParameters(risk_mean_logit=-4.9),
    )
    assert ingest_flow(workdir=str(work), landing=str(landing), return_state=True).is_completed()
    assert features_flow(workdir=str(work), return_state=True).is_completed()
    # The test window holds ~900 rows: ECE over 10 bins of 90 rows is noisy, hence a looser bound.
    return Settings.model_validate({"workdir": str(work), "train": {"max_calibration_error": 0.1}})


@pytest.fixture(scope="module")
def first(settings):
    code, summary = run_train(settings, trials=TRIALS)
    assert code == 0, summary
    return summary


@pytest.fixture(scope="module")
def second(settings, first):
    code, summary = run_train(settings, trials=TRIALS)
    assert code == 0, summary
    return summary


def _client(settings: Settings) -> MlflowClient:
    return MlflowClient(settings.tracking_uri)


def test_the_store_lives_in_the_workdir(settings, first):
    assert first["tracking_uri"] == settings.tracking_uri
    assert (settings.workdir / "mlflow" / "mlflow.db").is_file()
    assert (settings.workdir / "mlflow" / "artifacts").is_dir()


def test_first_training_is_registered_and_promoted_over_the_scorecard(settings, first):
    assert first["model_version"] == "1" and first["promoted"] is True
    m = first["metrics"]
    assert m["xgboost"]["test"]["auc"] > m["scorecard"]["test"]["auc"]
    assert m["xgboost"]["test"]["ece"] <= 0.1
    mv = _client(settings).get_model_version(first["model_name"], "1")
    assert mv.tags["gate.decision"] == "promoted"
    assert "no champion yet" in mv.tags["gate.reason"]
    assert float(mv.tags["gate.challenger_auc"]) == pytest.approx(
        m["xgboost"]["test"]["auc"], abs=1e-4
    )
    assert float(mv.tags["gate.scorecard_auc"]) == pytest.approx(
        m["scorecard"]["test"]["auc"], abs=1e-4
    )
    assert mv.tags["gate.champion_auc"] == "n/a"
    assert mv.tags["data_hash"] == first["data_hash"] and mv.tags["feature_set"] == "pd_features_v1"
    assert CHAMPION in mv.aliases
    assert "creditflow-pd-12m version 1 PROMOTED" in format_train(first)


def test_the_run_holds_trials_params_metrics_and_report(settings, first):
    client = _client(settings)
    run = client.get_run(first["run_id"])
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "creditflow/default_12m"
    p = run.data.params
    assert p["data_hash"] == first["data_hash"] and p["feature_set"] == "pd_features_v1"
    assert int(p["n_trials"]) == TRIALS and "xgb.max_depth" in p
    mets = run.data.metrics
    assert mets["rows.test"] == first["rows"]["test"] > 500
    assert mets["xgboost.test.auc"] == pytest.approx(
        first["metrics"]["xgboost"]["test"]["auc"], abs=1e-6
    )
    trials = client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{first['run_id']}'"
    )
    assert len(trials) == TRIALS
    assert all(
        "validation_log_loss" in t.data.metrics and "max_depth" in t.data.params for t in trials
    )
    listed = {a.path for a in client.list_artifacts(first["run_id"], "report")}
    assert listed >= REPORT_FILES
    card = client.download_artifacts(first["run_id"], "report/model_card.md")
    text = Path(card).read_text(encoding="utf-8")
    assert "Decision: **promoted**" in text and "| xgboost | test |" in text


def test_same_data_and_seed_give_identical_bytes_and_no_promotion(settings, first, second):
    assert second["model_version"] == "2"
    assert second["data_hash"] == first["data_hash"]
    _, v1 = load_model_version(settings.tracking_uri, first["model_name"], "1")
    _, v2 = load_model_version(settings.tracking_uri, first["model_name"], "2")
    assert v1.model_sha256 == v2.model_sha256
    assert second["promoted"] is False
    assert "equal is not better" in second["reason"]
    mv = _client(settings).get_model_version(first["model_name"], "2")
    assert mv.tags["gate.decision"] == "rejected"
    assert mv.tags["gate.champion_auc"] == mv.tags["gate.challenger_auc"]
    assert mv.tags["gate.champion_version"] == "1"
    assert "challenger" in mv.aliases and CHAMPION not in mv.aliases


def test_the_study_is_stored_so_a_retrain_resumes_instead_of_tuning_again(settings, first, second):
    assert (settings.workdir / "state" / "optuna" / "studies.journal").stat().st_size > 0
    assert first["trials"]["run"] == first["trials"]["finished"] > 0
    # Same data and settings: the stored study is complete, so no trial runs again.
    assert second["trials"]["run"] == 0
    assert second["trials"]["finished"] == first["trials"]["finished"]


def test_a_worse_challenger_is_refused_and_the_champion_stays(settings, first, second):
    champion, _ = load_champion(settings.tracking_uri, first["model_name"])
    gain = champion.booster.get_score(importance_type="gain")
    strongest = sorted(gain, key=gain.get, reverse=True)[:12]
    weak = [f for f in champion.spec.features if f not in strongest]
    code, summary = run_train(settings, trials=TRIALS, features=weak)
    assert code == 0, summary
    assert summary["promoted"] is False and summary["features"] == len(weak)
    gate = summary["gate"]
    assert gate["champion_version"] == "1"
    assert gate["champion_auc"] > gate["challenger_auc"]
    assert "does not beat the champion's" in summary["reason"]
    mv = _client(settings).get_model_version(first["model_name"], summary["model_version"])
    assert mv.tags["gate.decision"] == "rejected"
    _, info = load_champion(settings.tracking_uri, first["model_name"])
    assert info.version == "1"


def test_load_champion_rebuilds_the_trained_model(settings, first):
    model, info = load_champion(settings.tracking_uri, first["model_name"])
    assert info.version == "1" and info.data_hash == first["data_hash"]
    data = load_training_table(settings)
    test = holdout_window(data, settings.train.seed)
    assert test.height == first["rows"]["test"]
    pd_ = model.predict_pd(test)
    assert np.all((pd_ > 0) & (pd_ < 1))
    # The trained model's test metrics, recomputed from the loaded model's PDs.
    got = evaluate(pd_, test["default_12m"].to_numpy())
    for k in ("auc", "brier", "log_loss", "ece"):
        assert got[k] == pytest.approx(first["metrics"]["xgboost"]["test"][k], abs=1e-6), k


def test_a_missing_champion_is_a_clear_error(settings):
    with pytest.raises(
        ChampionNotFoundError, match="no champion for model 'nobody'.*creditflow train"
    ):
        load_champion(settings.tracking_uri, "nobody")


def _csv_table(path, n=3000, seed=5, constant=False):
    rng = np.random.default_rng(seed)
    months = pl.date_range(pl.date(2021, 1, 1), pl.date(2022, 12, 1), "1mo", eager=True)
    x1 = rng.normal(size=n)
    x2 = rng.uniform(size=n)
    segment = rng.choice(["a", "b", "c"], size=n)
    logit = -2.2 + 1.3 * x1 + 1.5 * (x2 > 0.7) + 0.8 * (segment == "c")
    bad = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int)
    pl.DataFrame(
        {
            "account_id": [f"A{i % 900:04d}" for i in range(n)],
            "month": rng.choice(months.to_numpy(), size=n),
            "x1": x1,
            "x2": x2,
            "segment": segment,
            "noise": rng.normal(size=n),
            "bad": np.zeros(n, dtype=int) if constant else bad,
        }
    ).write_csv(path)
    return path


def test_training_on_a_plain_csv_table(settings, first, tmp_path):
    csv = _csv_table(tmp_path / "accounts.csv")
    code, summary = run_train(settings, trials=3, table=str(csv), target="bad", time_column="month")
    assert code == 0, summary
    assert summary["experiment"] == "creditflow/bad" and summary["features"] == 4
    assert summary["split"].startswith("out of time on 'month'")
    assert summary["metrics"]["xgboost"]["test"]["auc"] > 0.7
    # Registered under the same model name, it cannot be compared with the PD champion: refused.
    assert summary["promoted"] is False and "not comparable" in summary["reason"]
    assert load_champion(settings.tracking_uri, first["model_name"])[1].version == "1"


def test_a_single_class_or_missing_table_gives_a_clear_error(settings, tmp_path):
    csv = _csv_table(tmp_path / "constant.csv", constant=True)
    code, summary = run_train(settings, trials=3, table=str(csv), target="bad", time_column="month")
    assert code == 2
    assert "only the class 0" in summary["error"] and "both defaulters" in summary["error"]
    assert format_train(summary).startswith("train: target 'bad'")
    code, summary = run_train(settings, table=str(tmp_path / "nope.csv"), target="bad")
    assert code == 2 and "does not exist" in summary["error"]
    code, summary = run_train(settings, table=str(csv), target="missing")
    assert code == 2 and "not in the table" in summary["error"]


def test_table_hash_ignores_row_and_column_order_but_not_values():
    df = pl.DataFrame({"a": [3, 1, 2], "b": ["x", None, "z"], "c": [0.5, 0.25, None]})
    h = table_hash(df, ["a", "b", "c"])
    assert h == table_hash(df.reverse().select("c", "a", "b"), ["c", "b", "a"])
    assert h != table_hash(df.with_columns(pl.col("c").fill_null(0.0)), ["a", "b", "c"])
    assert h.startswith("sha256:") and len(h) == 7 + 64


def test_data_hash_is_the_hash_of_the_panel(settings, first):
    data = load_training_table(settings)
    assert table_hash(data.frame, data.hashed_columns()) == first["data_hash"]
    # Reading the panel afresh (other row order) changes nothing.
    shuffled = (
        scan_panel(Paths(settings.workdir), "pd_features_v1").collect().sample(fraction=1.0, seed=1)
    )
    assert table_hash(shuffled, data.hashed_columns()) == first["data_hash"]
