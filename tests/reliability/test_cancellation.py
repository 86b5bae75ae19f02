"""Cancelling a running job reaches its handler in a real worker process; the job ends cancelled."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from helpers import APP_CONFIG, executions

from dqflow import EventType, JobStatus, Queue
from reliability._support import Workers, wait_until

pytestmark = pytest.mark.reliability


def test_cancelling_running_jobs_reaches_sync_and_async_handlers(
    backend: str, tmp_path: Path, workers: Workers
) -> None:
    log, seen = tmp_path / "runs.log", tmp_path / "seen.log"
    queue = Queue.from_yaml(APP_CONFIG, backend=backend)
    payload = {"n": 1, "log": str(log), "seen": str(seen), "sleep": 60}
    sync_id = queue.add("wait_for_cancel", payload)
    async_id = queue.add("async_wait_for_cancel", payload)
    worker = workers.start(backend, "--concurrency", "4", "--lease", "3", name="worker")
    wait_until(lambda: len(executions(log)) == 2, 30, interval=0.01, what="both handlers running")

    for job_id in (sync_id, async_id):
        record = queue.cancel(job_id)
        assert record.status is JobStatus.CANCELLED
    wait_until(lambda: seen.exists() and len(seen.read_text().splitlines()) == 2, 10, what="both handlers see it")
    lines = set(seen.read_text().splitlines())
    assert lines == {f"seen {sync_id} cancelled", f"seen {async_id} CancelledError"}, lines

    # the worker goes on with other work
    next_id = queue.add("record_run", {"n": 2, "log": str(log)})
    wait_until(lambda: queue.get_job(next_id).status is JobStatus.COMPLETED, 15, what="the next job completes")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0

    for job_id in (sync_id, async_id):
        job = queue.get_job(job_id)
        assert job.status is JobStatus.CANCELLED, job
        assert job.failure_reason is None and job.error_history == [] and job.output is None
        assert job.cancelled_at is not None and job.completed_at is None
        kinds = [e.event_type for e in queue.get_events(job_id)]
        assert kinds == [EventType.ADDED, EventType.PROCESSING, EventType.CANCELLED], kinds
    worker_log = workers.log_of(worker)
    assert "1 completed, 0 failed" in worker_log, worker_log
    assert "rejected:" not in worker_log, worker_log  # it stopped writing: nothing late to refuse
    assert executions(log).count(sync_id) == 1 and executions(log).count(async_id) == 1
    queue.close()
