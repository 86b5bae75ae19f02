"""Conformance: the storage contract's fencing, leases and reclaim, on every backend."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from dqflow import EventType, JobStatus
from dqflow.storage import Completion, Failure, Lease, NewJob, Release, Storage, open_storage


@pytest.fixture
def storage(backend: str) -> Iterator[Storage]:
    store = open_storage(backend)
    store.setup()
    yield store
    store.close()


def add(storage: Storage, n: int = 1, **options: object) -> list[int]:
    jobs = [NewJob("t", f'{{"n":{i}}}', **options) for i in range(n)]  # type: ignore[arg-type]
    return [result.job_id for result in storage.add_jobs(jobs)]


def test_claim_marks_jobs_processing_with_a_new_token(storage: Storage) -> None:
    ids = add(storage, 3)
    claimed = storage.claim_jobs("w1", None, 2, 5000)
    assert [job.id for job in claimed] == ids[:2]
    for job in claimed:
        assert job.status is JobStatus.PROCESSING
        assert job.attempts == 1 and job.lease_token > 0 and job.locked_by == "w1"
        assert job.lease_expires_at is not None
        assert job.lease_expires_at > datetime.now(UTC) + timedelta(seconds=3)
    assert [job.id for job in storage.claim_jobs("w2", None, 10, 5000)] == ids[2:]
    assert storage.claim_jobs("w3", None, 10, 5000) == []


def test_claim_respects_job_types_and_run_at(storage: Storage) -> None:
    storage.add_jobs(
        [
            NewJob("a", "{}"),
            NewJob("b", "{}"),
            NewJob("a", "{}", run_at=datetime.now(UTC) + timedelta(hours=1)),
        ]
    )
    claimed = storage.claim_jobs("w", ["a"], 10, 5000)
    assert [job.job_type for job in claimed] == ["a"]
    due = storage.next_due_in(["a"])
    assert due is not None and 3500 < due <= 3600
    assert storage.next_due_in(["b"]) == 0
    assert storage.next_due_in(["zzz"]) is None


def test_completion_is_fenced_by_the_lease_token(storage: Storage) -> None:
    job_id = add(storage)[0]
    job = storage.claim_jobs("w1", None, 1, 5000)[0]
    assert storage.settle_jobs([Completion(job_id, job.lease_token + 1, '{"x":1}')]) == [False]
    assert storage.set_output(job_id, job.lease_token + 1, '{"x":2}') is False
    assert storage.set_progress(job_id, job.lease_token + 1, 50) is False
    assert storage.settle_jobs([Failure(job_id, job.lease_token + 1, "e", "handler_error")]) == [False]
    assert storage.set_progress(job_id, job.lease_token, 40) is True
    assert storage.set_output(job_id, job.lease_token, '{"x":3}') is True
    assert storage.settle_jobs([Completion(job_id, job.lease_token, None)]) == [True]
    record = storage.get_job(job_id)
    assert record is not None
    assert record.status is JobStatus.COMPLETED and record.output == {"x": 3} and record.progress == 40
    # a second completion of the same attempt is rejected: completed exactly once
    assert storage.settle_jobs([Completion(job_id, job.lease_token, '{"x":4}')]) == [False]
    assert storage.get_job(job_id).output == {"x": 3}  # type: ignore[union-attr]


def test_batch_results_are_per_item(storage: Storage) -> None:
    ids = add(storage, 3)
    jobs = storage.claim_jobs("w", None, 3, 5000)
    result = storage.settle_jobs(
        [
            Completion(jobs[0].id, jobs[0].lease_token, '{"a":1}'),
            Completion(jobs[1].id, 999, None),
            Completion(jobs[2].id, jobs[2].lease_token, None),
        ]
    )
    assert result == [True, False, True]
    assert storage.get_job(ids[1]).status is JobStatus.PROCESSING  # type: ignore[union-attr]


def test_cancel_of_a_running_job_rejects_the_workers_writes(storage: Storage) -> None:
    job_id = add(storage)[0]
    job = storage.claim_jobs("w1", None, 1, 5000)[0]
    storage.cancel_job(job_id)
    assert storage.renew_leases("w1", [Lease(job_id, job.lease_token)], 5000) == set()
    assert storage.set_output(job_id, job.lease_token, "1") is False
    assert storage.settle_jobs([Completion(job_id, job.lease_token, "1")]) == [False]
    record = storage.get_job(job_id)
    assert record is not None and record.status is JobStatus.CANCELLED and record.output is None


def test_fail_with_retry_at_makes_the_job_pending_later(storage: Storage) -> None:
    job_id = add(storage, max_attempts=2)[0]
    job = storage.claim_jobs("w", None, 1, 5000)[0]
    retry_at = datetime.now(UTC) + timedelta(seconds=30)
    assert storage.settle_jobs([Failure(job_id, job.lease_token, "RuntimeError: x", "handler_error", retry_at)]) == [
        True
    ]
    record = storage.get_job(job_id)
    assert record is not None
    assert record.status is JobStatus.PENDING and record.failure_reason == "handler_error"
    assert abs((record.run_at - retry_at).total_seconds()) < 0.01
    assert record.error_history[0]["error"] == "RuntimeError: x" and record.error_history[0]["attempt"] == 1
    assert storage.claim_jobs("w", None, 1, 5000) == []
    events = storage.get_events(job_id)
    assert events[-1].event_type is EventType.FAILED and events[-1].data is not None
    assert events[-1].data["will_retry"] is True
    # the stale token of the failed attempt can no longer complete it
    assert storage.settle_jobs([Completion(job_id, job.lease_token, None)]) == [False]


def test_renew_extends_only_leases_still_held(storage: Storage) -> None:
    ids = add(storage, 2)
    jobs = storage.claim_jobs("w", None, 2, 1000)
    held = storage.renew_leases("w", [Lease(j.id, j.lease_token) for j in jobs] + [Lease(ids[0], 12345)], 60_000)
    assert held == set(ids)
    record = storage.get_job(ids[0])
    assert record is not None and record.lease_expires_at is not None
    assert record.lease_expires_at > datetime.now(UTC) + timedelta(seconds=50)


def test_expired_lease_is_reclaimed_and_the_old_token_fenced_out(storage: Storage) -> None:
    job_id = add(storage, max_attempts=3)[0]
    stale = storage.claim_jobs("dead-worker", None, 1, 100)[0]
    assert storage.reclaim_expired() == []
    time.sleep(0.25)
    reclaimed = storage.reclaim_expired()
    assert [(r.job_id, r.status) for r in reclaimed] == [(job_id, JobStatus.PENDING)]
    fresh = storage.claim_jobs("w2", None, 1, 5000)[0]
    assert fresh.id == job_id and fresh.attempts == 2 and fresh.lease_token != stale.lease_token
    assert storage.settle_jobs([Completion(job_id, stale.lease_token, '{"stale":true}')]) == [False]
    assert storage.set_output(job_id, stale.lease_token, '{"stale":true}') is False
    assert storage.settle_jobs([Completion(job_id, fresh.lease_token, '{"fresh":true}')]) == [True]
    record = storage.get_job(job_id)
    assert record is not None and record.output == {"fresh": True}
    assert EventType.RECLAIMED in [e.event_type for e in storage.get_events(job_id)]


def test_reclaim_fails_a_job_whose_attempts_are_used_up(storage: Storage) -> None:
    job_id = add(storage, max_attempts=1)[0]
    storage.claim_jobs("dead-worker", None, 1, 100)
    time.sleep(0.25)
    reclaimed = storage.reclaim_expired()
    assert [(r.job_id, r.status) for r in reclaimed] == [(job_id, JobStatus.FAILED)]
    record = storage.get_job(job_id)
    assert record is not None and record.status is JobStatus.FAILED
    assert record.failure_reason == "lease_expired"
    assert "1 attempts" in record.error_history[-1]["error"] or "attempts" in record.error_history[-1]["error"]


def test_release_hands_jobs_back_and_refunds_unstarted_attempts(storage: Storage) -> None:
    a, b = add(storage, 2)
    jobs = {j.id: j for j in storage.claim_jobs("w", None, 2, 5000)}
    assert storage.settle_jobs(
        [Release(a, jobs[a].lease_token, started=False), Release(b, jobs[b].lease_token, started=True)]
    ) == [True, True]
    ra, rb = storage.get_job(a), storage.get_job(b)
    assert ra is not None and rb is not None
    assert (ra.status, ra.attempts) == (JobStatus.PENDING, 0)
    assert (rb.status, rb.attempts) == (JobStatus.PENDING, 1)
    assert storage.settle_jobs([Completion(a, jobs[a].lease_token, None)]) == [False]
    assert len(storage.claim_jobs("w2", None, 5, 5000)) == 2


def test_wait_for_jobs_returns_soon_after_an_add(storage: Storage) -> None:
    import threading

    woke: list[float] = []

    def waiter() -> None:
        storage.wait_for_jobs(5.0, None)
        woke.append(time.monotonic())

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.3)
    added = time.monotonic()
    add(storage)
    thread.join(6)
    assert woke and woke[0] - added < 0.5
