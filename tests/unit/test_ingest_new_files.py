"""Which landing files an ingest run takes on, with hashes computed on a background thread."""

from __future__ import annotations

import hashlib
import threading

import pytest

from creditflow.flows.ingest import _new_files
from creditflow.flows.lake import FileHashes


def _landing(tmp_path):
    landing = tmp_path / "landing"
    files = {}
    for family, name, data in [("customers", "c1.csv", b"a"), ("customers", "c2.csv", b"b"),
                               ("ledger", "l1.csv", b"a"), ("ledger", "l2.csv", b"c")]:
        p = landing / family / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        files.setdefault(family, []).append(p)
    return landing, files


def test_new_files_in_order_numbered_among_all_skipping_known_and_repeated_content(tmp_path):
    landing, found = _landing(tmp_path)
    known = {hashlib.sha256(b"b").hexdigest()}  # c2.csv's content is already ingested
    skipped = []
    got = list(_new_files(found, landing, known, FileHashes(tmp_path / "h.json"), skipped,
                          lambda f, family, sha: (f.name, family, sha)))
    assert got == [(1, ("c1.csv", "customers", hashlib.sha256(b"a").hexdigest())),
                   (4, ("l2.csv", "ledger", hashlib.sha256(b"c").hexdigest()))]
    # l1.csv repeats c1.csv's bytes: met earlier in this run
    assert [(s["family"], s["source_file"]) for s in skipped] == [("customers", "customers/c2.csv"),
                                                                  ("ledger", "ledger/l1.csv")]


def test_hashing_runs_off_the_calling_thread_and_stops_when_the_run_stops(tmp_path, monkeypatch):
    landing, found = _landing(tmp_path)
    hashed_on = []
    real = FileHashes.sha256

    def recording(self, f):
        hashed_on.append((f.name, threading.current_thread().name))
        return real(self, f)

    monkeypatch.setattr(FileHashes, "sha256", recording)
    gen = _new_files(found, landing, set(), FileHashes(tmp_path / "h.json"), [],
                     lambda f, family, sha: f.name)
    assert next(gen) == (1, "c1.csv")
    gen.close()  # e.g. the first file's ingest failed: the pool shuts down, nothing is left running
    assert hashed_on and all(name.startswith("sha256") for _, name in hashed_on)
    assert [n for n, _ in hashed_on] == ["c1.csv", "c2.csv", "l1.csv", "l2.csv"][:len(hashed_on)]


class _RecordingPrestager:
    def __init__(self):
        self.calls = []

    def stage(self, f, family):
        self.calls.append(("stage", f.name))

    def drop(self, f, family):
        self.calls.append(("drop", f.name))

    def confirm(self, f, family, identity):
        self.calls.append(("confirm", f.name))


def test_a_file_whose_hash_is_not_ready_is_staged_first_and_dropped_if_it_is_skipped(tmp_path, monkeypatch):
    landing, found = _landing(tmp_path)
    known = {hashlib.sha256(b"b").hexdigest()}  # c2.csv is ingested already
    prestager = _RecordingPrestager()
    real = FileHashes.sha256

    def slow_for_c2_and_l2(self, f):
        # c2 and l2 are hashed only once they were staged: their hashes cannot be ready in time
        if f.name in ("c2.csv", "l2.csv"):
            for _ in range(500):
                if ("stage", f.name) in prestager.calls:
                    break
                threading.Event().wait(0.01)
        return real(self, f)

    monkeypatch.setattr(FileHashes, "sha256", slow_for_c2_and_l2)
    got = list(_new_files(found, landing, known, FileHashes(tmp_path / "h.json"), [],
                          lambda f, family, sha: f.name, prestager=prestager))
    assert [name for _, name in got] == ["c1.csv", "l2.csv"]
    # c2 was staged while hashing, then turned out to be known: its rows are dropped
    assert ("stage", "c2.csv") in prestager.calls and ("drop", "c2.csv") in prestager.calls
    assert ("stage", "l2.csv") in prestager.calls and ("drop", "l2.csv") not in prestager.calls
    assert prestager.calls.index(("stage", "c2.csv")) < prestager.calls.index(("drop", "c2.csv"))
    # every skipped file's staged rows are dropped (l1 repeats c1's bytes); every file handed
    # out is checked against the bytes that were hashed first
    assert ("drop", "l1.csv") in prestager.calls
    assert [n for op, n in prestager.calls if op == "confirm"] == ["c1.csv", "l2.csv"]


def test_a_file_gone_before_its_hash_is_reported_unreadable_and_the_others_go_on(tmp_path):
    landing, found = _landing(tmp_path)
    gone = found["customers"][1]
    gone.unlink()  # removed between the listing and the hash
    unreadable, prestager = [], _RecordingPrestager()
    got = list(_new_files(found, landing, set(), FileHashes(tmp_path / "h.json"), [],
                          lambda f, family, sha: f.name, prestager=prestager, unreadable=unreadable))
    assert [name for _, name in got] == ["c1.csv", "l2.csv"]  # l1 repeats c1's bytes
    assert [(u["family"], u["source_file"]) for u in unreadable] == [("customers", "customers/c2.csv")]
    assert "No such file" in unreadable[0]["message"] and "next run" in unreadable[0]["message"]
    assert ("stage", "c2.csv") not in prestager.calls or ("drop", "c2.csv") in prestager.calls
    # without the list, the error is the caller's
    with pytest.raises(FileNotFoundError):
        list(_new_files(found, landing, set(), FileHashes(tmp_path / "h2.json"), [], lambda f, family, sha: f.name))


def test_staged_rows_are_kept_only_if_read_from_the_bytes_that_were_hashed(tmp_path):
    """A file still being written can be read short and hashed whole; such rows are dropped
    (the task reads the file again after the hash) instead of being committed under a hash
    that the next run would find and skip."""
    from creditflow.flows import ingest as ingest_module
    from creditflow.flows.ingest import _FileJob, _prestage, _Prestager

    landing = tmp_path / "landing"
    f = landing / "customers" / "customers_2024-01-01.csv"
    f.parent.mkdir(parents=True)
    header = "customer_id,customer_name,registration_id,industry,region,onboarding_date,credit_limit,payment_terms_days,currency\n"
    row = "C{:04d},Co {:d},9131{:014d},C13,East,2020-01-01,1000.00,30,CNY\n"
    f.write_text(header + "".join(row.format(i, i, i) for i in range(3)))

    def make_job(file, family, sha):
        return _FileJob(str(file), family, sha, str(landing), str(tmp_path / "work"), "2024-01-01T00:00:00+00:00", "r1")

    prestager, hashes = _Prestager(make_job), FileHashes(tmp_path / "h.json")
    key = ("r1", str(f))
    try:
        _prestage(make_job(f, "customers", ""))
        staged = ingest_module._PRESTAGED[key]
        assert staged.rows.height == 3 and not staged.changed and staged.size_bytes == f.stat().st_size
        hashes.sha256(f)
        prestager.confirm(f, "customers", hashes.hashed_identity(f))
        assert ingest_module._PRESTAGED[key] is staged  # read from the hashed bytes: kept

        with f.open("a") as fh:  # the export goes on after the read, before the hash
            fh.write(row.format(3, 3, 3))
        hashes.sha256(f)
        prestager.confirm(f, "customers", hashes.hashed_identity(f))
        assert key not in ingest_module._PRESTAGED
        assert ingest_module._stage(make_job(f, "customers", "")).rows.height == 4
    finally:
        ingest_module._PRESTAGED.pop(key, None)
