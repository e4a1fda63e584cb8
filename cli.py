"""The ``creditflow`` command line.

Every command that works on a workdir takes ``--workdir DIR`` (default
``./creditflow-work``), ``--landing DIR`` (default ``WORKDIR/landing``) and
``--config FILE``; ``--json`` prints one JSON document on stdout and nothing else
(logs go to stderr). Exit codes: 0 success, 1 the run finished with problems (for
ingest: a rejected or failed file; the summary says which), 2 bad usage or
configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

from creditflow.core.config import DEFAULT_WORKDIR, ConfigError, Settings, load_settings


def _embedded_defaults(settings: Settings) -> None:
    """Point Prefect and MLflow at local stores under the workdir unless the user
    configured real servers (environment variables win). Must run before Prefect is imported."""
    work = settings.workdir.resolve()
    # Prefect creates its home without parents: a new --workdir must exist first (else the
    # ephemeral server cannot open its database and Prefect retries for about 100 s).
    work.mkdir(parents=True, exist_ok=True)
    if "PREFECT_API_URL" not in os.environ:
        os.environ.setdefault("PREFECT_HOME", str(work / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    os.environ.setdefault("PREFECT_RESULTS_LOCAL_STORAGE_PATH", str(work / "state" / "results"))
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_TRACKING_URI", settings.tracking_uri)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    # XGBoost's OpenMP threads spin while waiting by default; on a shared 2-core box
    # that made each boosting round ~4x slower.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # NumPy asks the kernel for transparent huge pages for big arrays; zeroing them made the
    # panel build's system time larger than its user time here (20k customers: 10.7 s -> 8.6 s
    # wall without). Takes effect only if NumPy is not imported yet (true for the CLI).
    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")


@contextmanager
def _embedded(settings: Settings) -> Iterator[None]:
    """Local stores by default (:func:`_embedded_defaults`), then Prefect's settings for flows
    run from this process (``flows.runner.embedded_flow_settings``)."""
    _embedded_defaults(settings)
    from creditflow.flows.runner import embedded_flow_settings

    with embedded_flow_settings():
        yield


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workdir", type=Path, default=None,
                   help=f"lake, published tables, MLflow store and run state (default ./{DEFAULT_WORKDIR})")
    p.add_argument("--landing", type=Path, default=None, help="landing root (default WORKDIR/landing)")
    p.add_argument("--config", type=Path, default=None, help="creditflow.yaml (default ./creditflow.yaml if present)")
    p.add_argument("--json", action="store_true", help="print one JSON summary on stdout")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="creditflow",
        description="Batch pipeline for B2B customer credit management.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    g = sub.add_parser("generate", help="write a deterministic demo world of landing files",
                       description="Write a demo world in the contract's landing formats into OUT_DIR.")
    g.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    g.add_argument("--customers", type=int, default=500, help="number of customers (default 500)")
    g.add_argument("--months", type=int, default=36, help="months of history (default 36)")
    g.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    g.add_argument("--bad-rows", type=float, default=0.0,
                   help="share of rows made invalid, plus a few bad files when > 0 (default 0)")
    g.add_argument("--json", action="store_true", help="print the generation summary as JSON")

    i = sub.add_parser("ingest", help="ingest new landing files into the lake",
                       description="Ingest new landing files: typed bronze Parquet, quarantine, GX validation.")
    _common(i)

    f = sub.add_parser("features", help="build the point-in-time observation panel",
                       description="Build the observation panel (customer x month end) from the lake.")
    _common(f)
    when = f.add_mutually_exclusive_group()
    when.add_argument("--as-of", dest="as_of", default=None, metavar="DATE",
                      help="build one month-end as-of date (YYYY-MM-DD)")
    when.add_argument("--all", action="store_true", help="build every month end the data covers (default)")

    t = sub.add_parser(
        "train", help="train, register and gate a PD model",
        description="Tune (Optuna), train and calibrate an XGBoost PD model on the ledger panel, or on "
        "any CSV/Parquet table with --table/--target; log it to MLflow, register it as challenger "
        "and promote it to champion only if it earns it.")
    _common(t)
    t.add_argument("--trials", type=int, default=None, help="Optuna trials (default from config: 40)")
    t.add_argument("--timeout", type=float, default=None, help="tuning budget in seconds (default from config)")
    t.add_argument("--table", type=Path, default=None, help="train on this CSV/Parquet table instead of the panel")
    t.add_argument("--target", default=None, help="binary 0/1 target column of --table")
    t.add_argument("--time-column", dest="time_column", default=None,
                   help="date column of --table for the out-of-time split (without it: a stratified split)")

    sc = sub.add_parser(
        "score", help="score, set limits, build the watchlist and collections; publish as Delta",
        description="Score every observation at an as-of date with the champion model, apply the credit "
        "policy, and publish scores, limits, watchlist and collections as Delta tables under "
        "WORKDIR/published (the as-of partition is replaced in one commit per table).")
    _common(sc)
    sc.add_argument("--as-of", dest="as_of", required=True, metavar="DATE", help="month-end as-of date (YYYY-MM-DD)")
    sc.add_argument("--approx-reasons", action="store_true",
                    help="reason codes from XGBoost's approximate contributions (much faster on large runs)")

    r = sub.add_parser(
        "run", help="the whole chain: ingest, validate, features, train if needed, score, publish",
        description="Run the chain end to end as one Prefect flow: ingest -> validate -> features -> train "
        "(only when no champion exists, or with --retrain) -> score -> publish. Steps whose inputs did not "
        "change since their last success are skipped, so a failed run resumes at the failed step and a "
        "re-run on the same inputs does no work.")
    _common(r)
    r.add_argument("--as-of", dest="as_of", default=None, metavar="DATE",
                   help="month end to score (default: the latest month end the data covers)")
    r.add_argument("--trials", type=int, default=None, help="Optuna trials when training (default from config)")
    r.add_argument("--retrain", action="store_true", help="train even if a champion exists (the gate decides)")
    r.add_argument("--no-train", dest="no_train", action="store_true",
                   help="never train (fail clearly when there is no champion)")

    d = sub.add_parser("demo", help="generate a demo world and run the whole chain on it",
                       description="Generate a demo world into WORKDIR/landing (once) and run the chain "
                       "(`creditflow run`) on it, then say where to look at the results.")
    _common(d)
    d.add_argument("--customers", type=int, default=500)
    d.add_argument("--months", type=int, default=36)
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--bad-rows", type=float, default=0.01)
    d.add_argument("--trials", type=int, default=15, help="Optuna trials of the demo training (default 15)")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config, workdir=args.workdir, landing=args.landing)


def _emit(summary: dict[str, Any], as_json: bool, human: str) -> None:
    if as_json:
        json.dump(summary, sys.stdout, indent=2, sort_keys=True, default=str)
        sys.stdout.write("\n")
    else:
        print(human)


def _cmd_generate(args: argparse.Namespace) -> int:
    from creditflow.demo.generator import generate

    progress = None if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    summary = generate(args.out_dir, customers=args.customers, months=args.months, seed=args.seed,
                       bad_rows=args.bad_rows, progress=progress)
    d = summary.to_dict()
    _emit(d, args.json, f"wrote demo world to {args.out_dir}")
    return 0


def _exit_code_and_summary(state: Any) -> tuple[int, dict[str, Any]]:
    """A finished flow's summary with exit code 0 (completed) or 1 (failed with a summary);
    a flow that failed with an exception re-raises it."""
    summary = state.result(raise_on_failure=False)
    if isinstance(summary, BaseException):
        raise summary
    return (0 if state.is_completed() else 1), summary


def _run_ingest(settings: Settings, as_json: bool) -> tuple[int, dict[str, Any]]:
    with _embedded(settings):
        from creditflow.flows.ingest import ingest_flow
        from creditflow.flows.runner import run_with_runner

        state = run_with_runner(ingest_flow, settings, settings=settings.model_dump(mode="json"), return_state=True)
        return _exit_code_and_summary(state)


def format_ingest(summary: dict[str, Any]) -> str:
    t = summary["totals"]
    lines = [
        f"ingest {summary['run_id'][:8]}: {t['files_new']} new file(s), {t['files_skipped']} already ingested, "
        f"{t['files_rejected']} rejected" + (f", {t['files_unreadable']} unreadable" if t.get("files_unreadable") else ""),
        f"  rows read {t['rows_read']:,} = accepted {t['rows_accepted']:,} + quarantined {t['rows_quarantined']:,}",
    ]
    for code, n in t["reason_counts"].items():
        lines.append(f"    {code:<24} {n:>8,}")
    shown = 8
    for w in summary["warnings"][:shown]:
        lines.append(f"  warning: {w}")
    if len(summary["warnings"]) > shown:
        lines.append(f"  ... and {len(summary['warnings']) - shown} more warning(s): see --json or WORKDIR/runs/")
    for p in summary["problems"]:
        lines.append(f"  PROBLEM: {p}")
    if summary.get("data_docs"):
        lines.append(f"  data docs: {summary['data_docs']}")
    lines.append(f"  {summary['seconds']} s")
    return "\n".join(lines)


def _cmd_ingest(args: argparse.Namespace) -> int:
    settings = _settings(args)
    code, summary = _run_ingest(settings, args.json)
    _emit(summary, args.json, format_ingest(summary))
    return code


def _run_features(settings: Settings, as_of: str | None) -> tuple[int, dict[str, Any]]:
    with _embedded(settings):
        from creditflow.flows.features import features_flow
        from creditflow.flows.runner import run_with_runner

        state = run_with_runner(features_flow, settings, as_of=as_of, settings=settings.model_dump(mode="json"),
                                return_state=True)
        return _exit_code_and_summary(state)


def format_features(s: dict[str, Any]) -> str:
    return (
        f"features {s['feature_set']}: {s['observations']:,} observations of {s['customers']:,} customers at "
        f"{len(s['as_of_dates'])} as-of date(s) {s['first_as_of']} .. {s['last_as_of']}\n"
        f"  labelled {s['labelled']:,} (default_12m = 1: {s['defaults_in_labels']:,}, "
        f"rate {100 * s['default_rate']:.2f}%); customers ever in default: {s['customers_in_default']:,}\n"
        f"  panel: {s['panel_dir']}\n  {s['seconds']} s"
    )


def _cmd_features(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.as_of is not None:
        try:
            date.fromisoformat(args.as_of)
        except ValueError:
            raise ValueError(f"--as-of must be a date YYYY-MM-DD; got {args.as_of!r}") from None
    code, summary = _run_features(settings, args.as_of)
    _emit(summary, args.json, format_features(summary))
    return code


def _cmd_train(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if (args.table is None) != (args.target is None):
        raise ValueError("--table and --target go together (train on a table), or neither (train on the panel)")
    if args.time_column and args.table is None:
        raise ValueError("--time-column needs --table")
    with _embedded(settings):
        from creditflow.flows.train import format_train, run_train

        code, summary = run_train(settings, trials=args.trials, timeout=args.timeout, table=args.table,
                                  target=args.target, time_column=args.time_column)
    if code == 2 and not args.json:
        print(f"creditflow train: {summary.get('error')}", file=sys.stderr)
        return code
    _emit(summary, args.json, format_train(summary))
    return code


def _cmd_score(args: argparse.Namespace) -> int:
    settings = _settings(args)
    with _embedded(settings):
        from creditflow.flows.score import format_score, run_score

        code, summary = run_score(settings, args.as_of, approx_reasons=args.approx_reasons)
    if code == 2 and not args.json:
        print(f"creditflow score: {summary.get('error')}", file=sys.stderr)
        return code
    _emit(summary, args.json, format_score(summary))
    return code


def _run_chain(settings: Settings, args: argparse.Namespace, *, train: str) -> tuple[int, dict[str, Any]]:
    with _embedded(settings):
        from creditflow.flows.run import RunInputError, check_run_args, run_flow

        try:
            check_run_args(getattr(args, "as_of", None), train, args.trials)
        except RunInputError as e:
            raise ValueError(str(e)) from None
        state = run_flow(
            workdir=str(settings.workdir), landing=str(settings.landing_root), as_of=getattr(args, "as_of", None),
            trials=args.trials, train=train, config_file=str(args.config) if args.config else None,
            return_state=True,
        )
        return _exit_code_and_summary(state)


def _where_to_look(settings: Settings, summary: dict[str, Any]) -> str:
    work = settings.workdir
    docs = (summary.get("ingest") or {}).get("data_docs") or work / "data_docs"
    return (
        "\nWhere to look:\n"
        f"  quarantine: {work / 'lake' / 'quarantine'} (one Parquet file per landing file, with reason codes)\n"
        f"  data docs:  {docs}\n"
        f"  panel:      {(summary.get('features') or {}).get('panel_dir', work / 'lake' / 'features')}\n"
        f"  published:  {work / 'published'} (Delta: scores, limits, watchlist, collections, runs)\n"
        f"              e.g. python -c \"import polars as pl; print(pl.read_delta('{work / 'published' / 'scores'}'))\"\n"
        f"  run log:    {work / 'runs'}\n"
        f"  MLflow UI:  .venv/bin/mlflow ui --backend-store-uri {settings.tracking_uri}\n"
        f"  Prefect UI: PREFECT_HOME={os.environ.get('PREFECT_HOME', work / 'prefect')} .venv/bin/prefect server start"
    )


def _cmd_run(args: argparse.Namespace) -> int:
    if args.retrain and args.no_train:
        raise ValueError("--retrain and --no-train contradict each other")
    settings = _settings(args)
    train = "always" if args.retrain else "never" if args.no_train else "auto"
    from creditflow.flows.run import format_run

    code, summary = _run_chain(settings, args, train=train)
    _emit(summary, args.json, format_run(summary))
    return code


def _cmd_demo(args: argparse.Namespace) -> int:
    settings = _settings(args)
    landing = settings.landing_root
    generated = None
    if not landing.exists() or not any(landing.iterdir()):
        from creditflow.demo.generator import generate

        progress = None if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
        generated = generate(landing, customers=args.customers, months=args.months, seed=args.seed,
                             bad_rows=args.bad_rows, progress=progress).to_dict()
        if not args.json:
            print(f"generated a demo world of {args.customers} customers x {args.months} months in {landing}")
    elif not args.json:
        print(f"using the existing landing folder {landing}")
    from creditflow.flows.run import format_run

    code, run = _run_chain(settings, args, train="auto")
    summary = {"command": "demo", "generated": generated, "run": run}
    if not args.json and run.get("problems") and not run.get("error"):
        print("(the demo injects bad rows and bad files on purpose: they are in quarantine, and the run "
              "reports them as problems for the operator)")
    _emit(summary, args.json, format_run(run) + "\n" + _where_to_look(settings, run))
    # Injected bad files are expected in the demo: success means the chain ran to its end.
    return 1 if run.get("error") else 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"generate": _cmd_generate, "ingest": _cmd_ingest, "features": _cmd_features,
                "train": _cmd_train, "score": _cmd_score, "run": _cmd_run, "demo": _cmd_demo}
    try:
        return handlers[args.command](args)
    except ConfigError as e:
        print(f"creditflow: {e}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as e:
        print(f"creditflow {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
