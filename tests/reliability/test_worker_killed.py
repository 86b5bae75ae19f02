"""A worker process killed mid-job (SIGKILL): its jobs are picked up again once its lease expires."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers import APP_CONFIG, executions

from dqflow import JobStatus, Queue, Worker
from reliability._support import TESTS, Workers, completed_events, wait_until

pytestmark = pytest.mark.reliability

DEFAULT_LEASE_CONFIG = TESTS / "app" / "default_lease.yaml"


def lease_left(queue: Queue, job_id: int) -> float:
    """Seconds until the job's lease runs out (negative: it has)."""
    job = queue.get_job(job_id)
    assert job.lease_expires_at is not None, job
    return (job.lease_expires_at - datetime.now(UTC)).total_seconds()


def test_jobs_of_a_killed_worker_are_completed_by_another(backend: str, tmp_path: Path, workers: Workers) -> None:
    log = tmp_path / "runs.log"
    queue = Queue.from_yaml(APP_CONFIG, backend=backend)
    # the first execution of each job sleeps for a minute: the killed worker is in the middle of all of them
    ids = queue.add_many(
        [{"job_type": "slow_first_run", "payload": {"n": i, "log": str(log), "sleep": 60}} for i in range(3)]
    )
    last_chance = queue.add("slow_first_run", {"n": 99, "log": str(log), "sleep": 60}, max_attempts=1)
    victim = workers.start(backend, "--concurrency", "4", "--lease", "2", name="victim")
    wait_until(lambda: len(executions(log)) == 4, 30, what="the victim runs all four jobs")
    assert all(
        queue.get_job(i).locked_by and str(victim.pid) in queue.get_job(i).locked_by for i in [*ids, last_chance]
    )

    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    killed_at = time.monotonic()
    rescuer = workers.start(backend, "--concurrency", "4", "--lease", "2", name="rescuer")

    def all_done() -> bool:
        return all(queue.get_job(i).status is JobStatus.COMPLETED for i in ids)

    wait_until(all_done, 30, what="every job of the killed worker completed")
    recovered_in = time.monotonic() - killed_at
    failed = wait_until(
        lambda: (j := queue.get_job(last_chance)).status is JobStatus.FAILED and j, 10, what="last-chance job failed"
    )
    assert recovered_in < 15, f"recovery took {recovered_in:.1f}s with a 2s lease"

    for job_id in ids:
        job = queue.get_job(job_id)
        assert job.attempts == 2, (job_id, job.attempts)
        assert job.output == {"n": job.payload["n"], "pid": rescuer.pid}
        assert job.lease_expires_at is None
        assert job.locked_by and f":{rescuer.pid}:" in job.locked_by  # kept after completion: who ran it
    # the job with no attempt left is not run again: it fails saying why
    assert failed.attempts == 1
    assert failed.failure_reason == "lease_expired"
    assert failed.error_history and failed.error_history[-1]["reason"] == "lease_expired"
    message = failed.error_history[-1]["error"]
    assert "lease" in message and "attempts" in message, message

    counts = Counter(executions(log))
    assert {i: counts[i] for i in ids} == {i: 2 for i in ids}
    assert counts[last_chance] == 1
    assert completed_events(queue, ids) == Counter({i: 1 for i in ids})
    rescuer.send_signal(signal.SIGTERM)
    assert rescuer.wait(timeout=30) == 0
    queue.close()


def test_default_lease_recovers_within_30_seconds(tmp_path: Path, workers: Workers) -> None:
    """With the worker settings left at their defaults, a killed worker's job runs again within 30 s.

    It runs again once the lease the dead worker last renewed has run out and a live worker has
    looked for expired leases: at most lease + one look interval after the kill. Waiting that
    out at the defaults costs 16-25 s, so the bound is proven in its parts: the settings a worker
    resolves from the defaults (lease 20 s, a look every 4 s: 24 s < 30 s); a real worker process
    left at the defaults holding its job on a 20 s lease it renews; and the recovery itself within
    lease + one look, timed with the same worker code and the lease cut to 2 s.
    """
    with Queue.from_yaml(DEFAULT_LEASE_CONFIG, backend=f"sqlite:///{tmp_path / 'q0.db'}") as defaults:
        settings = Worker(defaults)
        assert (settings.lease, settings.reclaim_interval) == (20.0, 4.0)
        assert settings.heartbeat <= settings.lease / 3
        assert settings.lease + settings.reclaim_interval <= 30.0

    # at the defaults: the job is held on a 20 s lease, renewed while it runs
    held = f"sqlite:///{tmp_path / 'held.db'}"
    held_log = tmp_path / "held.log"
    held_queue = Queue.from_yaml(DEFAULT_LEASE_CONFIG, backend=held)
    held_id = held_queue.add("slow_first_run", {"n": 1, "log": str(held_log), "sleep": 120})
    # the recovery, lease 2 s (a look every 0.5 s): two workers, the one that takes the job is killed
    scaled = f"sqlite:///{tmp_path / 'scaled.db'}"
    log = tmp_path / "runs.log"
    queue = Queue.from_yaml(DEFAULT_LEASE_CONFIG, backend=scaled)
    job_id = queue.add("slow_first_run", {"n": 1, "log": str(log), "sleep": 120})
    holder = workers.start(held, config=DEFAULT_LEASE_CONFIG, name="holder")
    pair = [workers.start(scaled, "--lease", "2", config=DEFAULT_LEASE_CONFIG, name=f"w{i}") for i in range(2)]

    wait_until(lambda: executions(held_log) == [held_id], 30, what="the default worker runs the job")
    first = held_queue.get_job(held_id).lease_expires_at
    assert 18.0 <= lease_left(held_queue, held_id) <= 20.5
    renewed = wait_until(
        lambda: (j := held_queue.get_job(held_id)).lease_expires_at > first and j, 10, what="the lease renewed"
    )
    assert str(holder.pid) in (renewed.locked_by or "")

    wait_until(lambda: executions(log) == [job_id], 30, what="one of the two workers runs the job")
    victim, survivor = sorted(pair, key=lambda proc: str(proc.pid) not in (queue.get_job(job_id).locked_by or ""))
    wait_until(lambda: "worker ready" in workers.log_of(survivor), 30, what="the other worker started")
    wait_until(lambda: lease_left(queue, job_id) > 1.5, 10, what="a lease renewal")  # lease ends ~2 s after the kill
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    killed_at = time.monotonic()
    wait_until(lambda: len(executions(log)) == 2, 30, interval=0.02, what="the job runs again")
    recovered_in = time.monotonic() - killed_at
    wait_until(lambda: queue.get_job(job_id).status is JobStatus.COMPLETED, 10, what="job completed")
    assert queue.get_job(job_id).output == {"n": 1, "pid": survivor.pid}
    print(f"lease 2 s, a look every 0.5 s: recovered {recovered_in:.1f}s after SIGKILL")
    # lease + one look + a claim; the margin (the 6 s the defaults leave under 30 s, scaled by 2/20 -> 0.6 s,
    # raised to 1.5 s for process scheduling on a loaded machine) still fails a look that is missing or late
    assert recovered_in <= 2.0 + 0.5 + 1.5, f"with a 2 s lease recovery took {recovered_in:.1f}s (> 4 s)"
    queue.close()
    held_queue.close()


def test_drain_reclaims_the_job_of_a_killed_worker(backend: str, tmp_path: Path, workers: Workers) -> None:
    log = tmp_path / "runs.log"
    queue = Queue.from_yaml(APP_CONFIG, backend=backend)
    job_id = queue.add("slow_first_run", {"n": 1, "log": str(log), "sleep": 60})
    victim = workers.start(backend, "--lease", "1", name="victim")
    wait_until(lambda: executions(log) == [job_id], 30, what="the victim runs the job")
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    # past the lease: nobody is left to reclaim it but the drain below
    wait_until(lambda: lease_left(queue, job_id) < 0, 10, what="the lease ran out")

    drainer = workers.start(backend, "--drain", name="drainer")
    assert drainer.wait(timeout=60) == 0, workers.log_of(drainer)
    job = queue.get_job(job_id)
    assert job.status is JobStatus.COMPLETED and job.attempts == 2, job
    assert job.output == {"n": 1, "pid": drainer.pid}
    assert executions(log) == [job_id, job_id]
    queue.close()


def test_a_handler_ending_the_process_leaves_no_traceback_from_the_warm_child(tmp_path: Path, workers: Workers) -> None:
    log = tmp_path / "runs.log"
    backend = f"sqlite:///{tmp_path / 'queue.db'}"
    queue = Queue.from_yaml(APP_CONFIG, backend=backend)
    # the declaration has isolated job types: the worker keeps a child process started and waiting
    # the job is there first: the worker may end while its child is still starting or already waiting
    job_id = queue.add("exit_process", {"log": str(log)})
    worker = workers.start(backend, name="worker")
    assert worker.wait(timeout=30) == 3
    assert executions(log) == [job_id]
    time.sleep(1.5)  # the orphaned child notices its parent is gone
    output = workers.log_of(worker)
    for noise in ("Traceback", "EOFError", "BrokenPipeError", "ConnectionResetError"):
        assert noise not in output, output
    queue.close()
