"""SIGTERM: in-flight jobs finish within the grace period, the rest are handed back and run elsewhere."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from helpers import APP_CONFIG, executions

from dqflow import JobStatus, Queue
from reliability._support import Workers, completed_events, runs_by_pid, wait_until

pytestmark = pytest.mark.reliability

GRACE = 2.0


def test_sigterm_finishes_what_it_can_and_hands_back_the_rest(backend: str, tmp_path: Path, workers: Workers) -> None:
    log = tmp_path / "runs.log"
    queue = Queue.from_yaml(APP_CONFIG, backend=backend)
    # first executions: two finish within the grace period, two never would (but stop when cancelled)
    short = queue.add_many(
        [{"job_type": "slow_first_run", "payload": {"n": i, "log": str(log), "sleep": 1.0}} for i in range(2)]
    )
    long = queue.add_many(
        [{"job_type": "slow_first_run", "payload": {"n": i, "log": str(log), "sleep": 120}} for i in range(2, 4)]
    )
    first = workers.start(backend, "--concurrency", "4", "--lease", "3", "--shutdown-grace", str(GRACE), name="first")
    wait_until(lambda: len(executions(log)) == 4, 30, interval=0.01, what="the first worker runs all four jobs")
    first.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    assert first.wait(timeout=GRACE + 15) == 0
    stopped_in = time.monotonic() - signalled
    assert stopped_in < GRACE + 3, f"the worker took {stopped_in:.1f}s to stop with a {GRACE}s grace period"

    for job_id in short:
        job = queue.get_job(job_id)
        assert job.status is JobStatus.COMPLETED, job
        assert job.output == {"n": job.payload["n"], "pid": first.pid}
    for job_id in long:
        job = queue.get_job(job_id)
        assert job.status is JobStatus.PENDING, job  # handed back at once, not left to a lease expiry
        assert job.lease_expires_at is None and job.attempts == 0  # the interrupted attempt is refunded
        assert job.failure_reason is None and job.error_history == []
    first_log = workers.log_of(first)
    assert "handed back 2 running jobs" in first_log, first_log
    assert "2 completed" in first_log, first_log

    second = workers.start(backend, "--concurrency", "4", "--drain", name="second")
    assert second.wait(timeout=60) == 0
    for job_id in long:
        job = queue.get_job(job_id)
        assert job.status is JobStatus.COMPLETED, job
        assert job.output == {"n": job.payload["n"], "pid": second.pid}
        assert job.attempts == 1
    runs = runs_by_pid(log)
    assert sorted(runs[first.pid]) == sorted(short + long)
    assert sorted(runs[second.pid]) == sorted(long)
    assert completed_events(queue, short + long) == Counter({i: 1 for i in short + long})
    queue.close()


def test_a_second_sigterm_hands_back_at_once(backend: str, tmp_path: Path, workers: Workers) -> None:
    log = tmp_path / "runs.log"
    queue = Queue.from_yaml(APP_CONFIG, backend=backend)
    job_id = queue.add("slow_first_run", {"n": 1, "log": str(log), "sleep": 60})
    worker = workers.start(backend, "--shutdown-grace", "20", name="worker")
    wait_until(lambda: executions(log) == [job_id], 30, what="the worker runs the job")
    worker.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    worker.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    assert worker.wait(timeout=25) == 0
    stopped_in = time.monotonic() - signalled
    assert stopped_in < 3, f"the worker took {stopped_in:.1f}s after the second SIGTERM (grace 20s)"
    job = queue.get_job(job_id)
    assert job.status is JobStatus.PENDING and job.attempts == 0 and job.lease_expires_at is None, job
    assert "handed back 1 running jobs" in workers.log_of(worker)
    queue.close()


def test_sigterm_exits_within_the_grace_even_if_an_async_handler_swallows_cancellation(
    backend: str, tmp_path: Path, workers: Workers
) -> None:
    log = tmp_path / "runs.log"
    queue = Queue.from_yaml(APP_CONFIG, backend=backend)
    job_id = queue.add("async_stubborn", {"log": str(log)})
    worker = workers.start(backend, "--shutdown-grace", "1", name="worker")
    wait_until(lambda: executions(log) == [job_id], 30, what="the worker runs the job")
    worker.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    assert worker.wait(timeout=25) == 0
    stopped_in = time.monotonic() - signalled
    assert stopped_in < 3.5, f"the worker took {stopped_in:.1f}s to stop with a 1s grace"
    job = queue.get_job(job_id)
    assert job.status is JobStatus.PENDING and job.attempts == 0, job
    queue.close()
