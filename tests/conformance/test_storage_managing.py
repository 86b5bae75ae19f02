"""Contract: ``cancel_job``, ``retry_job`` and ``edit_job`` on every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from helpers import add_job, claim_one, complete, event_types, fail, list_all_ids

from dqflow.errors import InvalidJobStateError, JobNotFoundError
from dqflow.record import EventType, JobStatus
from dqflow.storage import JobFilter, Lease, Storage, TagMode

# -- cancel ------------------------------------------------------------------------------


def test_cancel_a_pending_job(storage: Storage) -> None:
    job_id = add_job(storage)
    cancelled = storage.cancel_job(job_id)
    assert cancelled.status is JobStatus.CANCELLED and cancelled.cancelled_at is not None
    assert cancelled.lease_token > 0  # bumped
    assert cancelled == storage.get_job(job_id)  # the returned record is the stored one
    assert storage.claim_jobs("w", None, 5, 30_000) == []
    assert storage.next_due_in(None) is None
    history = storage.get_events(job_id)
    assert [e.event_type for e in history] == [EventType.ADDED, EventType.CANCELLED]
    assert history[-1].data == {"previous_status": "pending"}


def test_cancel_a_delayed_job(storage: Storage) -> None:
    job_id = add_job(storage, run_at=datetime.now(UTC) + timedelta(hours=1))
    assert storage.cancel_job(job_id).status is JobStatus.CANCELLED
    assert storage.next_due_in(None) is None


def test_cancel_a_processing_job_fences_out_its_worker(storage: Storage) -> None:
    pending, running = add_job(storage, priority=0), add_job(storage, priority=5)
    claimed = claim_one(storage)
    assert claimed.id == running
    stopped = storage.cancel_job(running)
    assert stopped.status is JobStatus.CANCELLED and stopped.lease_token > claimed.lease_token
    assert stopped.lease_expires_at is None
    token = claimed.lease_token
    assert storage.renew_leases("w1", [Lease(running, token)], 30_000) == set()
    assert storage.set_progress(running, token, 50) is False
    assert storage.set_output(running, token, '{"late": true}') is False
    assert complete(storage, claimed, '{"late": true}') is False
    assert fail(storage, claimed) is False
    assert storage.reclaim_expired() == []  # no lease left to expire
    record = storage.get_job(running)
    assert record is not None and record.status is JobStatus.CANCELLED
    assert record.output is None and record.progress is None
    history = storage.get_events(running)
    assert history[-1].event_type is EventType.CANCELLED
    assert history[-1].data == {"previous_status": "processing"}
    assert storage.get_job(pending).status is JobStatus.PENDING  # type: ignore[union-attr]


def test_cancel_refuses_unknown_and_finished_jobs(storage: Storage) -> None:
    with pytest.raises(JobNotFoundError):
        storage.cancel_job(999_999)
    cancelled = add_job(storage)
    storage.cancel_job(cancelled)
    with pytest.raises(InvalidJobStateError, match="cancelled"):
        storage.cancel_job(cancelled)
    assert event_types(storage, cancelled) == [EventType.ADDED, EventType.CANCELLED]
    completed = add_job(storage)
    assert complete(storage, claim_one(storage))
    with pytest.raises(InvalidJobStateError, match="completed"):
        storage.cancel_job(completed)
    failed = add_job(storage)
    assert fail(storage, claim_one(storage))
    with pytest.raises(InvalidJobStateError, match="failed"):
        storage.cancel_job(failed)
    assert storage.get_job(completed).status is JobStatus.COMPLETED  # type: ignore[union-attr]


# -- retry -------------------------------------------------------------------------------


def test_retry_resets_a_failed_job(storage: Storage) -> None:
    job_id = add_job(storage, max_attempts=1)
    claimed = claim_one(storage)
    assert storage.set_progress(job_id, claimed.lease_token, 40)
    assert storage.set_output(job_id, claimed.lease_token, '{"partial": 1}')
    assert fail(storage, claimed)
    retried = storage.retry_job(job_id)
    assert retried == storage.get_job(job_id)
    assert retried.status is JobStatus.PENDING and retried.attempts == 0
    assert retried.failure_reason is None and retried.progress is None and retried.output is None
    assert retried.completed_at is None and retried.cancelled_at is None
    assert retried.locked_by is None and retried.lease_expires_at is None
    assert retried.last_retried_at is not None and retried.run_at == retried.last_retried_at
    assert retried.run_at <= datetime.now(UTC)  # runnable now
    assert retried.lease_token > claimed.lease_token
    assert len(retried.error_history) == 1  # the history is kept
    assert complete(storage, claimed) is False  # the failed attempt's token stays fenced out
    again = claim_one(storage)
    assert again.id == job_id and again.attempts == 1
    assert event_types(storage, job_id)[-2:] == [EventType.RETRIED, EventType.PROCESSING]


def test_retry_of_a_cancelled_job_makes_it_pending_again(storage: Storage) -> None:
    job_id = add_job(storage, run_at=datetime.now(UTC) + timedelta(hours=1))
    storage.cancel_job(job_id)
    retried = storage.retry_job(job_id)
    assert retried.status is JobStatus.PENDING and retried.cancelled_at is None
    assert retried.run_at <= datetime.now(UTC)
    assert claim_one(storage).id == job_id


def test_retry_refuses_unknown_and_unfinished_jobs(storage: Storage) -> None:
    with pytest.raises(JobNotFoundError):
        storage.retry_job(424_242)
    job_id = add_job(storage)
    with pytest.raises(InvalidJobStateError, match="pending"):
        storage.retry_job(job_id)
    claimed = claim_one(storage)
    with pytest.raises(InvalidJobStateError, match="processing"):
        storage.retry_job(job_id)
    assert complete(storage, claimed)
    with pytest.raises(InvalidJobStateError, match="completed"):
        storage.retry_job(job_id)
    assert EventType.RETRIED not in event_types(storage, job_id)


# -- edit --------------------------------------------------------------------------------


def test_edit_changes_every_editable_field_of_a_pending_job(storage: Storage) -> None:
    first = add_job(storage, priority=0, tags=("old", "keep"))
    second = add_job(storage, priority=1)
    edited = storage.edit_job(
        first,
        {
            "payload_json": '{"new": true}',
            "priority": 5,
            "max_attempts": 7,
            "timeout_ms": 5000,
            "retry_delay_ms": 1,
            "retry_backoff": "fixed",
            "retry_max_delay_ms": 10,
            "retry_jitter": False,
            "tags": ["keep", "new"],
        },
    )
    assert edited == storage.get_job(first)
    assert edited.payload == {"new": True} and edited.priority == 5 and edited.max_attempts == 7
    assert (edited.timeout_ms, edited.retry_delay_ms, edited.retry_max_delay_ms) == (5000, 1, 10)
    assert edited.retry_backoff == "fixed" and edited.retry_jitter is False
    assert edited.tags == ["keep", "new"] and edited.updated_at > edited.created_at
    assert edited.status is JobStatus.PENDING and edited.job_type == "t"
    last = storage.get_events(first)[-1]
    assert last.event_type is EventType.EDITED
    assert last.data == {
        "fields": sorted(
            [
                "payload",
                "priority",
                "max_attempts",
                "timeout_ms",
                "retry_delay_ms",
                "retry_backoff",
                "retry_max_delay_ms",
                "retry_jitter",
                "tags",
            ]
        )
    }
    # filters follow the new tags
    assert list_all_ids(storage, JobFilter(tags=("old",))) == []
    assert list_all_ids(storage, JobFilter(tags=("new",))) == [first]
    assert list_all_ids(storage, JobFilter(tags=("keep", "new"), tag_mode=TagMode.EXACT)) == [first]
    # the new priority reorders the claim
    assert [j.id for j in storage.claim_jobs("w", None, 2, 30_000)] == [first, second]


def test_edit_clears_nullable_fields_and_moves_run_at(storage: Storage) -> None:
    job_id = add_job(storage, timeout_ms=5, retry_max_delay_ms=6, tags=("x",))
    later = datetime(2031, 5, 6, 7, 8, 9, 10, tzinfo=UTC)
    cleared = storage.edit_job(job_id, {"timeout_ms": None, "retry_max_delay_ms": None, "run_at": later})
    assert cleared.timeout_ms is None and cleared.retry_max_delay_ms is None and cleared.run_at == later
    assert cleared.max_attempts == 3  # untouched
    assert storage.claim_jobs("w", None, 5, 30_000) == []  # not due any more
    due = storage.next_due_in(None)
    assert due is not None and due > 3600
    assert storage.get_events(job_id)[-1].data == {"fields": ["retry_max_delay_ms", "run_at", "timeout_ms"]}
    now_again = storage.edit_job(job_id, {"run_at": None, "tags": []})  # run_at None: now
    assert now_again.run_at <= datetime.now(UTC) and now_again.tags == []
    assert list_all_ids(storage, JobFilter(tags=("x",))) == []
    assert claim_one(storage).id == job_id


def test_edit_refuses_unknown_fields_other_states_and_unknown_ids(storage: Storage) -> None:
    job_id = add_job(storage)
    before = storage.get_job(job_id)
    with pytest.raises(InvalidJobStateError, match="status"):
        storage.edit_job(job_id, {"status": "completed"})
    with pytest.raises(InvalidJobStateError, match="lease_token"):
        storage.edit_job(job_id, {"priority": 4, "lease_token": 9})
    assert storage.get_job(job_id) == before  # a refused edit changes nothing
    assert event_types(storage, job_id) == [EventType.ADDED]
    claim_one(storage)
    with pytest.raises(InvalidJobStateError, match="processing"):
        storage.edit_job(job_id, {"priority": 1})
    with pytest.raises(JobNotFoundError):
        storage.edit_job(777_777, {"priority": 1})
    assert EventType.EDITED not in event_types(storage, job_id)
