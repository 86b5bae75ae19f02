"""Conformance: versioned storage and the job ``meta`` field, on every backend."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from helpers import make_queue

from dqflow import Queue, StorageTooNewError, ValidationFailed
from dqflow.record import JobRecord
from dqflow.storage import NewJob, Storage, open_storage
from dqflow.storage.base import EDITABLE_FIELDS, JOB_OPTIONS


@pytest.fixture
def queue(backend: str) -> Iterator[Queue]:
    q = make_queue(backend, {"echo": {"handler": lambda payload: payload}})
    yield q
    q.close()


def test_meta_is_an_empty_object_by_default(queue: Queue) -> None:
    job_id = queue.add("echo", {"a": 1})
    assert queue.require_job(job_id).meta == {}


def test_meta_given_at_add_is_kept_exactly(queue: Queue) -> None:
    meta = {"trace_id": "abc", "parent": 12, "nested": {"list": [1, 2.5, None, True]}, "é": "ü"}
    job_id = queue.add("echo", {}, meta=meta)
    assert queue.require_job(job_id).meta == meta
    ids = queue.add_many([{"job_type": "echo", "meta": {"n": n}} for n in range(3)] + [{"job_type": "echo"}])
    assert [queue.require_job(i).meta for i in ids] == [{"n": 0}, {"n": 1}, {"n": 2}, {}]


def test_meta_comes_back_on_claimed_and_listed_records(queue: Queue) -> None:
    job_id = queue.add("echo", {}, meta={"k": "v"})
    (claimed,) = queue.storage.claim_jobs("w", None, 1, 5000)
    assert claimed.id == job_id and claimed.meta == {"k": "v"}
    assert [job.meta for job in queue.list_jobs().jobs] == [{"k": "v"}]


def test_meta_that_is_not_a_json_object_is_refused_and_nothing_is_stored(queue: Queue) -> None:
    with pytest.raises(TypeError, match="meta must be a JSON object"):
        queue.add("echo", {}, meta=["not", "an", "object"])  # type: ignore[arg-type]
    with pytest.raises(ValidationFailed, match="meta"):
        queue.add("echo", {}, meta={"when": datetime.now(UTC)})
    with pytest.raises(ValidationFailed, match="job 1"):
        queue.add_many([{"job_type": "echo"}, {"job_type": "echo", "meta": {"bad": float("nan")}}])
    assert queue.list_jobs().jobs == []


def test_meta_can_be_edited_at_storage_level(storage: Storage) -> None:
    (added,) = storage.add_jobs([NewJob("t", "{}", meta_json='{"a": 1}')])
    assert storage.edit_job(added.job_id, {"meta_json": '{"b": [2]}'}).meta == {"b": [2]}
    assert storage.edit_job(added.job_id, {"meta_json": "{}"}).meta == {}
    assert storage.get_events(added.job_id)[-1].data == {"fields": ["meta"]}


def test_every_job_option_round_trips_through_add_and_edit(storage: Storage) -> None:
    """Options are derived from one table: each one reaches its JobRecord field on every backend."""
    run_at = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    job = NewJob(
        "t",
        '{"p": 1}',
        priority=-5,
        run_at=run_at,
        max_attempts=9,
        timeout_ms=1234,
        retry_delay_ms=55,
        retry_backoff="fixed",
        retry_max_delay_ms=99_000,
        retry_jitter=False,
        tags=("b", "a"),
        idempotency_key="key-1",
        meta_json='{"m": true}',
        workflow_run_id=77,
        workflow_step="resize",
        workflow_item=3,
        concurrency_key="t:acme",
        concurrency_limit=2,
        rate_key="t:eu",
        rate_limit=100,
        rate_window_ms=60_000,
        dead_letter_json='{"job_type": "dlq", "max_attempts": 2}',
    )
    (added,) = storage.add_jobs([job])
    record = storage.get_job(added.job_id)
    assert record is not None
    for option in JOB_OPTIONS:
        value = getattr(job, option.name)
        stored = getattr(record, option.column)
        expected = {
            "payload_json": {"p": 1},
            "meta_json": {"m": True},
            "tags": ["b", "a"],
            "dead_letter_json": {"job_type": "dlq", "max_attempts": 2},
        }.get(option.name, value)
        assert stored == expected, option.name
    later = run_at + timedelta(days=1)
    edited = storage.edit_job(added.job_id, {"timeout_ms": None, "retry_jitter": True, "run_at": later})
    assert (edited.timeout_ms, edited.retry_jitter, edited.run_at) == (None, True, later)
    fixed = {"job_type", "idempotency_key", "workflow_run_id", "workflow_step", "workflow_item"}
    fixed |= {"concurrency_key", "concurrency_limit", "rate_key", "rate_limit", "rate_window_ms", "dead_letter_json"}
    assert {o.name for o in JOB_OPTIONS} - fixed == EDITABLE_FIELDS
    assert {o.column for o in JOB_OPTIONS} <= set(JobRecord.model_fields)


def _mark_as_written_by_a_newer_dqflow(backend: str) -> None:
    """Leave the storage the way a future dqflow would: one version past this code's."""
    if backend.startswith("sqlite"):
        with sqlite3.connect(backend.removeprefix("sqlite:///")) as conn:
            conn.execute("INSERT INTO dqflow_migrations (version, name, applied_at) VALUES (9999, '9999_future', 0)")
    elif backend.startswith("postgresql"):
        import psycopg

        database, schema = backend.split("?schema=")
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(f"INSERT INTO {schema}.dqflow_migrations (name) VALUES ('9999_future')")
    else:
        import redis

        url, prefix = backend.split("?prefix=")
        client = redis.Redis.from_url(url)
        client.set("{" + prefix + "}:layout", 9999)
        client.close()


def test_storage_written_by_a_newer_dqflow_is_refused_with_a_clear_error(backend: str) -> None:
    first = open_storage(backend)
    first.setup()
    first.add_jobs([NewJob("t", "{}")])
    first.close()
    _mark_as_written_by_a_newer_dqflow(backend)
    newer = open_storage(backend)
    try:
        with pytest.raises(StorageTooNewError, match=r"newer dqflow.*9999.*upgrade dqflow"):
            newer.setup()
    finally:
        newer.close()


def test_setup_twice_applies_nothing_the_second_time(backend: str) -> None:
    for _ in range(2):
        store = open_storage(backend)
        store.setup()
        store.close()
    store = open_storage(backend)
    store.setup()
    assert store.add_jobs([NewJob("t", "{}")])[0].created
    store.close()
