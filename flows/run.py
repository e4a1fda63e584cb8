"""The end-to-end run: ingest -> validate -> features -> train (when needed) -> score -> publish.

One Prefect flow (``creditflow-run``) whose steps are the subflows of the single
commands. Each step is keyed on a fingerprint of its inputs; when a step finishes,
its fingerprint and summary are kept under ``WORKDIR/state/steps/<step>.json``.
A later run skips every step whose fingerprint is unchanged and whose outputs are
still there, so:

- a run that failed at a step resumes from that step (the steps before it are
  skipped, the failed step and the ones after it run);
- a finished run, re-run on the same inputs, does no work and changes no table
  (only a run summary is added under ``WORKDIR/runs``).

Fingerprints (sha256 of a canonical JSON document):

============ ==================================================================
ingest       the landing listing (relative path, size, mtime) + the manifest
             entries (which files the lake holds) + the ingest settings
features     the manifest entries + the feature settings + the code version
train        the features fingerprint + the training settings + the code
             version (``train="auto"`` skips whenever a champion exists)
score        the as-of date + the features fingerprint + the champion version
             + the credit policy file's bytes + the code version; the output
             check is the published ``runs`` table holding the recorded run
============ ==================================================================

The code version is the sha256 of the package's Python sources, so a changed
rule or formula never hides behind an old result.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import polars as pl
from prefect import flow, get_run_logger
from prefect.states import Failed

from creditflow.core.config import Settings, load_settings
from creditflow.core.paths import Paths
from creditflow.flows.lake import write_json_atomic

TrainMode = Literal["auto", "always", "never"]
TRAIN_MODES: tuple[str, ...] = ("auto", "always", "never")
STEPS: tuple[str, ...] = ("ingest", "features", "train", "score")
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent
_CODE_DIRS = ("core", "features", "flows", "models", "policy", "validation")


class RunInputError(ValueError):
    """The run cannot start (bad as-of date, bad train mode); the message says why."""


# ------------------------------------------------------------------------ fingerprints


def digest(obj: Any) -> str:
    """sha256 of ``obj`` as canonical JSON (sorted keys; dates and paths as strings)."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def code_version() -> str:
    """sha256 over the package's Python sources that compute data (not the CLI, tests or benchmarks)."""
    h = hashlib.sha256()
    for d in _CODE_DIRS:
        for f in sorted((_PACKAGE_ROOT / d).rglob("*.py")):
            h.update(f.relative_to(_PACKAGE_ROOT).as_posix().encode())
            h.update(f.read_bytes())
    for f in sorted((_PACKAGE_ROOT / "policy").glob("*.yaml")):
        h.update(f.read_bytes())
    return h.hexdigest()


def landing_listing(landing: Path) -> list[tuple[str, int, int]]:
    """Every file under the landing root: (relative path, size, mtime in ns), sorted."""
    if not landing.is_dir():
        return []
    out = []
    for f in landing.rglob("*"):
        if f.is_file():
            st = f.stat()
            out.append((f.relative_to(landing).as_posix(), st.st_size, st.st_mtime_ns))
    return sorted(out)


def manifest_entries(paths: Paths) -> list[str]:
    """The content hashes of every ingested file (the manifest's record names), sorted."""
    if not paths.manifest.is_dir():
        return []
    return sorted(p.stem for p in paths.manifest.glob("*.json"))


def policy_bytes_hash(settings: Settings) -> str:
    """sha256 of the configured policy file ("packaged": the packaged policy is part of the code version)."""
    path = settings.policy_file
    if path is None:
        return "packaged"
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return "unreadable"  # the score step then fails with the policy loader's message


# ------------------------------------------------------------------------ step records


def _record_path(paths: Paths, step: str) -> Path:
    return paths.state / "steps" / f"{step}.json"


def read_record(paths: Paths, step: str) -> dict[str, Any] | None:
    """The record of ``step``'s last successful run, or None."""
    p = _record_path(paths, step)
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None  # an unreadable record only costs a re-run of the step


def write_record(paths: Paths, step: str, fingerprint: str, summary: dict[str, Any]) -> None:
    write_json_atomic(
        {"step": step, "fingerprint": fingerprint, "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
         "summary": summary},
        _record_path(paths, step),
    )


def clear_records(paths: Paths, steps: tuple[str, ...]) -> None:
    for s in steps:
        _record_path(paths, s).unlink(missing_ok=True)


def _cached(paths: Paths, step: str, fingerprint: str, outputs_present: Callable[[dict], bool]) -> dict | None:
    rec = read_record(paths, step)
    if rec is None or rec.get("fingerprint") != fingerprint:
        return None
    return rec if outputs_present(rec["summary"]) else None


# ------------------------------------------------------------------------------ steps


class StepFailed(RuntimeError):
    def __init__(self, step: str, message: str, summary: dict[str, Any] | None = None):
        super().__init__(f"{step}: {message}")
        self.step = step
        self.summary = summary or {}


def _panel_present(paths: Paths, feature_set: str) -> bool:
    from creditflow.flows.features import DEFAULT_DATES_FILE, panel_dir

    return any(panel_dir(paths, feature_set).glob("as_of_date=*.parquet")) and (
        paths.silver / DEFAULT_DATES_FILE
    ).is_file()


def _published(paths: Paths, run_id: str, as_of: str) -> bool:
    from creditflow.flows.publish import latest_run

    try:
        last = latest_run(paths, date.fromisoformat(as_of))
    except Exception:  # noqa: BLE001 - a missing or unreadable runs table means "not published"
        return False
    return last is not None and last.get("run_id") == run_id


def previous_publish(paths: Paths, as_of: str) -> list[str] | None:
    """The latest publish before ``as_of``: [as-of date, run id], or None."""
    from creditflow.flows.publish import read_runs

    try:
        runs = read_runs(paths)
    except Exception:  # noqa: BLE001 - an unreadable runs table: the score step reads it and says why
        return ["unreadable"]
    before = runs.filter(pl.col("as_of_date") < date.fromisoformat(as_of))
    if before.height == 0:
        return None
    last = before.sort("as_of_date", "published_at").row(-1, named=True)
    return [last["as_of_date"].isoformat(), last["run_id"]]


def champion_info(settings: Settings) -> dict[str, Any] | None:
    """The champion's version and its recorded test metrics, or None when there is none."""
    from mlflow import MlflowClient

    from creditflow.flows.tracking import champion_version

    version = champion_version(settings.tracking_uri, settings.train.model_name)
    if version is None:
        return None
    tags = MlflowClient(settings.tracking_uri).get_model_version(settings.train.model_name, version).tags

    def num(key: str) -> float | None:
        try:
            return float(tags[key])
        except (KeyError, ValueError):
            return None

    return {
        "model_name": settings.train.model_name,
        "model_version": version,
        "test_auc": num("test.auc"),
        "test_ece": num("test.ece"),
        "calibration": tags.get("calibration"),
        "data_hash": tags.get("data_hash"),
    }


# -------------------------------------------------------------------------------- flow


@flow(name="creditflow-run")
def run_flow(
    workdir: str = "creditflow-work",
    landing: str | None = None,
    as_of: str | None = None,
    trials: int | None = None,
    train: TrainMode = "auto",
    score: bool = True,
    config_file: str | None = None,
) -> dict[str, Any]:
    """Run the chain end to end: ingest -> validate -> features -> train -> score -> publish.

    ``as_of``: month end to score (default: the latest month end the data covers).
    ``train``: ``auto`` trains only when no champion exists, ``always`` retrains
    (the gate still decides the champion), ``never`` fails clearly without a champion.
    ``score``: publish the four tables (False: stop after training).
    Steps whose inputs are unchanged since their last success are skipped.
    """
    settings = load_settings(
        Path(config_file) if config_file else None, workdir=Path(workdir),
        landing=Path(landing) if landing else None,
    )
    return execute(settings, as_of=as_of, trials=trials, train=train, score=score)


def check_run_args(as_of: str | None, train: str, trials: int | None) -> None:
    """Raise :class:`RunInputError` for arguments no step could use."""
    if train not in TRAIN_MODES:
        raise RunInputError(f"train must be one of {', '.join(TRAIN_MODES)}; got {train!r}")
    if trials is not None and (not isinstance(trials, int) or trials < 1):
        raise RunInputError(f"trials must be a positive integer; got {trials!r}")
    if as_of is not None:
        try:
            date.fromisoformat(as_of)
        except ValueError:
            raise RunInputError(f"as_of must be a date YYYY-MM-DD; got {as_of!r}") from None


def execute(
    settings: Settings, *, as_of: str | None = None, trials: int | None = None, train: str = "auto",
    score: bool = True,
) -> dict[str, Any] | Failed:
    """The body of :func:`run_flow` (inside a flow run); returns the run summary or a Failed state carrying it.

    With ``runner: dask`` and no scheduler address, one LocalCluster serves every step.
    """
    check_run_args(as_of, train, trials)
    from creditflow.flows.runner import dask_cluster

    with dask_cluster(settings) as on_cluster:
        return _execute(on_cluster, as_of=as_of, trials=trials, train=train, score=score)


def _execute(
    settings: Settings, *, as_of: str | None, trials: int | None, train: str, score: bool
) -> dict[str, Any] | Failed:
    from creditflow.flows.runner import with_runner

    as_dict = settings.model_dump(mode="json")
    logger = get_run_logger()
    t0 = time.perf_counter()
    run_id = uuid.uuid4().hex
    started = datetime.now(UTC).isoformat(timespec="seconds")
    paths = Paths(settings.workdir)
    code = code_version()
    steps: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    summary: dict[str, Any] = {
        "command": "run", "run_id": run_id, "started_at": started, "workdir": str(settings.workdir),
        "landing": str(settings.landing_root), "train_mode": train, "steps": steps, "problems": problems,
    }

    def skipped(step: str, rec: dict[str, Any], why: str) -> dict[str, Any]:
        steps[step] = {"status": "skipped", "reason": why, "seconds": 0.0,
                       "previous_finished_at": rec.get("finished_at") if rec else None}
        logger.info("step %s: skipped (%s)", step, why)
        return rec["summary"] if rec else {}

    def ran(step: str, t: float, status: str = "ran") -> None:
        steps[step] = {"status": status, "seconds": round(time.perf_counter() - t, 2)}
        logger.info("step %s: %s in %.1f s", step, status, steps[step]["seconds"])

    def run_step(step: str, fingerprint: str, call: Callable[[], Any], brief: Callable[[dict], dict]) -> dict:
        """Run one subflow; record its fingerprint and brief summary when it completes."""
        t = time.perf_counter()
        state = call()
        result = state.result(raise_on_failure=False)
        if isinstance(result, BaseException) or not state.is_completed():
            raise StepFailed(step, f"{type(result).__name__}: {result}" if isinstance(result, BaseException)
                             else str(state.message or result))
        out = brief(result)
        ran(step, t)
        write_record(paths, step, fingerprint, out)
        return out

    current = "ingest"
    try:
        # ---- ingest (+ Great Expectations validation) --------------------------------------
        current = "ingest"
        ingest_settings = settings.ingest.model_dump(mode="json") | {"base_currency": settings.base_currency}
        listing = landing_listing(settings.landing_root)
        fp_ingest = digest({"landing": listing, "lake": manifest_entries(paths), "settings": ingest_settings,
                            "code": code})
        rec = _cached(paths, "ingest", fp_ingest, lambda s: True)
        if rec is not None:
            skipped("ingest", rec, "no landing file changed since the last ingest")
            # Problem files of that ingest still need the operator: a re-run does not hide them.
            problems.extend(rec["summary"].get("problems", []))
            ingest = {"new_in_this_run": False, "files_in_lake": len(manifest_entries(paths)),
                      "problems": rec["summary"].get("problems", [])}
        else:
            from creditflow.flows.ingest import ingest_flow

            t = time.perf_counter()
            state = with_runner(ingest_flow, settings)(settings=as_dict, return_state=True)
            ingest = state.result(raise_on_failure=False)
            if isinstance(ingest, BaseException) or not isinstance(ingest, dict) or "totals" not in ingest:
                raise StepFailed("ingest", f"{ingest}")
            problems.extend(ingest["problems"])
            ran("ingest", t, "ran" if state.is_completed() else "ran with problems")
            ingest = {**ingest, "new_in_this_run": True}
            # The next run compares with the landing as it was listed BEFORE this ingest (a file
            # that lands while ingest runs changes the listing, so it is picked up next time)
            # and the lake as it is after it.
            fp_after = digest({"landing": listing, "lake": manifest_entries(paths), "settings": ingest_settings,
                               "code": code})
            if not ingest.get("unreadable"):
                # (a file that could not be read is looked at again by the next run's ingest)
                write_record(paths, "ingest", fp_after, _ingest_brief(ingest))
        summary["ingest"] = _ingest_brief(ingest)

        # ---- features ---------------------------------------------------------------------
        current = "features"
        fs = settings.features.feature_set
        fp_features = digest({"lake": manifest_entries(paths), "features": settings.features.model_dump(mode="json"),
                              "base_currency": settings.base_currency,
                              "materiality": str(settings.materiality_threshold), "code": code})
        rec = _cached(paths, "features", fp_features, lambda s: _panel_present(paths, fs))
        if rec is not None:
            features = skipped("features", rec, "the lake did not change since the panel was built")
        else:
            from creditflow.flows.features import features_flow

            features = run_step("features", fp_features, lambda: with_runner(features_flow, settings)(
                as_of=None, settings=as_dict, return_state=True), _features_brief)
        summary["features"] = features

        # ---- train --------------------------------------------------------------------------
        current = "train"
        champion = champion_info(settings)
        fp_train = digest({"features": fp_features, "train": settings.train.model_dump(mode="json"),
                           "trials": trials, "code": code})
        train_summary: dict[str, Any] | None = None
        if train == "never" or (train == "auto" and champion is not None):
            why = ("train=never" if train == "never" else
                   f"champion version {champion['model_version']} exists (train=always or --retrain to retrain)")
            steps["train"] = {"status": "skipped", "reason": why, "seconds": 0.0}
            logger.info("step train: skipped (%s)", why)
        elif (rec := _cached(paths, "train", fp_train, lambda s: champion is not None)) is not None:
            train_summary = skipped("train", rec, "same panel and settings as the last training")
        else:
            from creditflow.flows.train import train_flow

            train_summary = run_step("train", fp_train, lambda: with_runner(train_flow, settings)(
                trials=trials, settings=as_dict, return_state=True), _train_brief)
            champion = champion_info(settings)
        summary["train"] = train_summary
        summary["champion"] = champion

        # ---- score + publish --------------------------------------------------------------
        current = "score"
        if not score:
            steps["score"] = {"status": "skipped", "reason": "score=False", "seconds": 0.0}
        else:
            if champion is None:
                hint = (f"the training was not promoted: {train_summary['reason']}" if train_summary else
                        "run with train=auto/always (`creditflow run` or the monthly-retrain deployment)")
                raise StepFailed("score", f"no champion for {settings.train.model_name!r}: {hint}")
            score_as_of = as_of or features["last_as_of"]
            if score_as_of not in features.get("as_of_dates", [score_as_of]):
                raise StepFailed(
                    "score", f"as_of {score_as_of} is not a month end of the panel "
                    f"({features['first_as_of']} .. {features['last_as_of']})")
            fp_score = digest({"as_of": score_as_of, "features": fp_features, "code": code,
                               "model": [settings.tracking_uri, champion["model_name"], champion["model_version"]],
                               "policy": policy_bytes_hash(settings), "base_currency": settings.base_currency,
                               # the watchlist compares with the previous publish (PD jump, since_date)
                               "previous": previous_publish(paths, score_as_of)})
            rec = _cached(paths, "score", fp_score, lambda s: _published(paths, s["run_id"], score_as_of))
            if rec is not None:
                scored = skipped("score", rec, f"{score_as_of} is already published with the same model, "
                                               "policy and panel")
            else:
                from creditflow.flows.score import score_flow

                scored = run_step("score", fp_score, lambda: with_runner(score_flow, settings)(
                    as_of=score_as_of, settings=as_dict, return_state=True), _score_brief)
            summary["score"] = scored
    except Exception as e:  # noqa: BLE001 - every failure ends in a summary that names the step
        failure = e if isinstance(e, StepFailed) else StepFailed(current, f"{type(e).__name__}: {e}")
        steps[failure.step] = {"status": "failed", "error": str(failure).split(": ", 1)[1]}
        summary["failed_step"] = failure.step
        summary["error"] = str(failure)
        for later in STEPS[STEPS.index(failure.step) + 1:]:
            steps.setdefault(later, {"status": "not run"})
        logger.error("run failed at step %s", str(failure), exc_info=not isinstance(e, StepFailed))
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    summary_file = paths.runs / f"run-{started.replace(':', '')}-{run_id[:8]}.json"
    write_json_atomic(summary, summary_file)
    _publish_summary(logger, format_run(summary), summary_file)
    if "error" in summary:
        return Failed(message=summary["error"], data=summary)
    if problems:
        return Failed(message=f"run finished with {len(problems)} problem(s): " + "; ".join(problems[:3]),
                      data=summary)
    return summary


# ----------------------------------------------------------------------------- briefs


def _ingest_brief(s: dict[str, Any]) -> dict[str, Any]:
    keys = ("run_id", "totals", "problems", "warnings", "data_docs", "seconds", "new_in_this_run", "files_in_lake",
            "unreadable")
    return {k: s[k] for k in keys if k in s}


def _features_brief(s: dict[str, Any]) -> dict[str, Any]:
    keys = ("run_id", "feature_set", "observations", "customers", "as_of_dates", "first_as_of", "last_as_of",
            "labelled", "defaults_in_labels", "default_rate", "customers_in_default", "panel_dir", "seconds")
    return {k: s[k] for k in keys if k in s}


def _train_brief(s: dict[str, Any]) -> dict[str, Any]:
    keys = ("run_id", "model_name", "model_version", "promoted", "decision", "reason", "calibration",
            "data_hash", "trials", "seconds")
    out = {k: s[k] for k in keys if k in s}
    out["test"] = {m: s["metrics"][m]["test"] for m in s.get("metrics", {})}
    return out


def _score_brief(s: dict[str, Any]) -> dict[str, Any]:
    keys = ("run_id", "as_of_date", "model_name", "model_version", "policy_version", "observations",
            "customers_in_default", "rows", "delta_versions", "published_dir", "grades", "limit_actions",
            "limits_left_out", "watchlist_severity", "collections_actions", "seconds")
    return {k: s[k] for k in keys if k in s}


def one_line(summary: dict[str, Any]) -> str:
    """The run in one line: each step's status."""
    return ", ".join(f"{k} {v['status']}" for k, v in summary["steps"].items()) or "nothing ran"


def _publish_summary(logger: Any, text: str, summary_file: Path) -> None:
    """One log line, and the whole summary as the flow run's ``run-summary`` Markdown
    artifact (Prefect UI, Artifacts tab). The CLI prints the same text itself, so the
    terminal shows it once; the JSON is in ``summary_file``."""
    logger.info("%s (summary: %s)", text.splitlines()[0], summary_file)
    try:
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(key="run-summary", markdown="```\n" + text + "\n```",
                                 description=text.splitlines()[0])
    except Exception as e:  # noqa: BLE001 - the summary is on disk and in the log line either way
        logger.warning("could not create the run-summary artifact: %s: %s", type(e).__name__, e)


def format_run(summary: dict[str, Any]) -> str:
    """The human-readable summary of an end-to-end run."""
    lines = [f"run {summary['run_id'][:8]} ({summary['seconds']} s): {one_line(summary)}"]
    for step in STEPS:
        st = summary["steps"].get(step)
        if st is None:
            continue
        extra = st.get("reason") or st.get("error") or ""
        secs = f"{st['seconds']:>7.1f} s" if "seconds" in st else " " * 9
        lines.append(f"  {step:<9}{st['status']:<18}{secs}  {extra}")
    ing = summary.get("ingest")
    if ing and not ing.get("new_in_this_run", True):
        lines.append(f"  files: nothing new in the landing folder ({ing['files_in_lake']} files in the lake)")
    elif ing and "totals" in ing:
        t = ing["totals"]
        lines.append(
            f"  files: {t['files_new']} new, {t['files_skipped']} already ingested, {t['files_rejected']} rejected"
            + (f", {t['files_unreadable']} unreadable" if t.get("files_unreadable") else "") + "; "
            f"rows read {t['rows_read']:,} = accepted {t['rows_accepted']:,} + quarantined {t['rows_quarantined']:,}"
        )
    f = summary.get("features")
    if f:
        lines.append(f"  panel: {f['observations']:,} observations of {f['customers']:,} customers, "
                     f"{f['first_as_of']} .. {f['last_as_of']}")
    c = summary.get("champion")
    if c:
        auc = f"{c['test_auc']:.3f}" if c.get("test_auc") is not None else "n/a"
        ece = f"{c['test_ece']:.4f}" if c.get("test_ece") is not None else "n/a"
        lines.append(f"  champion: {c['model_name']} version {c['model_version']}, test AUC {auc}, "
                     f"test calibration error {ece} ({c.get('calibration')})")
    tr = summary.get("train")
    if tr and summary["steps"].get("train", {}).get("status") == "ran":
        lines.append(f"  trained version {tr['model_version']}: {tr['decision']} ({tr['reason']})")
    sc = summary.get("score")
    if sc:
        rows = ", ".join(f"{k} {v:,}" for k, v in sc["rows"].items())
        lines.append(f"  published {sc['as_of_date']}: {rows}")
    for p in summary["problems"]:
        lines.append(f"  PROBLEM: {p}")
    if summary.get("error"):
        lines.append(f"  FAILED at {summary['failed_step']}: {summary['error']}")
        lines.append("  fix the cause and run again: finished steps are skipped, the run resumes at the failed step")
    return "\n".join(lines)


__all__ = ["RunInputError", "check_run_args", "code_version", "execute", "format_run", "run_flow"]
