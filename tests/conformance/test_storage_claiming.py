"""Contract: ``claim_jobs`` and ``next_due_in`` on every backend."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from helpers import add_job, add_jobs, claim_one

from dqflow.record import EventType, JobStatus
from dqflow.storage import Completion, JobFilter, Storage, open_storage

LEASE_MS = 30_000


def test_claim_order_is_priority_then_run_at_then_id(storage: Storage) -> None:
    now = datetime.now(UTC)
    low = add_job(storage, priority=1)
    high_late = add_job(storage, priority=5, run_at=now - timedelta(seconds=1))
    high_early = add_job(storage, priority=5, run_at=now - timedelta(seconds=2))
    high_same = add_job(storage, priority=5, run_at=now - timedelta(seconds=1))
    negative = add_job(storage, priority=-3)
    claimed = storage.claim_jobs("w", None, 10, LEASE_MS)
    assert [j.id for j in claimed] == [high_early, high_late, high_same, low, negative]


def test_claim_takes_only_the_given_types_merged_in_priority_order(storage: Storage) -> None:
    a1 = add_job(storage, "a")
    b1 = add_job(storage, "b", priority=2)
    a2 = add_job(storage, "a", priority=3)
    c1 = add_job(storage, "c", priority=9)
    assert [j.id for j in storage.claim_jobs("w", ["a", "b"], 2, LEASE_MS)] == [a2, b1]
    assert [j.id for j in storage.claim_jobs("w", ["b", "a"], 5, LEASE_MS)] == [a1]
    assert storage.claim_jobs("w", ["nothing"], 5, LEASE_MS) == []
    assert [j.id for j in storage.claim_jobs("w", None, 5, LEASE_MS)] == [c1]
    assert storage.claim_jobs("w", None, 5, LEASE_MS) == []


def test_claim_sets_the_lease_and_records_a_processing_event(storage: Storage) -> None:
    job_id = add_job(storage)
    before = datetime.now(UTC)
    [job] = storage.claim_jobs("w2", None, 1, 5_000)
    assert job == storage.get_job(job_id)  # the returned record is the stored one
    assert job.id == job_id and job.status is JobStatus.PROCESSING
    assert job.attempts == 1 and job.lease_token > 0 and job.locked_by == "w2"
    assert job.locked_at is not None and job.started_at is not None and job.lease_expires_at is not None
    assert before - timedelta(seconds=1) <= job.locked_at <= datetime.now(UTC)
    assert job.started_at == job.locked_at
    lease = (job.lease_expires_at - job.locked_at).total_seconds()
    assert lease == pytest.approx(5.0, abs=0.01)
    [event] = storage.get_events(job_id)[1:]
    assert event.event_type is EventType.PROCESSING
    assert event.data == {"worker_id": "w2", "attempt": 1}


def test_claim_respects_the_limit_and_hands_each_job_out_once(storage: Storage) -> None:
    ids = add_jobs(storage, 25)
    assert storage.claim_jobs("w1", ["t"], 0, LEASE_MS) == []
    first = storage.claim_jobs("w1", ["t"], 10, LEASE_MS)
    second = storage.claim_jobs("w2", ["t"], 100, LEASE_MS)
    assert [j.id for j in first] == ids[:10] and [j.id for j in second] == ids[10:]
    assert storage.claim_jobs("w3", None, 10, LEASE_MS) == []


def test_a_delayed_job_is_claimable_once_due(storage: Storage) -> None:
    job_id = add_job(storage, run_at=datetime.now(UTC) + timedelta(milliseconds=300))
    assert storage.claim_jobs("w", None, 5, LEASE_MS) == []
    due = storage.next_due_in(None)
    assert due is not None and 0.1 < due <= 0.3
    time.sleep(0.32)
    assert storage.next_due_in(["t"]) == 0
    assert [j.id for j in storage.claim_jobs("w", ["t"], 5, LEASE_MS)] == [job_id]
    assert storage.next_due_in(None) is None  # nothing pending any more


def test_next_due_in(storage: Storage) -> None:
    assert storage.next_due_in(None) is None
    add_job(storage, "later", run_at=datetime.now(UTC) + timedelta(hours=1))
    due = storage.next_due_in(None)
    assert due is not None and 3590 < due <= 3600
    assert storage.next_due_in(["other"]) is None
    add_job(storage, "now")
    assert storage.next_due_in(None) == 0
    assert storage.next_due_in(["now"]) == 0
    assert storage.next_due_in(["later"]) == pytest.approx(due, abs=1)
    assert storage.next_due_in(["later", "now"]) == 0


def test_claims_from_many_threads_never_overlap(storage: Storage, backend: str) -> None:
    """Four threads share ``storage`` (it must be thread-safe) and four own a storage each."""
    own = [open_storage(backend) for _ in range(4)]
    for store in own:
        store.setup()
    ids = add_jobs(storage, 400)
    claimed: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def drain(store: Storage, worker: str) -> None:
        try:
            while batch := store.claim_jobs(worker, None, 7, LEASE_MS):
                applied = store.settle_jobs([Completion(j.id, j.lease_token, "null") for j in batch])
                assert all(applied), applied
                with lock:
                    claimed.extend(j.id for j in batch)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    stores = [storage] * 4 + own
    threads = [threading.Thread(target=drain, args=(s, f"w{i}")) for i, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in own:
        store.close()
    assert errors == []
    assert sorted(claimed) == ids
    done = storage.list_jobs(JobFilter(statuses=(JobStatus.COMPLETED,), limit=1000))
    assert len(done.jobs) == 400


def test_claim_after_reclaim_counts_the_attempt_and_changes_the_token(storage: Storage) -> None:
    job_id = add_job(storage)
    old = storage.claim_jobs("w-old", None, 1, 1)[0]
    time.sleep(0.02)
    storage.reclaim_expired()
    new = claim_one(storage)
    assert new.id == job_id and new.attempts == 2 and new.lease_token > old.lease_token
    assert new.locked_by == "w1"
