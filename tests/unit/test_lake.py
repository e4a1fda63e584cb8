from __future__ import annotations

import hashlib

import polars as pl
import pytest

from creditflow.core.paths import Paths
from creditflow.flows.lake import FileRecord, Manifest, sha256_file, write_parquet_atomic


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
