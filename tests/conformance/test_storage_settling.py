"""Contract: ``settle_jobs``, the fenced outcomes of claimed jobs, on every backend.

One batch of ``Completion`` / ``Failure`` / ``Release`` outcomes, one flag per item in
input order: applied, or rejected because the job is no longer ``processing`` under
that token, or because an earlier item of the batch is for the same job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from helpers import add_job, add_jobs, claim_one, complete, event_types, fail, release

from dqflow.record import EventType, JobStatus
from dqflow.storage import FAILURE_TEXT_LIMIT, Completion, Failure, Release, Storage

LEASE_MS = 30_000

# -- the batch ---------------------------------------------------------------------------


def test_outcomes_of_every_kind_in_one_batch_with_flags_in_input_order(storage: Storage) -> None:
    ids = add_jobs(storage, 5)
    a, b, c, d, e = storage.claim_jobs("w", None, 5, LEASE_MS)
    flags = storage.settle_jobs(
        [
            Completion(a.id, a.lease_token, '"a"'),
            Failure(b.id, b.lease_token, "boom", "handler_error"),
            Completion(c.id, 999),  # wrong token
            Release(d.id, d.lease_token, started=False),
            Failure(e.id, e.lease_token + 1, "x", "timeout"),  # wrong token
        ]
    )
    assert flags == [True, True, False, True, False]
    statuses = [storage.get_job(i).status for i in ids]  # type: ignore[union-attr]
    assert statuses == [
        JobStatus.COMPLETED,
        JobStatus.FAILED,
        JobStatus.PROCESSING,
        JobStatus.PENDING,
        JobStatus.PROCESSING,
    ]
    assert storage.settle_jobs([]) == []


def test_only_the_first_outcome_of_a_job_in_a_batch_is_tried(storage: Storage) -> None:
    first, second, third = add_jobs(storage, 3)
    a, b, c = storage.claim_jobs("w", None, 3, LEASE_MS)
    flags = storage.settle_jobs(
        [
            Completion(a.id, a.lease_token, '{"v": 3}'),
            Completion(a.id, a.lease_token, '{"v": 4}'),  # the same job again
            Failure(b.id, b.lease_token, "boom", "handler_error"),
            Completion(b.id, b.lease_token, '{"v": 5}'),  # another kind, same job
            Release(b.id, b.lease_token, started=False),
            Completion(c.id, c.lease_token + 1, '"stale"'),  # rejected by the fence...
            Completion(c.id, c.lease_token, '"fresh"'),  # ...and still the job's first: this one is not tried
        ]
    )
    assert flags == [True, False, True, False, False, False, False]
    done, failed, untouched = storage.get_job(first), storage.get_job(second), storage.get_job(third)
    assert done is not None and done.output == {"v": 3}
    assert failed is not None and failed.status is JobStatus.FAILED and failed.output is None
    assert untouched is not None and untouched.status is JobStatus.PROCESSING and untouched.output is None
    assert event_types(storage, first) == [EventType.ADDED, EventType.PROCESSING, EventType.COMPLETED]
    assert event_types(storage, second) == [EventType.ADDED, EventType.PROCESSING, EventType.FAILED]


def test_an_unknown_outcome_is_refused_and_changes_nothing(storage: Storage) -> None:
    @dataclass(frozen=True)
    class Snooze:  # a kind of outcome storage does not know (yet)
        job_id: int
        lease_token: int

    add_job(storage)
    job = claim_one(storage)
    with pytest.raises(TypeError, match="Completion, Failure, Release, Wait, not Snooze"):
        storage.settle_jobs([Completion(job.id, job.lease_token, "1"), Snooze(job.id, job.lease_token)])  # type: ignore[list-item]
    record = storage.get_job(job.id)
    assert record is not None and record.status is JobStatus.PROCESSING and record.output is None
    assert event_types(storage, job.id) == [EventType.ADDED, EventType.PROCESSING]


def test_every_outcome_is_fenced_by_the_lease_token(storage: Storage) -> None:
    job_id = add_job(storage)
    job = claim_one(storage)
    wrong = job.lease_token + 1
    assert storage.settle_jobs([Completion(job_id, wrong, '{"x": 1}')]) == [False]
    assert storage.settle_jobs([Failure(job_id, wrong, "e", "handler_error")]) == [False]
    assert storage.settle_jobs([Release(job_id, wrong, started=True)]) == [False]
    assert storage.get_job(job_id).status is JobStatus.PROCESSING  # type: ignore[union-attr]
    assert complete(storage, job, '{"x": 3}')
    # a second outcome of the same attempt is rejected: completed exactly once
    assert complete(storage, job, '{"x": 4}') is False
    assert fail(storage, job) is False
    assert release(storage, job, started=True) is False
    done = storage.get_job(job_id)
    assert done is not None and done.status is JobStatus.COMPLETED and done.output == {"x": 3}
    assert event_types(storage, job_id) == [EventType.ADDED, EventType.PROCESSING, EventType.COMPLETED]


def test_outcomes_of_a_cancelled_job_are_rejected(storage: Storage) -> None:
    job_id = add_job(storage)
    job = claim_one(storage)
    storage.cancel_job(job_id)
    assert complete(storage, job, "1") is False
    assert fail(storage, job) is False
    assert release(storage, job, started=True) is False
    after = storage.get_job(job_id)
    assert after is not None and after.status is JobStatus.CANCELLED and after.error_history == []


# -- completed ---------------------------------------------------------------------------


def test_completion_stores_the_output_or_keeps_the_one_set_while_running(storage: Storage) -> None:
    kept, given, none = add_jobs(storage, 3)
    jobs = {j.id: j for j in storage.claim_jobs("w", None, 3, LEASE_MS)}
    assert storage.set_output(kept, jobs[kept].lease_token, '{"first": 1}')
    assert storage.set_output(kept, jobs[kept].lease_token, '{"last": 2}')
    assert storage.set_progress(kept, jobs[kept].lease_token, 70)
    assert storage.settle_jobs(
        [
            Completion(kept, jobs[kept].lease_token),  # output_json None: keep the stored output
            Completion(given, jobs[given].lease_token, '{"n": 1, "ok": true}'),
            Completion(none, jobs[none].lease_token),
        ]
    ) == [True, True, True]
    first, second, third = (storage.get_job(i) for i in (kept, given, none))
    assert first is not None and second is not None and third is not None
    assert first.output == {"last": 2} and first.progress == 70  # progress is kept
    assert second.output == {"n": 1, "ok": True}
    assert third.output is None
    for done in (first, second, third):
        assert done.status is JobStatus.COMPLETED and done.completed_at is not None
        assert done.lease_expires_at is None and done.failure_reason is None


def test_completion_after_a_failed_attempt_clears_the_failure_reason(storage: Storage) -> None:
    job_id = add_job(storage)
    first = claim_one(storage)
    assert fail(storage, first, retry_at=datetime.now(UTC) - timedelta(seconds=1))
    assert storage.get_job(job_id).failure_reason == "handler_error"  # type: ignore[union-attr]
    second = claim_one(storage)
    assert complete(storage, second, '{"ok": true}')
    done = storage.get_job(job_id)
    assert done is not None and done.status is JobStatus.COMPLETED and done.failure_reason is None
    assert len(done.error_history) == 1  # the history of the failed attempt is kept


# -- failed ------------------------------------------------------------------------------


def test_failure_with_retry_at_makes_the_job_pending_then(storage: Storage) -> None:
    job_id = add_job(storage, max_attempts=3)
    job = claim_one(storage)
    assert storage.set_output(job_id, job.lease_token, '{"partial": 1}')
    assert storage.set_progress(job_id, job.lease_token, 40)
    retry_at = datetime.now(UTC) + timedelta(milliseconds=300)
    assert fail(storage, job, "RuntimeError: x", retry_at=retry_at, traceback="Traceback ...\nRuntimeError: x")
    pending = storage.get_job(job_id)
    assert pending is not None
    assert pending.status is JobStatus.PENDING and pending.run_at == retry_at
    assert pending.failure_reason == "handler_error" and pending.last_failed_at is not None
    assert pending.lease_expires_at is None and pending.attempts == 1
    assert pending.output is None and pending.progress is None  # cleared for the next attempt
    [entry] = pending.error_history
    assert (entry["attempt"], entry["error"], entry["reason"]) == (1, "RuntimeError: x", "handler_error")
    assert entry["traceback"] == "Traceback ...\nRuntimeError: x"
    assert (entry["output"], entry["progress"]) == ({"partial": 1}, 40)  # what the attempt stored
    assert datetime.fromisoformat(entry["at"]) == pending.last_failed_at
    last = storage.get_events(job_id)[-1]
    assert last.event_type is EventType.FAILED and last.data is not None
    assert (last.data["attempt"], last.data["error"], last.data["reason"]) == (1, "RuntimeError: x", "handler_error")
    assert last.data["will_retry"] is True
    # the failed attempt's token can no longer complete it, and it is not due yet
    assert complete(storage, job) is False
    assert storage.claim_jobs("w", None, 1, LEASE_MS) == []
    due = storage.next_due_in(None)
    assert due is not None and 0 < due <= 0.3
    time.sleep(0.32)
    again = claim_one(storage)
    assert again.id == job_id and again.attempts == 2 and again.lease_token > job.lease_token


def test_failure_without_retry_at_is_final_and_keeps_every_error(storage: Storage) -> None:
    job_id = add_job(storage)
    first = claim_one(storage)
    assert fail(storage, first, "boom", retry_at=datetime.now(UTC) - timedelta(seconds=5))
    second = claim_one(storage)  # a retry_at in the past is ready now
    assert second.id == job_id
    assert storage.set_output(job_id, second.lease_token, '{"partial": 2}')
    assert storage.set_progress(job_id, second.lease_token, 60)
    error = 'bad "quote" / é\n'
    assert fail(storage, second, error, "timeout")
    failed = storage.get_job(job_id)
    assert failed is not None and failed.status is JobStatus.FAILED and failed.failure_reason == "timeout"
    assert failed.output == {"partial": 2} and failed.progress == 60  # kept when failed for good
    assert [(e["attempt"], e["error"], e["reason"], e["traceback"]) for e in failed.error_history] == [
        (1, "boom", "handler_error", None),
        (2, error, "timeout", None),
    ]
    assert failed.lease_expires_at is None and failed.completed_at is None
    failures = [e.data for e in storage.get_events(job_id) if e.event_type is EventType.FAILED]
    assert [d["will_retry"] for d in failures] == [True, False]  # type: ignore[index]
    assert storage.claim_jobs("w", None, 5, LEASE_MS) == []
    assert storage.next_due_in(None) is None


def test_failures_in_one_batch(storage: Storage) -> None:
    a, b = add_jobs(storage, 2)
    jobs = {j.id: j for j in storage.claim_jobs("w", None, 2, LEASE_MS)}
    retry_at = datetime.now(UTC) + timedelta(minutes=5)
    assert storage.settle_jobs(
        [
            Failure(a, jobs[a].lease_token, "boom", "handler_error", retry_at),
            Failure(b, jobs[b].lease_token, "slow", "timeout"),
            Failure(b, 999, "x", "handler_error"),
        ]
    ) == [True, True, False]
    retrying, failed = storage.get_job(a), storage.get_job(b)
    assert retrying is not None and failed is not None
    assert retrying.status is JobStatus.PENDING and retrying.run_at == retry_at
    assert failed.status is JobStatus.FAILED and [e["error"] for e in failed.error_history] == ["slow"]
    assert 290 < (storage.next_due_in(None) or 0) <= 300


def test_an_oversized_error_and_traceback_are_cut_with_a_note(storage: Storage) -> None:
    add_job(storage)
    job = claim_one(storage)
    huge = "x" * (FAILURE_TEXT_LIMIT * 2)
    assert fail(storage, job, huge, traceback=huge)
    [entry] = storage.get_job(job.id).error_history  # type: ignore[union-attr]
    for text in (entry["error"], entry["traceback"]):
        assert len(text) <= FAILURE_TEXT_LIMIT and text.startswith("xxx") and "cut by dqflow storage" in text


# -- released ----------------------------------------------------------------------------


def test_release_hands_jobs_back_and_refunds_unstarted_attempts(storage: Storage) -> None:
    a, b = add_jobs(storage, 2, run_at=datetime.now(UTC) - timedelta(minutes=1))
    jobs = {j.id: j for j in storage.claim_jobs("w", None, 2, LEASE_MS)}
    assert storage.settle_jobs(
        [Release(a, jobs[a].lease_token, started=False), Release(b, jobs[b].lease_token, started=True)]
    ) == [True, True]
    first, second = storage.get_job(a), storage.get_job(b)
    assert first is not None and second is not None
    assert (first.status, first.attempts) == (JobStatus.PENDING, 0)
    assert (second.status, second.attempts) == (JobStatus.PENDING, 1)
    for released, before in ((first, jobs[a]), (second, jobs[b])):
        assert released.lease_token > before.lease_token
        assert released.locked_by is None and released.lease_expires_at is None
        assert released.run_at <= datetime.now(UTC)
        # a shutdown hand-back records no event
        assert event_types(storage, released.id) == [EventType.ADDED, EventType.PROCESSING]
    # the released claim's token is fenced out
    assert complete(storage, jobs[a]) is False
    assert release(storage, jobs[a], started=False) is False
    assert {j.id for j in storage.claim_jobs("w2", None, 5, LEASE_MS)} == {a, b}
