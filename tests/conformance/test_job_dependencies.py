"""Conformance: job dependencies (``depends_on``) on every backend.

A dependent waits (status ``waiting``, never claimed) until all its dependencies
complete; the last completion makes it pending in the same atomic write. A
dependency that fails for good or is cancelled cancels its waiting dependents,
and theirs, with reason ``dependency_failed``.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from helpers import make_queue, running_worker, wait_for_status

from dqflow.enums import EventType, FailureReason, JobStatus
from dqflow.errors import DependencyError
from dqflow.storage import Storage
from dqflow.storage.base import Completion, Failure, NewJob


def _add(storage: Storage, *depends_on: int, job_type: str = "step") -> int:
    return storage.add_jobs([NewJob(job_type, "{}", depends_on=tuple(depends_on))])[0].job_id


def _status(storage: Storage, job_id: int) -> JobStatus:
    record = storage.get_job(job_id)
    assert record is not None
    return record.status


def _claim(storage: Storage, job_type: str = "step") -> dict[int, int]:
    return {job.id: job.lease_token for job in storage.claim_jobs("w", [job_type], 100, 30_000)}


def _complete(storage: Storage, tokens: dict[int, int], *job_ids: int) -> None:
    assert storage.settle_jobs([Completion(job_id, tokens[job_id], "{}") for job_id in job_ids]) == [True] * len(
        job_ids
    )


def test_a_dependent_waits_until_every_dependency_completes(storage: Storage) -> None:
    first, second = _add(storage), _add(storage)
    dependent = _add(storage, first, second, job_type="after")
    assert _status(storage, dependent) is JobStatus.WAITING
    assert _claim(storage, "after") == {}
    tokens = _claim(storage)
    _complete(storage, tokens, first)
    assert _status(storage, dependent) is JobStatus.WAITING
    assert _claim(storage, "after") == {}
    _complete(storage, tokens, second)
    assert _status(storage, dependent) is JobStatus.PENDING
    assert list(_claim(storage, "after")) == [dependent]
    kinds = [event.event_type for event in storage.get_events(dependent)]
    assert kinds == [EventType.ADDED, EventType.READY, EventType.PROCESSING]


def test_depending_on_completed_jobs_only_is_pending_at_once(storage: Storage) -> None:
    first = _add(storage)
    _complete(storage, _claim(storage), first)
    dependent = _add(storage, first, first)
    assert _status(storage, dependent) is JobStatus.PENDING


def test_a_batch_may_depend_on_jobs_added_earlier_and_completions_in_one_batch_release_once(storage: Storage) -> None:
    first, second = (result.job_id for result in storage.add_jobs([NewJob("step", "{}"), NewJob("step", "{}")]))
    dependent = _add(storage, first, second, job_type="after")
    _complete(storage, _claim(storage), first, second)
    assert _status(storage, dependent) is JobStatus.PENDING
    assert [e.event_type for e in storage.get_events(dependent)].count(EventType.READY) == 1


def test_several_dependents_in_one_batch_each_wait_for_their_own_dependencies(storage: Storage) -> None:
    first, second = _add(storage), _add(storage)
    batch = [NewJob("after", "{}", depends_on=(first,)), NewJob("after", "{}", depends_on=(first, second))] * 2
    dependents = [result.job_id for result in storage.add_jobs(batch)]
    assert [_status(storage, job_id) for job_id in dependents] == [JobStatus.WAITING] * 4
    tokens = _claim(storage)
    _complete(storage, tokens, first)
    assert [_status(storage, job_id) for job_id in dependents] == [JobStatus.PENDING, JobStatus.WAITING] * 2
    _complete(storage, tokens, second)
    assert [_status(storage, job_id) for job_id in dependents] == [JobStatus.PENDING] * 4


@pytest.mark.parametrize("finish", ["unknown", "failed", "cancelled"])
def test_a_dependency_that_cannot_complete_is_refused_and_nothing_is_stored(storage: Storage, finish: str) -> None:
    good = _add(storage)
    bad = 999_999
    if finish != "unknown":
        bad = _add(storage)
        if finish == "cancelled":
            storage.cancel_job(bad)
        else:
            tokens = _claim(storage)
            storage.settle_jobs([Failure(bad, tokens[bad], "boom", "handler_error")])
    before = storage.count_jobs()
    with pytest.raises(DependencyError, match=f"job 1 of the batch: depends_on job {bad}, which"):
        storage.add_jobs([NewJob("other", "{}"), NewJob("other", "{}", depends_on=(good, bad))])
    assert storage.count_jobs() == before


def test_a_dependency_failing_for_good_cancels_its_dependents_in_cascade(storage: Storage) -> None:
    root, sibling = _add(storage), _add(storage)
    child = _add(storage, root, sibling, job_type="after")
    grandchild = _add(storage, child, job_type="after")
    independent = _add(storage, sibling, job_type="after")
    tokens = _claim(storage)
    retry_at = datetime.now(UTC) + timedelta(hours=1)
    assert storage.settle_jobs([Failure(root, tokens[root], "boom", "handler_error", retry_at=retry_at)]) == [True]
    assert _status(storage, child) is JobStatus.WAITING  # a failure that will be retried is not the end
    storage.edit_job(root, {"run_at": None})
    tokens = _claim(storage)
    assert storage.settle_jobs([Failure(root, tokens[root], "boom", "handler_error")]) == [True]
    for job_id in (child, grandchild):
        record = storage.get_job(job_id)
        assert record is not None
        assert record.status is JobStatus.CANCELLED and record.failure_reason == FailureReason.DEPENDENCY_FAILED
    event = storage.get_events(grandchild)[-1]
    assert event.event_type is EventType.CANCELLED and event.data is not None
    assert event.data["reason"] == "dependency_failed" and event.data["dependency_id"] == child
    assert _status(storage, independent) is JobStatus.WAITING


def test_cancelling_a_dependency_cancels_its_dependents(storage: Storage) -> None:
    root = _add(storage)
    child = _add(storage, root, job_type="after")
    grandchild = _add(storage, child, job_type="after")
    storage.cancel_job(root)
    assert _status(storage, child) is _status(storage, grandchild) is JobStatus.CANCELLED


def test_a_dependency_whose_lease_expires_on_its_last_attempt_cancels_its_dependents(storage: Storage) -> None:
    root = storage.add_jobs([NewJob("step", "{}", max_attempts=1)])[0].job_id
    child = _add(storage, root, job_type="after")
    assert storage.claim_jobs("w", ["step"], 1, 1)
    deadline = datetime.now(UTC) + timedelta(seconds=5)
    while not storage.reclaim_expired():
        assert datetime.now(UTC) < deadline
    assert _status(storage, root) is JobStatus.FAILED
    assert _status(storage, child) is JobStatus.CANCELLED


def test_two_last_dependencies_completing_at_once_release_the_dependent_exactly_once(storage: Storage) -> None:
    for _ in range(5):
        first, second = _add(storage), _add(storage)
        dependent = _add(storage, first, second, job_type="after")
        tokens = _claim(storage)
        barrier = threading.Barrier(2)

        def complete(job_id: int, tokens: dict[int, int] = tokens, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            storage.settle_jobs([Completion(job_id, tokens[job_id], "{}")])

        threads = [threading.Thread(target=complete, args=(job_id,)) for job_id in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert _status(storage, dependent) is JobStatus.PENDING
        assert [e.event_type for e in storage.get_events(dependent)].count(EventType.READY) == 1
        assert list(_claim(storage, "after")) == [dependent]


def test_queue_add_depends_on_runs_jobs_in_dependency_order_with_a_worker(backend: str) -> None:
    order: list[str] = []

    def record(payload: Any, ctx: Any) -> None:
        order.append(payload["name"])

    def explode(payload: Any, ctx: Any) -> None:
        raise RuntimeError("boom")

    queue = make_queue(backend, {"step": {"handler": record}, "bad": {"handler": explode, "max_attempts": 1}})
    try:
        extract = queue.add("step", {"name": "extract"})
        transform = queue.add("step", {"name": "transform"}, depends_on=[extract])
        load = queue.add_many([{"job_type": "step", "payload": {"name": "load"}, "depends_on": [transform, extract]}])
        broken = queue.add("bad", {})
        never = queue.add("step", {"name": "never"}, depends_on=[broken, extract])
        with running_worker(queue, concurrency=4):
            wait_for_status(queue, load[0], "completed")
            wait_for_status(queue, never, "cancelled")
        assert order == ["extract", "transform", "load"]
        cancelled = queue.get_job(never)
        assert cancelled is not None and cancelled.failure_reason == FailureReason.DEPENDENCY_FAILED
    finally:
        queue.close()


def test_queue_add_refuses_bad_depends_on_and_stores_nothing(backend: str) -> None:
    queue = make_queue(backend, {"step": {"handler": lambda payload: None}})
    try:
        with pytest.raises(DependencyError, match="depends_on job 12345, which does not exist"):
            queue.add("step", {}, depends_on=[12345])
        with pytest.raises(ValueError, match="positive integers"):
            queue.add("step", {}, depends_on=[0])
        with pytest.raises(TypeError, match="list of job ids"):
            queue.add("step", {}, depends_on=7)  # type: ignore[arg-type]
        assert queue.storage.count_jobs() == {}
    finally:
        queue.close()


def test_a_retried_dependent_waits_again_for_its_unfinished_dependencies(storage: Storage) -> None:
    root, other = _add(storage), _add(storage)
    child = _add(storage, root, other, job_type="after")
    tokens = _claim(storage)
    assert storage.settle_jobs([Failure(root, tokens[root], "boom", "handler_error")]) == [True]
    assert _status(storage, child) is JobStatus.CANCELLED
    with pytest.raises(DependencyError, match=f"job {child} depends on job {root}, which is failed.*retry job {root}"):
        storage.retry_job(child)
    assert _status(storage, child) is JobStatus.CANCELLED
    _complete(storage, tokens, other)
    storage.retry_job(root)
    assert storage.retry_job(child).status is JobStatus.WAITING
    assert _claim(storage, "after") == {}
    tokens = _claim(storage)
    _complete(storage, tokens, root)
    assert _status(storage, child) is JobStatus.PENDING
    assert list(_claim(storage, "after")) == [child]
