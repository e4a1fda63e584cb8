"""The real ingest flow (Prefect test server, real GX, real Parquet) on a generated world
with injected bad rows and bad files, run twice."""

from __future__ import annotations

import json
import threading

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from creditflow.core import schema
from creditflow.core.paths import Paths
from creditflow.demo.generator import generate
from creditflow.flows.ingest import ingest_flow
from creditflow.flows.lake import STATUS_REJECTED, Manifest, scan_bronze, scan_quarantine

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("ingest")
    landing = root / "landing"
    truth = generate(landing, customers=60, months=8, seed=5, bad_rows=0.02).to_dict()
    return root, landing, truth


@pytest.fixture(scope="module")
def first_run(world, prefect_harness):
    root, landing, truth = world
    work = root / "work"
    state = ingest_flow(workdir=str(work), landing=str(landing), return_state=True)
    return work, state, state.result(raise_on_failure=False)


def test_every_file_is_accounted_for_with_the_injected_reasons(world, first_run):
    _, _, truth = world
    _, state, summary = first_run
    records = {r["source_file"]: r for r in summary["files"]}
    bad_files = {b["file"]: b["reason_code"] for b in truth["bad_files"]}
    good_files = {f for files in truth["files"].values() for f in files} - set(bad_files)
    assert set(records) == good_files | set(bad_files)

    for name, rec in records.items():
        assert rec["rows_read"] == rec["rows_accepted"] + rec["rows_quarantined"], name
        if name in bad_files:
            assert rec["status"] == STATUS_REJECTED, name
            assert rec["rows_accepted"] == 0
            assert bad_files[name] in rec["reason_counts"], (name, rec["reason_counts"])
            assert rec["message"], name
        else:
            assert rec["rows_read"] == truth["rows_by_file"][name], name
            assert rec["reason_counts"] == truth["bad_rows_by_file"].get(name, {}), name

    totals = summary["totals"]
    injected = sum(truth["bad_rows_by_reason"].values())
    assert injected > 20  # the world really exercises the rules
    assert totals["rows_quarantined"] == injected
    # The operator is told: bad files make the run end Failed, with the same summary.
    assert state.is_failed()
    assert len(summary["problems"]) == len(bad_files)


def test_bronze_and_quarantine_hold_exactly_what_the_summary_says(world, first_run):
    _, landing, truth = world
    work, _, summary = first_run
    paths = Paths(work)
    by_family: dict[str, int] = {}
    for r in summary["files"]:
        by_family[r["family"]] = by_family.get(r["family"], 0) + r["rows_accepted"]
    for family, table in schema.INPUT_FAMILIES.items():
        lf = scan_bronze(paths, family)
        n = 0 if lf is None else lf.select(pl.len()).collect().item()
        assert n == by_family.get(family, 0), family
        if lf is not None:
            got = lf.collect_schema()
            for col in table.columns:
                assert got[col.name] == col.dtype, (family, col.name)
    q = scan_quarantine(paths).collect()
    assert q.filter(pl.col(schema.LINE_NUMBER).is_not_null()).height == summary["totals"]["rows_quarantined"]
    assert q.filter(pl.col(schema.LINE_NUMBER).is_null()).height == len(truth["bad_files"])
    # Every quarantined row keeps its raw values and points at a real line of its file.
    sample = q.filter(pl.col(schema.LINE_NUMBER).is_not_null()).row(0, named=True)
    raw = json.loads(sample["raw_values"])
    assert isinstance(raw, dict) and raw
    assert (landing / sample[schema.SOURCE_FILE]).exists()


def test_ledger_bronze_keeps_identifiers_and_lineage(first_run):
    work, _, _ = first_run
    ledger = scan_bronze(Paths(work), "ledger").collect()
    assert ledger["entry_id"].n_unique() == ledger.height  # unique across files
    # leading zeros survive (ids were read as text)
    assert ledger["customer_id"].str.starts_with("C0").any()
    assert ledger[schema.LINE_NUMBER].min() >= 2
    assert ledger[schema.FILE_SHA256].str.len_chars().unique().to_list() == [64]
    customers = scan_bronze(Paths(work), "customers").collect()
    known = set(customers["customer_id"])
    assert set(ledger["customer_id"]) <= known


def _comparable(summary):
    drop = {"seconds", "run_id", "ingested_at", "validation"}
    return sorted(({k: v for k, v in r.items() if k not in drop} for r in summary["files"]),
                  key=lambda r: r["source_file"])


def test_files_read_while_their_hash_is_computed_give_the_same_run(world, first_run, prefect_harness, monkeypatch):
    """Every file is staged before its hash is known (the hash waits for it): same records,
    same bronze, same quarantine as the first run, whose hashes were mostly ready in time."""
    from creditflow.flows import ingest as ingest_module
    from creditflow.flows.lake import FileHashes

    root, landing, _ = world
    work0, _, summary0 = first_run
    real = FileHashes.sha256
    staged_first = []

    def after_staging(self, f):
        for _ in range(2000):
            if any(path == str(f) for _, path in list(ingest_module._PRESTAGED)):
                staged_first.append(f.name)
                break
            threading.Event().wait(0.005)
        return real(self, f)

    real_stage, stagings = ingest_module._stage, []

    def counted(job):
        stagings.append(job.path)
        return real_stage(job)

    monkeypatch.setattr(FileHashes, "sha256", after_staging)
    monkeypatch.setattr(ingest_module, "_stage", counted)
    work = root / "work_prestaged"
    state = ingest_flow(workdir=str(work), landing=str(landing), return_state=True)
    summary = state.result(raise_on_failure=False)
    assert len(staged_first) == len(summary["files"]) == len(summary0["files"])
    assert len(stagings) == len(set(stagings)) == len(summary["files"])  # each file read once
    assert _comparable(summary) == _comparable(summary0)
    lineage_time = [schema.INGESTED_AT]
    for family in schema.INPUT_FAMILIES:
        a, b = scan_bronze(Paths(work0), family), scan_bronze(Paths(work), family)
        assert (a is None) == (b is None), family
        if a is not None:
            key = [schema.SOURCE_FILE, schema.LINE_NUMBER]
            assert_frame_equal(a.drop(lineage_time).sort(key).collect(), b.drop(lineage_time).sort(key).collect())
    q0, q = scan_quarantine(Paths(work0)), scan_quarantine(Paths(work))
    key = [schema.SOURCE_FILE, schema.LINE_NUMBER]
    assert_frame_equal(q0.drop(lineage_time).sort(key, nulls_last=True).collect(),
                       q.drop(lineage_time).sort(key, nulls_last=True).collect())


def test_second_run_adds_nothing_and_a_changed_file_is_new(world, first_run, prefect_harness):
    root, landing, _ = world
    work, _, summary = first_run
    paths = Paths(work)
    before = {p.name: p.stat().st_mtime_ns for p in paths.lake.rglob("*.parquet")}

    state = ingest_flow(workdir=str(work), landing=str(landing), return_state=True)
    again = state.result(raise_on_failure=False)
    assert state.is_completed()
    assert again["totals"]["files_new"] == 0
    assert again["totals"]["files_skipped"] == len(summary["files"])
    after = {p.name: p.stat().st_mtime_ns for p in paths.lake.rglob("*.parquet")}
    assert after == before

    # Same name, new content: a new file. Its old rows are duplicates now and go to quarantine.
    first_ledger = sorted((landing / "ledger").glob("ledger_*.csv"))[0]
    text = first_ledger.read_bytes()
    # the same rows with other line endings: new bytes, new hash
    changed = text.replace(b"\r\n", b"\n") if b"\r\n" in text else text.replace(b"\n", b"\r\n")
    first_ledger.write_bytes(changed)
    state = ingest_flow(workdir=str(work), landing=str(landing), return_state=True)
    third = state.result(raise_on_failure=False)
    assert third["totals"]["files_new"] == 1
    rec = third["files"][0]
    assert rec["rows_accepted"] == 0
    assert rec["reason_counts"].get("DUPLICATE_ENTRY_ID", 0) >= 1
    assert rec["rows_read"] == rec["rows_quarantined"]
    assert len(Manifest(paths).records) == len(summary["files"]) + 1


def test_a_file_that_vanishes_is_reported_and_taken_next_run(tmp_path, prefect_harness, monkeypatch):
    """One ledger file disappears between the listing and its hash, another between its hash
    and its read: the run goes on with the other files, ends Failed naming both, records
    nothing for them, and the next run ingests them once they are back."""
    from creditflow.flows import ingest as ingest_module
    from creditflow.flows.lake import FileHashes

    monkeypatch.setattr(ingest_module, "_prestage", lambda job: None)  # every read after its hash
    landing = tmp_path / "landing"
    generate(landing, customers=30, months=4, seed=9, bad_rows=0.0)
    ledgers = sorted((landing / "ledger").glob("*.csv"))
    before_hash, after_hash = ledgers[0], ledgers[-1]
    kept = {p: p.read_bytes() for p in (before_hash, after_hash)}
    real = FileHashes.sha256

    def vanishing(self, f):
        if f == before_hash and f.exists():
            f.unlink()
        sha = real(self, f)
        if f == after_hash:
            f.unlink()
        return sha

    monkeypatch.setattr(FileHashes, "sha256", vanishing)
    work = tmp_path / "work"
    state = ingest_flow(workdir=str(work), landing=str(landing), return_state=True)
    summary = state.result(raise_on_failure=False)
    assert state.is_failed()
    gone = {u["source_file"] for u in summary["unreadable"]}
    assert gone == {f"ledger/{before_hash.name}", f"ledger/{after_hash.name}"}
    assert summary["totals"]["files_unreadable"] == 2
    assert sum(p.endswith("the next run looks at it again") for p in summary["problems"]) == 2
    recorded = {r.source_file for r in Manifest(Paths(work)).records.values()}
    assert not gone & recorded and len(recorded) == summary["totals"]["files_new"] > 0
    assert all(r["status"] != STATUS_REJECTED for r in summary["files"])

    monkeypatch.setattr(FileHashes, "sha256", real)
    for p, data in kept.items():
        p.write_bytes(data)
    state = ingest_flow(workdir=str(work), landing=str(landing), return_state=True)
    again = state.result(raise_on_failure=False)
    assert state.is_completed()
    assert {r["source_file"] for r in again["files"]} == gone
    assert again["totals"]["files_unreadable"] == 0
