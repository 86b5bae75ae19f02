"""Every ``Storage`` method on Redis, with the contract's exact semantics."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from dqflow.errors import InvalidJobStateError, JobNotFoundError
from dqflow.record import EventType, JobRecord, JobStatus
from dqflow.storage.base import Completion, Failure, JobFilter, Lease, NewJob, Release, TagMode
from dqflow.storage.redis import RedisStorage

LEASE = 30_000


def add(storage: RedisStorage, job_type: str = "t", n: int = 0, **options: object) -> int:
    [result] = storage.add_jobs([NewJob(job_type, json.dumps({"n": n}), **options)])  # type: ignore[arg-type]
    return result.job_id


def claim_one(storage: RedisStorage, job_types: list[str] | None = None) -> JobRecord:
    [job] = storage.claim_jobs("w1", job_types, 1, LEASE)
    return job


def event_types(storage: RedisStorage, job_id: int) -> list[str]:
    return [e.event_type.value for e in storage.get_events(job_id)]


# -- adding and reading --------------------------------------------------------------


def test_new_job_round_trips_every_field(storage: RedisStorage) -> None:
    run_at = datetime(2030, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    before = datetime.now(UTC)
    [result] = storage.add_jobs(
        [
            NewJob(
                "report",
                '{"a": [1, 2.5, "é", null, true], "b": {"c": "x/y"}}',
                priority=-7,
                run_at=run_at,
                max_attempts=9,
                timeout_ms=1234,
                retry_delay_ms=77,
                retry_backoff="fixed",
                retry_max_delay_ms=999,
                retry_jitter=False,
                tags=("b", "a", "b"),
                idempotency_key="",
            )
        ]
    )
    assert result.created
    job = storage.get_job(result.job_id)
    assert job is not None
    assert job.id == result.job_id
    assert job.job_type == "report"
    assert job.payload == {"a": [1, 2.5, "é", None, True], "b": {"c": "x/y"}}
    assert job.status is JobStatus.PENDING
    assert (job.priority, job.attempts, job.max_attempts) == (-7, 0, 9)
    assert job.run_at == run_at and job.run_at.tzinfo is not None
    assert (job.timeout_ms, job.retry_delay_ms, job.retry_max_delay_ms) == (1234, 77, 999)
    assert job.retry_backoff == "fixed" and job.retry_jitter is False
    assert job.tags == ["b", "a", "b"]
    assert job.idempotency_key == ""  # empty string is a key, not a null
    assert job.progress is None and job.output is None and job.failure_reason is None
    assert job.error_history == []
    assert before <= job.created_at <= datetime.now(UTC)
    assert job.updated_at == job.created_at
    for name in ("started_at", "completed_at", "last_failed_at", "last_retried_at", "cancelled_at"):
        assert getattr(job, name) is None, name
    assert job.locked_by is None and job.locked_at is None and job.lease_expires_at is None
    assert job.lease_token == 0
    # the record is exactly what a second read returns (types included)
    assert storage.get_job(job.id) == job


def test_defaults_and_nulls_round_trip(storage: RedisStorage) -> None:
    job_id = add(storage)
    job = storage.get_job(job_id)
    assert job is not None
    assert job.timeout_ms is None and job.retry_max_delay_ms is None and job.idempotency_key is None
    assert job.retry_jitter is True and job.tags == []
    assert job.run_at == job.created_at


def test_claimed_and_finished_records_match_get_job(storage: RedisStorage) -> None:
    job_id = add(storage)
    claimed = claim_one(storage)
    assert claimed == storage.get_job(job_id)
    assert claimed.locked_by == "w1" and claimed.started_at == claimed.locked_at
    assert claimed.lease_expires_at is not None and claimed.locked_at is not None
    assert claimed.lease_expires_at - claimed.locked_at == timedelta(milliseconds=LEASE)
    assert storage.set_progress(job_id, claimed.lease_token, 40)
    assert storage.settle_jobs([Completion(job_id, claimed.lease_token, '{"n": 1, "ok": true}')]) == [True]
    done = storage.get_job(job_id)
    assert done is not None
    assert done.status is JobStatus.COMPLETED and done.output == {"n": 1, "ok": True}
    assert done.progress == 40 and done.completed_at is not None and done.lease_expires_at is None


def test_get_unknown_job_is_none(storage: RedisStorage) -> None:
    assert storage.get_job(123456) is None
    assert storage.get_events(123456) == []


def test_idempotency_key_returns_existing_id(storage: RedisStorage) -> None:
    results = storage.add_jobs(
        [
            NewJob("t", "{}", idempotency_key="k1"),
            NewJob("t", "{}"),
            NewJob("t", '{"x": 1}', idempotency_key="k1"),
        ]
    )
    assert [r.created for r in results] == [True, True, False]
    assert results[2].job_id == results[0].job_id
    [again] = storage.add_jobs([NewJob("t", "{}", idempotency_key="k1")])
    assert again.job_id == results[0].job_id and not again.created
    assert len(storage.list_jobs(JobFilter()).jobs) == 2
    assert event_types(storage, results[0].job_id) == ["added"]


def test_add_results_in_input_order_and_empty_batch(storage: RedisStorage) -> None:
    assert storage.add_jobs([]) == []
    results = storage.add_jobs([NewJob("t", json.dumps({"n": i})) for i in range(50)])
    ids = [r.job_id for r in results]
    assert ids == sorted(ids) and len(set(ids)) == 50
    job = storage.get_job(ids[17])
    assert job is not None and job.payload == {"n": 17}


def test_bad_values_are_refused_before_anything_is_stored(storage: RedisStorage) -> None:
    with pytest.raises(ValueError, match="priority"):
        storage.add_jobs([NewJob("t", "{}"), NewJob("t", "{}", priority=2**40)])
    with pytest.raises(ValueError, match="timezone-aware"):
        storage.add_jobs([NewJob("t", "{}", run_at=datetime(2030, 1, 1))])
    assert storage.list_jobs(JobFilter()).jobs == []


# -- claiming ------------------------------------------------------------------------


def test_claim_order_is_priority_then_run_at_then_id(storage: RedisStorage) -> None:
    now = datetime.now(UTC)
    low = add(storage, priority=1)
    high_late = add(storage, priority=5, run_at=now - timedelta(seconds=1))
    high_early = add(storage, priority=5, run_at=now - timedelta(seconds=2))
    high_same = add(storage, priority=5, run_at=now - timedelta(seconds=1))
    negative = add(storage, priority=-3)
    claimed = storage.claim_jobs("w", None, 10, LEASE)
    assert [j.id for j in claimed] == [high_early, high_late, high_same, low, negative]


def test_claim_merges_types_in_order_and_filters_by_type(storage: RedisStorage) -> None:
    a1 = add(storage, "a")
    b1 = add(storage, "b", priority=2)
    a2 = add(storage, "a", priority=3)
    c1 = add(storage, "c", priority=9)
    assert [j.id for j in storage.claim_jobs("w", ["a", "b"], 2, LEASE)] == [a2, b1]
    assert [j.id for j in storage.claim_jobs("w", ["b", "a"], 5, LEASE)] == [a1]
    assert [j.id for j in storage.claim_jobs("w", None, 5, LEASE)] == [c1]
    assert storage.claim_jobs("w", None, 5, LEASE) == []
    assert storage.claim_jobs("w", ["nothing"], 5, LEASE) == []


def test_claim_sets_lease_fields_and_event(storage: RedisStorage) -> None:
    job_id = add(storage)
    job = claim_one(storage)
    assert job.id == job_id and job.status is JobStatus.PROCESSING
    assert job.attempts == 1 and job.lease_token == 1
    [event] = storage.get_events(job_id)[1:]
    assert event.event_type is EventType.PROCESSING
    assert event.data == {"worker_id": "w1", "attempt": 1}


def test_claim_respects_limit_and_claims_each_job_once(storage: RedisStorage) -> None:
    storage.add_jobs([NewJob("t", "{}") for _ in range(25)])
    first = storage.claim_jobs("w1", ["t"], 10, LEASE)
    second = storage.claim_jobs("w2", ["t"], 100, LEASE)
    assert len(first) == 10 and len(second) == 15
    assert not {j.id for j in first} & {j.id for j in second}
    assert storage.claim_jobs("w1", ["t"], 0, LEASE) == []


def test_delayed_job_is_promoted_when_due(storage: RedisStorage) -> None:
    job_id = add(storage, run_at=datetime.now(UTC) + timedelta(milliseconds=300))
    assert storage.claim_jobs("w", None, 5, LEASE) == []
    due = storage.next_due_in(None)
    assert due is not None and 0.1 < due <= 0.3
    assert storage.next_due_in(["other"]) is None
    time.sleep(0.32)
    assert storage.next_due_in(["t"]) == 0
    assert [j.id for j in storage.claim_jobs("w", ["t"], 5, LEASE)] == [job_id]
    assert storage.next_due_in(None) is None


def test_next_due_in_is_zero_when_ready(storage: RedisStorage) -> None:
    assert storage.next_due_in(None) is None
    add(storage)
    assert storage.next_due_in(None) == 0
    assert storage.next_due_in(["t"]) == 0


# -- fenced worker writes ------------------------------------------------------------


def test_completion_is_fenced(storage: RedisStorage) -> None:
    job_id = add(storage)
    job = claim_one(storage)
    assert storage.settle_jobs([Completion(job_id, job.lease_token + 1, '{"x": 1}')]) == [False]
    assert storage.settle_jobs([Completion(job_id, job.lease_token)]) == [True]
    assert storage.settle_jobs([Completion(job_id, job.lease_token)]) == [False]  # not processing
    done = storage.get_job(job_id)
    assert done is not None and done.output is None  # output_json None leaves it as it is
    assert event_types(storage, job_id) == ["added", "processing", "completed"]


def test_completion_keeps_output_set_earlier(storage: RedisStorage) -> None:
    job_id = add(storage)
    job = claim_one(storage)
    assert storage.set_output(job_id, job.lease_token, '{"first": 1}')
    assert storage.set_output(job_id, job.lease_token, '{"last": 2}')
    assert storage.settle_jobs([Completion(job_id, job.lease_token)]) == [True]
    done = storage.get_job(job_id)
    assert done is not None and done.output == {"last": 2}


def test_writes_of_a_worker_that_lost_its_job_are_rejected(storage: RedisStorage) -> None:
    job_id = add(storage)
    job = claim_one(storage)
    storage.cancel_job(job_id)
    token = job.lease_token
    assert not storage.set_progress(job_id, token, 50)
    assert not storage.set_output(job_id, token, "1")
    assert storage.renew_leases("w1", [Lease(job_id, token)], LEASE) == set()
    assert storage.settle_jobs([Completion(job_id, token, "1")]) == [False]
    assert storage.settle_jobs([Failure(job_id, token, "x", "handler_error")]) == [False]
    assert storage.settle_jobs([Release(job_id, token, True)]) == [False]
    after = storage.get_job(job_id)
    assert after is not None
    assert after.status is JobStatus.CANCELLED and after.output is None and after.progress is None


def test_reclaimed_job_rejects_the_old_worker(storage: RedisStorage) -> None:
    job_id = add(storage)
    old = storage.claim_jobs("w-old", None, 1, 1)[0]
    time.sleep(0.01)
    reclaimed = storage.reclaim_expired()
    assert [(r.job_id, r.status) for r in reclaimed] == [(job_id, JobStatus.PENDING)]
    new = claim_one(storage)
    assert new.lease_token == old.lease_token + 2 and new.attempts == 2
    assert storage.settle_jobs([Completion(job_id, old.lease_token)]) == [False]
    assert storage.settle_jobs([Completion(job_id, new.lease_token)]) == [True]


def test_batched_writes_report_each_item(storage: RedisStorage) -> None:
    storage.add_jobs([NewJob("t", "{}") for _ in range(3)])
    a, b, c = storage.claim_jobs("w", None, 3, LEASE)
    flags = storage.settle_jobs(
        [Completion(a.id, a.lease_token, '"a"'), Completion(b.id, 999), Completion(c.id, c.lease_token)]
    )
    assert flags == [True, False, True]
    assert storage.settle_jobs([]) == [] and storage.settle_jobs([]) == [] and storage.settle_jobs([]) == []


def test_progress_is_fenced_and_checked(storage: RedisStorage) -> None:
    job_id = add(storage)
    job = claim_one(storage)
    assert storage.set_progress(job_id, job.lease_token, 0)
    assert storage.set_progress(job_id, job.lease_token, 100)
    assert not storage.set_progress(job_id, job.lease_token + 5, 10)
    with pytest.raises(ValueError, match="between 0 and 100"):
        storage.set_progress(job_id, job.lease_token, 101)
    current = storage.get_job(job_id)
    assert current is not None and current.progress == 100


def test_renew_leases_extends_only_held_leases(storage: RedisStorage) -> None:
    storage.add_jobs([NewJob("t", "{}"), NewJob("t", "{}")])
    a, b = storage.claim_jobs("w", None, 2, 1_000)
    storage.cancel_job(b.id)
    held = storage.renew_leases("w", [Lease(a.id, a.lease_token), Lease(b.id, b.lease_token)], 60_000)
    assert held == {a.id}
    renewed = storage.get_job(a.id)
    assert renewed is not None and renewed.lease_expires_at is not None
    assert renewed.lease_expires_at > datetime.now(UTC) + timedelta(seconds=50)
    assert storage.renew_leases("w", [], 1000) == set()
    time.sleep(1.05)
    assert storage.reclaim_expired() == []  # the renewed lease has not expired


def test_fail_with_retry_at_goes_back_to_pending_then(storage: RedisStorage) -> None:
    job_id = add(storage)
    job = claim_one(storage)
    retry_at = datetime.now(UTC) + timedelta(milliseconds=200)
    assert storage.settle_jobs([Failure(job_id, job.lease_token, "boom", "handler_error", retry_at)]) == [True]
    pending = storage.get_job(job_id)
    assert pending is not None
    assert pending.status is JobStatus.PENDING and pending.run_at == retry_at
    assert pending.failure_reason == "handler_error" and pending.last_failed_at is not None
    assert pending.lease_expires_at is None
    [entry] = pending.error_history
    assert entry["attempt"] == 1 and entry["error"] == "boom" and entry["reason"] == "handler_error"
    assert datetime.fromisoformat(entry["at"]) == pending.last_failed_at
    assert storage.claim_jobs("w", None, 1, LEASE) == []
    time.sleep(0.22)
    again = claim_one(storage)
    assert again.id == job_id and again.attempts == 2
    assert storage.settle_jobs([Failure(job_id, again.lease_token, 'bad "quote" / é\n', "timeout")]) == [True]
    failed = storage.get_job(job_id)
    assert failed is not None and failed.status is JobStatus.FAILED and failed.failure_reason == "timeout"
    assert [e["error"] for e in failed.error_history] == ["boom", 'bad "quote" / é\n']
    events = storage.get_events(job_id)
    assert [e.data["will_retry"] for e in events if e.event_type is EventType.FAILED] == [True, False]  # type: ignore[index]


def test_fail_with_past_retry_at_is_ready_now(storage: RedisStorage) -> None:
    job_id = add(storage)
    job = claim_one(storage)
    past = datetime.now(UTC) - timedelta(seconds=5)
    storage.settle_jobs([Failure(job_id, job.lease_token, "e", "handler_error", past)])
    assert claim_one(storage).id == job_id


def test_release_refunds_the_attempt_unless_started(storage: RedisStorage) -> None:
    storage.add_jobs([NewJob("t", "{}"), NewJob("t", "{}")])
    a, b = storage.claim_jobs("w", None, 2, LEASE)
    flags = storage.settle_jobs([Release(a.id, a.lease_token, False), Release(b.id, b.lease_token, True)])
    assert flags == [True, True]
    ra, rb = storage.get_job(a.id), storage.get_job(b.id)
    assert ra is not None and rb is not None
    assert (ra.attempts, rb.attempts) == (0, 1)
    for job, before in ((ra, a), (rb, b)):
        assert job.status is JobStatus.PENDING and job.lease_token == before.lease_token + 1
        assert job.locked_by is None and job.lease_expires_at is None
    assert {j.id for j in storage.claim_jobs("w", None, 5, LEASE)} == {a.id, b.id}


# -- managing ------------------------------------------------------------------------


def test_cancel_pending_job(storage: RedisStorage) -> None:
    job_id = add(storage)
    job = storage.cancel_job(job_id)
    assert job.status is JobStatus.CANCELLED and job.cancelled_at is not None and job.lease_token == 1
    assert storage.claim_jobs("w", None, 5, LEASE) == []
    assert storage.next_due_in(None) is None
    assert storage.get_events(job_id)[-1].data == {"previous_status": "pending"}
    with pytest.raises(InvalidJobStateError, match="cancelled"):
        storage.cancel_job(job_id)
    with pytest.raises(JobNotFoundError):
        storage.cancel_job(987654)


def test_cancel_delayed_and_processing_jobs(storage: RedisStorage) -> None:
    delayed = add(storage, run_at=datetime.now(UTC) + timedelta(hours=1))
    storage.cancel_job(delayed)
    assert storage.next_due_in(None) is None
    running = add(storage)
    job = claim_one(storage)
    cancelled = storage.cancel_job(running)
    assert cancelled.lease_token == job.lease_token + 1 and cancelled.lease_expires_at is None
    assert storage.reclaim_expired() == []


def test_cancel_completed_job_is_refused(storage: RedisStorage) -> None:
    job_id = add(storage)
    job = claim_one(storage)
    storage.settle_jobs([Completion(job_id, job.lease_token)])
    with pytest.raises(InvalidJobStateError, match="completed"):
        storage.cancel_job(job_id)


def test_retry_resets_a_failed_job(storage: RedisStorage) -> None:
    job_id = add(storage, max_attempts=1)
    job = claim_one(storage)
    storage.set_progress(job_id, job.lease_token, 30)
    storage.set_output(job_id, job.lease_token, '{"partial": true}')
    storage.settle_jobs([Failure(job_id, job.lease_token, "boom", "handler_error")])
    retried = storage.retry_job(job_id)
    assert retried.status is JobStatus.PENDING and retried.attempts == 0
    assert retried.failure_reason is None and retried.progress is None and retried.output is None
    assert retried.completed_at is None and retried.cancelled_at is None and retried.locked_by is None
    assert retried.last_retried_at is not None and retried.run_at == retried.last_retried_at
    assert retried.lease_token == job.lease_token + 1
    assert len(retried.error_history) == 1  # history is kept
    assert claim_one(storage).id == job_id
    assert event_types(storage, job_id)[-2:] == ["retried", "processing"]


def test_retry_refuses_other_states(storage: RedisStorage) -> None:
    job_id = add(storage)
    with pytest.raises(InvalidJobStateError, match="pending"):
        storage.retry_job(job_id)
    with pytest.raises(JobNotFoundError):
        storage.retry_job(424242)
    storage.cancel_job(job_id)
    assert storage.retry_job(job_id).status is JobStatus.PENDING


def test_edit_pending_job(storage: RedisStorage) -> None:
    first = add(storage, priority=0, tags=("old", "keep"))
    second = add(storage, priority=1)
    when = datetime(2031, 5, 6, 7, 8, 9, 10, tzinfo=UTC)
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
    assert edited.payload == {"new": True} and edited.priority == 5 and edited.max_attempts == 7
    assert (edited.timeout_ms, edited.retry_delay_ms, edited.retry_max_delay_ms) == (5000, 1, 10)
    assert edited.retry_backoff == "fixed" and edited.retry_jitter is False
    assert edited.tags == ["keep", "new"] and edited.updated_at > edited.created_at
    assert storage.get_events(first)[-1].data == {
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
    # indexes follow the edit
    assert ids(storage, JobFilter(tags=("old",))) == []
    assert ids(storage, JobFilter(tags=("new",))) == [first]
    assert ids(storage, JobFilter(tags=("keep", "new"), tag_mode=TagMode.EXACT)) == [first]
    # the new priority reorders the ready set
    assert [j.id for j in storage.claim_jobs("w", None, 2, LEASE)] == [first, second]
    nulls = add(storage, timeout_ms=5, retry_max_delay_ms=6)
    cleared = storage.edit_job(nulls, {"timeout_ms": None, "retry_max_delay_ms": None, "run_at": when})
    assert cleared.timeout_ms is None and cleared.retry_max_delay_ms is None and cleared.run_at == when
    assert storage.claim_jobs("w", None, 5, LEASE) == []
    now_again = storage.edit_job(nulls, {"run_at": None, "tags": []})
    assert now_again.run_at <= datetime.now(UTC) and now_again.tags == []
    assert claim_one(storage).id == nulls


def test_edit_refuses_unknown_fields_and_other_states(storage: RedisStorage) -> None:
    job_id = add(storage)
    with pytest.raises(InvalidJobStateError, match="status"):
        storage.edit_job(job_id, {"status": "completed"})
    claim_one(storage)
    with pytest.raises(InvalidJobStateError, match="processing"):
        storage.edit_job(job_id, {"priority": 1})
    with pytest.raises(JobNotFoundError):
        storage.edit_job(5555, {"priority": 1})


# -- reclaim -------------------------------------------------------------------------


def test_reclaim_returns_expired_jobs_or_fails_them(storage: RedisStorage) -> None:
    retry_id = add(storage, max_attempts=2)
    last_id = add(storage, max_attempts=1)
    live_id = add(storage)
    storage.claim_jobs("dead-worker", None, 2, 1)
    storage.claim_jobs("live-worker", None, 1, LEASE)
    time.sleep(0.01)
    result = {r.job_id: r.status for r in storage.reclaim_expired()}
    assert result == {retry_id: JobStatus.PENDING, last_id: JobStatus.FAILED}
    pending = storage.get_job(retry_id)
    assert pending is not None and pending.locked_by is None and pending.lease_token == 2
    assert storage.get_events(retry_id)[-1].data == {"attempt": 1, "previous_worker": "dead-worker"}
    failed = storage.get_job(last_id)
    assert failed is not None and failed.failure_reason == "lease_expired" and failed.lease_token == 2
    assert failed.error_history[0]["reason"] == "lease_expired"
    assert storage.get_events(last_id)[-1].data["will_retry"] is False  # type: ignore[index]
    live = storage.get_job(live_id)
    assert live is not None and live.status is JobStatus.PROCESSING
    assert storage.reclaim_expired() == []


# -- listing -------------------------------------------------------------------------


def ids(storage: RedisStorage, job_filter: JobFilter) -> list[int]:
    """Every matching id, following next_cursor page by page."""
    found: list[int] = []
    cursor = job_filter.cursor
    while True:
        page = storage.list_jobs(
            JobFilter(
                statuses=job_filter.statuses,
                job_type=job_filter.job_type,
                tags=job_filter.tags,
                tag_mode=job_filter.tag_mode,
                created_after=job_filter.created_after,
                created_before=job_filter.created_before,
                limit=job_filter.limit,
                cursor=cursor,
            )
        )
        found += [j.id for j in page.jobs]
        if page.next_cursor is None:
            return found
        assert len(page.jobs) == job_filter.limit
        cursor = page.next_cursor


@pytest.fixture
def tagged(storage: RedisStorage) -> dict[str, int]:
    jobs = {
        "ab": NewJob("x", "{}", tags=("a", "b")),
        "a": NewJob("x", "{}", tags=("a",)),
        "b": NewJob("y", "{}", tags=("b",)),
        "none": NewJob("y", "{}"),
        "abc": NewJob("x", "{}", tags=("c", "b", "a")),
        "ba": NewJob("y", "{}", tags=("b", "a", "a")),
    }
    results = storage.add_jobs(list(jobs.values()))
    return {name: r.job_id for name, r in zip(jobs, results, strict=True)}


@pytest.mark.parametrize(
    ("tags", "mode", "expected"),
    [
        (("a",), TagMode.ALL, ["ab", "a", "abc", "ba"]),
        (("a", "b"), TagMode.ALL, ["ab", "abc", "ba"]),
        (("a", "b"), TagMode.ANY, ["ab", "a", "b", "abc", "ba"]),
        (("a", "b"), TagMode.NONE, ["none"]),
        (("c",), TagMode.NONE, ["ab", "a", "b", "none", "ba"]),
        (("a", "b"), TagMode.EXACT, ["ab", "ba"]),
        (("b", "a", "b"), TagMode.EXACT, ["ab", "ba"]),
        (("a",), TagMode.EXACT, ["a"]),
        (("zzz",), TagMode.ANY, []),
        ((), TagMode.EXACT, ["ab", "a", "b", "none", "abc", "ba"]),
    ],
)
def test_tag_modes(
    storage: RedisStorage, tagged: dict[str, int], tags: tuple[str, ...], mode: TagMode, expected: list[str]
) -> None:
    want = sorted((tagged[name] for name in expected), reverse=True)
    assert ids(storage, JobFilter(tags=tags, tag_mode=mode)) == want
    assert ids(storage, JobFilter(tags=tags, tag_mode=mode, limit=2)) == want


def test_filters_combine(storage: RedisStorage, tagged: dict[str, int]) -> None:
    assert ids(storage, JobFilter(job_type="y")) == sorted([tagged["b"], tagged["none"], tagged["ba"]], reverse=True)
    assert ids(storage, JobFilter(job_type="y", tags=("a",))) == [tagged["ba"]]
    job = claim_one(storage, ["x"])  # the oldest x job: "ab"
    assert job.id == tagged["ab"]
    assert ids(storage, JobFilter(statuses=(JobStatus.PROCESSING,))) == [tagged["ab"]]
    assert ids(storage, JobFilter(statuses=(JobStatus.PROCESSING,), job_type="y")) == []
    both = ids(storage, JobFilter(statuses=(JobStatus.PENDING, JobStatus.PROCESSING), limit=1))
    assert both == sorted(tagged.values(), reverse=True)
    storage.cancel_job(tagged["none"])
    assert ids(storage, JobFilter(statuses=(JobStatus.CANCELLED, JobStatus.PROCESSING), limit=1)) == [
        tagged["none"],
        tagged["ab"],
    ]
    assert ids(storage, JobFilter(statuses=(JobStatus.COMPLETED,))) == []
    assert ids(storage, JobFilter(job_type="nope")) == []


def test_paging_walks_every_job_once_newest_first(storage: RedisStorage) -> None:
    results = storage.add_jobs([NewJob("t", "{}") for _ in range(23)])
    all_ids = sorted((r.job_id for r in results), reverse=True)
    page = storage.list_jobs(JobFilter(limit=10))
    assert [j.id for j in page.jobs] == all_ids[:10] and page.next_cursor == all_ids[9]
    for limit in (1, 5, 10, 22, 23, 24, 100):
        assert ids(storage, JobFilter(limit=limit)) == all_ids
    assert storage.list_jobs(JobFilter(limit=23)).next_cursor is None
    assert ids(storage, JobFilter(cursor=all_ids[4], limit=7)) == all_ids[5:]
    assert storage.list_jobs(JobFilter(limit=0)).jobs == []


def test_created_range(storage: RedisStorage) -> None:
    early = storage.add_jobs([NewJob("t", "{}"), NewJob("t", "{}")])
    time.sleep(0.005)
    middle = add(storage)
    time.sleep(0.005)
    late = add(storage)
    records = {j.id: j for j in storage.list_jobs(JobFilter()).jobs}
    t_middle = records[middle].created_at
    assert ids(storage, JobFilter(created_after=t_middle)) == [late, middle]
    assert ids(storage, JobFilter(created_before=t_middle)) == [early[1].job_id, early[0].job_id]
    assert ids(storage, JobFilter(created_after=t_middle, created_before=records[late].created_at)) == [middle]
    assert ids(storage, JobFilter(created_after=datetime.now(UTC) + timedelta(hours=1))) == []
    assert ids(storage, JobFilter(created_before=datetime(2000, 1, 1, tzinfo=UTC))) == []
    assert ids(storage, JobFilter(created_after=t_middle, job_type="t", limit=1)) == [late, middle]


def test_list_resumes_when_a_step_spends_its_scan_budget(storage: RedisStorage) -> None:
    storage.add_jobs([NewJob("t", "{}", tags=("even",) if i % 2 == 0 else ()) for i in range(40)])
    storage.list_scan_budget = 3
    everything = ids(storage, JobFilter(limit=7))
    assert len(everything) == 40
    none_even = ids(storage, JobFilter(tags=("even",), tag_mode=TagMode.NONE, limit=4))
    assert len(none_even) == 20 and none_even == sorted(none_even, reverse=True)
