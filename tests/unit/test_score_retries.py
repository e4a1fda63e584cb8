"""The score flow's storage tasks retry on IO errors only."""

from __future__ import annotations

from prefect.states import Completed, Failed

from creditflow.flows.score import _is_io_error, observations_task, publish_task


def test_only_io_errors_are_retried():
    assert _is_io_error(None, None, Failed(data=NotADirectoryError("published is a file")))
    assert _is_io_error(None, None, Failed(data=ConnectionResetError("registry went away")))
    assert not _is_io_error(None, None, Failed(data=ValueError("no panel at 2024-02-29")))
    assert not _is_io_error(None, None, Completed(data=1))


def test_storage_tasks_retry_once():
    for t in (observations_task, publish_task):
        assert t.retries == 1 and t.retry_condition_fn is _is_io_error
