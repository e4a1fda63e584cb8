"""Benchmark: bulk ingest of a large ledger vs plain Polars, then a daily increment.

    .venv/bin/python -m bench.ingest [--rows 10000000] [--repeats 3] [--out bench/out/ingest]

Prints, for the same ledger CSV in the same process:

- plain Polars ``scan_csv -> sink_parquet`` (the baseline),
- creditflow's ingest flow (read as text, row and cross-file rules, GX validation,
  bronze + quarantine, manifest), run through the real Prefect flow,
- a daily increment of 0.5% new rows on top of that history, and the same increment on a
  history a tenth as long (its cost must follow the increment, not the history),

each as the median wall time over ``--repeats`` runs, CPU seconds, rows per second,
peak resident memory (sampled) and the ratio to the baseline. The machine is noisy:
compare medians and ratios, not single runs.

Then, where the time goes: each step of one file's ingest timed on its own on the same
ledger (sha256, read as text, row rules, cross-file rules, split into bronze/quarantine
with lineage, GX validation, the bronze Parquet write), and a floor: one streaming Polars
plan that reads the CSV as text, parses the contract's dates and amounts, adds the
lineage and sinks Parquet, without any rule or validation (``--no-breakdown`` skips
this part).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl


class PeakRss:
    """Samples this process's resident memory every 20 ms; .peak_mib after the block."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.02)

    def __enter__(self) -> PeakRss:
        self.peak = self._rss()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()

    @property
    def peak_mib(self) -> float:
        return self.peak / 2**20


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(fn) -> dict[str, float]:
    cpu0, t0 = _cpu(), time.perf_counter()
    with PeakRss() as rss:
        fn()
    return {"wall_s": time.perf_counter() - t0, "cpu_s": _cpu() - cpu0, "peak_mib": rss.peak_mib}


def write_world(landing: Path, rows: int, seed: int = 11) -> tuple[Path, int]:
    """A valid customer master and one ledger CSV of ``rows`` entries (invoices, payments
    applying to earlier invoices, credit notes), written with Polars. Returns the ledger path
    and the number of customers."""
    rng = np.random.default_rng(seed)
    n_cust = max(100, rows // 200)
    cust_ids = np.char.add("C", np.char.zfill(np.arange(n_cust).astype(str), 7))
    (landing / "customers").mkdir(parents=True, exist_ok=True)
    pl.DataFrame({
        "customer_id": cust_ids,
        "customer_name": np.char.add("Company ", np.arange(n_cust).astype(str)),
        "registration_id": np.char.add("91310000", np.char.zfill(np.arange(n_cust).astype(str), 10)),
        "industry": rng.choice(["C13", "F51", "G52"], n_cust),
        "region": rng.choice(["East", "North", "South"], n_cust),
        "onboarding_date": "2020-01-01",
        "credit_limit": "500000.00",
        "payment_terms_days": "60",
        "currency": "CNY",
    }).write_csv(landing / "customers" / "customers_2020-01-01.csv")

    n_inv = int(rows * 0.6)
    n_other = rows - n_inv
    inv_cust = rng.integers(0, n_cust, n_inv)
    inv_day = rng.integers(0, 4 * 365, n_inv)
    start = np.datetime64("2021-01-01")
    inv_doc = start + inv_day.astype("timedelta64[D]")
    inv = pl.DataFrame({
        "entry_id": np.char.add("E", np.char.zfill(np.arange(n_inv).astype(str), 10)),
        "customer_id": cust_ids[inv_cust],
        "entry_type": "INVOICE",
        "document_date": inv_doc,
        "due_date": inv_doc + np.timedelta64(60, "D"),
        "amount": rng.integers(10_000, 5_000_000, n_inv) / 100,
        "currency": "CNY",
        "applies_to": None,
    }, schema_overrides={"applies_to": pl.String})
    target = rng.integers(0, n_inv, n_other)
    is_cn = rng.random(n_other) < 0.08
    other = pl.DataFrame({
        "entry_id": np.char.add("E", np.char.zfill(np.arange(n_inv, rows).astype(str), 10)),
        "customer_id": cust_ids[inv_cust[target]],
        "entry_type": np.where(is_cn, "CREDIT_NOTE", "PAYMENT"),
        "document_date": inv_doc[target] + rng.integers(0, 120, n_other).astype("timedelta64[D]"),
        "due_date": None,
        "amount": rng.integers(100, 1_000_000, n_other) / 100,
        "currency": "CNY",
        "applies_to": np.char.add("E", np.char.zfill(target.astype(str), 10)),
    }, schema_overrides={"due_date": pl.Date})
    ledger = pl.concat([inv, other.select(inv.columns).cast(inv.schema)]).with_columns(
        pl.col("amount").map_batches(lambda s: s.round(2).cast(pl.String)),
    )
    (landing / "ledger").mkdir(parents=True, exist_ok=True)
    path = landing / "ledger" / "ledger_2024-12-31.csv"
    ledger.write_csv(path)
    return path, n_cust


def write_increment(landing: Path, rows: int, n_hist: int, n_cust: int, seed: int = 12) -> Path:
    """``rows`` new entries dated after the history: payments on historic invoices and new invoices."""
    rng = np.random.default_rng(seed)
    n_inv = rows // 2
    cust = rng.integers(0, n_cust, n_inv)
    ids_new = np.char.add("E", np.char.zfill(np.arange(n_hist, n_hist + rows).astype(str), 10))
    inv = pl.DataFrame({
        "entry_id": ids_new[:n_inv],
        "customer_id": np.char.add("C", np.char.zfill(cust.astype(str), 7)),
        "entry_type": "INVOICE",
        "document_date": "2025-01-02",
        "due_date": "2025-03-03",
        "amount": "1234.50",
        "currency": "CNY",
        "applies_to": None,
    }, schema_overrides={"applies_to": pl.String})
    pay = pl.DataFrame({
        "entry_id": ids_new[n_inv:],
        "customer_id": np.char.add("C", np.char.zfill(cust[: rows - n_inv].astype(str), 7)),
        "entry_type": "PAYMENT",
        "document_date": "2025-01-02",
        "due_date": None,
        "amount": "100.00",
        "currency": "CNY",
        "applies_to": ids_new[: rows - n_inv],  # pays the new invoices of the same customer
    }, schema_overrides={"due_date": pl.String})
    path = landing / "ledger" / "ledger_2025-01-02.csv"
    pl.concat([inv, pay]).write_csv(path)
    return path


def stage_breakdown(ledger_csv: Path, customers_csv: Path, work: Path) -> dict[str, dict[str, float]]:
    """Each step of one ledger file's ingest, timed on its own (not overlapped as in the flow)."""
    from datetime import UTC, date, datetime

    from creditflow.core import schema
    from creditflow.flows.gx_validate import GxValidator
    from creditflow.flows.lake import PARQUET_OPTIONS, sha256_file
    from creditflow.validation.rules import apply_cross_file_rules, apply_row_rules, split_routed
    from creditflow.validation.staging import (
        read_landing_file,
        values_are_slash_free,
        values_are_trimmed,
    )

    work.mkdir(parents=True, exist_ok=True)
    steps: dict[str, dict[str, float]] = {}

    def step(name, fn, *args, **kwargs):
        box: dict[str, object] = {}
        steps[name] = measure(lambda: box.update(r=fn(*args, **kwargs)))
        return box["r"]

    customers = read_landing_file(customers_csv, schema.CUSTOMERS).select("customer_id")
    step("sha256", sha256_file, ledger_csv)
    raw = step("read as text", read_landing_file, ledger_csv, schema.LEDGER, temp_dir=work)
    parsed = step("row rules", apply_row_rules, raw, schema.LEDGER, trimmed=values_are_trimmed(ledger_csv),
                  slash_free=values_are_slash_free(ledger_csv))
    raw = None  # free it before the next steps
    parsed = step("cross-file rules", apply_cross_file_rules, parsed, schema.LEDGER,
                  known_customer_ids=customers, prior_ledger=None)
    route = dict(family="ledger", source_file="ledger/" + ledger_csv.name, file_sha256="0" * 64,
                 file_date=date(2024, 12, 31), ingested_at=datetime.now(UTC))
    accepted, _ = step("split + lineage", split_routed, parsed, schema.LEDGER, **route)
    parsed = None
    validator = GxValidator(None, base_currency="CNY")
    validator.validate(accepted.head(1000), schema.LEDGER, batch_name="warm-up")
    step("GX validation", validator.validate, accepted, schema.LEDGER, batch_name=ledger_csv.name)
    step("bronze write", accepted.write_parquet, work / "bronze.parquet", **PARQUET_OPTIONS)
    accepted = None

    def floor() -> None:
        money = schema.LEDGER.polars_schema["amount"]
        (pl.scan_csv(ledger_csv, infer_schema=False)
         .with_row_index("line_number", offset=2)
         .with_columns(pl.col("document_date", "due_date").str.to_date("%Y-%m-%d", strict=False),
                       pl.col("amount").cast(money, strict=False),
                       source_file=pl.lit(route["source_file"]), file_sha256=pl.lit(route["file_sha256"]))
         .sink_parquet(work / "floor.parquet", **PARQUET_OPTIONS))

    step("floor: text scan, parse, lineage, sink (no rules, no GX)", floor)
    shutil.rmtree(work, ignore_errors=True)
    return steps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("bench/out/ingest"))
    ap.add_argument("--no-breakdown", action="store_true", help="skip the per-step timings")
    args = ap.parse_args(argv)

    out = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    landing = out / "landing"
    os.environ.setdefault("PREFECT_HOME", str(out / "prefect"))
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

    t = time.perf_counter()
    ledger_csv, n_cust = write_world(landing, args.rows)
    size_mib = ledger_csv.stat().st_size / 2**20
    print(f"ledger: {args.rows:,} rows, {size_mib:,.0f} MiB CSV, {n_cust:,} customers "
          f"(written in {time.perf_counter() - t:.1f} s)", flush=True)

    from creditflow.flows.ingest import ingest_flow  # after PREFECT_HOME is set
    from creditflow.flows.runner import embedded_flow_settings

    with embedded_flow_settings():  # flows run as `creditflow ingest` runs them
        return _timed(args, out, landing, ledger_csv, n_cust, size_mib, ingest_flow)


def _timed(args, out: Path, landing: Path, ledger_csv: Path, n_cust: int, size_mib: float, ingest_flow) -> int:
    """The timed runs and the report (``main`` prepared the world)."""
    # Start the ephemeral Prefect server once, outside the timings.
    (out / "empty").mkdir()
    ingest_flow(workdir=str(out / "warm"), landing=str(out / "empty"), return_state=True)

    baseline, ours = [], []
    for i in range(args.repeats):
        sink = out / f"baseline_{i}.parquet"
        baseline.append(measure(lambda sink=sink: pl.scan_csv(ledger_csv).sink_parquet(sink)))
        sink.unlink()
        work = out / f"work_{i}"
        state = {}
        ours.append(measure(lambda state=state, work=work: state.update(s=ingest_flow(workdir=str(work), landing=str(landing),
                                                             return_state=True))))
        summary = state["s"].result(raise_on_failure=False)
        assert summary["totals"]["rows_accepted"] == args.rows + n_cust, summary["totals"]
        print(f"  run {i + 1}: baseline {baseline[-1]['wall_s']:.1f} s, creditflow {ours[-1]['wall_s']:.1f} s",
              flush=True)
        if i < args.repeats - 1:
            shutil.rmtree(work)

    inc_rows = max(2, args.rows // 200)
    inc_path = write_increment(landing, inc_rows, args.rows, n_cust)
    inc_state = {}
    inc = measure(lambda: inc_state.update(s=ingest_flow(workdir=str(work), landing=str(landing),
                                                         return_state=True)))
    inc_base = measure(lambda: pl.scan_csv(inc_path).sink_parquet(out / "inc_baseline.parquet"))
    # The same increment on a history a tenth as long: its cost must follow the increment.
    small_rows = max(inc_rows, args.rows // 10)
    small_landing, small_work = out / "landing_small", out / "work_small"
    _, small_cust = write_world(small_landing, small_rows)
    time.sleep(2.1)  # a file hashed within 2 s of its last write is not remembered (docs/ingest.md)
    ingest_flow(workdir=str(small_work), landing=str(small_landing), return_state=True)
    write_increment(small_landing, inc_rows, small_rows, small_cust)
    box = {}
    inc_small = measure(lambda: box.update(s=ingest_flow(workdir=str(small_work), landing=str(small_landing),
                                                         return_state=True)))
    for state in (inc_state["s"], box["s"]):  # each increment run took exactly the new file
        t = state.result(raise_on_failure=False)["totals"]
        assert (t["files_new"], t["rows_read"], t["rows_accepted"]) == (1, inc_rows, inc_rows), t

    def med(runs, key):
        return statistics.median(r[key] for r in runs)

    b_wall, o_wall = med(baseline, "wall_s"), med(ours, "wall_s")
    report = {
        "rows": args.rows,
        "csv_mib": round(size_mib, 1),
        "repeats": args.repeats,
        "baseline": {"wall_s": b_wall, "cpu_s": med(baseline, "cpu_s"), "peak_mib": med(baseline, "peak_mib"),
                     "rows_per_s": args.rows / b_wall},
        "creditflow": {"wall_s": o_wall, "cpu_s": med(ours, "cpu_s"), "peak_mib": med(ours, "peak_mib"),
                       "rows_per_s": args.rows / o_wall},
        "throughput_ratio": b_wall / o_wall,
        "cpu_ratio": med(baseline, "cpu_s") / med(ours, "cpu_s"),
        "increment": {"rows": inc_rows, "wall_s": inc["wall_s"], "cpu_s": inc["cpu_s"], "peak_mib": inc["peak_mib"],
                      "baseline_wall_s": inc_base["wall_s"],
                      "small_history_rows": small_rows, "small_history_wall_s": inc_small["wall_s"],
                      "small_history_cpu_s": inc_small["cpu_s"]},
    }
    print()
    print(f"{'':<24}{'wall s':>9}{'cpu s':>9}{'rows/s':>14}{'peak MiB':>10}")
    for name in ("baseline", "creditflow"):
        r = report[name]
        print(f"{name:<24}{r['wall_s']:>9.2f}{r['cpu_s']:>9.2f}{r['rows_per_s']:>14,.0f}{r['peak_mib']:>10,.0f}")
    print(f"creditflow throughput = {report['throughput_ratio']:.2f} x plain Polars (goal >= 0.5); "
          f"by cpu-s: {report['cpu_ratio']:.2f} x (less sensitive to other load on the machine)")
    i = report["increment"]
    print(f"daily increment: {inc_rows:,} rows on {args.rows:,} history: {i['wall_s']:.2f} s wall, "
          f"{i['cpu_s']:.2f} cpu-s, peak {i['peak_mib']:,.0f} MiB (plain Polars on the increment: "
          f"{i['baseline_wall_s']:.2f} s)")
    print(f"  the same increment on a {i['small_history_rows']:,}-row history: {i['small_history_wall_s']:.2f} s wall, "
          f"{i['small_history_cpu_s']:.2f} cpu-s -> 10x the history costs "
          f"{i['wall_s'] / i['small_history_wall_s']:.2f}x the time")
    if not args.no_breakdown:
        print("\nwhere the time goes (each step on its own, same ledger):")
        steps = stage_breakdown(ledger_csv, landing / "customers" / "customers_2020-01-01.csv", out / "steps")
        for name, m in steps.items():
            print(f"  {name:<58}{m['wall_s']:>7.2f} s wall{m['cpu_s']:>7.2f} cpu-s")
        parts = sum(m["wall_s"] for n, m in steps.items() if not n.startswith("floor"))
        print(f"  {'sum of the steps':<58}{parts:>7.2f} s wall   (goal for the whole flow: "
              f"{2 * b_wall:.2f} s = 2x the baseline)")
        report["steps"] = steps
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
