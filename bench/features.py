"""Benchmark: build the observation panel, vs one plain Polars scan of the ledger Parquet.

    .venv/bin/python -m bench.features [--customers 20000] [--months 48] [--repeats 3] [--scale 10]

For each size (``customers / scale`` and ``customers``, both ``months`` long): generates a
demo world, ingests it with the real ingest flow (not timed), then times, in this process,

- plain Polars: ``pl.scan_parquet(<ledger bronze>).collect()`` (the baseline),
- creditflow: ``build_panel`` on the committed bronze (cash application, ledger, master,
  bureau and event features, default dates, labels) for every month end,

and prints the median wall time, CPU seconds, peak resident memory (sampled), the ratio to
the baseline, and how the panel's time grows with 10x the data. Goals: <= 5x the scan,
<= 4 GB peak, 10x the data <= 11x the time.

Then, at the larger size, where the time goes: each piece of the build timed on its own,
one after the other (``build_panel`` runs some of them side by side on threads, so the
pieces add up to more than its wall time; ``--no-breakdown`` skips this part).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import polars as pl

from bench.ingest import measure


def _setup_env(out: Path) -> None:
    os.environ.setdefault("PREFECT_HOME", str(out / "prefect"))
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


def prepare(out: Path, customers: int, months: int) -> Path:
    """Generate and ingest a world once; later runs reuse it."""
    from creditflow.demo.generator import generate
    from creditflow.flows.ingest import ingest_flow

    work = out / f"c{customers}_m{months}"
    if (work / "lake" / "manifest").is_dir():
        return work
    t = time.perf_counter()
    generate(work / "landing", customers=customers, months=months, seed=3, bad_rows=0.0, overwrite=True)
    state = ingest_flow(workdir=str(work), landing=str(work / "landing"), return_state=True)
    if not state.is_completed():
        raise SystemExit(f"ingest of the benchmark world failed: {state.message}")
    print(f"  prepared {customers:,} customers x {months} months in {time.perf_counter() - t:.0f} s", flush=True)
    return work


def run_size(work: Path, repeats: int) -> dict:
    from creditflow.core.paths import Paths
    from creditflow.features.panel import build_panel
    from creditflow.flows.features import scan_panel_inputs
    from creditflow.flows.lake import Manifest

    paths = Paths(work)
    ledger_files = Manifest(paths).bronze_files("ledger")
    # Files may carry extra columns a landing file had; the plain scan reads the common ones.
    def plain_scan() -> pl.LazyFrame:
        return pl.scan_parquet(ledger_files, missing_columns="insert", extra_columns="ignore")

    n_ledger = plain_scan().select(pl.len()).collect().item()

    def build():
        inputs = scan_panel_inputs(paths)
        return build_panel(ledger=inputs.ledger, customers=inputs.customers, bureau=inputs.bureau,
                           events=inputs.events, fx_rates=inputs.fx_rates, base_currency="CNY")

    scans, panels, rows = [], [], 0
    for _ in range(repeats):
        scans.append(measure(lambda: plain_scan().collect()))
        box = {}
        panels.append(measure(lambda box=box: box.update(r=build())))
        rows = box["r"].panel.height
    med = {k: statistics.median(r[k] for r in panels) for k in ("wall_s", "cpu_s", "peak_mib")}
    scan = {k: statistics.median(r[k] for r in scans) for k in ("wall_s", "cpu_s", "peak_mib")}
    return {"ledger_rows": n_ledger, "panel_rows": rows, "panel": med, "scan": scan,
            "ratio_to_scan": med["wall_s"] / scan["wall_s"]}


def breakdown(work: Path) -> dict[str, dict[str, float]]:
    """The pieces of ``build_panel`` at every month end, timed one after the other."""
    from creditflow.core.paths import Paths
    from creditflow.features.bureau import bureau_features, event_features
    from creditflow.features.customers import customer_master_asof
    from creditflow.features.labels import default_dates
    from creditflow.features.ledger import cash_application, ledger_features
    from creditflow.features.panel import data_end_of, panel_as_of_dates
    from creditflow.flows.features import scan_panel_inputs

    inputs = scan_panel_inputs(Paths(work))
    steps: dict[str, dict[str, float]] = {}

    def step(name, fn, *args, **kwargs):
        box = {}
        steps[name] = measure(lambda: box.update(r=fn(*args, **kwargs)))
        return box["r"]

    events = inputs.events if inputs.events is not None else pl.LazyFrame(
        schema={"registration_id": pl.String, "event_date": pl.Date, "event_type": pl.String, "detail": pl.String})
    end = data_end_of(inputs.ledger)
    dates = panel_as_of_dates(inputs.ledger, end)
    master = step("customer master as of each month end", lambda: customer_master_asof(
        inputs.customers, dates).collect(engine="in-memory"))
    cash = step("cash application", cash_application, inputs.ledger, inputs.fx_rates, base_currency="CNY")
    step("default dates", lambda: default_dates(inputs.ledger, inputs.fx_rates, inputs.customers, events,
                                                base_currency="CNY", data_end=end, cash=cash).collect())
    step("ledger features", lambda: ledger_features(inputs.ledger, inputs.fx_rates, master, dates,
                                                    base_currency="CNY", cash=cash).collect())
    if inputs.bureau is not None:
        step("bureau features", lambda: bureau_features(inputs.bureau, master, dates).collect())
    step("bureau event features", lambda: event_features(events, master, dates).collect())
    return steps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--months", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scale", type=int, default=10, help="the smaller size is customers / scale")
    ap.add_argument("--out", type=Path, default=Path("bench/out/features"))
    ap.add_argument("--no-breakdown", action="store_true", help="skip the per-piece timings")
    args = ap.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    _setup_env(out)

    sizes = [max(50, args.customers // args.scale), args.customers]
    results = {}
    for n in sizes:
        work = prepare(out, n, args.months)
        results[n] = run_size(work, args.repeats)
        r = results[n]
        print(f"{n:>7,} customers: ledger {r['ledger_rows']:>11,} rows -> panel {r['panel_rows']:>10,} rows: "
              f"{r['panel']['wall_s']:7.2f} s wall, {r['panel']['cpu_s']:7.2f} cpu-s, peak {r['panel']['peak_mib']:7,.0f} MiB; "
              f"plain scan {r['scan']['wall_s']:.2f} s -> {r['ratio_to_scan']:.1f}x", flush=True)
    small, big = results[sizes[0]], results[sizes[1]]
    growth = big["panel"]["wall_s"] / small["panel"]["wall_s"]
    data_growth = big["ledger_rows"] / small["ledger_rows"]
    print(f"\n{data_growth:.1f}x the ledger rows took {growth:.1f}x the time (goal: 10x the data <= 11x the time)")
    print(f"at {sizes[1]:,} customers: {big['ratio_to_scan']:.1f}x one plain Polars scan (goal <= 5x), "
          f"peak {big['panel']['peak_mib'] / 1024:.2f} GiB (goal <= 4 GB)")
    report = {str(k): v for k, v in results.items()}
    if not args.no_breakdown:
        print(f"\nwhere the time goes at {sizes[1]:,} customers (each piece on its own, one after the other):")
        steps = breakdown(prepare(out, sizes[1], args.months))
        for name, m in steps.items():
            print(f"  {name:<40}{m['wall_s']:>7.2f} s wall{m['cpu_s']:>7.2f} cpu-s")
        print(f"  {'sum of the pieces':<40}{sum(m['wall_s'] for m in steps.values()):>7.2f} s wall   "
              f"(build_panel: {big['panel']['wall_s']:.2f} s; goal: {5 * big['scan']['wall_s']:.2f} s = 5x the scan)")
        report["steps"] = steps
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
