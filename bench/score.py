"""Benchmark: score, limit, watchlist, collections and publish one as-of date of 1M customers.

    .venv/bin/python -m bench.score [--customers 1000000] [--repeat 3] [--out bench/out/score]
                                    [--trees 545 --max-depth 2 | --optuna-model |
                                     --tracking-uri sqlite:///ABS/mlflow.db --model-version 1]

No generated world (building features for 1M customers is the features benchmark's job):
synthesises a 1M-row observation panel with every column of the feature set
``pd_features_v1`` and the context columns the policy needs. The model (not timed) has by
default the shape of the tuned model that ``bench.train`` registers (545 rounds of
depth-2 trees; see ``TUNED_SHAPE``), trained on a 30k-row synthetic table; exact TreeSHAP
costs per tree and row, so the shape is what matters. ``--trees/--max-depth`` try other
shapes, ``--tracking-uri`` scores with a registered model. It publishes a previous month's
scores and watchlist (not timed, so that PD_JUMP, GRADE_DOWN_2 and the since_date
carry-over have something to compare with), then times ``--repeat`` passes of the steps
of the score flow without Prefect: predict + contributions + scores
(``flows.score.score_observations``), limits, watchlist, collections (defaulted customers
given as a synthetic frame: their ledger pass is the features benchmark's cost), publish
(four Delta partition replaces + run record). Each pass reports wall, CPU seconds, peak
resident memory and per-step figures; the report gives the median.

Goal: <= 60 s for the timed steps on 2 cores (median wall). The machine is shared: say the
load average and the CPU seconds with the figures.
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
import xgboost as xgb

from bench.ingest import PeakRss, _cpu
from creditflow.core.paths import Paths
from creditflow.core.schema import SCORES, WATCHLIST
from creditflow.features.ledger import AGING_COLUMNS
from creditflow.features.panel import FX_TO_BASE, SALES_MONEY
from creditflow.features.registry import categorical_features, feature_names, monotone_constraints
from creditflow.flows import publish as pub
from creditflow.flows.score import build_tables, score_observations
from creditflow.models.calibration import fit_platt
from creditflow.models.train import FeatureSpec, PdModel, TuningConfig, train_pd_model
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


TUNED_SHAPE = {"trees": 545, "max_depth": 2, "learning_rate": 0.033}
"""The shape of the tuned model of ``bench.train`` (20k customers x 48 months, 40 Optuna trials,
purged validation): 545 boosting rounds, best max_depth 2 (3-4 leaves a tree), learning rate 0.033.
The bench trains a model of that shape on synthetic rows (exact TreeSHAP cost depends on the
number and shape of the trees, not on what they learned)."""


def _training_table(seed: int) -> pl.DataFrame:
    months = pl.date_range(date(2024, 1, 1), date(2024, 12, 1), "1mo", eager=True).dt.month_end()
    parts = [synthetic_panel(2_500, d, seed + i) for i, d in enumerate(months)]
    table = pl.concat(parts).with_columns(
        pl.col("customer_id") + pl.col("as_of_date").dt.month().cast(pl.String)
    )
    rng = np.random.default_rng(seed)
    logit = (-4.0 + 0.02 * table["dpd_max"].to_numpy() + 1.2 * table["utilization"].to_numpy()
             + 0.8 * table["events_lawsuit_3m"].to_numpy())
    label = (rng.uniform(size=table.height) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    return table.with_columns(default_12m=pl.Series(label))


def train_small_model(seed: int):
    """A PD model tuned by ``train_pd_model`` on 30k synthetic rows over 12 month ends (2 Optuna trials)."""
    table = _training_table(seed)
    result = train_pd_model(
        table, target="default_12m", time_column="as_of_date", features=list(feature_names(FEATURE_SET)),
        categorical=list(categorical_features(FEATURE_SET)),
        monotone={f: d for f, d in monotone_constraints(FEATURE_SET).items() if d},
        id_columns=["customer_id"], tuning=TuningConfig(n_trials=2, max_rounds=300), seed=seed,
    )
    return result.model


def train_shaped_model(seed: int, trees: int, max_depth: int, learning_rate: float) -> PdModel:
    """A PD model of a fixed shape (``trees`` rounds of depth ``max_depth``, no early stopping) on
    30k synthetic rows, with the feature spec and a Platt calibrator as the real training builds them."""
    table = _training_table(seed)
    cats = categorical_features(FEATURE_SET)
    spec = FeatureSpec(
        features=tuple(feature_names(FEATURE_SET)),
        categorical=tuple(cats),
        categories={c: tuple(table.get_column(c).cast(pl.String).drop_nulls().unique().sort().to_list())
                    for c in cats},
        monotone={f: d for f, d in monotone_constraints(FEATURE_SET).items() if d},
    )
    label = table.get_column("default_12m").to_numpy()
    params = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": max_depth,
              "learning_rate": learning_rate, "min_child_weight": 1.0, "nthread": 2, "seed": seed,
              "monotone_constraints": spec.monotone_constraints, "max_cat_to_onehot": 4, "verbosity": 0}
    booster = xgb.train(params, spec.dmatrix(table, label=label), num_boost_round=trees)
    calibrator = fit_platt(booster.predict(spec.dmatrix(table)).astype(np.float64), label)
    return PdModel(spec=spec, booster=booster, calibrator=calibrator)


def model_shape(booster: xgb.Booster) -> dict[str, float]:
    """Trees, deepest tree and mean leaves per tree, read from the trees themselves (the booster's
    saved config shows the default max_depth 6 after loading, not what was trained)."""
    trees = json.loads(booster.save_raw("json"))["learner"]["gradient_booster"]["model"]["trees"]
    depths, leaves = [], []
    for t in trees:
        left, right = t["left_children"], t["right_children"]
        depth = [0] * len(left)
        for node in range(len(left)):  # parents come before children in XGBoost's node order
            if left[node] != -1:
                depth[left[node]] = depth[right[node]] = depth[node] + 1
        depths.append(max(depth))
        leaves.append(sum(1 for c in left if c == -1))
    return {"trees": len(trees), "max_depth": max(depths, default=0),
            "mean_leaves": round(float(np.mean(leaves)), 2) if leaves else 0.0}


def _timed_run(paths: Paths, panel: pl.DataFrame, defaulted: pl.DataFrame, model, policy,
               approx_reasons: bool) -> tuple[dict, dict]:
    """One timed pass: read previous, score, limits + watchlist + collections, publish."""
    steps: dict[str, dict[str, float]] = {}
    timings: dict[str, float] = {}

    def lap(step: str, fn):
        c, t = _cpu(), time.perf_counter()
        result = fn()
        steps[step] = {"wall_s": round(time.perf_counter() - t, 2), "cpu_s": round(_cpu() - c, 2)}
        return result

    cpu0, t0 = _cpu(), time.perf_counter()
    with PeakRss() as rss:
        previous_scores, previous_watchlist = lap("read_previous", lambda: (
            pub.read_previous(paths.table("scores"), SCORES, AS_OF),
            pub.read_previous(paths.table("watchlist"), WATCHLIST, AS_OF)))
        scores = lap("score", lambda: score_observations(
            panel, model, policy, model_name="bench", model_version="1", run_id="bench",
            approx_reasons=approx_reasons))
        tables, left_out = lap("limits_watchlist_collections", lambda: build_tables(
            panel, defaulted, scores, policy, previous_scores, previous_watchlist, timings))
        published = lap("publish", lambda: pub.publish(
            paths, AS_OF, tables, pub.RunInfo("bench", "bench", "1", policy.version, FEATURE_SET)))
    for sub in ("limits", "watchlist", "collections"):
        steps["limits_watchlist_collections"][f"{sub}_wall_s"] = round(timings.get(sub, 0.0), 2)
    run = {"wall_s": round(time.perf_counter() - t0, 2), "cpu_s": round(_cpu() - cpu0, 2),
           "peak_mib": round(rss.peak_mib, 1), "load_average_1m": round(os.getloadavg()[0], 2), "steps": steps}
    watch_triggers = (
        tables["watchlist"].select(pl.col("triggers").explode().value_counts(sort=True)).unnest("triggers").rows()
    )
    facts = {
        "rows": {k: v["rows"] for k, v in published["tables"].items()},
        "limits_left_out": left_out.height,
        "limit_actions": dict(sorted(tables["limits"].get_column("action").value_counts().rows())),
        "watchlist_triggers": dict(watch_triggers),
    }
    return run, facts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--defaulted-share", type=float, default=0.02)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=Path("bench/out/score"))
    ap.add_argument("--repeat", type=int, default=3, help="timed passes; the report gives each and the median")
    ap.add_argument("--trees", type=int, default=TUNED_SHAPE["trees"],
                    help="boosting rounds of the synthetic model (default: the tuned model's 545)")
    ap.add_argument("--max-depth", type=int, default=TUNED_SHAPE["max_depth"],
                    help="max_depth of the synthetic model (default: the tuned model's 2)")
    ap.add_argument("--learning-rate", type=float, default=TUNED_SHAPE["learning_rate"])
    ap.add_argument("--optuna-model", action="store_true",
                    help="instead: a small model tuned by train_pd_model (2 Optuna trials, <= 300 rounds)")
    ap.add_argument("--tracking-uri", default=None,
                    help="instead: a registered model of this MLflow store (read only), e.g. the tuned model "
                         "of bench.train: --tracking-uri sqlite:///$PWD/bench/out/train_purge/mlflow.db")
    ap.add_argument("--model-name", default="creditflow-pd-12m")
    ap.add_argument("--model-version", default="1")
    ap.add_argument("--approx-reasons", action="store_true",
                    help="reason codes from approximate (Saabas) contributions instead of exact TreeSHAP")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error(f"--repeat must be >= 1; got {args.repeat}")
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
        source = f"registered {args.model_name} v{args.model_version} of {args.tracking_uri}"
    elif args.optuna_model:
        model = train_small_model(args.seed)
        source = "train_pd_model on 30k synthetic rows, 2 Optuna trials"
    else:
        model = train_shaped_model(args.seed, args.trees, args.max_depth, args.learning_rate)
        source = (f"fixed shape on 30k synthetic rows: {args.trees} rounds, max_depth {args.max_depth}, "
                  f"learning rate {args.learning_rate}")
    train_s = time.perf_counter() - t
    t = time.perf_counter()
    panel = synthetic_panel(args.customers, AS_OF, args.seed + 100)
    defaulted = synthetic_defaulted(int(args.customers * args.defaulted_share), AS_OF, args.seed + 200)
    synth_s = time.perf_counter() - t
    print(f"setup: model ready in {train_s:.1f} s ({source}), {panel.height:,} observations + "
          f"{defaulted.height:,} in default synthesised in {synth_s:.1f} s", flush=True)

    # the previous month: same customers with other values, published untimed
    t = time.perf_counter()
    prev_panel = synthetic_panel(args.customers, PREVIOUS, args.seed + 300)
    prev_scores = score_observations(prev_panel, model, policy, model_name="bench", model_version="1", run_id="prev",
                                     approx_reasons=args.approx_reasons)
    prev_tables, _ = build_tables(prev_panel, defaulted.with_columns(as_of_date=pl.lit(PREVIOUS)).filter(
        pl.col("default_date") <= PREVIOUS), prev_scores, policy, None, None)
    pub.publish(paths, PREVIOUS, prev_tables, pub.RunInfo("prev", "bench", "1", policy.version, FEATURE_SET))
    del prev_panel, prev_tables, prev_scores
    print(f"setup: previous month scored and published in {time.perf_counter() - t:.1f} s", flush=True)

    runs, facts = [], {}
    for i in range(args.repeat):  # a repeat replaces the same as-of partition, as a re-run does
        run, facts = _timed_run(paths, panel, defaulted, model, policy, args.approx_reasons)
        runs.append(run)
        print(f"run {i + 1}: {run['wall_s']} s wall, {run['cpu_s']} cpu-s, peak {run['peak_mib']} MiB, "
              f"load {run['load_average_1m']}: " + ", ".join(f"{k} {v['wall_s']}" for k, v in run["steps"].items()),
              flush=True)

    def median(values: list[float]) -> float:
        return round(float(np.median(values)), 2)

    report = {
        "customers": args.customers,
        "customers_in_default": defaulted.height,
        "reason_contributions": "approximate (Saabas)" if args.approx_reasons else "exact TreeSHAP",
        "model": {"source": source, **model_shape(model.booster)},
        **facts,
        "runs": runs,
        "median": {
            "wall_s": median([r["wall_s"] for r in runs]),
            "cpu_s": median([r["cpu_s"] for r in runs]),
            "peak_mib": median([r["peak_mib"] for r in runs]),
            "steps": {step: {k: median([r["steps"][step][k] for r in runs]) for k in runs[0]["steps"][step]}
                      for step in runs[0]["steps"]},
        },
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(),
        "goal_s": 60,
    }
    print(json.dumps(report, indent=2))
    (out / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0 if report["median"]["wall_s"] <= 60 else 1


if __name__ == "__main__":
    sys.exit(main())
