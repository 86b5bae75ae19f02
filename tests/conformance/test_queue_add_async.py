"""``Queue.add_async`` / ``add_many_async``: the same jobs and errors as ``add``, without blocking the loop."""

from __future__ import annotations

import asyncio

import pytest
from helpers import make_queue

from dqflow import JobStatus, PayloadValidationError

JOBS = {
    "double": {
        "handler": lambda payload: {"n": payload["n"] * 2},
        "payload": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
    }
}


def test_add_async_and_add_many_async(backend: str) -> None:
    with make_queue(backend, JOBS) as queue:

        async def main() -> tuple[int, list[int], int]:
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0)

            tick_task = asyncio.create_task(ticker())
            one = await queue.add_async("double", {"n": 1}, priority=7, tags=["a"])
            many = await queue.add_many_async({"job_type": "double", "payload": {"n": n}} for n in range(3))
            with pytest.raises(PayloadValidationError, match="n"):
                await queue.add_async("double", {"n": "x"})
            with pytest.raises(PayloadValidationError, match="job 1"):
                await queue.add_many_async([{"job_type": "double", "payload": {"n": 1}}, {"job_type": "double"}])
            tick_task.cancel()
            return one, many, ticks

        one, many, ticks = asyncio.run(main())
        assert ticks > 0  # the loop ran while the adds were on their threads
        record = queue.require_job(one)
        assert record.priority == 7 and record.tags == ["a"] and record.status is JobStatus.PENDING
        assert [queue.require_job(i).payload for i in many] == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert queue.count_jobs() == {("double", JobStatus.PENDING): 4}  # the refused batch stored nothing


def test_add_async_takes_groups_and_uniqueness_like_add(backend: str) -> None:
    jobs = {"double": {**JOBS["double"], "group_concurrency": 1}}
    with make_queue(backend, jobs) as queue:

        async def main() -> tuple[int, int, int]:
            grouped = await queue.add_async("double", {"n": 1}, group="tenant-1")
            unique = {"key": "${payload.n}", "for": "10m"}
            first = await queue.add_async("double", {"n": 2}, unique=unique)
            again = await queue.add_async("double", {"n": 2}, unique=unique)
            return grouped, first, again

        grouped, first, again = asyncio.run(main())
        assert queue.require_job(grouped).concurrency_key == "group:tenant-1"
        assert again == first  # the duplicate answers the first job's id
