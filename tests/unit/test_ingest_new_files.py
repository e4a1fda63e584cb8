"""Which landing files an ingest run takes on, with hashes computed on a background thread."""

from __future__ import annotations

import hashlib
import threading

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
