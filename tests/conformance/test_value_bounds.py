"""Conformance: one set of value limits (dqflow.bounds), checked by the queue, the same on every backend.

The edges are stored and read back exactly on SQLite, PostgreSQL and Redis; one
step past an edge is refused with a clear error before anything is stored.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from helpers import make_queue

from dqflow import (
    JobStatus,
    OutputTooLargeError,
    OutputValidationError,
    PayloadTooLargeError,
    PayloadValidationError,
    Queue,
    TooLargeError,
    Worker,
)
from dqflow.bounds import MAX_ATTEMPTS_MAX, MAX_JSON_DEPTH, PRIORITY_MAX, PRIORITY_MIN, RUN_AT_MAX, RUN_AT_MIN

US = timedelta(microseconds=1)


def noop(payload: Any) -> None:
    return None


@pytest.fixture
def queue(backend: str) -> Any:
    q = make_queue(backend, {"t": {"handler": noop}})
    yield q
    q.close()


def assert_nothing_stored(queue: Queue) -> None:
    assert queue.list_jobs().jobs == []


@pytest.mark.parametrize("priority", [PRIORITY_MIN, PRIORITY_MAX])
def test_priority_edges_are_stored_exactly(queue: Queue, priority: int) -> None:
    job = queue.require_job(queue.add("t", priority=priority))
    assert job.priority == priority


@pytest.mark.parametrize("priority", [PRIORITY_MIN - 1, PRIORITY_MAX + 1, 10**30])
def test_priority_outside_int32_is_refused(queue: Queue, priority: int) -> None:
    with pytest.raises(ValueError, match="priority must be between -2,147,483,648 and 2,147,483,647"):
        queue.add("t", priority=priority)
    assert_nothing_stored(queue)


def test_max_attempts_edges(queue: Queue) -> None:
    assert queue.require_job(queue.add("t", max_attempts=MAX_ATTEMPTS_MAX)).max_attempts == MAX_ATTEMPTS_MAX
    assert queue.require_job(queue.add("t", max_attempts=1)).max_attempts == 1
    for bad in (0, -1, MAX_ATTEMPTS_MAX + 1, 3_000_000_000):
        with pytest.raises(ValueError, match="max_attempts must be between 1 and 2,147,483,647"):
            queue.add("t", max_attempts=bad)
    assert len(queue.list_jobs().jobs) == 2


@pytest.mark.parametrize("run_at", [RUN_AT_MIN, RUN_AT_MAX, datetime(2199, 12, 31, 23, 59, 59, tzinfo=UTC)])
def test_run_at_edges_are_stored_exactly(queue: Queue, run_at: datetime) -> None:
    assert queue.require_job(queue.add("t", run_at=run_at)).run_at == run_at


@pytest.mark.parametrize(
    "run_at",
    [
        RUN_AT_MIN - US,
        RUN_AT_MAX + US,
        datetime(1900, 1, 1, tzinfo=UTC),
        datetime(2300, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, tzinfo=UTC),
    ],
)
def test_run_at_outside_the_range_is_refused(queue: Queue, run_at: datetime) -> None:
    with pytest.raises(ValueError, match="is outside the range every backend stores"):
        queue.add("t", run_at=run_at)
    assert_nothing_stored(queue)


def test_delay_past_the_latest_run_at_is_refused(queue: Queue) -> None:
    for delay in (1e12, timedelta(days=200 * 365), "100000d"):
        with pytest.raises(ValueError, match=r"delay: .* is after 2200-01-01"):
            queue.add("t", delay=delay)
    with pytest.raises(ValueError, match="delay: invalid duration"):
        queue.add("t", delay=float("inf"))
    assert_nothing_stored(queue)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": 0}, r"timeout: must be greater than 0 \(use null for none\)"),
        ({"timeout": "0s"}, r"timeout: must be greater than 0 \(use null for none\)"),
        ({"timeout": timedelta(0)}, r"timeout: must be greater than 0 \(use null for none\)"),
        ({"timeout": timedelta(seconds=-5)}, "timeout: invalid duration .* must not be negative"),
        ({"timeout": -1}, "timeout: invalid duration -1: must not be negative"),
        ({"timeout": float("nan")}, "timeout: invalid duration nan: must not be negative"),
        ({"timeout": "366d"}, "timeout: duration '366d' is too long: at most 365 days"),
        ({"timeout": 1e-6}, "shorter than the smallest timeout, 1ms"),
        ({"retry_delay": timedelta(days=400)}, "retry_delay: duration .* is too long: at most 365 days"),
        ({"retry_delay": -1}, "retry_delay: invalid duration -1: must not be negative"),
        ({"retry_max_delay": 10**20}, "retry_max_delay: duration .* is too long"),
    ],
)
def test_durations_are_refused_exactly_as_yaml_refuses_them(
    queue: Queue, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        queue.add("t", **options)
    assert_nothing_stored(queue)


def test_longest_durations_are_stored(queue: Queue) -> None:
    year = timedelta(days=365)
    job = queue.require_job(queue.add("t", timeout=year, retry_delay=year, retry_max_delay=year))
    assert (job.timeout_ms, job.retry_delay_ms, job.retry_max_delay_ms) == (365 * 86_400_000,) * 3


def test_edit_checks_the_same_limits(queue: Queue) -> None:
    job_id = queue.add("t", priority=1, timeout="5s")
    before = queue.require_job(job_id)
    refused: list[dict[str, Any]] = [
        {"timeout": 0},
        {"timeout": timedelta(seconds=-1)},
        {"priority": PRIORITY_MAX + 1},
        {"max_attempts": 0},
        {"max_attempts": MAX_ATTEMPTS_MAX + 1},
        {"run_at": datetime(1900, 1, 1, tzinfo=UTC)},
        {"retry_delay": "400d"},
    ]
    for change in refused:
        with pytest.raises(ValueError):
            queue.edit(job_id, **change)
    assert queue.require_job(job_id) == before
    edited = queue.edit(job_id, priority=PRIORITY_MIN, run_at=RUN_AT_MAX, max_attempts=MAX_ATTEMPTS_MAX)
    assert (edited.priority, edited.run_at, edited.max_attempts) == (PRIORITY_MIN, RUN_AT_MAX, MAX_ATTEMPTS_MAX)


def test_add_many_refuses_the_whole_batch(queue: Queue) -> None:
    with pytest.raises(ValueError, match="priority"):
        queue.add_many([{"job_type": "t"}, {"job_type": "t", "priority": PRIORITY_MAX + 1}])
    assert_nothing_stored(queue)


def test_too_large_output_is_an_output_error_not_a_payload_error(backend: str) -> None:
    queue = make_queue(backend, {"t": {"handler": noop}}, limits={"max_output_bytes": 100, "max_payload_bytes": 100})
    try:
        with pytest.raises(OutputTooLargeError, match=r"output of t: \d+ bytes is over the limit of 100 bytes") as out:
            queue.validate_output("t", "x" * 200)
        assert isinstance(out.value, OutputValidationError) and isinstance(out.value, TooLargeError)
        assert not isinstance(out.value, PayloadValidationError)
        with pytest.raises(PayloadTooLargeError) as payload:
            queue.add("t", "x" * 200)
        assert not isinstance(payload.value, OutputValidationError)
        assert_nothing_stored(queue)
    finally:
        queue.close()


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def deep_output(payload: dict[str, Any]) -> Any:
    return nested(payload["depth"])


def test_nesting_depth_is_bounded_for_payloads_and_outputs(backend: str) -> None:
    queue = make_queue(backend, {"t": {"handler": deep_output, "max_attempts": 1}})
    try:
        deepest = queue.add("t", {"depth": MAX_JSON_DEPTH, "pad": nested(MAX_JSON_DEPTH - 1)})
        too_deep_output = queue.add("t", {"depth": MAX_JSON_DEPTH + 1})
        with pytest.raises(PayloadValidationError, match=f"nested deeper than {MAX_JSON_DEPTH} levels"):
            queue.add("t", {"pad": nested(MAX_JSON_DEPTH)})
        with pytest.raises(PayloadValidationError, match="nested deeper than"):
            queue.add("t", nested(5000))  # no RecursionError, however deep
        Worker(queue, drain=True).run()
        done = queue.require_job(deepest)
        assert done.status is JobStatus.COMPLETED and done.output == nested(MAX_JSON_DEPTH)
        assert done.payload["pad"] == nested(MAX_JSON_DEPTH - 1)
        json.loads(done.model_dump_json())  # what `show --json` and the HTTP API serialise
        refused = queue.require_job(too_deep_output)
        assert refused.status is JobStatus.FAILED and refused.failure_reason == "invalid_output"
        assert f"nested deeper than {MAX_JSON_DEPTH} levels" in refused.error_history[-1]["error"]
        assert len(queue.list_jobs().jobs) == 2
    finally:
        queue.close()
