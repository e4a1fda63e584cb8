"""The console script as a user runs it: real subprocesses, JSON on stdout, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLI = [sys.executable, "-m", "creditflow.cli"]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    return subprocess.run([*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_generate_ingest_features_with_json_and_exit_codes(tmp_path):
    landing, work = tmp_path / "landing", tmp_path / "work"
    gen = run("generate", str(landing), "--customers", "40", "--months", "14", "--seed", "2", "--json", cwd=tmp_path)
    assert gen.returncode == 0, gen.stderr
    truth = json.loads(gen.stdout)
    assert truth["customers"] == 40 and truth["bad_files"] == []

    ing = run("ingest", "--workdir", str(work), "--landing", str(landing), "--json", cwd=tmp_path)
    assert ing.returncode == 0, ing.stderr[-2000:]
    summary = json.loads(ing.stdout)  # stdout holds the JSON document and nothing else
    rows = sum(truth["rows_by_file"].values())
    assert summary["totals"]["rows_read"] == summary["totals"]["rows_accepted"] == rows
    assert {f["file_sha256"] for f in summary["files"]} and all(len(f["file_sha256"]) == 64 for f in summary["files"])

    again = run("ingest", "--workdir", str(work), "--landing", str(landing), "--json", cwd=tmp_path)
    assert json.loads(again.stdout)["totals"]["files_new"] == 0

    feat = run("features", "--workdir", str(work), "--json", cwd=tmp_path)
    assert feat.returncode == 0, feat.stderr[-2000:]
    assert json.loads(feat.stdout)["observations"] > 100


def test_bad_usage_is_exit_2_with_a_message(tmp_path):
    bad_date = run("features", "--workdir", str(tmp_path), "--as-of", "2024-13-01", cwd=tmp_path)
    assert bad_date.returncode == 2
    assert "--as-of must be a date" in bad_date.stderr
    lonely = run("train", "--workdir", str(tmp_path), "--table", "x.csv", cwd=tmp_path)
    assert lonely.returncode == 2
    assert "--table and --target go together" in lonely.stderr
    (tmp_path / "creditflow.yaml").write_text("base_currency: yuan\n")
    bad_config = run("ingest", "--workdir", str(tmp_path), cwd=tmp_path)
    assert bad_config.returncode == 2
    assert "base_currency" in bad_config.stderr and "yuan" in bad_config.stderr


def test_ingest_into_a_new_nested_workdir_with_its_own_prefect_home(tmp_path):
    # as on a fresh machine: no PREFECT_HOME, and a --workdir that does not exist yet
    landing, work = tmp_path / "landing", tmp_path / "new" / "nested" / "work"
    (landing / "ledger").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    done = subprocess.run([*CLI, "ingest", "--workdir", str(work), "--landing", str(landing), "--json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["totals"]["files_new"] == 0
    assert (work / "prefect").is_dir()  # the embedded Prefect server lived under the new workdir
