"""Benchmark: a full tuned training at the features benchmark size, through the real flow.

    .venv/bin/python -m bench.train [--customers 20000] [--months 48] [--trials 40] [--timeout 600]

Uses the world of ``bench.features`` (``bench/out/features/c<customers>_m<months>``; generated and
ingested by its ``prepare`` when missing) and builds its feature panel with the features flow
when that is missing (not timed). Then times ``run_train`` (the Prefect training flow: read and
hash the panel, Optuna study with every trial logged to MLflow, refit, calibration, scorecard,
report, registration, promotion gate) with an MLflow SQLite store under ``--out``, and prints
the trials run, wall time, CPU seconds, peak resident memory of this process (sampled; the
Prefect server runs in another process), the steps' seconds and the test metrics.

Goal: >= 40 trials in <= 10 minutes on 2 cores. The machine is shared: say the load average
with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from bench.features import _setup_env, prepare
from bench.ingest import measure


def _ensure_panel(work: Path) -> None:
    from creditflow.flows.features import features_flow

    panel = work / "lake" / "features" / "pd_features_v1"
    if panel.is_dir() and any(panel.glob("as_of_date=*.parquet")):
        return
    t = time.perf_counter()
    state = features_flow(workdir=str(work), return_state=True)
    if not state.is_completed():
        raise SystemExit(f"features flow of the benchmark world failed: {state.message}")
    print(f"  built the feature panel in {time.perf_counter() - t:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--months", type=int, default=48)
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--timeout", type=float, default=600.0, help="Optuna study budget, seconds")
    ap.add_argument("--features-out", type=Path, default=Path("bench/out/features"))
    ap.add_argument("--out", type=Path, default=Path("bench/out/train"))
    args = ap.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    features_out = args.features_out.resolve()
    features_out.mkdir(parents=True, exist_ok=True)
    _setup_env(features_out)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    from creditflow.core.config import Settings
    from creditflow.flows.train import format_train, run_train

    work = prepare(features_out, args.customers, args.months)
    _ensure_panel(work)
    settings = Settings.model_validate(
        {
            "workdir": str(work),
            "mlflow_tracking_uri": f"sqlite:///{out / 'mlflow.db'}",
        }
    )
    box: dict = {}
    load0 = os.getloadavg()[0]
    m = measure(lambda: box.update(r=run_train(settings, trials=args.trials, timeout=args.timeout)))
    code, summary = box["r"]
    if code != 0:
        print(format_train(summary), file=sys.stderr)
        return code
    load1 = os.getloadavg()[0]
    x, s = summary["metrics"]["xgboost"]["test"], summary["metrics"]["scorecard"]["test"]
    t = summary["trials"]
    print(format_train(summary))
    print(
        f"\n{summary['rows']['table']:,} panel rows ({summary['rows']['train']:,} train / "
        f"{summary['rows']['validation']:,} validation / {summary['rows']['test']:,} test): "
        f"{t['finished']} trials ({t['pruned']} pruned) in {m['wall_s']:.0f} s wall, {m['cpu_s']:.0f} cpu-s, "
        f"peak {m['peak_mib']:,.0f} MiB; load average {load0:.1f} -> {load1:.1f}"
    )
    print("steps (s): " + ", ".join(f"{k} {v:.0f}" for k, v in summary["timings_seconds"].items()))
    xv = summary["metrics"]["xgboost"]["validation"]
    sv = summary["metrics"]["scorecard"]["validation"]
    print(f"split: {summary['split']}")
    print(
        f"test AUC xgboost {x['auc']:.4f} vs scorecard {s['auc']:.4f}; ECE xgboost {x['ece']:.4f} "
        f"(scorecard {s['ece']:.4f}); {summary['decision']}"
    )
    print(
        f"validation AUC xgboost {xv['auc']:.4f} vs scorecard {sv['auc']:.4f} (validation chose the "
        "hyper-parameters, stopping round and calibration: a large validation-test drop for xgboost "
        "alone means it learnt something that does not carry forward in time)"
    )
    goal = t["finished"] >= 40 and m["wall_s"] <= 600
    print(f"goal >= 40 trials in <= 10 min: {'met' if goal else 'NOT met'}")
    (out / "report.json").write_text(
        json.dumps(
            {"measure": m, "load_average": [load0, load1], "summary": summary},
            indent=2,
            default=str,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
