"""The end-to-end run flow on a generated world: a failure at the score step, a resume that
runs only that step, a re-run that does no work and changes nothing, outputs rebuilt when
they are deleted, and the command line's JSON summary."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import polars as pl
import pytest

from creditflow.cli import main
from creditflow.core.config import load_settings
from creditflow.core.paths import Paths
from creditflow.core.schema import OUTPUT_TABLES
from creditflow.demo.generator import generate
from creditflow.demo.world import WorldParameters
from creditflow.flows.features import scan_panel
from creditflow.flows.publish import delta_version, read_runs, read_table
from creditflow.flows.run import format_run, run_flow
from creditflow.flows.score import run_score

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _lake_snapshot(work: Path) -> dict[str, tuple[int, int]]:
    """Every file under the lake and the published tables: (size, mtime in ns)."""
    out = {}
    for root in (work / "lake", work / "published"):
        for f in root.rglob("*"):
            if f.is_file():
                st = f.stat()
                out[f.relative_to(work).as_posix()] = (st.st_size, st.st_mtime_ns)
    return out


def _run(world, **kw) -> tuple[bool, dict]:
    state = run_flow(workdir=str(world["work"]), landing=str(world["landing"]),
                     config_file=str(world["config"]), trials=2, return_state=True, **kw)
    summary = state.result(raise_on_failure=False)
    assert isinstance(summary, dict), summary
    return state.is_completed(), summary


def _statuses(summary) -> dict[str, str]:
    return {k: v["status"] for k, v in summary["steps"].items()}


@pytest.fixture(scope="module")
def world(tmp_path_factory, prefect_harness):
    root = tmp_path_factory.mktemp("run")
    landing, work = root / "landing", root / "work"
    # A risky world (as in the score test), so that a 2-trial model is promoted, plus bad rows and
    # bad files, so that the run has problems to report.
    generate(landing, customers=300, months=30, seed=21, bad_rows=0.01,
             world=WorldParameters(risk_mean_logit=-4.9))
    config = root / "creditflow.yaml"
    config.write_text("train:\n  max_calibration_error: 0.1\n", encoding="utf-8")
    return {"root": root, "landing": landing, "work": work, "config": config}


@pytest.fixture(scope="module")
def runs(world):
    """The sequence every test below looks at."""
    out = {}
    # The published store is unusable (a file where its folder should be): the score step fails.
    blocker = Paths(world["work"]).published
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder", encoding="utf-8")
    out["failed_publish"] = _run(world)
    # The operator fixes the store and runs again.
    blocker.unlink()
    out["resumed"] = _run(world)
    before = _lake_snapshot(world["work"])
    out["again"] = _run(world)
    out["snapshots"] = (before, _lake_snapshot(world["work"]))
    out["delta_versions"] = {name: delta_version(Paths(world["work"]).table(name)) for name in OUTPUT_TABLES}
    out["runs_recorded"] = read_runs(Paths(world["work"])).height
    # A published table lost: only the score step runs again.
    out["scores_before_loss"] = read_table(Paths(world["work"]).table("scores"), OUTPUT_TABLES["scores"])
    shutil.rmtree(Paths(world["work"]).published)
    out["rebuilt"] = _run(world)
    out["scores_rebuilt"] = read_table(Paths(world["work"]).table("scores"), OUTPUT_TABLES["scores"])
    # A file copied under a new name: ingest looks (and finds nothing new); nothing else runs.
    src = sorted((world["landing"] / "bureau_events").glob("*.csv"))[0]
    shutil.copy(src, src.with_name("copy_of_" + src.name))
    out["copied_file"] = _run(world)
    # Someone publishes the month before by hand: the latest month's watchlist compares with
    # the previous publish, so the next run scores the latest month again.
    latest = out["resumed"][1]["score"]["as_of_date"]
    dates = sorted(f.stem.split("=")[1] for f in (Paths(world["work"]).features / "pd_features_v1").glob("*.parquet"))
    settings = load_settings(world["config"], workdir=world["work"], landing=world["landing"])
    code, _ = run_score(settings, dates[dates.index(latest) - 1])
    assert code == 0
    out["after_earlier_publish"] = _run(world)
    return out


def test_a_failed_step_stops_the_run_with_a_clear_message(runs, world):
    completed, s = runs["failed_publish"]
    assert not completed
    assert _statuses(s) == {"ingest": "ran with problems", "features": "ran", "train": "ran", "score": "failed"}
    assert s["failed_step"] == "score"
    assert str(Paths(world["work"]).published) in s["error"]
    assert "FAILED at score" in format_run(s)
    # The steps before the failure did their work: 7 bad files rejected, a champion promoted.
    assert s["ingest"]["totals"]["files_rejected"] == 7 and len(s["problems"]) == 7
    assert s["champion"]["model_version"] == "1" and s["train"]["promoted"]


def _finished_with_the_first_runs_problems(runs, key) -> dict:
    """Finished (no error), but the rejected files of the ingest it skipped are still reported."""
    completed, s = runs[key]
    assert "error" not in s, s["error"]
    assert not completed and s["problems"] == runs["failed_publish"][1]["problems"]
    return s


def test_the_run_resumes_at_the_failed_step(runs, world):
    s = _finished_with_the_first_runs_problems(runs, "resumed")
    assert _statuses(s) == {"ingest": "skipped", "features": "skipped", "train": "skipped", "score": "ran"}
    as_of = s["features"]["last_as_of"]
    assert s["score"]["as_of_date"] == as_of
    panel_rows = scan_panel(Paths(world["work"]), "pd_features_v1").filter(
        pl.col("as_of_date") == pl.lit(as_of).str.to_date()).select(pl.len()).collect().item()
    assert s["score"]["rows"]["scores"] == s["score"]["observations"] == panel_rows > 0
    assert s["champion"]["model_version"] == "1"  # not retrained: the champion exists


def test_a_finished_run_rerun_does_no_work_and_changes_nothing(runs, world):
    s = _finished_with_the_first_runs_problems(runs, "again")
    assert set(_statuses(s).values()) == {"skipped"}
    before, after = runs["snapshots"]
    assert before == after and len(before) > 100
    assert runs["delta_versions"] == dict.fromkeys(OUTPUT_TABLES, 0)
    assert runs["runs_recorded"] == 1


def test_lost_outputs_are_rebuilt_identically(runs, world):
    s = _finished_with_the_first_runs_problems(runs, "rebuilt")
    assert _statuses(s) == {"ingest": "skipped", "features": "skipped", "train": "skipped", "score": "ran"}
    now = runs["scores_rebuilt"]
    before = runs["scores_before_loss"]
    assert now.drop("run_id").equals(before.drop("run_id"))
    assert now.get_column("run_id").unique().to_list() != before.get_column("run_id").unique().to_list()


def test_a_renamed_copy_is_looked_at_but_changes_nothing(runs):
    # The copy's content is already in the lake (same sha256): nothing new is read.
    completed, s = runs["copied_file"]
    assert completed
    assert _statuses(s) == {"ingest": "ran", "features": "skipped", "train": "skipped", "score": "skipped"}
    t = s["ingest"]["totals"]
    first = runs["failed_publish"][1]["ingest"]["totals"]["files_new"]
    assert (t["files_new"], t["files_skipped"], t["rows_read"]) == (0, first + 1, 0)


def test_a_new_previous_publish_makes_the_latest_month_score_again(runs):
    completed, s = runs["after_earlier_publish"]
    assert completed
    assert _statuses(s) == {"ingest": "skipped", "features": "skipped", "train": "skipped", "score": "ran"}


def test_the_command_line_prints_one_json_summary(runs, world, capsys):
    capsys.readouterr()
    code = main(["run", "--workdir", str(world["work"]), "--landing", str(world["landing"]),
                 "--config", str(world["config"]), "--json"])
    out = capsys.readouterr().out
    doc = json.loads(out)
    assert code == 0
    assert doc["command"] == "run" and set(_statuses(doc).values()) == {"skipped"}
    assert doc["champion"]["test_auc"] > 0.6
    runs_dir = Paths(world["work"]).runs
    assert len(list(runs_dir.glob("run-*.json"))) == 7


def test_the_human_summary_is_printed_once_and_kept_as_a_prefect_artifact(runs, world, capsys):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    logged: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            logged.append(record.getMessage())

    flow_log = logging.getLogger("prefect.flow_runs")  # where the flow's log lines go
    keep, level = Keep(level=logging.INFO), flow_log.level
    flow_log.addHandler(keep)
    flow_log.setLevel(logging.INFO)  # the test session logs warnings only
    capsys.readouterr()
    try:
        code = main(["run", "--workdir", str(world["work"]), "--landing", str(world["landing"]),
                     "--config", str(world["config"])])
    finally:
        flow_log.removeHandler(keep)
        flow_log.setLevel(level)
    out = capsys.readouterr().out
    assert code == 0
    first = next(line for line in out.splitlines() if line.startswith("run "))
    assert "ingest skipped, features skipped, train skipped, score skipped" in first
    assert out.count(first) == 1
    # the flow logs the first line only, not the whole summary a second time
    with_first = [m for m in logged if first in m]
    assert len(with_first) == 1 and "\n" not in with_first[0], (first, logged)
    with get_client(sync_client=True) as client:
        latest = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["run-summary"])),
            sort=ArtifactSort.CREATED_DESC, limit=1)
    assert latest and latest[0].type == "markdown"
    assert first in latest[0].data and latest[0].description == first


def test_bad_arguments_exit_2_before_any_work(world, capsys):
    assert main(["run", "--workdir", str(world["work"]), "--as-of", "2023-13-45"]) == 2
    assert "as_of must be a date" in capsys.readouterr().err
    assert main(["run", "--workdir", str(world["work"]), "--retrain", "--no-train"]) == 2


def test_a_file_landing_while_ingest_runs_is_ingested_by_the_next_run(tmp_path, prefect_harness, monkeypatch):
    from prefect import flow

    import creditflow.flows.ingest as ingest_module

    landing, work = tmp_path / "landing", tmp_path / "work"
    generate(landing, customers=20, months=6, seed=1)
    late = sorted((landing / "ledger").glob("*.csv"))[-1]
    held = tmp_path / "held"
    held.mkdir()
    shutil.move(late, held / late.name)
    original = ingest_module.ingest_flow

    @flow(name="ingest")
    def ingest_then_a_file_lands(settings=None, **kw):
        out = original.fn(settings=settings, **kw)
        shutil.move(held / late.name, late)  # after ingest listed the landing folder
        return out

    monkeypatch.setattr(ingest_module, "ingest_flow", ingest_then_a_file_lands)
    first = run_flow(workdir=str(work), landing=str(landing), train="never", score=False)
    monkeypatch.setattr(ingest_module, "ingest_flow", original)
    second = run_flow(workdir=str(work), landing=str(landing), train="never", score=False)
    assert first["steps"]["ingest"]["status"] == "ran"
    assert second["steps"]["ingest"]["status"] == "ran"
    assert second["ingest"]["totals"]["files_new"] == 1
    recorded = {json.loads(p.read_text())["source_file"] for p in Paths(work).manifest.glob("*.json")}
    assert late.relative_to(landing).as_posix() in recorded


def test_an_ingest_with_an_unreadable_file_is_not_marked_done(tmp_path, prefect_harness, monkeypatch):
    """A landing file that could not be opened is looked at again by the next run, even
    though the landing folder did not change in between."""
    from creditflow.flows.lake import FileHashes

    landing, work = tmp_path / "landing", tmp_path / "work"
    generate(landing, customers=20, months=6, seed=2)
    locked = sorted((landing / "ledger").glob("*.csv"))[-1]
    real = FileHashes.sha256

    def no_permission(self, f):
        if f == locked:
            raise PermissionError(13, "Permission denied", str(f))
        return real(self, f)

    monkeypatch.setattr(FileHashes, "sha256", no_permission)
    state = run_flow(workdir=str(work), landing=str(landing), train="never", score=False, return_state=True)
    first = state.result(raise_on_failure=False)
    monkeypatch.setattr(FileHashes, "sha256", real)  # the permission is fixed
    second = run_flow(workdir=str(work), landing=str(landing), train="never", score=False)
    name = locked.relative_to(landing).as_posix()
    assert first["steps"]["ingest"]["status"] == "ran with problems"
    assert first["ingest"]["totals"]["files_unreadable"] == 1
    assert any(p.startswith(name) and "Permission denied" in p for p in first["problems"])
    assert second["steps"]["ingest"]["status"] == "ran"
    assert second["ingest"]["totals"]["files_new"] == 1 and second["ingest"]["totals"]["files_unreadable"] == 0
