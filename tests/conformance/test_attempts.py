"""Conformance: each attempt's output, progress and error stay with that attempt, on every backend."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from helpers import make_queue, running_worker, wait_for_status

from dqflow import JobContext, JobStatus
from dqflow.record import JobRecord
from dqflow.storage import FAILURE_TEXT_LIMIT, Completion, Failure, NewJob, Storage

ENTRY_KEYS = {"attempt", "error", "reason", "at", "traceback", "output", "progress"}


def claim_one(storage: Storage) -> JobRecord:
    (job,) = storage.claim_jobs("w", None, 1, 60_000)
    return job


def failed_attempt_with_output(storage: Storage, *, retry: bool, traceback: str | None = "Traceback: x") -> int:
    """Add a job, claim it, store output 1.5e16 and progress 40, then fail that attempt."""
    (added,) = storage.add_jobs([NewJob("t", "{}", max_attempts=3)])
    job = claim_one(storage)
    assert storage.set_output(job.id, job.lease_token, '{"partial": 1.5e16}')
    assert storage.set_progress(job.id, job.lease_token, 40)
    retry_at = datetime.now(UTC) - timedelta(seconds=1) if retry else None
    failure = Failure(job.id, job.lease_token, "ValueError: boom", "handler_error", retry_at, traceback)
    assert storage.settle_jobs([failure]) == [True]
    return added.job_id


def test_a_new_attempt_starts_without_the_last_attempts_output_and_progress(storage: Storage) -> None:
    job_id = failed_attempt_with_output(storage, retry=True)
    again = claim_one(storage)
    assert again.id == job_id and again.attempts == 2
    assert (again.output, again.progress) == (None, None)
    record = storage.get_job(job_id)
    assert record is not None and (record.output, record.progress) == (None, None)


def test_a_failure_keeps_the_attempts_error_traceback_output_and_progress_in_its_entry(storage: Storage) -> None:
    job_id = failed_attempt_with_output(storage, retry=True)
    record = storage.get_job(job_id)
    assert record is not None
    (entry,) = record.error_history
    assert set(entry) == ENTRY_KEYS
    assert entry["attempt"] == 1 and entry["error"] == "ValueError: boom" and entry["reason"] == "handler_error"
    assert entry["traceback"] == "Traceback: x"
    assert entry["output"] == {"partial": 1.5e16} and entry["progress"] == 40
    assert abs((datetime.fromisoformat(entry["at"]) - datetime.now(UTC)).total_seconds()) < 60


def test_a_failure_without_traceback_or_output_records_nulls(storage: Storage) -> None:
    storage.add_jobs([NewJob("t", "{}", max_attempts=1)])
    job = claim_one(storage)
    assert storage.settle_jobs([Failure(job.id, job.lease_token, "", "timeout")]) == [True]
    (entry,) = storage.get_job(job.id).error_history  # type: ignore[union-attr]
    assert set(entry) == ENTRY_KEYS
    assert (entry["error"], entry["traceback"], entry["output"], entry["progress"]) == ("", None, None, None)


def test_an_empty_traceback_is_kept_as_text(storage: Storage) -> None:
    job_id = failed_attempt_with_output(storage, retry=False, traceback="")
    (entry,) = storage.get_job(job_id).error_history  # type: ignore[union-attr]
    assert entry["traceback"] == ""


def test_a_failure_with_retry_clears_output_and_progress_on_the_job(storage: Storage) -> None:
    job_id = failed_attempt_with_output(storage, retry=True)
    record = storage.get_job(job_id)
    assert record is not None and record.status is JobStatus.PENDING
    assert (record.output, record.progress) == (None, None)


def test_a_failure_for_good_keeps_the_last_attempts_output_and_progress(storage: Storage) -> None:
    job_id = failed_attempt_with_output(storage, retry=False)
    record = storage.get_job(job_id)
    assert record is not None and record.status is JobStatus.FAILED
    assert (record.output, record.progress) == ({"partial": 1.5e16}, 40)


def test_a_completed_job_has_no_failure_reason(storage: Storage) -> None:
    job_id = failed_attempt_with_output(storage, retry=True)
    job = claim_one(storage)
    assert storage.settle_jobs([Completion(job.id, job.lease_token, '{"done": true}')]) == [True]
    record = storage.get_job(job_id)
    assert record is not None and record.status is JobStatus.COMPLETED
    assert record.failure_reason is None and record.output == {"done": True} and record.progress is None
    assert len(record.error_history) == 1  # the failed attempt's entry stays


def test_storage_cuts_errors_and_tracebacks_over_its_hard_cap(storage: Storage) -> None:
    storage.add_jobs([NewJob("t", "{}", max_attempts=1)])
    job = claim_one(storage)
    huge = "x" * (3 * FAILURE_TEXT_LIMIT)
    assert storage.settle_jobs([Failure(job.id, job.lease_token, huge, "handler_error", None, huge)]) == [True]
    record = storage.get_job(job.id)
    assert record is not None
    (entry,) = record.error_history
    for text in (entry["error"], entry["traceback"]):
        assert len(text) <= FAILURE_TEXT_LIMIT
        assert text.startswith("x" * 1000) and text.endswith("more characters cut by dqflow storage]")
    events = storage.get_events(job.id)
    assert events[-1].data is not None and len(events[-1].data["error"]) <= FAILURE_TEXT_LIMIT


def test_a_lease_expired_failure_keeps_the_attempts_output_and_progress(storage: Storage) -> None:
    storage.add_jobs([NewJob("t", "{}", max_attempts=1)])
    (job,) = storage.claim_jobs("dead-worker", None, 1, 150)
    storage.set_output(job.id, job.lease_token, "[1, 2]")
    storage.set_progress(job.id, job.lease_token, 70)
    time.sleep(0.3)
    assert [r.job_id for r in storage.reclaim_expired()] == [job.id]
    record = storage.get_job(job.id)
    assert record is not None and record.status is JobStatus.FAILED
    (entry,) = record.error_history
    assert set(entry) == ENTRY_KEYS
    assert (entry["reason"], entry["traceback"], entry["output"], entry["progress"]) == (
        "lease_expired",
        None,
        [1, 2],
        70,
    )


def test_a_retried_handler_completes_with_only_its_own_output_and_progress(backend: str) -> None:
    calls: list[int] = []

    def handler(payload: Any, ctx: JobContext) -> Any:
        calls.append(ctx.job.attempts)
        if len(calls) == 1:
            ctx.set_output({"attempt": 1})
            ctx.set_progress(40)
            raise RuntimeError("first attempt fails")
        return None

    queue = make_queue(backend, {"flaky": {"handler": handler, "max_attempts": 2}})
    try:
        job_id = queue.add("flaky", {})
        with running_worker(queue):
            job = wait_for_status(queue, job_id, "completed", "failed")
        assert calls == [1, 2] and job.status is JobStatus.COMPLETED
        assert (job.output, job.progress, job.failure_reason) == (None, None, None)
        (entry,) = job.error_history
        assert entry["output"] == {"attempt": 1} and entry["progress"] == 40
        assert "first attempt fails" in entry["error"]
    finally:
        queue.close()
