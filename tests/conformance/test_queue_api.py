"""Conformance: the queue API behaves the same on every backend (the `backend` fixture)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from helpers import make_queue

from dqflow import (
    EventType,
    InvalidJobStateError,
    JobNotFoundError,
    JobStatus,
    PayloadTooLargeError,
    PayloadValidationError,
    Queue,
    UnknownJobTypeError,
)

REPORT_PAYLOAD = {
    "type": "object",
    "required": ["reportId"],
    "properties": {
        "reportId": {"type": "string", "minLength": 1},
        "pages": {"type": "integer", "minimum": 1},
    },
    "additionalProperties": False,
}


def noop(payload: Any, ctx: Any) -> None:
    return None


@pytest.fixture
def queue(backend: str) -> Any:
    q = make_queue(
        backend,
        {
            "report": {"handler": noop, "payload": REPORT_PAYLOAD, "priority": 2, "tags": ["reports"]},
            "plain": {"handler": noop, "max_attempts": 5, "timeout": "30s"},
        },
        limits={"max_payload_bytes": 2000},
    )
    yield q
    q.close()


def test_add_returns_id_and_stores_declared_defaults(queue: Queue) -> None:
    job_id = queue.add("report", {"reportId": "r1"})
    job = queue.get_job(job_id)
    assert job is not None
    assert job.id == job_id
    assert job.job_type == "report"
    assert job.payload == {"reportId": "r1"}
    assert job.status is JobStatus.PENDING
    assert job.priority == 2
    assert job.tags == ["reports"]
    assert job.attempts == 0
    assert job.max_attempts == 3
    assert job.progress is None
    assert job.output is None
    assert job.error_history == []
    assert job.failure_reason is None
    assert job.lease_token == 0 or isinstance(job.lease_token, int)
    assert job.created_at.tzinfo is not None
    assert abs((job.created_at - datetime.now(UTC)).total_seconds()) < 30
    other = queue.get_job(queue.add("plain", {"x": 1}))
    assert other is not None
    assert other.max_attempts == 5
    assert other.timeout_ms == 30_000


def test_add_options_override_the_declaration(queue: Queue) -> None:
    run_at = datetime.now(UTC) + timedelta(hours=1)
    job_id = queue.add(
        "report",
        {"reportId": "r1"},
        priority=9,
        run_at=run_at,
        timeout="2s",
        max_attempts=7,
        tags=["a", "b"],
        retry_delay="1s",
        retry_backoff="fixed",
        retry_max_delay=None,
        retry_jitter=False,
    )
    job = queue.get_job(job_id)
    assert job is not None
    assert (job.priority, job.max_attempts, job.timeout_ms, job.tags) == (9, 7, 2000, ["a", "b"])
    assert (job.retry_delay_ms, job.retry_backoff, job.retry_max_delay_ms, job.retry_jitter) == (
        1000,
        "fixed",
        None,
        False,
    )
    assert abs((job.run_at - run_at).total_seconds()) < 0.01


def test_add_many_returns_ids_in_input_order(queue: Queue) -> None:
    ids = queue.add_many([{"job_type": "report", "payload": {"reportId": f"r{i}"}} for i in range(50)])
    assert len(ids) == 50 == len(set(ids))
    for i, job_id in enumerate(ids):
        job = queue.get_job(job_id)
        assert job is not None and job.payload == {"reportId": f"r{i}"}


def test_payload_failing_its_schema_is_refused_and_nothing_is_stored(queue: Queue) -> None:
    with pytest.raises(PayloadValidationError) as info:
        queue.add("report", {"reportId": "", "pages": "ten"})
    message = str(info.value)
    assert "$.pages" in message and "'ten' is not of type 'integer'" in message
    assert "$.reportId" in message
    with pytest.raises(PayloadValidationError, match="'reportId' is a required property"):
        queue.add("report", {})
    with pytest.raises(PayloadValidationError, match="job 1"):
        queue.add_many([{"job_type": "report", "payload": {"reportId": "ok"}}, {"job_type": "report", "payload": {}}])
    assert queue.list_jobs().jobs == []


def test_unknown_job_type_is_refused(queue: Queue) -> None:
    with pytest.raises(UnknownJobTypeError, match="unknown job type 'nope'") as info:
        queue.add("nope", {})
    assert isinstance(info.value, PayloadValidationError)
    assert queue.list_jobs().jobs == []


@pytest.mark.parametrize(
    "payload",
    [
        {"x": math.nan},
        {"x": math.inf},
        {"x": b"bytes"},
        {"x": {1, 2}},
        {1: "non-string key"},
        {"when": datetime.now(UTC)},
    ],
    ids=["nan", "infinity", "bytes", "set", "int-key", "datetime"],
)
def test_values_that_are_not_json_are_refused(queue: Queue, payload: Any) -> None:
    with pytest.raises(PayloadValidationError, match="not JSON"):
        queue.add("plain", payload)
    assert queue.list_jobs().jobs == []


def test_cyclic_payload_is_refused(queue: Queue) -> None:
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    with pytest.raises(PayloadValidationError, match="circular"):
        queue.add("plain", cycle)


def test_payload_over_the_size_limit_is_refused(queue: Queue) -> None:
    with pytest.raises(PayloadTooLargeError, match="over the limit of 2000 bytes"):
        queue.add("plain", {"blob": "x" * 5000})
    assert queue.list_jobs().jobs == []


def test_repeated_idempotency_key_returns_the_existing_job(queue: Queue) -> None:
    first = queue.add("report", {"reportId": "a"}, idempotency_key="daily-2026-11-28")
    second = queue.add("report", {"reportId": "b"}, idempotency_key="daily-2026-11-28")
    assert first == second
    ids = queue.add_many(
        [
            {"job_type": "report", "payload": {"reportId": "c"}, "idempotency_key": "daily-2026-11-28"},
            {"job_type": "report", "payload": {"reportId": "d"}, "idempotency_key": "other"},
        ]
    )
    assert ids[0] == first and ids[1] != first
    assert len(queue.list_jobs().jobs) == 2
    job = queue.get_job(first)
    assert job is not None and job.payload == {"reportId": "a"}


def test_get_job_of_unknown_id_is_none(queue: Queue) -> None:
    assert queue.get_job(987654) is None
    with pytest.raises(JobNotFoundError, match="no job with id 987654"):
        queue.require_job(987654)


def test_list_filters_by_status_type_and_tags(queue: Queue) -> None:
    a = queue.add("plain", {}, tags=["red", "big"])
    b = queue.add("plain", {}, tags=["red"])
    c = queue.add("plain", {}, tags=["blue"])
    d = queue.add("report", {"reportId": "x"}, tags=[])
    queue.cancel(c)

    def ids(**filters: Any) -> list[int]:
        return [job.id for job in queue.list_jobs(**filters).jobs]

    assert ids() == [d, c, b, a]
    assert ids(status="cancelled") == [c]
    assert ids(status=["pending"]) == [d, b, a]
    assert ids(job_type="report") == [d]
    assert ids(tags=["red"]) == [b, a]
    assert ids(tags=["red", "big"], tag_mode="all") == [a]
    assert ids(tags=["big", "blue"], tag_mode="any") == [c, a]
    assert ids(tags=["red"], tag_mode="none") == [d, c]
    assert ids(tags=["red"], tag_mode="exact") == [b]
    assert ids(tags=["big", "red"], tag_mode="exact") == [a]
    assert ids(job_type="plain", status="pending", tags=["red"]) == [b, a]
    with pytest.raises(ValueError, match="unknown status"):
        queue.list_jobs(status="nope")
    with pytest.raises(ValueError, match="tag_mode"):
        queue.list_jobs(tags=["x"], tag_mode="some")


def test_list_pages_with_a_keyset_cursor(queue: Queue) -> None:
    all_ids = queue.add_many([{"job_type": "plain", "payload": {"i": i}} for i in range(25)])
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        page = queue.list_jobs(limit=10, cursor=cursor)
        seen.extend(job.id for job in page.jobs)
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == 3
    assert seen == sorted(all_ids, reverse=True)


def test_list_filters_by_creation_time(queue: Queue) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    job_id = queue.add("plain", {})
    assert [j.id for j in queue.list_jobs(created_after=before).jobs] == [job_id]
    assert queue.list_jobs(created_before=before).jobs == []


def test_cancel_pending_job_and_its_history(queue: Queue) -> None:
    seen: list[dict[str, Any]] = []
    queue.on("job:cancelled", seen.append)
    job_id = queue.add("plain", {})
    job = queue.cancel(job_id)
    assert job.status is JobStatus.CANCELLED and job.cancelled_at is not None
    assert seen == [{"job_id": job_id, "job_type": "plain"}]
    kinds = [event.event_type for event in queue.get_events(job_id)]
    assert kinds == [EventType.ADDED, EventType.CANCELLED]
    with pytest.raises(InvalidJobStateError, match="cancelled"):
        queue.cancel(job_id)
    with pytest.raises(JobNotFoundError):
        queue.cancel(424242)


def test_retry_of_a_pending_job_is_refused(queue: Queue) -> None:
    job_id = queue.add("plain", {})
    with pytest.raises(InvalidJobStateError, match="only failed or cancelled"):
        queue.retry(job_id)
    with pytest.raises(JobNotFoundError):
        queue.retry(424242)


def test_retry_of_a_cancelled_job_makes_it_pending_again(queue: Queue) -> None:
    seen: list[dict[str, Any]] = []
    queue.on("job:retried", seen.append)
    job_id = queue.add("plain", {})
    queue.cancel(job_id)
    job = queue.retry(job_id)
    assert job.status is JobStatus.PENDING
    assert job.attempts == 0 and job.cancelled_at is None and job.last_retried_at is not None
    assert seen == [{"job_id": job_id, "job_type": "plain"}]
    assert [e.event_type for e in queue.get_events(job_id)][-1] is EventType.RETRIED


def test_edit_a_pending_job(queue: Queue) -> None:
    job_id = queue.add("report", {"reportId": "a"})
    job = queue.edit(job_id, payload={"reportId": "b", "pages": 3}, priority=7, tags=["x"], max_attempts=4)
    assert (job.payload, job.priority, job.tags, job.max_attempts) == (
        {"reportId": "b", "pages": 3},
        7,
        ["x"],
        4,
    )
    events = queue.get_events(job_id)
    assert events[-1].event_type is EventType.EDITED
    assert events[-1].data == {"fields": ["max_attempts", "payload", "priority", "tags"]}
    with pytest.raises(PayloadValidationError, match="pages"):
        queue.edit(job_id, payload={"reportId": "b", "pages": 0})
    still = queue.get_job(job_id)
    assert still is not None and still.payload == {"reportId": "b", "pages": 3}
    queue.cancel(job_id)
    with pytest.raises(InvalidJobStateError, match="only pending"):
        queue.edit(job_id, priority=1)
    with pytest.raises(JobNotFoundError):
        queue.edit(424242, priority=1)


def test_added_event_fires_once_per_new_job(queue: Queue) -> None:
    seen: list[dict[str, Any]] = []
    queue.on("job:added", seen.append)
    once: list[dict[str, Any]] = []
    queue.once("job:added", once.append)
    first = queue.add("plain", {}, idempotency_key="k")
    queue.add("plain", {}, idempotency_key="k")
    second = queue.add("plain", {})
    assert seen == [{"job_id": first, "job_type": "plain"}, {"job_id": second, "job_type": "plain"}]
    assert once == [{"job_id": first, "job_type": "plain"}]
    queue.off("job:added", seen.append)
    queue.add("plain", {})
    assert len(seen) == 2
    with pytest.raises(ValueError, match="unknown event"):
        queue.on("job:exploded", seen.append)


def test_a_listener_that_raises_is_reported_not_fatal(queue: Queue) -> None:
    errors: list[dict[str, Any]] = []
    queue.on("error", errors.append)

    def boom(data: dict[str, Any]) -> None:
        raise RuntimeError("listener bug")

    queue.on("job:added", boom)
    job_id = queue.add("plain", {})
    assert queue.get_job(job_id) is not None
    assert len(errors) == 1 and "listener bug" in str(errors[0]["error"])
