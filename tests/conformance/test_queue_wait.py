"""``Queue.wait`` and ``Queue.wait_async``: the finished record, or a typed timeout, on every backend."""

from __future__ import annotations

import asyncio
import time

import pytest
from helpers import make_queue, running_worker

from dqflow import JobNotFoundError, JobStatus, WaitTimeoutError

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
