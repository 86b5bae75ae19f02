"""Conformance: running jobs — output semantics, retries, timeouts, cancellation — on every backend."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import APP_CONFIG, make_queue, running_worker, wait_for_status, wait_until
from pydantic import BaseModel

from dqflow import (
    EventType,
    FailureReason,
    JobContext,
    JobStatus,
    OutputParseError,
    OutputValidationError,
    Queue,
    Worker,
    WorkerSettingError,
)

OUTPUT_SCHEMA = {
    "type": "object",
    "required": ["url"],
    "properties": {"url": {"type": "string", "pattern": "^https://"}, "pages": {"type": "integer"}},
}


class Report(BaseModel):
    url: str
    pages: int = 0


class ImagesPayload(BaseModel):
    images: list[str]


def drain(queue: Queue, **options: Any) -> Worker:
    worker = Worker(queue, drain=True, **options)
    worker.run()
    return worker


def test_return_value_is_stored_as_output(backend: str) -> None:
    def handler(payload: Any, ctx: JobContext) -> Any:
        return {"url": f"https://x/{payload['id']}", "pages": 3}

    queue = make_queue(backend, {"report": {"handler": handler, "output": OUTPUT_SCHEMA}})
    job_id = queue.add("report", {"id": 7})
    assert queue.get_job(job_id).output is None  # null before anything is stored
    drain(queue)
    job = queue.get_job(job_id)
    assert job.status is JobStatus.COMPLETED
    assert job.output == {"url": "https://x/7", "pages": 3}
    assert job.attempts == 1 and job.completed_at is not None and job.started_at is not None
    assert job.output_as(Report) == Report(url="https://x/7", pages=3)
    assert queue.get_output(job_id, Report).pages == 3
    kinds = [e.event_type for e in queue.get_events(job_id)]
    assert kinds == [EventType.ADDED, EventType.PROCESSING, EventType.COMPLETED]
    # kept after completion and readable at any time
    assert queue.get_job(job_id).output == {"url": "https://x/7", "pages": 3}


def test_set_output_takes_precedence_and_last_write_wins(backend: str) -> None:
    seen_outputs: list[Any] = []
    seen_progress: list[Any] = []

    def process_images(payload: ImagesPayload, ctx: JobContext) -> Any:
        assert isinstance(payload, ImagesPayload)
        results: list[str] = []
        for image in payload.images:
            results.append(f"https://cdn/{image}")
            ctx.set_progress(round(len(results) / len(payload.images) * 100))
            ctx.set_output({"processedUrls": results})
        return {"ignored": True}

    queue = make_queue(backend, {"process_images": {"handler": process_images}})
    queue.on("job:output", seen_outputs.append)
    queue.on("job:progress", seen_progress.append)
    job_id = queue.add("process_images", {"images": ["a.png", "b.png", "c.png"]})
    drain(queue)
    job = queue.get_job(job_id)
    assert job.status is JobStatus.COMPLETED
    assert job.output == {"processedUrls": ["https://cdn/a.png", "https://cdn/b.png", "https://cdn/c.png"]}
    assert job.progress == 100
    assert [e["output"]["processedUrls"][-1] for e in seen_outputs] == [
        "https://cdn/a.png",
        "https://cdn/b.png",
        "https://cdn/c.png",
    ]
    assert all(e["job_id"] == job_id for e in seen_outputs)
    assert [e["progress"] for e in seen_progress] == [33, 67, 100]


def test_returning_none_stores_nothing(backend: str) -> None:
    queue = make_queue(backend, {"quiet": {"handler": lambda payload, ctx: None}})
    job_id = queue.add("quiet", {})
    drain(queue)
    job = queue.get_job(job_id)
    assert job.status is JobStatus.COMPLETED and job.output is None
    with pytest.raises(OutputParseError, match="has no output"):
        job.output_as(Report)


def test_output_that_does_not_fit_the_model_gives_a_clear_error(backend: str) -> None:
    queue = make_queue(backend, {"t": {"handler": lambda payload, ctx: {"url": 5}}})
    job_id = queue.add("t", {})
    drain(queue)
    with pytest.raises(OutputParseError, match=f"output of job {job_id} does not fit Report"):
        queue.get_output(job_id, Report)


def test_invalid_set_output_raises_in_the_handler_and_stores_nothing(backend: str) -> None:
    caught: list[BaseException] = []

    def handler(payload: Any, ctx: JobContext) -> Any:
        for bad in ({"url": "http://insecure"}, {"url": float("nan")}, {"url": b"x"}):
            try:
                ctx.set_output(bad)
            except OutputValidationError as exc:
                caught.append(exc)
        return None

    queue = make_queue(backend, {"t": {"handler": handler, "output": OUTPUT_SCHEMA}})
    job_id = queue.add("t", {})
    drain(queue)
    assert len(caught) == 3
    assert "$.url" in str(caught[0]) and "does not match" in str(caught[0])
    assert "not JSON" in str(caught[1])
    job = queue.get_job(job_id)
    assert job.status is JobStatus.COMPLETED and job.output is None


def test_invalid_return_value_fails_the_attempt_with_invalid_output(backend: str) -> None:
    queue = make_queue(
        backend,
        {
            "t": {
                "handler": lambda payload, ctx: {"url": "ftp://nope"},
                "output": OUTPUT_SCHEMA,
                "max_attempts": 1,
            }
        },
    )
    failed: list[dict[str, Any]] = []
    queue.on("job:failed", failed.append)
    job_id = queue.add("t", {})
    drain(queue)
    job = queue.get_job(job_id)
    assert job.status is JobStatus.FAILED
    assert job.failure_reason == FailureReason.INVALID_OUTPUT.value
    assert job.output is None
    assert "$.url" in job.error_history[0]["error"]
    assert job.error_history[0]["reason"] == "invalid_output"
    assert failed[0]["reason"] == "invalid_output" and failed[0]["will_retry"] is False


def test_return_value_that_is_not_json_fails_with_invalid_output(backend: str) -> None:
    queue = make_queue(backend, {"t": {"handler": lambda payload, ctx: {"at": datetime.now(UTC)}, "max_attempts": 1}})
    job_id = queue.add("t", {})
    drain(queue)
    job = queue.get_job(job_id)
    assert job.failure_reason == "invalid_output" and "not JSON" in job.error_history[0]["error"]


def test_failures_retry_with_backoff_until_max_attempts(backend: str) -> None:
    calls: list[float] = []

    def flaky(payload: Any, ctx: JobContext) -> Any:
        calls.append(time.monotonic())
        raise RuntimeError(f"boom {len(calls)}")

    queue = make_queue(
        backend,
        {
            "flaky": {
                "handler": flaky,
                "max_attempts": 3,
                "retry": {"delay": "200ms", "backoff": "fixed", "jitter": False},
            }
        },
    )
    failed: list[dict[str, Any]] = []
    queue.on("job:failed", failed.append)
    job_id = queue.add("flaky", {})
    with running_worker(queue):
        job = wait_for_status(queue, job_id, "failed")
    assert len(calls) == 3
    assert all(b - a >= 0.18 for a, b in itertools.pairwise(calls))
    assert [f["will_retry"] for f in failed] == [True, True, False]
    assert job.attempts == 3 and job.failure_reason == "handler_error"
    assert [e["error"] for e in job.error_history] == [
        "RuntimeError: boom 1",
        "RuntimeError: boom 2",
        "RuntimeError: boom 3",
    ]
    assert [e["attempt"] for e in job.error_history] == [1, 2, 3]
    kinds = [e.event_type for e in queue.get_events(job_id)]
    assert kinds.count(EventType.FAILED) == 3 and kinds.count(EventType.PROCESSING) == 3


def test_exponential_backoff_spaces_attempts_further_apart(backend: str) -> None:
    calls: list[float] = []

    def flaky(payload: Any, ctx: JobContext) -> Any:
        calls.append(time.monotonic())
        raise ValueError("again")

    queue = make_queue(
        backend,
        {
            "flaky": {
                "handler": flaky,
                "max_attempts": 3,
                "retry": {"delay": "150ms", "backoff": "exponential", "jitter": False},
            }
        },
    )
    job_id = queue.add("flaky", {})
    with running_worker(queue):
        wait_for_status(queue, job_id, "failed")
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert gaps[0] >= 0.14 and gaps[1] >= 0.29


def test_retry_of_a_failed_job_really_runs_it_again(backend: str) -> None:
    attempts: list[int] = []

    def handler(payload: Any, ctx: JobContext) -> Any:
        attempts.append(ctx.job.attempts)
        if len(attempts) == 1:
            raise RuntimeError("first run fails")
        return {"ok": True}

    queue = make_queue(backend, {"t": {"handler": handler, "max_attempts": 1}})
    job_id = queue.add("t", {})
    drain(queue)
    assert queue.get_job(job_id).status is JobStatus.FAILED
    job = queue.retry(job_id)
    assert job.attempts == 0 and job.failure_reason is None and job.output is None
    drain(queue)
    job = queue.get_job(job_id)
    assert job.status is JobStatus.COMPLETED and job.output == {"ok": True}
    assert attempts == [1, 1]
    assert len(job.error_history) == 1  # the history of the first run is kept


def test_sync_handler_timeout_fails_the_attempt_with_reason_timeout(backend: str) -> None:
    flags: list[bool] = []

    def slow(payload: Any, ctx: JobContext) -> Any:
        flags.append(ctx.wait_cancelled(5))
        return {"late": True}

    queue = make_queue(backend, {"slow": {"handler": slow, "timeout": "300ms", "max_attempts": 1}})
    job_id = queue.add("slow", {})
    with running_worker(queue):
        job = wait_for_status(queue, job_id, "failed")
        wait_until(lambda: flags)
    assert flags == [True]  # ctx.cancelled reached the handler
    assert job.failure_reason == "timeout" and "timed out after 300 ms" in job.error_history[0]["error"]
    assert job.output is None


def test_async_handler_is_cancelled_at_its_timeout(backend: str) -> None:
    cancelled = threading.Event()

    async def slow(payload: Any, ctx: JobContext) -> Any:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return {"late": True}

    queue = make_queue(backend, {"slow": {"handler": slow, "timeout": "200ms", "max_attempts": 1}})
    job_id = queue.add("slow", {})
    with running_worker(queue):
        job = wait_for_status(queue, job_id, "failed")
    assert cancelled.is_set()
    assert job.failure_reason == "timeout"


async def _swallows_cancellation(payload: Any, ctx: JobContext) -> Any:
    while True:  # a handler that ignores every cancellation
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)


def test_async_handler_swallowing_cancellation_loses_its_slot_at_its_timeout(backend: str) -> None:
    queue = make_queue(
        backend,
        {
            "stubborn": {"handler": _swallows_cancellation, "timeout": "300ms", "max_attempts": 1},
            "quick": {"handler": lambda p, c: {"ok": True}},
        },
    )
    stubborn = queue.add("stubborn", {}, priority=1)
    quick = queue.add("quick", {})
    started = time.monotonic()
    with running_worker(queue, concurrency=1, shutdown_grace=0.5):
        job = wait_for_status(queue, stubborn, "failed", timeout=10)
        assert job.failure_reason == "timeout", job
        assert wait_for_status(queue, quick, "completed", timeout=10).output == {"ok": True}
        assert time.monotonic() - started < 5
        second = queue.add("stubborn", {}, timeout="30s")
        wait_until(lambda: queue.get_job(second).status is JobStatus.PROCESSING)
        stopping = time.monotonic()
    # the second one swallows the shutdown's cancellation too: the worker still stops within its grace
    assert time.monotonic() - stopping < 2.5
    assert queue.get_job(second).status is JobStatus.PENDING


def test_cancelling_a_running_job_reaches_the_handler(backend: str) -> None:
    started = threading.Event()
    saw_cancel = threading.Event()

    def long(payload: Any, ctx: JobContext) -> Any:
        started.set()
        if ctx.wait_cancelled(10):
            saw_cancel.set()
        return {"done": True}

    queue = make_queue(backend, {"long": {"handler": long}})
    job_id = queue.add("long", {})
    with running_worker(queue):
        assert started.wait(10)
        queue.cancel(job_id)
        assert saw_cancel.wait(5)
        time.sleep(0.3)
    job = queue.get_job(job_id)
    assert job.status is JobStatus.CANCELLED and job.output is None


def test_cancelling_a_running_async_job_cancels_its_task(backend: str) -> None:
    started = threading.Event()
    cancelled = threading.Event()

    async def long(payload: Any, ctx: JobContext) -> Any:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    queue = make_queue(backend, {"long": {"handler": long}})
    job_id = queue.add("long", {})
    with running_worker(queue):
        assert started.wait(10)
        queue.cancel(job_id)
        assert cancelled.wait(5)
    assert queue.get_job(job_id).status is JobStatus.CANCELLED


def test_async_and_sync_handlers_run_concurrently(backend: str) -> None:
    active = 0
    peak = 0
    lock = threading.Lock()

    def sync_handler(payload: Any, ctx: JobContext) -> Any:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.2)
        with lock:
            active -= 1
        return {"n": payload["n"]}

    async def async_handler(payload: Any, ctx: JobContext) -> Any:
        await asyncio.sleep(0.2)
        return {"n": payload["n"]}

    queue = make_queue(backend, {"s": {"handler": sync_handler}, "a": {"handler": async_handler}})
    ids = queue.add_many([{"job_type": "s", "payload": {"n": i}} for i in range(8)])
    ids += queue.add_many([{"job_type": "a", "payload": {"n": i}} for i in range(8)])
    started = time.monotonic()
    drain(queue, concurrency=16)
    elapsed = time.monotonic() - started
    assert peak == 8
    assert elapsed < 1.5
    assert all(queue.get_job(i).output == {"n": n % 8} for n, i in enumerate(ids))


def test_concurrency_limit_is_respected(backend: str) -> None:
    active = 0
    peak = 0
    lock = threading.Lock()

    def handler(payload: Any, ctx: JobContext) -> Any:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.05)
        with lock:
            active -= 1

    queue = make_queue(backend, {"t": {"handler": handler}})
    queue.add_many([{"job_type": "t", "payload": {}} for _ in range(20)])
    drain(queue, concurrency=3)
    assert peak == 3
    assert len(queue.list_jobs(status="completed").jobs) == 20


def test_higher_priority_runs_first_then_oldest(backend: str) -> None:
    order: list[int] = []
    queue = make_queue(backend, {"t": {"handler": lambda payload, ctx: order.append(payload["n"])}})
    queue.add("t", {"n": 1}, priority=0)
    queue.add("t", {"n": 2}, priority=5)
    queue.add("t", {"n": 3}, priority=0)
    queue.add("t", {"n": 4}, priority=5)
    drain(queue, concurrency=1)
    assert order == [2, 4, 1, 3]


def test_job_type_filter_runs_only_those_types(backend: str) -> None:
    queue = make_queue(backend, {"a": {"handler": lambda p, c: None}, "b": {"handler": lambda p, c: None}})
    a = queue.add("a", {})
    b = queue.add("b", {})
    drain(queue, job_types=["a"])
    assert queue.get_job(a).status is JobStatus.COMPLETED
    assert queue.get_job(b).status is JobStatus.PENDING


def test_future_run_at_is_picked_up_on_time(backend: str) -> None:
    ran_at: list[float] = []
    queue = make_queue(backend, {"t": {"handler": lambda p, c: ran_at.append(time.time())}})
    with running_worker(queue, poll_interval=5.0):
        due = datetime.now(UTC) + timedelta(milliseconds=600)
        job_id = queue.add("t", {}, run_at=due)
        wait_for_status(queue, job_id, "completed", timeout=10)
    assert due.timestamp() - 0.01 <= ran_at[0] <= due.timestamp() + 0.5


def test_idle_worker_starts_a_new_job_within_milliseconds(backend: str) -> None:
    starts: list[float] = []
    queue = make_queue(backend, {"t": {"handler": lambda p, c: starts.append(time.time())}})
    delays = []
    with running_worker(queue, poll_interval=5.0):
        time.sleep(0.3)
        for _ in range(5):
            before = time.time()
            job_id = queue.add("t", {})
            wait_for_status(queue, job_id, "completed", timeout=10)
            delays.append(starts[-1] - before)
            time.sleep(0.05)
    assert sorted(delays)[2] < 0.1  # median well under the 5 s poll interval


def test_jobs_that_wake_an_idle_worker_keep_to_its_slots_leases_and_timeouts(backend: str) -> None:
    # An idle worker's waiting thread runs the first job it claims itself: that job must
    # count as running (one slot: the next ones wait for it, in order), have its lease
    # renewed (it outlives the lease) and its timeout kept.
    active, peak, order = 0, 0, []
    lock = threading.Lock()

    def handler(payload: Any, ctx: JobContext) -> Any:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
            order.append(payload["n"])
        time.sleep(payload["sleep"])
        with lock:
            active -= 1
        return payload

    queue = make_queue(backend, {"t": {"handler": handler, "max_attempts": 1}})
    with running_worker(queue, concurrency=1, lease=0.6):
        time.sleep(0.3)  # idle: waiting for work
        ids = queue.add_many([{"job_type": "t", "payload": {"n": n, "sleep": 0.05}} for n in range(3)])
        wait_for_status(queue, ids[-1], "completed", timeout=10)
        time.sleep(0.1)
        long_id = queue.add("t", {"n": 3, "sleep": 1.0})  # longer than the lease
        wait_for_status(queue, long_id, "completed", timeout=10)
        time.sleep(0.1)
        late_id = queue.add("t", {"n": 4, "sleep": 0.5}, timeout="200ms")
        late = wait_for_status(queue, late_id, "failed", timeout=10)
    assert peak == 1 and order == [0, 1, 2, 3, 4]
    long = queue.get_job(long_id)
    assert long.attempts == 1 and long.output == {"n": 3, "sleep": 1.0}, long
    assert late.failure_reason == FailureReason.TIMEOUT, late


def test_a_worker_without_handlers_is_refused_and_claims_nothing(backend: str) -> None:
    queue = make_queue(backend, {"t": {"handler": "tests_missing_module:nothing"}}, import_handlers=False)
    job_id = queue.add("t", {})
    with pytest.raises(ValueError, match="no declared job type has an imported handler"):
        Worker(queue)
    with pytest.raises(ValueError, match="job type 't' has no imported handler"):
        Worker(queue, job_types=["t"])
    job = queue.get_job(job_id)
    assert job.status is JobStatus.PENDING and job.attempts == 0


def test_processing_completed_and_failed_events(backend: str) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    queue = make_queue(
        backend,
        {
            "ok": {"handler": lambda p, c: {"v": 1}},
            "bad": {"handler": lambda p, c: 1 / 0, "max_attempts": 2},
        },
    )
    for name in ("job:processing", "job:completed", "job:failed"):
        queue.on(name, lambda data, name=name: events.append((name, data)))
    ok = queue.add("ok", {})
    bad = queue.add("bad", {})
    with running_worker(queue):
        wait_for_status(queue, bad, "failed")
        wait_for_status(queue, ok, "completed")
        wait_until(lambda: sum(1 for n, _ in events if n == "job:failed") == 2)
    completed = [d for n, d in events if n == "job:completed"]
    assert completed == [{"job_id": ok, "job_type": "ok", "output": {"v": 1}}]
    failed = [d for n, d in events if n == "job:failed"]
    assert [(d["attempt"], d["will_retry"], d["reason"]) for d in failed] == [
        (1, True, "handler_error"),
        (2, False, "handler_error"),
    ]
    assert "ZeroDivisionError" in failed[0]["error"]
    assert len([d for n, d in events if n == "job:processing"]) == 3


def test_graceful_stop_finishes_running_jobs(backend: str) -> None:
    started = threading.Event()

    def handler(payload: Any, ctx: JobContext) -> Any:
        started.set()
        time.sleep(0.5)
        return {"finished": True}

    queue = make_queue(backend, {"t": {"handler": handler}})
    job_id = queue.add("t", {})
    with running_worker(queue):
        assert started.wait(10)
    job = queue.get_job(job_id)
    assert job.status is JobStatus.COMPLETED and job.output == {"finished": True}


def test_stop_hands_back_jobs_still_running_after_the_grace_period(backend: str) -> None:
    started = threading.Event()

    def handler(payload: Any, ctx: JobContext) -> Any:
        started.set()
        ctx.wait_cancelled(10)
        return {"finished": True}

    queue = make_queue(backend, {"t": {"handler": handler}})
    job_id = queue.add("t", {})
    with running_worker(queue, shutdown_grace=0.3):
        assert started.wait(10)
    job = queue.get_job(job_id)
    assert job.status is JobStatus.PENDING and job.attempts == 0 and job.output is None


def test_drain_exits_when_nothing_is_ready(backend: str) -> None:
    queue = make_queue(backend, {"t": {"handler": lambda p, c: None}})
    later = queue.add("t", {}, delay="1h")
    now = queue.add("t", {})
    started = time.monotonic()
    drain(queue)
    assert time.monotonic() - started < 5
    assert queue.get_job(now).status is JobStatus.COMPLETED
    assert queue.get_job(later).status is JobStatus.PENDING


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "concurrency must be from 1 to 1000, got 0"),
        ({"concurrency": -2}, "concurrency must be from 1 to 1000, got -2"),
        ({"concurrency": 1_000_000}, "concurrency must be from 1 to 1000"),
        ({"concurrency": 2.5}, "concurrency must be a whole number"),
        ({"batch_size": 0}, "batch_size must be from 1 to 1000, got 0"),
        ({"lease": 0}, "lease must be more than 0 seconds, got 0"),
        ({"lease": -1.0}, "lease must be more than 0 seconds"),
        ({"lease": float("nan")}, "lease must be a finite number"),
        ({"lease": 1, "heartbeat": 5}, "heartbeat must be at most half the lease"),
        ({"lease": 1, "heartbeat": 0.6}, "heartbeat must be at most half the lease"),
        ({"heartbeat": 0}, "heartbeat must be more than 0 seconds"),
        ({"poll_interval": 0}, "poll_interval must be more than 0 seconds"),
        ({"shutdown_grace": -1}, "shutdown_grace must be 0 or more seconds"),
        ({"reclaim_interval": 0}, "reclaim_interval must be more than 0 seconds"),
    ],
)
def test_worker_settings_that_cannot_work_are_refused(options: dict[str, Any], message: str, tmp_path: Path) -> None:
    queue = make_queue(f"sqlite:///{tmp_path / 'q.db'}", {"t": {"handler": lambda p, c: None}})
    with pytest.raises(WorkerSettingError, match=message.replace(".", r"\.")):
        Worker(queue, **options)
    queue.close()


def test_worker_settings_given_are_kept(tmp_path: Path) -> None:
    queue = make_queue(f"sqlite:///{tmp_path / 'q.db'}", {"t": {"handler": lambda p, c: None}})
    worker = Worker(queue, concurrency=3, lease=2, heartbeat=1, shutdown_grace=0)
    assert (worker.concurrency, worker.batch_size, worker.lease, worker.heartbeat, worker.shutdown_grace) == (
        3,
        3,
        2.0,
        1.0,
        0.0,
    )
    queue.close()


def _raise_huge(payload: Any, ctx: JobContext) -> Any:
    raise ValueError("x" * 5_000_000)


def test_handler_errors_are_bounded_and_keep_their_traceback(backend: str, caplog: pytest.LogCaptureFixture) -> None:
    failed: list[dict[str, Any]] = []
    queue = make_queue(backend, {"huge": {"handler": _raise_huge, "max_attempts": 2}})
    queue.on("job:failed", failed.append)
    job_id = queue.add("huge", {})
    with caplog.at_level(logging.WARNING, logger="dqflow.worker"), running_worker(queue):
        job = wait_for_status(queue, job_id, "failed")
        wait_until(lambda: len(failed) == 2)
    assert len(job.error_history) == 2
    for entry in job.error_history:
        assert entry["reason"] == "handler_error"
        assert entry["error"].startswith("ValueError: xxx") and entry["error"].endswith("more characters cut]")
        assert len(entry["error"]) <= 8_192
        assert entry["traceback"].startswith("Traceback (most recent call last):")
        assert "in _raise_huge" in entry["traceback"] and len(entry["traceback"]) <= 16_384
    assert [type(event["exception"]) for event in failed] == [ValueError, ValueError]
    assert all(len(event["error"]) <= 8_192 for event in failed)
    records = [r for r in caplog.records if "attempt" in r.getMessage() and "failed" in r.getMessage()]
    assert [r.levelno for r in records] == [logging.WARNING, logging.ERROR]
    for record in records:
        text = record.getMessage()
        assert "in _raise_huge" in text and len(text) < 30_000


def test_a_slow_output_check_never_stalls_heartbeats(backend: str) -> None:
    # Each string costs the regex some 20 ms of backtracking, 200 of them several seconds in all:
    # longer than the lease, so a check run on the event loop would stall every heartbeat.
    runs: list[int] = []
    slow_checked = threading.Event()

    def slow_output(payload: Any, ctx: JobContext) -> Any:
        return ["a" * 18 + "!"] * 200

    def steady(payload: Any, ctx: JobContext) -> Any:
        runs.append(ctx.job.id)
        slow_checked.wait(30)  # held across the whole slow check, however long it takes
        return {"ok": True}

    queue = make_queue(
        backend,
        {
            "slow_output": {
                "handler": slow_output,
                "output": {"type": "array", "items": {"type": "string", "pattern": "^(a+)+$"}},
                "max_attempts": 1,
            },
            "steady": {"handler": steady, "max_attempts": 1},
        },
    )
    steady_id = queue.add("steady", {})
    with running_worker(queue, concurrency=2, lease=1.5):
        wait_until(lambda: runs)
        slow_id = queue.add("slow_output", {})
        deadline = time.monotonic() + 20
        while queue.get_job(slow_id).status not in (JobStatus.FAILED, JobStatus.COMPLETED):
            assert time.monotonic() < deadline, "the slow output was not checked within 20 s"
            queue.storage.reclaim_expired()  # what any other worker does: take over expired leases
            time.sleep(0.1)
        queue.storage.reclaim_expired()
        slow_checked.set()
        wait_for_status(queue, steady_id, "failed", "completed", timeout=20)
    job = queue.get_job(steady_id)
    assert job.status is JobStatus.COMPLETED and job.attempts == 1, job
    assert runs == [steady_id]
    slow = queue.get_job(slow_id)
    assert slow.status is JobStatus.FAILED and slow.failure_reason == "invalid_output", slow


def test_one_slot_claims_one_job_ahead_holds_it_and_keeps_priority_order(backend: str) -> None:
    started: list[int] = []
    first_may_end = threading.Event()

    def handler(payload: Any, ctx: JobContext) -> Any:
        started.append(payload["n"])
        if payload["n"] == 1:
            first_may_end.wait(10)

    queue = make_queue(backend, {"t": {"handler": handler}})
    queue.add("t", {"n": 1}, priority=9)
    ahead = queue.add("t", {"n": 2}, priority=5)
    second = queue.add("t", {"n": 3}, priority=4)
    last = queue.add("t", {"n": 4}, priority=0)
    with running_worker(queue, concurrency=1, lease=1.0):
        wait_until(lambda: started == [1])
        claimed = wait_until(lambda: (j := queue.get_job(ahead)) and j.status is JobStatus.PROCESSING and j)
        assert queue.get_job(second).status is JobStatus.PENDING  # one job ahead, no more
        time.sleep(1.6)  # past its lease: a job waiting in the buffer is renewed like a running one
        held = queue.get_job(ahead)
        assert held.status is JobStatus.PROCESSING and held.lease_token == claimed.lease_token
        queue.cancel(ahead)  # lost while it waits: it must never start
        time.sleep(0.5)  # a few heartbeats: the worker learns it no longer holds it
        first_may_end.set()
        wait_for_status(queue, last, "completed")
    assert started == [1, 3, 4]  # priority order, without the cancelled one
    assert queue.get_job(ahead).status is JobStatus.CANCELLED


def test_a_job_claimed_ahead_is_handed_back_at_shutdown(backend: str) -> None:
    started = threading.Event()

    def handler(payload: Any, ctx: JobContext) -> Any:
        started.set()
        ctx.wait_cancelled(10)

    queue = make_queue(backend, {"t": {"handler": handler}})
    running = queue.add("t", {}, priority=1)
    ahead = queue.add("t", {})
    with running_worker(queue, concurrency=1, shutdown_grace=0.2):
        assert started.wait(10)
        wait_until(lambda: queue.get_job(ahead).status is JobStatus.PROCESSING)
    for job_id in (running, ahead):
        job = queue.get_job(job_id)
        assert job.status is JobStatus.PENDING and job.attempts == 0 and job.lease_expires_at is None, job


def test_drain_waits_for_an_async_result_being_checked(backend: str) -> None:
    async def slow_to_check(payload: Any, ctx: JobContext) -> Any:
        return ["a" * 17 + "!"] * 30  # a few hundred ms of output checking, off the loop

    schema = {"type": "array", "items": {"type": "string", "pattern": "^(a+)+$"}}
    queue = make_queue(backend, {"t": {"handler": slow_to_check, "output": schema, "max_attempts": 1}})
    job_id = queue.add("t", {})
    drain(queue, shutdown_grace=0)  # the drain itself must wait: no grace period to cover for it
    job = queue.get_job(job_id)
    assert job.status is JobStatus.FAILED and job.failure_reason == "invalid_output", job


def test_an_isolated_handlers_error_comes_back_bounded_with_its_traceback(backend: str) -> None:
    queue = Queue.from_yaml(APP_CONFIG, backend=backend)
    job_id = queue.add("fail_loudly_isolated", {"size": 3_000_000})
    drain(queue, job_types=["fail_loudly_isolated"])
    job = queue.get_job(job_id)
    assert job.status is JobStatus.FAILED and job.failure_reason == "handler_error", job
    (entry,) = job.error_history
    assert entry["error"].startswith("ValueError: xxx") and len(entry["error"]) <= 8_192
    assert "in fail_loudly" in entry["traceback"] and len(entry["traceback"]) <= 16_384
    queue.close()
