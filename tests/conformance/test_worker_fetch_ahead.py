"""Conformance: a worker claims short jobs ahead of its slots, in priority order, and hands them back when stuck."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from helpers import add_job, make_queue, release, running_worker, wait_for_status, wait_until

from dqflow import JobContext, JobSpec, JobStatus
from dqflow.storage import Storage


def test_an_unstarted_job_handed_back_keeps_its_place_in_line(storage: Storage) -> None:
    earlier = datetime.now(UTC) - timedelta(minutes=5)
    first = add_job(storage, run_at=earlier)
    second = add_job(storage, run_at=earlier + timedelta(seconds=1))
    claimed = storage.claim_jobs("w1", None, 1, 30_000)
    assert [job.id for job in claimed] == [first]
    assert release(storage, claimed[0], started=False)
    back = storage.get_job(first)
    assert back is not None and back.status is JobStatus.PENDING and back.attempts == 0
    assert abs((back.run_at - earlier).total_seconds()) < 0.001  # not moved behind the second job
    assert [job.id for job in storage.claim_jobs("w2", None, 2, 30_000)] == [first, second]
    # a started job handed back is runnable from now, after those that were waiting
    third = add_job(storage, run_at=earlier)
    [again, _] = [storage.get_job(i) for i in (first, second)]
    assert again is not None and release(storage, again, started=True)
    assert [job.id for job in storage.claim_jobs("w3", None, 2, 30_000)] == [third, first]


def test_one_slot_runs_short_jobs_claimed_ahead_in_priority_order(backend: str) -> None:
    order: list[int] = []

    def handler(payload: Any, ctx: JobContext) -> Any:
        order.append(payload["n"])
        return {"n": payload["n"]}

    queue = make_queue(backend, {"t": {"handler": handler, "max_attempts": 1}})
    ids = queue.add_many([JobSpec("t", {"n": n}, priority=n % 5) for n in range(300)])
    with running_worker(queue, concurrency=1):
        wait_for_status(queue, ids[-1], "completed", timeout=60)
        wait_until(lambda: len(order) == 300, timeout=60)
    expected = sorted(range(300), key=lambda n: (-(n % 5), n))
    assert order == expected
    for job_id in ids[::37]:
        job = queue.get_job(job_id)
        assert job.status is JobStatus.COMPLETED and job.attempts == 1 and job.output == job.payload, job


def test_jobs_claimed_ahead_go_back_when_a_long_job_holds_the_slot(backend: str) -> None:
    # Short jobs first: the worker claims many ahead (how many depends on its timings). Then a
    # long one holds the only slot: of the jobs claimed behind it, all but the next go back to
    # pending, untouched, so that any worker can run them; the order stays priority, then FIFO.
    long_may_end = threading.Event()
    order: list[int] = []

    def handler(payload: Any, ctx: JobContext) -> Any:
        order.append(payload["n"])
        if payload["n"] == -1:
            long_may_end.wait(20)

    queue = make_queue(backend, {"t": {"handler": handler, "max_attempts": 1}})
    queue.add_many([JobSpec("t", {"n": n}, priority=9) for n in range(400)])
    long_id = queue.add("t", {"n": -1}, priority=5)
    after = queue.add_many([JobSpec("t", {"n": 1000 + n}, priority=1) for n in range(60)])

    def held_behind() -> int:
        return sum(queue.get_job(i).status is JobStatus.PROCESSING for i in after)

    with running_worker(queue, concurrency=1):
        wait_until(lambda: order[-1:] == [-1], timeout=60)
        wait_until(lambda: held_behind() <= 1, timeout=10)
        time.sleep(0.3)  # and it stays so while the slot is held
        assert held_behind() <= 1
        waiting = [queue.get_job(i) for i in after]
        assert all(j.status is JobStatus.PENDING and j.attempts == 0 for j in waiting if j.id != after[0]), waiting
        long_may_end.set()
        wait_for_status(queue, after[-1], "completed", timeout=30)
    assert queue.get_job(long_id).status is JobStatus.COMPLETED
    assert order == [*range(400), -1, *range(1000, 1060)]  # each job once, in priority then FIFO order
