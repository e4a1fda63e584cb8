"""prefect.yaml deploys against a real local Prefect server, and the daily deployment runs.

Everything goes through subprocesses with an explicit environment, as an operator
would run it: `prefect server start` on a free port with its own PREFECT_HOME,
`prefect work-pool create`, `prefect --no-prompt deploy --all` from the repository
root, `prefect deployment inspect --output json`, and one `prefect worker start
--run-once` that executes the daily deployment on a tiny generated world.
The session's `prefect_harness` (an in-process test API) is deliberately not used.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import creditflow

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(creditflow.__file__).resolve().parent
PREFECT = Path(sys.executable).parent / "prefect"
POOL = "creditflow"
FLOW = "creditflow-run"
ENTRYPOINT = "flows/run.py:run_flow"
SET_WORKDIR_STEP = "prefect.deployments.steps.set_working_directory"
SHANGHAI = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class Server:
    url: str
    env: dict[str, str]
    workdir: Path
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server and everything it started (its own process group)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


def prefect(server: Server, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run the `prefect` CLI against the test server, from the repository root."""
    done = subprocess.run([str(PREFECT), *args], cwd=REPO, env=server.env, capture_output=True, text=True,
                          timeout=timeout)
    if check:
        assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def prefect_json(server: Server, *args: str) -> object:
    return json.loads(prefect(server, *args, "--output", "json").stdout)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("deployments")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    # The developer's and the session harness's API and database never leak in; nor creditflow settings.
    foreign = ("PREFECT_API_", "PREFECT_SERVER_DATABASE_", "CREDITFLOW_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(foreign)}
    env |= {
        "PREFECT_HOME": str(root / "prefect-home"),
        "PREFECT_API_URL": url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "CREDITFLOW_WORKDIR": str(root / "work"),  # CREDITFLOW_CHECKOUT stays unset: its default is tested
    }
    log = root / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(PREFECT), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
            cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"prefect server did not become healthy:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
        yield Server(url=url, env=env, workdir=root / "work", log=log)
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def deployed(server) -> dict[str, dict]:
    prefect(server, "work-pool", "create", POOL, "--type", "process")
    prefect(server, "work-pool", "set-concurrency-limit", POOL, "1")
    out = prefect(server, "--no-prompt", "deploy", "--all")
    assert out.stdout.count("successfully created") == 2, out.stdout
    return {name: prefect_json(server, "deployment", "inspect", f"{FLOW}/{name}")
            for name in ("daily", "monthly-retrain")}


@pytest.mark.parametrize(("name", "train", "cron"), [("daily", "never", "30 6 * * *"),
                                                      ("monthly-retrain", "always", "0 3 2 * *")])
def test_each_deployment_has_entrypoint_schedule_pool_and_parameters(deployed, server, name, train, cron):
    d = deployed[name]
    assert d["name"] == name and d["entrypoint"] == ENTRYPOINT
    assert d["work_pool_name"] == POOL and d["work_queue_name"] == "default"
    assert [(s["schedule"]["cron"], s["schedule"]["timezone"], s["active"]) for s in d["schedules"]] == [
        (cron, "Asia/Shanghai", True)]
    # The workdir comes from $CREDITFLOW_WORKDIR at deploy time; nothing else is pinned.
    assert d["parameters"] == {"workdir": str(server.workdir), "train": train}
    # $CREDITFLOW_CHECKOUT unset: the worker changes into the directory `prefect deploy` ran in.
    assert d["pull_steps"] == [{SET_WORKDIR_STEP: {"directory": str(REPO)}}]
    assert d["enforce_parameter_schema"] is True and not d["paused"]


def test_the_daily_description_says_a_fresh_install_retrains_first(deployed):
    assert "Never trains" in deployed["daily"]["description"]
    assert "monthly-retrain" in deployed["daily"]["description"]


def test_the_parameter_schema_carries_the_flow_signature_types(deployed):
    for d in deployed.values():
        props = d["parameter_openapi_schema"]["properties"]
        typed = {k: v.get("type") or sorted(t["type"] for t in v["anyOf"]) for k, v in props.items()}
        assert typed == {
            "workdir": "string",
            "landing": ["null", "string"],
            "as_of": ["null", "string"],
            "trials": ["integer", "null"],
            "train": "string",
            "score": "boolean",
            "config_file": ["null", "string"],
        }
        assert props["train"]["enum"] == ["auto", "always", "never"]
        assert (props["workdir"]["default"], props["train"]["default"], props["score"]["default"]) == (
            "creditflow-work", "auto", True)


@pytest.mark.parametrize(("param", "message"), [("train=sometimes", "'sometimes' is not one of"),
                                                ("trials=many", "'many' is not valid"),
                                                ("score=maybe", "'maybe' is not of type 'boolean'")])
def test_the_server_rejects_a_run_with_a_mistyped_parameter(deployed, server, param, message):
    done = prefect(server, "deployment", "run", f"{FLOW}/daily", "--param", param, check=False)
    assert done.returncode != 0
    assert message in " ".join((done.stdout + done.stderr).split())


def test_the_scheduler_plans_runs_at_the_local_times(deployed, server):
    ids = {d["id"]: name for name, d in deployed.items()}
    deadline = time.monotonic() + 90
    while True:
        runs = prefect_json(server, "flow-run", "ls", "--state-type", "SCHEDULED", "--limit", "50")
        planned = {name: [datetime.fromisoformat(r["expected_start_time"]).astimezone(SHANGHAI)
                          for r in runs if ids.get(r["deployment_id"]) == name] for name in ids.values()}
        if all(planned.values()) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert planned["daily"] and {(t.hour, t.minute) for t in planned["daily"]} == {(6, 30)}
    assert planned["monthly-retrain"]
    assert {(t.day, t.hour, t.minute) for t in planned["monthly-retrain"]} == {(2, 3, 0)}


def _run_once(server: Server, *params: str) -> dict:
    """Create a run of the daily deployment now, let one worker execute it, return the finished run."""
    args = [a for p in params for a in ("--param", p)]
    created = prefect(server, "deployment", "run", f"{FLOW}/daily", *args).stdout
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", created).group(1)
    worker = prefect(server, "worker", "start", "--pool", POOL, "--run-once", timeout=600)
    run = prefect_json(server, "flow-run", "inspect", run_id)
    assert run["state"]["type"] in {"COMPLETED", "FAILED"}, f"{run['state']}\n{worker.stdout[-3000:]}"
    return run


def _run_summary(workdir: Path) -> dict:
    summaries = sorted((workdir / "runs").glob("run-*.json"))
    assert len(summaries) == 1, summaries
    return json.loads(summaries[0].read_text())


def test_a_worker_runs_the_daily_deployment_end_to_end(deployed, server):
    """A fresh install: the daily job ingests and builds features, never trains, and so
    fails at the score step, pointing to the monthly retrain. The landing zone is given
    at run time, as an operator would for a drop folder outside the workdir."""
    from creditflow.demo.generator import generate

    landing = server.workdir.parent / "drop"
    truth = generate(landing, customers=20, months=6, seed=11)

    run = _run_once(server, f"landing={landing}")
    assert run["parameters"] == {"workdir": str(server.workdir), "train": "never", "landing": str(landing)}
    assert run["state"]["type"] == "FAILED"
    assert "no champion" in run["state"]["message"] and "monthly-retrain" in run["state"]["message"]

    summary = _run_summary(server.workdir)
    assert (summary["workdir"], summary["landing"], summary["train_mode"]) == (
        str(server.workdir), str(landing), "never")
    assert {k: v["status"] for k, v in summary["steps"].items()} == {
        "ingest": "ran", "features": "ran", "train": "skipped", "score": "failed"}
    assert summary["steps"]["train"]["reason"] == "train=never"
    totals = summary["ingest"]["totals"]
    # Every generated file is read (one may be a byte-for-byte repeat, skipped by hash); no bad rows.
    assert totals["files_new"] + totals["files_skipped"] == len(truth.rows_by_file) > 20
    assert totals["files_rejected"] == totals["rows_quarantined"] == 0
    assert totals["rows_read"] == totals["rows_accepted"] > 0
    assert 0 < summary["features"]["customers"] <= truth.customers  # the panel of the generated world
