"""Hard timeouts: a handler with ``isolation: process`` that never returns (and ignores
cancellation) is killed at its timeout; the job fails with reason ``timeout``; the worker goes on."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from helpers import APP_CONFIG

from dqflow import JobStatus, Queue
from reliability._support import Workers, runs_by_pid, wait_until

pytestmark = pytest.mark.reliability


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_a_spinning_isolated_handler_is_killed_at_its_timeout(backend: str, tmp_path: Path, workers: Workers) -> None:
    log = tmp_path / "runs.log"
    queue = Queue.from_yaml(APP_CONFIG, backend=backend)
    worker = workers.start(backend, "--concurrency", "2", "--lease", "3", name="worker")
    wait_until(lambda: "worker ready" in workers.log_of(worker), 30, what="worker started")
    spinning = queue.add("spin_isolated", {"log": str(log)})
    for _ in range(3):
        # the handler starts spinning in a process of its own (its start-up counts against the timeout:
        # on a very loaded machine the process may be killed before the handler runs; then try again)
        started_spinning = wait_until(
            lambda: runs_by_pid(log) or queue.get_job(spinning).status is JobStatus.FAILED, 30, what="spin starts"
        )
        if isinstance(started_spinning, dict):
            break
        queue.retry(spinning)
    else:
        pytest.fail("the isolated handler's process never started within its 4 s timeout, three times")
    started = time.monotonic()
    (child_pid,) = runs_by_pid(log)
    assert child_pid not in (worker.pid, os.getpid())
    failed = wait_until(
        lambda: (j := queue.get_job(spinning)).status in (JobStatus.FAILED, JobStatus.COMPLETED) and j,
        20,
        what="the spinning job ends",
    )
    took = time.monotonic() - started
    assert failed.status is JobStatus.FAILED, failed
    assert failed.failure_reason == "timeout", failed
    assert failed.attempts == 1 and failed.output is None  # max_attempts 1: not run again
    assert "timed out" in failed.error_history[-1]["error"], failed.error_history
    assert took < 4 + 3, f"the 4 s timeout took {took:.1f}s (after the handler started) to end the job"
    wait_until(lambda: not alive(child_pid), 10, what="the handler's process is killed")

    # the worker keeps going: a normal job, and an isolated one that returns
    normal = queue.add("record_run", {"n": 1, "log": str(log)})
    isolated = queue.add("record_run_isolated", {"n": 2, "log": str(log)})
    for job_id, n in ((normal, 1), (isolated, 2)):
        done = wait_until(
            lambda j=job_id: (r := queue.get_job(j)).status is JobStatus.COMPLETED and r, 20, what="next jobs"
        )
        assert done.output == {"n": n, "ok": True}
    runs = runs_by_pid(log)
    assert runs[worker.pid] == [normal]  # thread isolation: in the worker itself
    assert any(ids == [isolated] for pid, ids in runs.items() if pid != worker.pid)
    assert worker.poll() is None
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    queue.close()
