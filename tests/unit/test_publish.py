"""Publishing helpers on tiny frames: exact schemas, one-partition replace, time travel, the run record."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import polars as pl
import pytest

from creditflow.core.paths import Paths
from creditflow.core.schema import (
    COLLECTIONS,
    LIMITS,
    OUTPUT_TABLES,
    SCORES,
    WATCHLIST,
    empty_frame,
)
from creditflow.flows.publish import (
    RUNS_SCHEMA,
    PublishError,
    RunInfo,
    check_schema,
    delta_version,
    latest_run,
    publish,
    published_as_of_dates,
    read_previous,
    read_runs,
    read_table,
    write_partition,
)

JAN, FEB, MAR = date(2026, 1, 31), date(2026, 2, 28), date(2026, 3, 31)
RUN = RunInfo(run_id="r1", model_name="m", model_version="3", policy_version="2026.1", feature_set="fs")


def _scores(as_of: date, ids: list[str], pd_: float = 0.02, run_id: str = "r1") -> pl.DataFrame:
    n = len(ids)
    return pl.DataFrame(
        {
            "as_of_date": [as_of] * n,
            "customer_id": ids,
            "pd_12m": [pd_] * n,
            "score": [600] * n,
            "risk_grade": ["R6"] * n,
            "reason_codes": [["Invoices far past due"]] * n,
            "model_name": ["m"] * n,
            "model_version": ["3"] * n,
            "run_id": [run_id] * n,
        },
        schema=SCORES.polars_schema,
    )


def _limits(as_of: date, ids: list[str]) -> pl.DataFrame:
    n = len(ids)
    money = [Decimal("1000.00")] * n
    return pl.DataFrame(
        {
            "as_of_date": [as_of] * n,
            "customer_id": ids,
            "currency": ["CNY"] * n,
            "current_limit": money,
            "exposure": money,
            "recommended_limit": money,
            "utilization": [1.0] * n,
            "action": ["HOLD"] * n,
            "binding_rule": ["ROUNDING"] * n,
            "expected_loss": [Decimal("9.00")] * n,
            "policy_version": ["2026.1"] * n,
        },
        schema=LIMITS.polars_schema,
    )


def test_check_schema_accepts_the_contract_frame():
    check_schema(_scores(JAN, ["a"]), SCORES)


def test_check_schema_names_a_wrong_dtype():
    bad = _scores(JAN, ["a"]).with_columns(pl.col("score").cast(pl.Int64))
    with pytest.raises(PublishError, match=r"scores: score must be Int32; got Int64"):
        check_schema(bad, SCORES)


def test_check_schema_names_missing_and_extra_columns():
    bad = _scores(JAN, ["a"]).drop("run_id").with_columns(x=pl.lit(1))
    with pytest.raises(PublishError, match=r"missing columns \['run_id'\]; unexpected columns \['x'\]"):
        check_schema(bad, SCORES)


def test_check_schema_requires_contract_order():
    bad = _scores(JAN, ["a"]).select(["customer_id", "as_of_date", *SCORES.names[2:]])
    with pytest.raises(PublishError, match="contract order"):
        check_schema(bad, SCORES)


def test_republishing_a_date_replaces_only_its_partition_and_keeps_history(tmp_path):
    p = tmp_path / "scores"
    assert write_partition(p, _scores(JAN, ["a", "b"]), SCORES, JAN) == 0
    assert write_partition(p, _scores(FEB, ["a"]), SCORES, FEB) == 1
    assert write_partition(p, _scores(JAN, ["c"], pd_=0.05), SCORES, JAN) == 2

    now = read_table(p, SCORES)
    assert now.select("as_of_date", "customer_id").rows() == [(JAN, "c"), (FEB, "a")]
    assert now.schema == SCORES.polars_schema  # contract order and dtypes on read-back
    assert read_table(p, SCORES, as_of=JAN).get_column("pd_12m").to_list() == [0.05]
    # time travel: version 1 still holds January's first publish
    v1 = read_table(p, SCORES, version=1)
    assert v1.select("as_of_date", "customer_id").rows() == [(JAN, "a"), (JAN, "b"), (FEB, "a")]
    assert published_as_of_dates(p) == [JAN, FEB]


def test_the_same_rows_twice_give_the_same_contents_and_a_new_version(tmp_path):
    p = tmp_path / "scores"
    write_partition(p, _scores(JAN, ["a", "b"]), SCORES, JAN)
    first = read_table(p, SCORES)
    assert write_partition(p, _scores(JAN, ["a", "b"]), SCORES, JAN) == 1
    assert read_table(p, SCORES).equals(first)


def test_an_empty_frame_empties_its_partition(tmp_path):
    p = tmp_path / "watchlist"
    wl = pl.DataFrame(
        {"as_of_date": [JAN], "customer_id": ["a"], "severity": ["LOW"], "triggers": [["TAX_ARREARS"]],
         "since_date": [JAN]},
        schema=WATCHLIST.polars_schema,
    )
    write_partition(p, wl, WATCHLIST, JAN)
    write_partition(p, empty_frame(WATCHLIST), WATCHLIST, JAN)
    assert read_table(p, WATCHLIST).height == 0
    assert read_table(p, WATCHLIST, version=0).height == 1
    assert published_as_of_dates(p) == []


def test_an_empty_first_publish_creates_the_table_with_its_schema(tmp_path):
    p = tmp_path / "collections"
    assert write_partition(p, empty_frame(COLLECTIONS), COLLECTIONS, JAN) == 0
    got = read_table(p, COLLECTIONS)
    assert got.height == 0 and got.schema == COLLECTIONS.polars_schema


def test_rows_of_another_date_are_refused(tmp_path):
    frame = pl.concat([_scores(JAN, ["a"]), _scores(FEB, ["b"])])
    with pytest.raises(PublishError, match=r"every row must be at as_of_date 2026-01-31; got rows at \[.*2026, 2, 28"):
        write_partition(tmp_path / "scores", frame, SCORES, JAN)
    assert delta_version(tmp_path / "scores") is None


def test_duplicate_keys_and_required_nulls_are_refused(tmp_path):
    with pytest.raises(PublishError, match=r"2 rows share a key \[.as_of_date., .customer_id.\]"):
        write_partition(tmp_path / "s", _scores(JAN, ["a", "a"]), SCORES, JAN)
    nulls = _scores(JAN, ["a"]).with_columns(pl.lit(None, dtype=pl.String).alias("run_id"))
    with pytest.raises(PublishError, match=r"required columns hold nulls: \['run_id'\]"):
        write_partition(tmp_path / "s", nulls, SCORES, JAN)


def test_read_previous_takes_the_latest_date_before(tmp_path):
    p = tmp_path / "scores"
    for d, ids in ((JAN, ["a"]), (FEB, ["b"]), (MAR, ["c"])):
        write_partition(p, _scores(d, ids), SCORES, d)
    assert read_previous(p, SCORES, MAR).get_column("customer_id").to_list() == ["b"]
    assert read_previous(p, SCORES, FEB).get_column("customer_id").to_list() == ["a"]
    assert read_previous(p, SCORES, JAN) is None
    assert read_previous(tmp_path / "nothing", SCORES, JAN) is None


def test_read_table_refuses_a_table_with_another_schema(tmp_path):
    p = tmp_path / "scores"
    _scores(JAN, ["a"]).with_columns(pl.col("score").cast(pl.Int64)).write_delta(str(p))
    with pytest.raises(PublishError, match="score must be Int32; got Int64"):
        read_table(p, SCORES)


def test_read_table_of_a_missing_table_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="creditflow score"):
        read_table(tmp_path / "scores", SCORES)


def _manifest(paths: Paths) -> None:
    paths.manifest.mkdir(parents=True)
    rec = {"family": "ledger", "source_file": "ledger/l1.csv", "file_sha256": "ab" * 32, "size_bytes": 10,
           "status": "accepted", "rows_read": 2, "rows_accepted": 2, "rows_quarantined": 0}
    (paths.manifest / f"{'ab' * 32}.json").write_text(json.dumps(rec), encoding="utf-8")


def test_publish_writes_every_table_then_one_run_record(tmp_path):
    paths = Paths(tmp_path)
    _manifest(paths)
    tables = {
        "scores": _scores(JAN, ["a", "b"]),
        "limits": _limits(JAN, ["a", "b", "z"]),
        "watchlist": empty_frame(WATCHLIST),
        "collections": empty_frame(COLLECTIONS),
    }
    out = publish(paths, JAN, tables, RUN)
    assert {k: v["rows"] for k, v in out["tables"].items()} == {
        "scores": 2, "limits": 3, "watchlist": 0, "collections": 0}
    for name, table in OUTPUT_TABLES.items():
        assert read_table(paths.table(name), table).schema == table.polars_schema
    runs = read_runs(paths)
    assert runs.schema == RUNS_SCHEMA and runs.height == 1
    r = runs.row(0, named=True)
    assert (r["run_id"], r["as_of_date"], r["model_version"], r["policy_version"]) == ("r1", JAN, "3", "2026.1")
    assert r["rows_limits"] == 3 and r["delta_version_scores"] == 0
    assert r["input_files"] == [
        {"family": "ledger", "source_file": "ledger/l1.csv", "file_sha256": "ab" * 32, "status": "accepted"}]
    # a second publish of the same date appends a second record and bumps the versions
    publish(paths, JAN, tables, RunInfo("r2", "m", "3", "2026.1", "fs"))
    assert read_runs(paths).get_column("run_id").to_list() == ["r1", "r2"]
    assert latest_run(paths)["delta_version_scores"] == 1
    assert latest_run(paths, FEB) is None


def test_a_retried_publish_records_its_run_once(tmp_path):
    paths = Paths(tmp_path)
    _manifest(paths)
    tables = {"scores": _scores(JAN, ["a"]), "limits": _limits(JAN, ["a"]),
              "watchlist": empty_frame(WATCHLIST), "collections": empty_frame(COLLECTIONS)}
    publish(paths, JAN, tables, RUN)
    again = publish(paths, JAN, tables, RUN)  # the same run id: a task retry after its append landed
    assert read_runs(paths).get_column("run_id").to_list() == ["r1"]
    assert again["tables"]["scores"]["delta_version"] == 1  # the partitions were replaced again


def test_publish_checks_every_frame_before_writing_any(tmp_path):
    paths = Paths(tmp_path)
    tables = {
        "scores": _scores(JAN, ["a"]),
        "limits": _limits(JAN, ["a"]),
        "watchlist": empty_frame(WATCHLIST),
        "collections": empty_frame(COLLECTIONS).drop("provision"),
    }
    with pytest.raises(PublishError, match=r"collections: missing columns \['provision'\]"):
        publish(paths, JAN, tables, RUN)
    assert not paths.published.exists()
    with pytest.raises(PublishError, match=r"missing \['collections'\]"):
        publish(paths, JAN, {k: v for k, v in tables.items() if k != "collections"}, RUN)
