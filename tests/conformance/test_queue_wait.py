"""``Queue.wait`` / ``wait_async`` and ``wait_workflow`` / ``wait_workflow_async``: the finished
record or run, or a typed timeout, on every backend; woken by the change feed, not a poll."""

from __future__ import annotations

import asyncio
import time

import pytest
from helpers import make_queue, running_worker

import dqflow.queue.waiting
from dqflow import (
    JobNotFoundError,
    JobStatus,
    WaitTimeoutError,
    WorkflowRunNotFoundError,
    WorkflowStatus,
    WorkflowWaitTimeoutError,
)

CHAIN = {
    "chain": {
        "input": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
        "steps": {
            "first": {"job": "double", "payload": {"n": "${input.n}"}},
            "second": {"job": "double", "needs": ["first"], "payload": {"n": "${steps.first.output.n}"}},
        },
        "returns": {"n": "${steps.second.output.n}"},
    }
}

JOBS = {
    "double": {"handler": lambda payload: {"n": payload["n"] * 2}},
    "slow": {"handler": lambda payload: time.sleep(payload["sleep"]) or {"slept": payload["sleep"]}},
    "broken": {"handler": lambda payload: 1 / 0, "max_attempts": 2},
}


def test_wait_returns_the_finished_record(backend: str) -> None:
    with make_queue(backend, JOBS) as queue, running_worker(queue, concurrency=2):
        job_id = queue.add("slow", {"sleep": 0.3})
        started = time.monotonic()
        record = queue.wait(job_id, timeout="10s")
        assert time.monotonic() - started < 5
        assert record.status is JobStatus.COMPLETED and record.output == {"slept": 0.3}
        failed = queue.wait(queue.add("broken", {}), timeout=10)
        assert failed.status is JobStatus.FAILED and failed.attempts == 2  # the retry in between is waited out


def test_wait_times_out_with_a_typed_error(backend: str) -> None:
    with make_queue(backend, JOBS) as queue:
        job_id = queue.add("double", {"n": 1})
        started = time.monotonic()
        with pytest.raises(WaitTimeoutError, match=f"job {job_id} did not finish within 0.3 s") as caught:
            queue.wait(job_id, timeout=0.3)
        assert 0.3 <= time.monotonic() - started < 2
        assert caught.value.status == "pending" and isinstance(caught.value, TimeoutError)
        with pytest.raises(JobNotFoundError):
            queue.wait(987_654_321, timeout=1)
        with pytest.raises(ValueError, match="timeout"):
            queue.wait(job_id, timeout="soon")


def test_wait_returns_a_cancelled_job(backend: str) -> None:
    with make_queue(backend, JOBS) as queue:
        job_id = queue.add("double", {"n": 1})
        queue.cancel(job_id)
        assert queue.wait(job_id).status is JobStatus.CANCELLED


def test_wait_async(backend: str) -> None:
    with make_queue(backend, JOBS) as queue, running_worker(queue, concurrency=2):
        ids = [queue.add("double", {"n": n}) for n in range(5)]

        async def main() -> list[int]:
            ticks = 0

            async def ticker() -> None:  # the event loop keeps running while jobs are awaited
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            tick_task = asyncio.create_task(ticker())
            records = await asyncio.gather(*(queue.wait_async(i, timeout=10) for i in ids))
            with pytest.raises(WaitTimeoutError):
                await queue.wait_async(queue.add("slow", {"sleep": 2}), timeout=0.2)
            tick_task.cancel()
            assert ticks > 5
            return [r.output["n"] for r in records]

        assert asyncio.run(main()) == [0, 2, 4, 6, 8]


def test_a_wait_is_woken_by_the_change_feed_not_by_reading_again(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # With the fallback re-read 60 s away, only the feed can end these waits within seconds.
    monkeypatch.setattr(dqflow.queue.waiting, "WAIT_RECHECK_S", 60.0)
    with make_queue(backend, JOBS, workflows=CHAIN) as queue, running_worker(queue, concurrency=2):
        for sleep in (0.0, 0.2, 0.5):
            job_id = queue.add("slow", {"sleep": sleep})
            started = time.monotonic()
            assert queue.wait(job_id, timeout=20).status is JobStatus.COMPLETED
            assert time.monotonic() - started < sleep + 2
        run_id = queue.start_workflow("chain", {"n": 3})
        started = time.monotonic()
        run = queue.wait_workflow(run_id, timeout=20)
        assert time.monotonic() - started < 3
        assert run.status is WorkflowStatus.COMPLETED and run.output == {"n": 12}

        async def both() -> tuple[JobStatus, WorkflowStatus]:
            record = await queue.wait_async(queue.add("slow", {"sleep": 0.2}), timeout=20)
            run = await queue.wait_workflow_async(queue.start_workflow("chain", {"n": 1}), timeout=20)
            return record.status, run.status

        started = time.monotonic()
        assert asyncio.run(both()) == (JobStatus.COMPLETED, WorkflowStatus.COMPLETED)
        assert time.monotonic() - started < 5


def test_wait_workflow_times_out_and_returns_a_cancelled_run(backend: str) -> None:
    with make_queue(backend, JOBS, workflows=CHAIN) as queue:
        run_id = queue.start_workflow("chain", {"n": 1})
        started = time.monotonic()
        with pytest.raises(WorkflowWaitTimeoutError, match=f"workflow run {run_id} did not finish within 0.3 s"):
            queue.wait_workflow(run_id, timeout=0.3)
        assert 0.3 <= time.monotonic() - started < 2
        with pytest.raises(WorkflowRunNotFoundError):
            queue.wait_workflow(987_654_321, timeout=1)
        queue.cancel_workflow(run_id)
        assert queue.wait_workflow(run_id, timeout=5).status is WorkflowStatus.CANCELLED
