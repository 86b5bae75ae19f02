"""Contract: ``add_jobs``, ``get_job`` and ``get_events`` on every backend."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from helpers import add_job, add_jobs, event_types

from dqflow.record import EventType, JobStatus
from dqflow.storage import JobFilter, NewJob, Storage, open_storage


def test_add_returns_ids_in_input_order_with_defaults(storage: Storage) -> None:
    before = datetime.now(UTC)
    results = storage.add_jobs([NewJob("t", f'{{"n": {i}}}') for i in range(50)])
    assert [r.created for r in results] == [True] * 50
    ids = [r.job_id for r in results]
    assert ids == sorted(ids) and len(set(ids)) == 50
    job = storage.get_job(ids[17])
    assert job is not None
    assert job.id == ids[17] and job.job_type == "t" and job.payload == {"n": 17}
    assert job.status is JobStatus.PENDING
    assert (job.priority, job.attempts, job.max_attempts, job.lease_token) == (0, 0, 3, 0)
    assert (job.retry_delay_ms, job.retry_backoff, job.retry_jitter) == (10_000, "exponential", True)
    assert job.timeout_ms is None and job.retry_max_delay_ms is None and job.idempotency_key is None
    assert job.tags == [] and job.error_history == []
    assert job.progress is None and job.output is None and job.failure_reason is None
    assert job.created_at.tzinfo is not None and job.run_at.tzinfo is not None
    assert before <= job.created_at <= datetime.now(UTC)
    assert job.run_at == job.created_at  # run_at=None means now
    assert job.updated_at == job.created_at
    for name in ("started_at", "completed_at", "last_failed_at", "last_retried_at", "cancelled_at"):
        assert getattr(job, name) is None, name
    assert job.locked_by is None and job.locked_at is None and job.lease_expires_at is None
    assert event_types(storage, ids[17]) == [EventType.ADDED]


def test_add_keeps_every_option_and_reads_back_the_same_record(storage: Storage) -> None:
    run_at = datetime(2030, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
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
    assert job.job_type == "report"
    assert job.payload == {"a": [1, 2.5, "é", None, True], "b": {"c": "x/y"}}
    assert (job.priority, job.max_attempts, job.timeout_ms) == (-7, 9, 1234)
    assert (job.retry_delay_ms, job.retry_backoff, job.retry_max_delay_ms) == (77, "fixed", 999)
    assert job.retry_jitter is False
    assert job.run_at == run_at and job.run_at.tzinfo is not None
    assert job.tags == ["b", "a", "b"]  # stored as given
    assert job.idempotency_key == ""  # the empty string is a key, not a null
    assert storage.get_job(job.id) == job  # a second read returns the same values and types


def test_add_nothing_returns_nothing(storage: Storage) -> None:
    assert storage.add_jobs([]) == []
    assert storage.list_jobs(JobFilter()).jobs == []


def test_idempotency_key_returns_the_existing_job(storage: Storage) -> None:
    [first] = storage.add_jobs([NewJob("t", '{"n": 1}', idempotency_key="k")])
    again = storage.add_jobs(
        [
            NewJob("t", '{"n": 2}'),
            NewJob("t", '{"n": 3}', idempotency_key="k"),
            NewJob("t", '{"n": 4}', idempotency_key="k2"),
            NewJob("t", '{"n": 5}', idempotency_key="k2"),  # a key repeated inside one batch
        ]
    )
    assert [r.created for r in again] == [True, False, True, False]
    assert again[1].job_id == first.job_id
    assert again[3].job_id == again[2].job_id
    record = storage.get_job(first.job_id)
    assert record is not None and record.payload == {"n": 1}  # the first payload is kept
    assert len(storage.list_jobs(JobFilter()).jobs) == 3
    assert event_types(storage, first.job_id) == [EventType.ADDED]  # no event for a duplicate


def test_concurrent_adds_with_one_key_create_one_job(backend: str) -> None:
    stores = [open_storage(backend) for _ in range(6)]
    for store in stores:
        store.setup()
    results: list[tuple[int, bool]] = []
    barrier = threading.Barrier(len(stores))

    def add(store: Storage) -> None:
        barrier.wait()
        [result] = store.add_jobs([NewJob("t", "{}", idempotency_key="same")])
        results.append((result.job_id, result.created))

    threads = [threading.Thread(target=add, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert len({job_id for job_id, _ in results}) == 1
        assert sorted(created for _, created in results) == [False] * 5 + [True]
        assert len(stores[0].list_jobs(JobFilter()).jobs) == 1
    finally:
        for store in stores:
            store.close()


def test_bulk_add_of_ten_thousand(storage: Storage) -> None:
    results = storage.add_jobs([NewJob("t", f'{{"n": {i}}}', tags=("bulk",)) for i in range(10_000)])
    assert len(results) == 10_000 and all(r.created for r in results)
    assert len({r.job_id for r in results}) == 10_000
    first, last = storage.get_job(results[0].job_id), storage.get_job(results[-1].job_id)
    assert first is not None and last is not None
    assert (first.payload, last.payload) == ({"n": 0}, {"n": 9_999})


def test_unknown_ids_read_as_nothing(storage: Storage) -> None:
    add_job(storage)
    assert storage.get_job(123_456) is None
    assert storage.get_events(123_456) == []


def test_events_are_oldest_first_with_times(storage: Storage) -> None:
    [job_id] = add_jobs(storage)
    storage.cancel_job(job_id)
    history = storage.get_events(job_id)
    assert [e.event_type for e in history] == [EventType.ADDED, EventType.CANCELLED]
    assert all(e.job_id == job_id and e.created_at.tzinfo is not None for e in history)
    assert history[0].created_at <= history[1].created_at
    assert history[0].data is None
