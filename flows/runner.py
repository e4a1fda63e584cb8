"""Where flows run their tasks: the one place that turns ``Settings`` into a Prefect task runner.

``runner: local`` (the default) keeps every flow exactly as it is: tasks run in the flow
process, one after the other, and the outputs are byte-for-byte those of the sequential
code. ``runner: dask`` hands each flow a ``prefect_dask.DaskTaskRunner``: the scheduler at
``dask_address`` (``tcp://host:8786``), or a ``LocalCluster`` of ``dask_workers`` worker
processes with one thread each and no dashboard. A flow body asks :func:`dask_active` and
only then fans out its per-file, per-shard or per-chunk tasks; training asks
:func:`dask_scheduler_address` and trains through ``xgboost.dask`` on the same cluster.

Usage::

    from creditflow.flows.runner import run_with_runner, dask_cluster
    summary = run_with_runner(features_flow, settings, workdir=str(settings.workdir))

    # several flows in one run: start one LocalCluster for all of them
    with dask_cluster(settings) as s:
        run_with_runner(ingest_flow, s, ...)
        run_with_runner(features_flow, s, ...)

See ``docs/scale-out.md`` for when to switch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect import Flow
from prefect.context import FlowRunContext
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from creditflow.core.config import Settings


def _cluster_kwargs(workers: int) -> dict[str, Any]:
    return {
        "n_workers": workers,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": None,
        "silence_logs": logging.WARNING,
    }


def _check(settings: Settings) -> None:
    if not isinstance(settings, Settings):
        raise TypeError(f"settings must be creditflow Settings; got {type(settings).__name__}")
    if settings.runner not in ("local", "dask"):
        raise ValueError(f"runner must be 'local' or 'dask'; got {settings.runner!r}")
    if settings.dask_address is not None and not settings.dask_address.strip():
        raise ValueError("dask_address must be a scheduler address such as tcp://10.0.0.5:8786; got ''")


def task_runner(settings: Settings) -> TaskRunner:
    """The Prefect task runner the settings ask for.

    ``local``: Prefect's default ``ThreadPoolTaskRunner`` (the flows call their tasks in
    order anyway). ``dask``: a ``DaskTaskRunner`` on ``dask_address``, or on a new
    ``LocalCluster`` of ``dask_workers`` single-threaded worker processes (no dashboard)
    that lives as long as the flow run.
    """
    _check(settings)
    if settings.runner == "local":
        return ThreadPoolTaskRunner()
    from prefect_dask import DaskTaskRunner

    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    return DaskTaskRunner(cluster_kwargs=_cluster_kwargs(settings.dask_workers))


def with_runner(flow: Flow, settings: Settings) -> Flow:
    """``flow`` as the settings want it run: unchanged for ``local``, with a Dask task runner for ``dask``."""
    _check(settings)
    if not isinstance(flow, Flow):
        raise TypeError(f"flow must be a Prefect flow; got {type(flow).__name__}")
    if settings.runner == "local":
        return flow
    return flow.with_options(task_runner=task_runner(settings))


@contextmanager
def embedded_flow_settings() -> Iterator[None]:
    """Prefect settings for flows started by the command line or a benchmark in this process.

    Without a Prefect API URL (embedded mode: a temporary server inside this process), flow
    runs send no heartbeats. Heartbeats let a long-lived server notice a crashed run; nothing
    watches an embedded server once the process is gone. Prefect 3.9's heartbeat thread
    sleeps in 1 s steps and every flow run joins it on exit, so each flow and subflow waited
    up to 1 s for nothing (an ingest with nothing new: 1.1 s -> 0.1 s; a ``creditflow run``
    is five flow runs). With an API URL (a real server, a worker running a deployment)
    nothing changes.
    """
    from prefect.settings import (
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        get_current_settings,
        temporary_settings,
    )

    if get_current_settings().api.url:
        yield
        return
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


def run_with_runner(flow: Flow, settings: Settings, /, **parameters: Any) -> Any:
    """Call ``flow(**parameters)`` with the task runner of ``settings`` (see :func:`with_runner`).

    Pass ``return_state=True`` among the parameters to get the final state, as with a plain call.
    """
    return with_runner(flow, settings)(**parameters)


@contextmanager
def dask_cluster(settings: Settings) -> Iterator[Settings]:
    """Settings whose flows share one Dask cluster for the duration of the block.

    With ``runner: dask`` and no ``dask_address``, starts a ``LocalCluster`` of
    ``dask_workers`` workers and yields the settings with ``dask_address`` set to it, so that
    consecutive flows (ingest, features, train, score) do not each start their own; the
    cluster is closed when the block ends. Otherwise yields ``settings`` unchanged.
    """
    _check(settings)
    if settings.runner != "dask" or settings.dask_address:
        yield settings
        return
    from distributed import LocalCluster

    with LocalCluster(**_cluster_kwargs(settings.dask_workers)) as cluster:
        yield settings.model_copy(update={"dask_address": cluster.scheduler_address})


def results_in_order(futures: list[Any]) -> list[Any]:
    """The results of ``futures`` in order; if one fails, wait for all the others before
    raising, so that clean-up after a failure never races tasks that are still writing."""
    try:
        return [f.result() for f in futures]
    except BaseException:
        from prefect.futures import wait

        wait(futures)
        raise


def _active_dask_runner() -> Any | None:
    ctx = FlowRunContext.get()
    if ctx is None or ctx.task_runner is None:
        return None
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:  # pragma: no cover - prefect-dask is a pinned dependency
        return None
    return ctx.task_runner if isinstance(ctx.task_runner, DaskTaskRunner) else None


def dask_active() -> bool:
    """True inside a flow run whose task runner is a ``DaskTaskRunner``: fan work out as tasks."""
    return _active_dask_runner() is not None


def dask_scheduler_address() -> str | None:
    """The scheduler address of the current flow run's Dask cluster (None when not on Dask).

    Starts the runner's client if the flow has not submitted anything yet.
    """
    runner = _active_dask_runner()
    if runner is None:
        return None
    return runner.client.scheduler.address


def dask_worker_threads() -> int:
    """Worker threads of the current flow run's Dask cluster (1 when not on Dask)."""
    runner = _active_dask_runner()
    if runner is None:
        return 1
    return max(1, sum(runner.client.nthreads().values()))


__all__ = [
    "results_in_order",
    "dask_active",
    "dask_cluster",
    "dask_scheduler_address",
    "dask_worker_threads",
    "embedded_flow_settings",
    "run_with_runner",
    "task_runner",
    "with_runner",
]
