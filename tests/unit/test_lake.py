from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import polars as pl
import pytest

from creditflow.core.paths import Paths
from creditflow.flows import lake
from creditflow.flows.lake import (
    FileHashes,
    FileRecord,
    Manifest,
    sha256_file,
    write_parquet_atomic,
)


def _record(**kw) -> FileRecord:
    base = dict(family="ledger", source_file="ledger/a.csv", file_sha256="a" * 64, size_bytes=10,
                status="accepted", rows_read=5, rows_accepted=4, rows_quarantined=1)
    return FileRecord(**{**base, **kw})


def test_a_record_that_loses_rows_is_refused():
    with pytest.raises(ValueError, match=r"rows read \(5\) != accepted \(4\) \+ quarantined \(0\)"):
        _record(rows_quarantined=0)


def test_manifest_commit_is_read_back_and_lists_committed_bronze_only(tmp_path):
    paths = Paths(tmp_path)
    m = Manifest(paths)
    m.commit(_record(source_file="ledger/b.csv", file_sha256="b" * 64))
    m.commit(_record(source_file="ledger/a.csv", file_sha256="c" * 64))
    m.commit(_record(source_file="ledger/z.csv", file_sha256="d" * 64, rows_accepted=0, rows_quarantined=5,
                     status="rejected"))
    again = Manifest(paths)
    assert "b" * 64 in again and "e" * 64 not in again
    # ordered by source file name; a file with no accepted rows has no bronze file
    assert [p.stem for p in again.bronze_files("ledger")] == ["c" * 64, "b" * 64]
    assert again.bronze_files("customers") == []


def test_atomic_parquet_write_leaves_only_the_final_file(tmp_path):
    target = tmp_path / "x" / "f.parquet"
    write_parquet_atomic(pl.DataFrame({"a": [1, 2]}), target)
    write_parquet_atomic(pl.DataFrame({"a": [3]}), target)
    assert [p.name for p in target.parent.iterdir()] == ["f.parquet"]
    assert pl.read_parquet(target)["a"].to_list() == [3]


def test_sha256_file_matches_hashlib(tmp_path):
    p = tmp_path / "f.bin"
    data = bytes(range(256)) * 50_000  # larger than one read chunk
    p.write_bytes(data)
    assert sha256_file(p) == hashlib.sha256(data).hexdigest()


def _counting_sha(monkeypatch) -> list[str]:
    """Record which files FileHashes actually reads (the real hash still runs)."""
    reads: list[str] = []
    real = lake.sha256_file

    def counting(path):
        reads.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(lake, "sha256_file", counting)
    return reads


def test_file_hashes_reads_an_unchanged_file_once_across_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(lake, "_RACY_NS", 0)  # these files were written just now (see the racy test)
    reads = _counting_sha(monkeypatch)
    cache = tmp_path / "state" / "landing_sha256.json"
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_bytes(b"x,y\n1,2\n")
    b.write_bytes(b"x,y\n3,4\n")
    first = FileHashes(cache)
    assert first.sha256(a) == hashlib.sha256(b"x,y\n1,2\n").hexdigest()
    assert first.sha256(b) == hashlib.sha256(b"x,y\n3,4\n").hexdigest()
    first.save()
    assert reads == ["a.csv", "b.csv"]

    second = FileHashes(cache)  # the next run: nothing changed, nothing read
    assert second.sha256(a) == hashlib.sha256(b"x,y\n1,2\n").hexdigest()
    assert reads == ["a.csv", "b.csv"]


def test_file_hashes_rehash_a_rewritten_file_even_with_its_old_size_and_mtime(tmp_path, monkeypatch):
    monkeypatch.setattr(lake, "_RACY_NS", 0)
    reads = _counting_sha(monkeypatch)
    cache = tmp_path / "landing_sha256.json"
    a = tmp_path / "a.csv"
    a.write_bytes(b"x,y\n1,2\n")
    hashes = FileHashes(cache)
    hashes.sha256(a)
    hashes.save()
    st = a.stat()
    a.write_bytes(b"x,y\n9,9\n")  # same size
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the old mtime: only ctime tells
    assert FileHashes(cache).sha256(a) == hashlib.sha256(b"x,y\n9,9\n").hexdigest()
    assert reads == ["a.csv", "a.csv"]


def test_file_hashes_forgets_files_no_longer_looked_up_and_survives_a_bad_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(lake, "_RACY_NS", 0)
    cache = tmp_path / "landing_sha256.json"
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_bytes(b"1")
    b.write_bytes(b"2")
    hashes = FileHashes(cache)
    hashes.sha256(a)
    hashes.sha256(b)
    hashes.save()
    b.unlink()
    again = FileHashes(cache)
    again.sha256(a)
    again.save()
    assert list(json.loads(cache.read_text())) == [str(a.resolve())]
    cache.write_text("{not json")
    assert FileHashes(cache).sha256(a) == hashlib.sha256(b"1").hexdigest()


def test_file_hashes_do_not_remember_a_file_changed_within_a_timestamp_tick(tmp_path, monkeypatch):
    # written just now: a same-size rewrite in the same tick could keep its identity
    reads = _counting_sha(monkeypatch)
    a = tmp_path / "a.csv"
    a.write_bytes(b"x,y\n1,2\n")
    hashes = FileHashes(tmp_path / "h.json")
    hashes.sha256(a)
    hashes.sha256(a)
    hashes.save()
    assert reads == ["a.csv", "a.csv"]
    assert json.loads((tmp_path / "h.json").read_text()) == {}


def test_manifest_reads_each_record_once_and_rereads_a_rewritten_one(tmp_path, monkeypatch):
    paths = Paths(tmp_path)
    rec = FileRecord(family="ledger", source_file="ledger/a.csv", file_sha256="a" * 64, size_bytes=3,
                     status="accepted", rows_read=2, rows_accepted=2, rows_quarantined=0)
    Manifest(paths).commit(rec)
    reads: list[str] = []
    real = Path.read_text

    def counting(self, *args, **kwargs):
        reads.append(self.name)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counting)
    assert Manifest(paths).records[rec.file_sha256].rows_read == 2
    assert Manifest(paths).records[rec.file_sha256].rows_read == 2
    assert reads == [f"{'a' * 64}.json"]  # the second Manifest used the parsed record
    fixed = FileRecord(**{**rec.to_dict(), "rows_read": 3, "rows_quarantined": 1})
    Manifest(paths).commit(fixed)  # a re-ingest after a crash rewrites the record (new inode)
    assert Manifest(paths).records[rec.file_sha256].rows_read == 3
