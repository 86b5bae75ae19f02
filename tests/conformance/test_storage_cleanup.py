"""Contract: ``delete_finished_jobs`` and ``count_finished_jobs`` on every backend."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from helpers import add_jobs, complete, fail

from dqflow.record import JobStatus
from dqflow.storage import Completion, JobFilter, NewJob, Storage

DONE = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


def _finish(storage: Storage, n: int, how: str, job_type: str = "t") -> list[int]:
    ids = add_jobs(storage, n, job_type)
    if how == "cancelled":
        for job_id in ids:
            storage.cancel_job(job_id)
        return ids
    claimed = storage.claim_jobs("w", [job_type], n, 30_000)
    assert sorted(job.id for job in claimed) == sorted(ids)
    for job in claimed:
        assert complete(storage, job) if how == "completed" else fail(storage, job)
    return ids


def _soon() -> datetime:
    return datetime.now(UTC) + timedelta(seconds=5)


def test_deletes_in_bounded_batches_with_events_and_nothing_live(storage: Storage) -> None:
    completed = _finish(storage, 25, "completed")
    failed = _finish(storage, 5, "failed")
    cancelled = _finish(storage, 5, "cancelled")
    pending = add_jobs(storage, 5, "t")
    processing = [job.id for job in storage.claim_jobs("w", ["t"], 3, 30_000)]
    waiting = [r.job_id for r in storage.add_jobs([NewJob("t", "{}", depends_on=(pending[-1],))] * 2)]
    assert storage.count_finished_jobs([JobStatus.COMPLETED], _soon()) == 25
    assert storage.count_finished_jobs(DONE, _soon()) == 35
    batches = []
    while True:
        deleted = storage.delete_finished_jobs([JobStatus.COMPLETED], _soon(), limit=10)
        batches.append(deleted)
        if deleted == 0:
            break
    assert batches == [10, 10, 5, 0]
    for job_id in completed:
        assert storage.get_job(job_id) is None and storage.get_events(job_id) == []
    assert storage.delete_finished_jobs(DONE, _soon(), limit=100) == 10
    for job_id in failed + cancelled:
        assert storage.get_job(job_id) is None and storage.get_events(job_id) == []
    live = pending + waiting
    assert set(processing) <= set(pending) and len(processing) == 3
    for job_id in live:
        job = storage.get_job(job_id)
        assert job is not None and job.status in (JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.WAITING)
        assert storage.get_events(job_id) != []
    assert storage.count_finished_jobs(DONE, _soon()) == 0
    listed = storage.list_jobs(JobFilter(limit=1000)).jobs
    assert sorted(job.id for job in listed) == sorted(live)
    assert sum(storage.count_jobs().values()) == 7


def test_only_jobs_finished_before_the_cutoff_of_the_type_given(storage: Storage) -> None:
    old = _finish(storage, 3, "completed", "a")
    old_b = _finish(storage, 2, "completed", "b")
    time.sleep(0.05)
    cutoff = datetime.now(UTC)
    time.sleep(0.05)
    new = _finish(storage, 4, "completed", "a")
    assert storage.count_finished_jobs([JobStatus.COMPLETED], cutoff) == 5
    assert storage.count_finished_jobs([JobStatus.COMPLETED], cutoff, job_type="a") == 3
    assert storage.count_finished_jobs([JobStatus.FAILED], cutoff) == 0
    assert storage.delete_finished_jobs([JobStatus.COMPLETED], cutoff, job_type="a") == 3
    assert all(storage.get_job(job_id) is None for job_id in old)
    assert all(storage.get_job(job_id) is not None for job_id in old_b + new)
    assert storage.delete_finished_jobs([JobStatus.COMPLETED], cutoff) == 2
    assert all(storage.get_job(job_id) is not None for job_id in new)


def test_a_job_a_waiting_dependent_needs_is_kept(storage: Storage) -> None:
    [dependency] = add_jobs(storage, 1, "t")
    [other] = add_jobs(storage, 1, "other")
    [dependent] = [r.job_id for r in storage.add_jobs([NewJob("after", "{}", depends_on=(dependency, other))])]
    [claimed] = storage.claim_jobs("w", ["t"], 1, 30_000)
    assert complete(storage, claimed)
    assert storage.get_job(dependent).status is JobStatus.WAITING  # type: ignore[union-attr]
    assert storage.count_finished_jobs(DONE, _soon()) == 0
    assert storage.delete_finished_jobs(DONE, _soon()) == 0
    assert storage.get_job(dependency) is not None
    [claimed] = storage.claim_jobs("w", ["other"], 1, 30_000)
    assert storage.settle_jobs([Completion(claimed.id, claimed.lease_token)]) == [True]
    assert storage.get_job(dependent).status is JobStatus.PENDING  # type: ignore[union-attr]
    assert storage.delete_finished_jobs(DONE, _soon()) == 2
    assert storage.get_job(dependency) is None and storage.get_job(other) is None
    [claimed] = storage.claim_jobs("w", ["after"], 1, 30_000)
    assert claimed.id == dependent and complete(storage, claimed)


def test_a_retried_job_is_live_again_and_a_deleted_key_is_free(storage: Storage) -> None:
    [job_id] = _finish(storage, 1, "failed")
    storage.retry_job(job_id)
    assert storage.delete_finished_jobs(DONE, _soon()) == 0
    assert storage.get_job(job_id).status is JobStatus.PENDING  # type: ignore[union-attr]
    [keyed] = [r.job_id for r in storage.add_jobs([NewJob("k", "{}", idempotency_key="once")])]
    storage.cancel_job(keyed)
    assert storage.delete_finished_jobs([JobStatus.CANCELLED], _soon()) == 1
    [again] = storage.add_jobs([NewJob("k", "{}", idempotency_key="once")])
    assert again.created and again.job_id != keyed


def test_live_statuses_are_refused(storage: Storage) -> None:
    with pytest.raises(ValueError, match="not pending ones"):
        storage.delete_finished_jobs([JobStatus.PENDING], _soon())
    with pytest.raises(ValueError, match="not processing ones"):
        storage.count_finished_jobs([JobStatus.COMPLETED, JobStatus.PROCESSING], _soon())


def test_old_events_go_once_each_and_the_jobs_stay(storage: Storage) -> None:
    first = _finish(storage, 5, "completed")
    [live] = add_jobs(storage, 1, "live")
    time.sleep(0.02)
    cutoff = datetime.now(UTC)
    time.sleep(0.02)
    later = _finish(storage, 2, "cancelled")
    assert storage.delete_old_events(cutoff, limit=3) == 3
    assert storage.delete_old_events(cutoff, limit=3) == 2
    assert storage.delete_old_events(cutoff, limit=3) == 0  # the kept position: not visited again
    for job_id in first:
        job = storage.get_job(job_id)
        assert job is not None and job.status is JobStatus.COMPLETED and storage.get_events(job_id) == []
    assert all(storage.get_events(job_id) != [] for job_id in [live, *later])
    assert storage.delete_old_events(_soon()) == 2
    assert all(storage.get_events(job_id) == [] for job_id in later) and storage.get_events(live) != []
    # a job retried and finished again gets a new history, deleted in its turn
    storage.retry_job(later[0])
    storage.cancel_job(later[0])
    assert [e.event_type.value for e in storage.get_events(later[0])] == ["retried", "cancelled"]
    assert storage.delete_old_events(_soon()) == 1
    assert storage.get_events(later[0]) == []
