"""Conformance: an idle worker's wait_and_claim gets work added while it waits, fenced as any claim."""

from __future__ import annotations

import threading
import time
from typing import Any

from dqflow import JobStatus
from dqflow.record import JobRecord
from dqflow.storage import Completion, NewJob, Storage


def wait_in_thread(storage: Storage, job_types: list[str] | None, timeout: float) -> tuple[threading.Thread, list[Any]]:
    got: list[Any] = []

    def run() -> None:  # as a worker's fetch loop: wait again until something comes or time is up
        started = time.monotonic()
        jobs: list[JobRecord] = []
        while not jobs and time.monotonic() - started < timeout:
            jobs = storage.wait_and_claim("w1", job_types, 4, 60_000, timeout - (time.monotonic() - started))
        got.append((jobs, time.monotonic() - started))

    thread = threading.Thread(target=run)
    thread.start()
    return thread, got


def test_a_job_added_while_a_worker_waits_is_claimed_for_it(storage: Storage) -> None:
    thread, got = wait_in_thread(storage, None, 5.0)
    time.sleep(0.3)  # the worker is idle now
    (added,) = storage.add_jobs([NewJob("t", '{"n": 1}', meta_json='{"m": 1}')])
    thread.join(6)
    (jobs, elapsed) = got[0]
    assert elapsed < 2.0
    assert [job.id for job in jobs] == [added.job_id]
    job: JobRecord = jobs[0]
    assert (job.status, job.attempts, job.locked_by) == (JobStatus.PROCESSING, 1, "w1")
    assert job.payload == {"n": 1} and job.meta == {"m": 1} and job.output is None
    assert job.lease_expires_at is not None
    stored = storage.get_job(added.job_id)
    assert stored is not None and stored.lease_token == job.lease_token and stored.status is JobStatus.PROCESSING
    assert [e.event_type.value for e in storage.get_events(added.job_id)] == ["added", "processing"]
    assert storage.settle_jobs([Completion(job.id, job.lease_token, "1")]) == [True]
    assert storage.claim_jobs("w2", None, 10, 60_000) == []


def test_a_waiting_worker_gets_only_its_job_types(storage: Storage) -> None:
    thread, got = wait_in_thread(storage, ["a"], 0.8)
    time.sleep(0.3)
    (other,) = storage.add_jobs([NewJob("b", "{}")])
    thread.join(6)
    assert got[0][0] == []
    assert storage.get_job(other.job_id).status is JobStatus.PENDING  # type: ignore[union-attr]
    assert [job.id for job in storage.claim_jobs("w2", ["b"], 10, 60_000)] == [other.job_id]


def test_a_wait_with_nothing_added_returns_nothing_after_its_timeout(storage: Storage) -> None:
    started = time.monotonic()
    assert storage.wait_and_claim("w1", None, 4, 60_000, 0.3) == []
    assert time.monotonic() - started < 3.0
    (added,) = storage.add_jobs([NewJob("t", "{}")])
    # the worker no longer waits: the job stays for whoever claims next
    assert storage.get_job(added.job_id).status is JobStatus.PENDING  # type: ignore[union-attr]
    assert [job.id for job in storage.claim_jobs("w2", None, 10, 60_000)] == [added.job_id]
