"""Test session set-up: every store lives in one temp dir; one Prefect test server.

Environment variables must be set before Prefect or MLflow are imported, so this
runs at import time of the conftest (pytest imports it before any test module).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_SESSION_TMP = Path(tempfile.mkdtemp(prefix="creditflow-tests-"))
_ENV = {
    "PREFECT_HOME": str(_SESSION_TMP / "prefect"),
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(_SESSION_TMP / "results"),
    "MLFLOW_TRACKING_URI": f"sqlite:///{_SESSION_TMP / 'mlflow.db'}",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "GX_ANALYTICS_ENABLED": "false",
    "MPLBACKEND": "Agg",
}
for _k, _v in _ENV.items():
    os.environ[_k] = _v
# Never let a developer's own creditflow.yaml leak into tests.
os.environ.pop("CREDITFLOW_CONFIG", None)


@pytest.fixture(scope="session")
def prefect_harness():
    """One real (ephemeral, SQLite) Prefect API for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture(scope="session")
def session_tmp() -> Path:
    return _SESSION_TMP


@pytest.fixture(scope="session")
def typed_world():
    """A function (root, customers, months, seed) -> {family: typed frame}: a clean generated
    world read through the real staging and row rules, every row accepted, with the lineage
    columns the panel needs (file date, source file, line number). No Prefect, no lake."""
    import polars as pl

    from creditflow.core import schema
    from creditflow.demo.generator import generate
    from creditflow.validation.rules import apply_row_rules
    from creditflow.validation.staging import file_date_from_name, read_landing_file

    def build(root: Path, *, customers: int, months: int, seed: int) -> dict[str, pl.DataFrame]:
        generate(root, customers=customers, months=months, seed=seed, bad_rows=0.0)
        frames = {}
        for family, table in schema.INPUT_FAMILIES.items():
            parts = []
            for f in sorted((root / family).glob("*")):
                parsed = apply_row_rules(read_landing_file(f, table), table)
                assert parsed["reason_code"].null_count() == parsed.height, f
                parts.append(parsed.select(table.names).with_columns(
                    pl.lit(file_date_from_name(f.name), dtype=pl.Date).alias(schema.FILE_DATE),
                    pl.lit(f.name).alias(schema.SOURCE_FILE),
                    parsed[schema.LINE_NUMBER],
                ))
            frames[family] = pl.concat(parts, how="vertical_relaxed")
        return frames

    return build


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SESSION_TMP, ignore_errors=True)
