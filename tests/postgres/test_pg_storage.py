"""Every ``Storage`` method on PostgreSQL: semantics, fencing, idempotency, tags, paging."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from dqflow.errors import InvalidJobStateError, JobNotFoundError
from dqflow.record import EventType, JobRecord, JobStatus
from dqflow.storage import (
    Completion,
    Failure,
    JobFilter,
    Lease,
    NewJob,
    Release,
    TagMode,
)
from dqflow.storage.postgres import PostgresStorage

LEASE_MS = 30_000


def job(n: int = 0, job_type: str = "work", **options: object) -> NewJob:
    return NewJob(job_type, json.dumps({"n": n}), **options)  # type: ignore[arg-type]


def claim_one(storage: PostgresStorage, worker: str = "w1", lease_ms: int = LEASE_MS) -> JobRecord:
    claimed = storage.claim_jobs(worker, None, 1, lease_ms)
    assert len(claimed) == 1
    return claimed[0]


def events(storage: PostgresStorage, job_id: int) -> list[EventType]:
    return [event.event_type for event in storage.get_events(job_id)]


# -- adding -----------------------------------------------------------------------------


def test_add_returns_ids_in_input_order_with_defaults(storage: PostgresStorage) -> None:
    results = storage.add_jobs([job(i) for i in range(5)])
    assert [r.created for r in results] == [True] * 5
    ids = [r.job_id for r in results]
    assert ids == sorted(ids) and len(set(ids)) == 5
    record = storage.get_job(ids[2])
    assert record is not None
    assert record.payload == {"n": 2}
    assert record.status is JobStatus.PENDING
    assert (record.priority, record.attempts, record.max_attempts, record.lease_token) == (0, 0, 3, 0)
    assert record.output is None and record.error_history == [] and record.tags == []
    assert record.created_at.tzinfo is UTC and record.run_at.tzinfo is UTC
    assert abs((record.run_at - datetime.now(UTC)).total_seconds()) < 5
    assert events(storage, ids[2]) == [EventType.ADDED]


def test_add_keeps_every_option(storage: PostgresStorage) -> None:
    run_at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    options = {
        "priority": 7,
        "run_at": run_at,
        "max_attempts": 9,
        "timeout_ms": 1234,
        "retry_delay_ms": 55,
        "retry_backoff": "fixed",
        "retry_max_delay_ms": 999,
        "retry_jitter": False,
        "tags": ("a", "b"),
        "idempotency_key": "key-1",
    }
    [result] = storage.add_jobs([job(1, **options)])
    record = storage.get_job(result.job_id)
    assert record is not None
    assert record.run_at == run_at
    for name, value in options.items():
        if name != "run_at":
            got = getattr(record, name)
            assert (tuple(got) if name == "tags" else got) == value, name


def test_idempotency_key_returns_the_existing_job(storage: PostgresStorage) -> None:
    [first] = storage.add_jobs([job(1, idempotency_key="k")])
    again = storage.add_jobs(
        [job(2), job(3, idempotency_key="k"), job(4, idempotency_key="k2"), job(5, idempotency_key="k2")]
    )
    assert again[1].job_id == first.job_id and not again[1].created
    assert again[0].created and again[2].created
    assert again[3].job_id == again[2].job_id and not again[3].created
    record = storage.get_job(first.job_id)
    assert record is not None and record.payload == {"n": 1}
    assert len(storage.list_jobs(JobFilter()).jobs) == 3


def test_concurrent_adds_with_one_key_create_one_job(pg_url: str) -> None:
    stores = [PostgresStorage(pg_url) for _ in range(6)]
    results: list[tuple[int, bool]] = []
    barrier = threading.Barrier(len(stores))

    def add(store: PostgresStorage) -> None:
        barrier.wait()
        [result] = store.add_jobs([job(1, idempotency_key="same")])
        results.append((result.job_id, result.created))

    threads = [threading.Thread(target=add, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    assert len({job_id for job_id, _ in results}) == 1
    assert sorted(created for _, created in results) == [False] * 5 + [True]


def test_add_nothing(storage: PostgresStorage) -> None:
    assert storage.add_jobs([]) == []


def test_bulk_add_of_ten_thousand(storage: PostgresStorage) -> None:
    results = storage.add_jobs([job(i, tags=("bulk",)) for i in range(10_000)])
    assert len(results) == 10_000 and all(r.created for r in results)
    first = storage.get_job(results[0].job_id)
    last = storage.get_job(results[-1].job_id)
    assert first is not None and last is not None
    assert (first.payload, last.payload) == ({"n": 0}, {"n": 9_999})


# -- reading ----------------------------------------------------------------------------


def test_unknown_ids(storage: PostgresStorage) -> None:
    assert storage.get_job(123456) is None
    assert storage.get_events(123456) == []


def test_list_filters_and_keyset_paging(storage: PostgresStorage) -> None:
    ids = [r.job_id for r in storage.add_jobs([job(i, "a" if i % 2 else "b") for i in range(25)])]
    page = storage.list_jobs(JobFilter(limit=10))
    seen: list[int] = []
    while True:
        seen.extend(j.id for j in page.jobs)
        if page.next_cursor is None:
            break
        page = storage.list_jobs(JobFilter(limit=10, cursor=page.next_cursor))
    assert seen == sorted(ids, reverse=True)
    assert {j.job_type for j in storage.list_jobs(JobFilter(job_type="a")).jobs} == {"a"}
    assert len(storage.list_jobs(JobFilter(job_type="a")).jobs) == 12
    claim_one(storage)
    processing = storage.list_jobs(JobFilter(statuses=(JobStatus.PROCESSING,)))
    assert [j.status for j in processing.jobs] == [JobStatus.PROCESSING]
    both = storage.list_jobs(JobFilter(statuses=(JobStatus.PROCESSING, JobStatus.PENDING)))
    assert len(both.jobs) == 25 and both.next_cursor is None
    exact_page = storage.list_jobs(JobFilter(limit=25))
    assert len(exact_page.jobs) == 25 and exact_page.next_cursor is None


def test_list_by_creation_time(storage: PostgresStorage) -> None:
    [old] = storage.add_jobs([job(1)])
    time.sleep(0.05)
    middle = datetime.now(UTC)
    time.sleep(0.05)
    [new] = storage.add_jobs([job(2)])
    assert [j.id for j in storage.list_jobs(JobFilter(created_after=middle)).jobs] == [new.job_id]
    assert [j.id for j in storage.list_jobs(JobFilter(created_before=middle)).jobs] == [old.job_id]


@pytest.mark.parametrize(
    ("mode", "wanted", "expected"),
    [
        (TagMode.ALL, ("x", "y"), {"xy", "xyz"}),
        (TagMode.ANY, ("x", "z"), {"x", "xy", "xyz", "z"}),
        (TagMode.NONE, ("x",), {"none", "z"}),
        (TagMode.EXACT, ("y", "x"), {"xy"}),
        (TagMode.ALL, (), {"none", "x", "xy", "xyz", "z"}),
    ],
)
def test_tag_modes(storage: PostgresStorage, mode: TagMode, wanted: tuple[str, ...], expected: set[str]) -> None:
    tag_sets = {"none": (), "x": ("x",), "xy": ("x", "y"), "xyz": ("x", "y", "z"), "z": ("z",)}
    names = {}
    for name, tags in tag_sets.items():
        [result] = storage.add_jobs([job(0, tags=tags)])
        names[result.job_id] = name
    page = storage.list_jobs(JobFilter(tags=wanted, tag_mode=mode))
    assert {names[j.id] for j in page.jobs} == expected


# -- managing ---------------------------------------------------------------------------


def test_cancel_pending_and_processing_jobs(storage: PostgresStorage) -> None:
    pending, running = (r.job_id for r in storage.add_jobs([job(1, priority=0), job(2, priority=5)]))
    claimed = claim_one(storage)
    assert claimed.id == running
    cancelled = storage.cancel_job(pending)
    assert cancelled.status is JobStatus.CANCELLED and cancelled.cancelled_at is not None
    assert cancelled.lease_token == 1
    stopped = storage.cancel_job(running)
    assert stopped.status is JobStatus.CANCELLED and stopped.lease_token == claimed.lease_token + 1
    # The worker that held it can no longer write.
    assert storage.settle_jobs([Completion(running, claimed.lease_token, '{"late": true}')]) == [False]
    assert storage.set_progress(running, claimed.lease_token, 50) is False
    assert storage.renew_leases("w1", [Lease(running, claimed.lease_token)], LEASE_MS) == set()
    record = storage.get_job(running)
    assert record is not None and record.status is JobStatus.CANCELLED and record.output is None
    history = storage.get_events(running)
    assert history[-1].event_type is EventType.CANCELLED
    assert history[-1].data == {"previous_status": "processing"}


def test_cancel_errors(storage: PostgresStorage) -> None:
    with pytest.raises(JobNotFoundError):
        storage.cancel_job(999_999)
    [result] = storage.add_jobs([job()])
    storage.cancel_job(result.job_id)
    with pytest.raises(InvalidJobStateError, match="cancelled"):
        storage.cancel_job(result.job_id)
    assert events(storage, result.job_id) == [EventType.ADDED, EventType.CANCELLED]


def test_retry_a_failed_job_resets_it(storage: PostgresStorage) -> None:
    [result] = storage.add_jobs([job(max_attempts=1)])
    claimed = claim_one(storage)
    storage.set_progress(claimed.id, claimed.lease_token, 40)
    storage.set_output(claimed.id, claimed.lease_token, '{"partial": 1}')
    assert storage.settle_jobs([Failure(claimed.id, claimed.lease_token, "boom", "handler_error")]) == [True]
    retried = storage.retry_job(result.job_id)
    assert retried.status is JobStatus.PENDING
    assert (retried.attempts, retried.progress, retried.output, retried.failure_reason) == (
        0,
        None,
        None,
        None,
    )
    assert retried.last_retried_at is not None and retried.completed_at is None
    assert retried.lease_token == claimed.lease_token + 1
    assert len(retried.error_history) == 1
    assert retried.run_at <= datetime.now(UTC)
    assert claim_one(storage).id == result.job_id
    assert EventType.RETRIED in events(storage, result.job_id)


def test_retry_errors(storage: PostgresStorage) -> None:
    with pytest.raises(JobNotFoundError):
        storage.retry_job(424242)
    [result] = storage.add_jobs([job()])
    with pytest.raises(InvalidJobStateError, match="pending"):
        storage.retry_job(result.job_id)


def test_edit_a_pending_job(storage: PostgresStorage) -> None:
    [result] = storage.add_jobs([job(1, tags=("old",))])
    later = datetime.now(UTC) + timedelta(hours=1)
    edited = storage.edit_job(
        result.job_id,
        {
            "payload_json": '{"n": 2}',
            "priority": 3,
            "tags": ["new", "x"],
            "run_at": later,
            "timeout_ms": None,
        },
    )
    assert edited.payload == {"n": 2} and edited.priority == 3 and edited.tags == ["new", "x"]
    assert edited.run_at == later and edited.timeout_ms is None
    assert edited.max_attempts == 3  # untouched
    last = storage.get_events(result.job_id)[-1]
    assert last.event_type is EventType.EDITED
    assert last.data == {"fields": ["payload", "priority", "run_at", "tags", "timeout_ms"]}
    assert storage.edit_job(result.job_id, {"run_at": None}).run_at <= datetime.now(UTC)


def test_edit_errors(storage: PostgresStorage) -> None:
    [result] = storage.add_jobs([job()])
    with pytest.raises(InvalidJobStateError, match="status"):
        storage.edit_job(result.job_id, {"status": "completed"})
    claim_one(storage)
    with pytest.raises(InvalidJobStateError, match="processing"):
        storage.edit_job(result.job_id, {"priority": 1})
    with pytest.raises(JobNotFoundError):
        storage.edit_job(777_777, {"priority": 1})


# -- working ----------------------------------------------------------------------------


def test_claim_order_types_limit_and_lease(storage: PostgresStorage) -> None:
    future = datetime.now(UTC) + timedelta(hours=1)
    ids = [
        r.job_id
        for r in storage.add_jobs(
            [job(0, "a"), job(1, "b", priority=10), job(2, "a", priority=5), job(3, "a", run_at=future)]
        )
    ]
    assert [j.id for j in storage.claim_jobs("w", ["a"], 10, LEASE_MS)] == [ids[2], ids[0]]
    [claimed] = storage.claim_jobs("w2", None, 10, 5_000)
    assert claimed.id == ids[1]
    assert claimed.status is JobStatus.PROCESSING
    assert (claimed.attempts, claimed.locked_by) == (1, "w2")
    assert claimed.lease_token >= 1  # a new token with a random step (see claim_jobs.sql)
    assert claimed.started_at is not None and claimed.locked_at is not None
    assert claimed.lease_expires_at is not None
    lease = (claimed.lease_expires_at - claimed.locked_at).total_seconds()
    assert 4.9 < lease < 5.1
    assert storage.claim_jobs("w", None, 10, LEASE_MS) == []
    assert storage.claim_jobs("w", None, 0, LEASE_MS) == []
    history = storage.get_events(claimed.id)
    assert history[-1].event_type is EventType.PROCESSING
    assert history[-1].data == {"worker_id": "w2", "attempt": 1}


def test_claims_from_many_threads_never_overlap(pg_url: str) -> None:
    stores = [PostgresStorage(pg_url) for _ in range(4)]
    stores[0].add_jobs([job(i) for i in range(400)])
    claimed: list[int] = []
    lock = threading.Lock()

    def drain(store: PostgresStorage, worker: str) -> None:
        while batch := store.claim_jobs(worker, None, 7, LEASE_MS):
            applied = store.settle_jobs([Completion(j.id, j.lease_token, "null") for j in batch])
            assert all(applied)
            with lock:
                claimed.extend(j.id for j in batch)

    threads = [threading.Thread(target=drain, args=(s, f"w{i}")) for i, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(claimed) == 400 and len(set(claimed)) == 400
    done = stores[0].list_jobs(JobFilter(statuses=(JobStatus.COMPLETED,), limit=1000))
    assert len(done.jobs) == 400
    for store in stores:
        store.close()


def test_complete_is_fenced_and_keeps_or_stores_output(storage: PostgresStorage) -> None:
    a, b, c = (r.job_id for r in storage.add_jobs([job(1), job(2), job(3)]))
    claimed = {j.id: j for j in storage.claim_jobs("w", None, 3, LEASE_MS)}
    assert storage.set_output(a, claimed[a].lease_token, '{"v": 1}')
    assert storage.set_progress(a, claimed[a].lease_token, 70)
    result = storage.settle_jobs(
        [
            Completion(a, claimed[a].lease_token),  # keeps the output set during the run
            Completion(b, claimed[b].lease_token + 1, '{"v": 2}'),  # wrong token
            Completion(c, claimed[c].lease_token, '{"v": 3}'),
            Completion(c, claimed[c].lease_token, '{"v": 4}'),  # the same job twice
        ]
    )
    assert result == [True, False, True, False]
    first, second, third = (storage.get_job(i) for i in (a, b, c))
    assert first is not None and second is not None and third is not None
    assert first.status is JobStatus.COMPLETED and first.output == {"v": 1} and first.progress == 70
    assert first.completed_at is not None and first.lease_expires_at is None
    assert second.status is JobStatus.PROCESSING
    assert third.output == {"v": 3}
    assert storage.settle_jobs([Completion(c, claimed[c].lease_token)]) == [False]  # not processing now
    assert events(storage, a)[-1] is EventType.COMPLETED
    assert storage.settle_jobs([]) == []


def test_fail_with_and_without_retry(storage: PostgresStorage) -> None:
    a, b = (r.job_id for r in storage.add_jobs([job(1), job(2)]))
    claimed = {j.id: j for j in storage.claim_jobs("w", None, 2, LEASE_MS)}
    retry_at = datetime.now(UTC) + timedelta(minutes=5)
    assert storage.settle_jobs(
        [
            Failure(a, claimed[a].lease_token, "boom", "handler_error", retry_at),
            Failure(b, claimed[b].lease_token, "slow", "timeout"),
            Failure(b, 999, "x", "handler_error"),
        ]
    ) == [True, True, False]
    retrying, failed = storage.get_job(a), storage.get_job(b)
    assert retrying is not None and failed is not None
    assert retrying.status is JobStatus.PENDING and retrying.run_at == retry_at
    assert retrying.failure_reason == "handler_error" and retrying.last_failed_at is not None
    [entry] = retrying.error_history
    assert (entry["attempt"], entry["error"], entry["reason"]) == (1, "boom", "handler_error")
    assert datetime.fromisoformat(entry["at"]).tzinfo is not None
    assert failed.status is JobStatus.FAILED and failed.failure_reason == "timeout"
    assert storage.get_events(a)[-1].data == {
        "attempt": 1,
        "error": "boom",
        "reason": "handler_error",
        "will_retry": True,
    }
    assert storage.get_events(b)[-1].data["will_retry"] is False  # type: ignore[index]
    assert storage.claim_jobs("w", None, 5, LEASE_MS) == []  # the retry is not due yet
    assert 290 < (storage.next_due_in(None) or 0) <= 300


def test_release_refunds_unstarted_attempts_and_fences(storage: PostgresStorage) -> None:
    a, b = (r.job_id for r in storage.add_jobs([job(1), job(2)]))
    claimed = {j.id: j for j in storage.claim_jobs("w", None, 2, LEASE_MS)}
    assert storage.settle_jobs(
        [Release(a, claimed[a].lease_token, started=False), Release(b, claimed[b].lease_token, started=True)]
    ) == [True, True]
    first, second = storage.get_job(a), storage.get_job(b)
    assert first is not None and second is not None
    assert (first.status, first.attempts, first.lease_expires_at) == (JobStatus.PENDING, 0, None)
    assert (second.status, second.attempts) == (JobStatus.PENDING, 1)
    assert first.lease_token == claimed[a].lease_token + 1
    assert storage.settle_jobs([Completion(a, claimed[a].lease_token)]) == [False]
    assert storage.settle_jobs([Release(a, claimed[a].lease_token, started=False)]) == [False]
    assert {j.id for j in storage.claim_jobs("w", None, 5, LEASE_MS)} == {a, b}


def test_renew_leases(storage: PostgresStorage) -> None:
    a, b = (r.job_id for r in storage.add_jobs([job(1), job(2)]))
    claimed = {j.id: j for j in storage.claim_jobs("w", None, 2, 1_000)}
    held = storage.renew_leases("w", [Lease(a, claimed[a].lease_token), Lease(b, 12345)], 60_000)
    assert held == {a}
    record = storage.get_job(a)
    assert record is not None and record.lease_expires_at is not None
    assert (record.lease_expires_at - datetime.now(UTC)).total_seconds() > 50
    assert storage.renew_leases("w", [], 1) == set()


def test_progress_and_output_are_fenced(storage: PostgresStorage) -> None:
    [result] = storage.add_jobs([job()])
    assert storage.set_progress(result.job_id, 0, 10) is False  # pending: nobody holds it
    claimed = claim_one(storage)
    assert storage.set_progress(claimed.id, claimed.lease_token, 10)
    assert storage.set_output(claimed.id, claimed.lease_token, '{"a": 1}')
    assert storage.set_output(claimed.id, claimed.lease_token, '{"a": 2}')  # last write wins
    assert storage.set_output(claimed.id, claimed.lease_token - 1, '{"a": 3}') is False
    record = storage.get_job(claimed.id)
    assert record is not None and record.progress == 10 and record.output == {"a": 2}
    with pytest.raises(ValueError, match="progress"):
        storage.set_progress(claimed.id, claimed.lease_token, 101)


def test_reclaim_expired_leases(storage: PostgresStorage) -> None:
    again, used_up, healthy = (
        r.job_id for r in storage.add_jobs([job(1, priority=3), job(2, priority=2, max_attempts=1), job(3)])
    )
    short = {j.id: j for j in storage.claim_jobs("dead-worker", None, 2, 1)}
    long = claim_one(storage, "alive", LEASE_MS)
    assert long.id == healthy
    time.sleep(0.05)
    reclaimed = storage.reclaim_expired()
    assert {(r.job_id, r.status) for r in reclaimed} == {
        (again, JobStatus.PENDING),
        (used_up, JobStatus.FAILED),
    }
    first, second = storage.get_job(again), storage.get_job(used_up)
    assert first is not None and second is not None
    assert first.lease_token == short[again].lease_token + 1 and first.locked_by is None
    assert second.failure_reason == "lease_expired" and second.error_history[-1]["reason"] == "lease_expired"
    assert storage.get_events(again)[-1].event_type is EventType.RECLAIMED
    assert storage.get_events(again)[-1].data == {"attempt": 1, "previous_worker": "dead-worker"}
    assert storage.get_events(used_up)[-1].event_type is EventType.FAILED
    # The dead worker's late completion is rejected.
    assert storage.settle_jobs([Completion(again, short[again].lease_token)]) == [False]
    assert storage.reclaim_expired() == []
    assert claim_one(storage).id == again


def test_next_due_in(storage: PostgresStorage) -> None:
    assert storage.next_due_in(None) is None
    storage.add_jobs([job(0, "later", run_at=datetime.now(UTC) + timedelta(seconds=30))])
    due = storage.next_due_in(None)
    assert due is not None and 28 < due <= 30
    assert storage.next_due_in(["other"]) is None
    storage.add_jobs([job(0, "now")])
    assert storage.next_due_in(None) == 0.0
    assert storage.next_due_in(["later"]) == pytest.approx(due, abs=1)


def test_close_twice(pg_url: str) -> None:
    store = PostgresStorage(pg_url)
    store.setup()
    store.close()
    store.close()
    store.wait_for_jobs(0.01, None)


def test_only_the_claim_commits_asynchronously(storage: PostgresStorage) -> None:
    """The claim turns synchronous_commit off for its own transaction; the session keeps it on."""
    storage.add_jobs([job(1)])
    with storage._connection("checking") as conn:
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
    for _ in range(3):
        storage.claim_jobs("w", None, 1, LEASE_MS)
        with storage._connection("checking") as conn:
            assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
