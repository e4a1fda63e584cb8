"""Benchmark: score, limit, watchlist, collections and publish one as-of date of 1M customers.

    .venv/bin/python -m bench.score [--customers 1000000] [--defaulted-share 0.02] [--out bench/out/score]
                                    [--tracking-uri sqlite:///ABS/mlflow.db --model-version 1]

No generated world (building features for 1M customers is the features benchmark's job):
synthesises a 1M-row observation panel with every column of the feature set
``pd_features_v1`` and the context columns the policy needs, trains a small PD model on a
30k-row synthetic table with ``models.train.train_pd_model`` (2 Optuna trials; not timed),
publishes a previous month's scores and watchlist (not timed, so that PD_JUMP,
GRADE_DOWN_2 and the since_date carry-over have something to compare with), then times
the steps of the score flow without Prefect: predict + contributions + scores, limits,
watchlist, collections (defaulted customers given as a synthetic frame: their ledger pass
is the features benchmark's cost), publish (four Delta partition replaces + run record).

Goal: <= 60 s for the timed steps on 2 cores. The machine is shared: say the load average
with the figures.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import shutil
import sys
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

import numpy as np
import optuna
import polars as pl

from bench.ingest import PeakRss, _cpu
from creditflow.core.paths import Paths
from creditflow.core.schema import SCORES, WATCHLIST
from creditflow.features.ledger import AGING_COLUMNS
from creditflow.features.panel import FX_TO_BASE, SALES_MONEY
from creditflow.features.registry import categorical_features, feature_names, monotone_constraints
from creditflow.flows import publish as pub
from creditflow.flows.score import build_tables, score_observations
from creditflow.models.train import TuningConfig, train_pd_model
from creditflow.policy.collections import BANKRUPTCY_COLUMN
from creditflow.policy.limits import cents_to_money
from creditflow.policy.policy import load_policy

AS_OF, PREVIOUS = date(2026, 6, 30), date(2026, 5, 31)
FEATURE_SET = "pd_features_v1"
_INT32 = ("dpd_max", "invoices_past_30_12m", "invoices_past_60_12m", "invoice_count_12m",
          "months_since_last_invoice", "months_since_onboarding", "bureau_report_age_days")
_INT64 = ("payment_terms_days", "bureau_score", "paydex", "lawsuits_12m", "bureau_score_change_3m",
          "bureau_score_change_6m", "paydex_change_3m", "paydex_change_6m", "years_in_business")


def _money(cents: np.ndarray) -> pl.Expr:
    return cents_to_money(pl.lit(pl.Series(cents, dtype=pl.Int64)))


def synthetic_panel(n: int, as_of: date, seed: int) -> pl.DataFrame:
    """n observations at ``as_of`` with every feature of the set and the policy's context columns."""
    rng = np.random.default_rng(seed)
    cols: dict[str, pl.Series] = {}
    cats = set(categorical_features(FEATURE_SET))
    for f in feature_names(FEATURE_SET):
        if f in cats:
            cols[f] = pl.Series(f, rng.choice([f"{f[:3].upper()}{i}" for i in range(12)], n)).cast(pl.Categorical)
        elif f == "dpd_max":
            cols[f] = pl.Series(f, rng.choice([0, 0, 0, 5, 20, 35, 70, 120], n), dtype=pl.Int32)
        elif f.startswith("events_"):
            cols[f] = pl.Series(f, (rng.uniform(size=n) < 0.02).astype(np.int32), dtype=pl.Int32)
        elif f == "tax_arrears":
            cols[f] = pl.Series(f, (rng.uniform(size=n) < 0.03).astype(np.int8), dtype=pl.Int8)
        elif f == "payment_terms_days":
            cols[f] = pl.Series(f, rng.choice([30, 45, 60, 90], n), dtype=pl.Int64)
        elif f == "utilization":
            cols[f] = pl.Series(f, rng.gamma(2.0, 0.3, n))
        elif f in _INT32:
            cols[f] = pl.Series(f, rng.integers(0, 60, n), dtype=pl.Int32)
        elif f in _INT64:
            cols[f] = pl.Series(f, rng.integers(-80, 900, n), dtype=pl.Int64)
        else:
            v = rng.normal(size=n)
            v[rng.uniform(size=n) < 0.05] = np.nan
            cols[f] = pl.Series(f, v).fill_nan(None)
    ids = pl.Series("customer_id", np.char.add("C", np.char.zfill(np.arange(n).astype(str), 8)))
    frame = pl.DataFrame([ids, pl.Series("as_of_date", [as_of] * n, dtype=pl.Date), *cols.values()])

    exposure = rng.integers(0, 50_000_000, n)
    shares = rng.dirichlet(np.ones(len(AGING_COLUMNS)), n)
    aging = np.floor(shares * exposure[:, None]).astype(np.int64)
    aging[:, 0] += exposure - aging.sum(axis=1)  # buckets add up to the exposure exactly
    usd = rng.uniform(size=n) < 0.1
    equity = rng.integers(-1_000_000, 2_000_000_000, n)
    return frame.with_columns(
        exposure=_money(exposure),
        **{c: _money(aging[:, j]) for j, c in enumerate(AGING_COLUMNS)},
        credit_limit=_money(rng.choice([0, 10_000_000, 50_000_000, 200_000_000], n)),
        currency=pl.Series(np.where(usd, "USD", "CNY")),
        **{FX_TO_BASE: pl.Series(np.where(usd, "7.10000000", "1.00000000")).cast(pl.Decimal(18, 8))},
        equity=pl.when(pl.Series(rng.uniform(size=n) < 0.8)).then(_money(equity)),
        **{SALES_MONEY: _money(rng.integers(0, 30_000_000, n))},
    )


def synthetic_defaulted(n: int, as_of: date, seed: int) -> pl.DataFrame:
    """What ``flows.score.read_defaulted`` returns, for n customers in default."""
    rng = np.random.default_rng(seed)
    cents = rng.integers(0, 20_000_000, (n, len(AGING_COLUMNS)))
    return pl.DataFrame({
        "as_of_date": [as_of] * n,
        "customer_id": np.char.add("D", np.char.zfill(np.arange(n).astype(str), 8)),
        "default_date": np.datetime64(as_of, "D") - rng.integers(0, 700, n).astype("timedelta64[D]"),
        "default_reason": rng.choice(["DPD_90", "WRITE_OFF", "BANKRUPTCY"], n),
        "dpd_max": pl.Series(rng.integers(90, 800, n), dtype=pl.Int32),
        "payment_terms_days": pl.Series(rng.choice([30, 60], n), dtype=pl.Int64),
        "currency": "CNY",
    }).with_columns(
        pl.col("default_date").cast(pl.Date),
        (pl.col("default_reason") == "BANKRUPTCY").alias(BANKRUPTCY_COLUMN),
        exposure=_money(cents.sum(axis=1)),
        **{c: _money(cents[:, j]) for j, c in enumerate(AGING_COLUMNS)},
        credit_limit=_money(np.full(n, 10_000_000)),
        **{FX_TO_BASE: pl.lit(Decimal(1)).cast(pl.Decimal(18, 8))},
        **{SALES_MONEY: _money(rng.integers(0, 1_000_000, n))},
    )


def train_small_model(seed: int):
    """A PD model on 30k synthetic rows over 12 month ends (2 Optuna trials)."""
    months = pl.date_range(date(2024, 1, 1), date(2024, 12, 1), "1mo", eager=True).dt.month_end()
    parts = [synthetic_panel(2_500, d, seed + i) for i, d in enumerate(months)]
    table = pl.concat(parts).with_columns(
        pl.col("customer_id") + pl.col("as_of_date").dt.month().cast(pl.String)
    )
    rng = np.random.default_rng(seed)
    logit = (-4.0 + 0.02 * table["dpd_max"].to_numpy() + 1.2 * table["utilization"].to_numpy()
             + 0.8 * table["events_lawsuit_3m"].to_numpy())
    label = (rng.uniform(size=table.height) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    table = table.with_columns(default_12m=pl.Series(label))
    feats = list(feature_names(FEATURE_SET))
    result = train_pd_model(
        table, target="default_12m", time_column="as_of_date", features=feats,
        categorical=list(categorical_features(FEATURE_SET)),
        monotone={f: d for f, d in monotone_constraints(FEATURE_SET).items() if d},
        id_columns=["customer_id"], tuning=TuningConfig(n_trials=2, max_rounds=300), seed=seed,
    )
    return result.model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--defaulted-share", type=float, default=0.02)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=Path("bench/out/score"))
    ap.add_argument("--tracking-uri", default=None,
                    help="score with a registered model of this MLflow store (read only) instead of the "
                         "small synthetic one, e.g. the tuned model of bench.train")
    ap.add_argument("--model-name", default="creditflow-pd-12m")
    ap.add_argument("--model-version", default="1")
    ap.add_argument("--approx-reasons", action="store_true",
                    help="reason codes from approximate (Saabas) contributions instead of exact TreeSHAP")
    args = ap.parse_args(argv)
    out = args.out.resolve()
    shutil.rmtree(out / "published", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    paths = Paths(out)
    policy = load_policy()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    t = time.perf_counter()
    if args.tracking_uri:
        from creditflow.flows.tracking import load_model_version

        model, _ = load_model_version(args.tracking_uri, args.model_name, args.model_version)
    else:
        model = train_small_model(args.seed)
    train_s = time.perf_counter() - t
    t = time.perf_counter()
    panel = synthetic_panel(args.customers, AS_OF, args.seed + 100)
    defaulted = synthetic_defaulted(int(args.customers * args.defaulted_share), AS_OF, args.seed + 200)
    synth_s = time.perf_counter() - t
    print(f"setup: model ready in {train_s:.1f} s, {panel.height:,} observations + {defaulted.height:,} "
          f"in default synthesised in {synth_s:.1f} s", flush=True)

    # the previous month: same customers with other values, published untimed
    t = time.perf_counter()
    prev_panel = synthetic_panel(args.customers, PREVIOUS, args.seed + 300)
    prev_scores = score_observations(prev_panel, model, policy, model_name="bench", model_version="1", run_id="prev",
                                     approx_reasons=args.approx_reasons)
    prev_tables, _ = build_tables(prev_panel, defaulted.with_columns(as_of_date=pl.lit(PREVIOUS)).filter(
        pl.col("default_date") <= PREVIOUS), prev_scores, policy, None, None)
    pub.publish(paths, PREVIOUS, prev_tables, pub.RunInfo("prev", "bench", "1", policy.version, FEATURE_SET))
    del prev_panel, prev_tables
    print(f"setup: previous month scored and published in {time.perf_counter() - t:.1f} s", flush=True)

    timings: dict[str, float] = {}
    cpu0, t0 = _cpu(), time.perf_counter()
    with PeakRss() as rss:
        t = time.perf_counter()
        previous_scores = pub.read_previous(paths.table("scores"), SCORES, AS_OF)
        previous_watchlist = pub.read_previous(paths.table("watchlist"), WATCHLIST, AS_OF)
        timings["read_previous"] = time.perf_counter() - t
        t = time.perf_counter()
        scores = score_observations(panel, model, policy, model_name="bench", model_version="1", run_id="bench",
                                    approx_reasons=args.approx_reasons)
        timings["score"] = time.perf_counter() - t
        tables, left_out = build_tables(panel, defaulted, scores, policy, previous_scores, previous_watchlist, timings)
        t = time.perf_counter()
        published = pub.publish(paths, AS_OF, tables, pub.RunInfo("bench", "bench", "1", policy.version, FEATURE_SET))
        timings["publish"] = time.perf_counter() - t
    wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
    rows = {k: v["rows"] for k, v in published["tables"].items()}
    watch_triggers = (
        tables["watchlist"].select(pl.col("triggers").explode().value_counts(sort=True)).unnest("triggers").rows()
    )
    report = {
        "customers": args.customers,
        "customers_in_default": defaulted.height,
        "reason_contributions": "approximate (Saabas)" if args.approx_reasons else "exact TreeSHAP",
        "model_trees": model.booster.num_boosted_rounds(),
        "model_max_depth": json.loads(model.booster.save_config())["learner"]["gradient_booster"]["tree_train_param"]["max_depth"],
        "rows": rows,
        "limits_left_out": left_out.height,
        "watchlist_triggers": dict(watch_triggers),
        "timings_seconds": {k: round(v, 2) for k, v in timings.items()},
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "peak_mib": round(rss.peak_mib, 1),
        "load_average": list(os.getloadavg()),
        "goal_s": 60,
    }
    print(json.dumps(report, indent=2))
    (out / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0 if wall <= 60 else 1


if __name__ == "__main__":
    sys.exit(main())
