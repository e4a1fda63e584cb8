"""The run flow's step keys: fingerprints, step records, argument checks, the summary text."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from creditflow.core.paths import Paths
from creditflow.flows.run import (
    RunInputError,
    _cached,
    check_run_args,
    code_version,
    digest,
    format_run,
    landing_listing,
    manifest_entries,
    read_record,
    write_record,
)


def test_digest_is_canonical_and_sensitive():
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})
    assert digest({"a": 1}) != digest({"a": 2})
    assert len(digest(None)) == 64


def test_landing_listing_sees_size_and_modification(tmp_path: Path):
    (tmp_path / "ledger").mkdir()
    f = tmp_path / "ledger" / "a.csv"
    f.write_text("x\n", encoding="utf-8")
    first = landing_listing(tmp_path)
    assert [(p, size) for p, size, _ in first] == [("ledger/a.csv", 2)]
    os.utime(f, ns=(1, 1))
    assert landing_listing(tmp_path) != first
    assert landing_listing(tmp_path / "missing") == []


def test_manifest_entries_are_the_record_names(tmp_path: Path):
    paths = Paths(tmp_path)
    assert manifest_entries(paths) == []
    paths.manifest.mkdir(parents=True)
    for name in ("bb", "aa"):
        (paths.manifest / f"{name}.json").write_text("{}", encoding="utf-8")
    assert manifest_entries(paths) == ["aa", "bb"]


def test_code_version_is_stable_within_a_process():
    assert code_version() == code_version()
    assert len(code_version()) == 64


def test_a_step_is_cached_only_with_the_same_fingerprint_and_its_outputs(tmp_path: Path):
    paths = Paths(tmp_path)
    assert _cached(paths, "features", "f1", lambda s: True) is None
    write_record(paths, "features", "f1", {"rows": 3})
    assert read_record(paths, "features")["summary"] == {"rows": 3}
    assert _cached(paths, "features", "f1", lambda s: True)["summary"] == {"rows": 3}
    assert _cached(paths, "features", "f2", lambda s: True) is None  # inputs changed
    assert _cached(paths, "features", "f1", lambda s: False) is None  # outputs gone


def test_an_unreadable_record_means_run_the_step_again(tmp_path: Path):
    paths = Paths(tmp_path)
    write_record(paths, "score", "f", {})
    (paths.state / "steps" / "score.json").write_text("{truncated", encoding="utf-8")
    assert read_record(paths, "score") is None


@pytest.mark.parametrize(
    ("as_of", "train", "trials", "message"),
    [
        ("2024-02-30", "auto", None, "as_of must be a date YYYY-MM-DD"),
        (None, "sometimes", None, "train must be one of auto, always, never"),
        (None, "auto", 0, "trials must be a positive integer"),
    ],
)
def test_bad_run_arguments_are_refused(as_of, train, trials, message):
    with pytest.raises(RunInputError, match=message):
        check_run_args(as_of, train, trials)


def test_good_run_arguments_pass():
    check_run_args("2024-02-29", "always", 5)
    check_run_args(None, "never", None)


def test_the_summary_of_a_failed_run_says_where_and_how_to_resume():
    summary = {
        "run_id": "abcdef0123", "seconds": 12.5, "problems": [],
        "steps": {"ingest": {"status": "skipped", "reason": "no change", "seconds": 0.0},
                  "features": {"status": "failed", "error": "disk full"},
                  "train": {"status": "not run"}, "score": {"status": "not run"}},
        "failed_step": "features", "error": "features: disk full",
    }
    text = format_run(summary)
    assert "ingest skipped, features failed, train not run, score not run" in text
    assert "FAILED at features: features: disk full" in text
    assert "resumes at the failed step" in text
