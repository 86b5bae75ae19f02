"""``Storage.count_jobs``: exact counts per (job type, status) on every backend."""

from __future__ import annotations

from helpers import make_queue

from dqflow import JobStatus, Worker

JOBS = {
    "ok": {"handler": lambda payload: {"fine": True}},
    "bad": {"handler": lambda payload: 1 / 0, "max_attempts": 1},
    "idle": {"handler": lambda payload: None},
}


def test_counts_follow_every_change(backend: str) -> None:
    with make_queue(backend, JOBS) as queue:
        assert queue.count_jobs() == {}
        for n in range(3):
            queue.add("ok", {"n": n})
        queue.add("bad", {})
        idle = [queue.add("idle", {"n": n}) for n in range(4)]
        queue.cancel(idle[0])
        queue.add("idle", {}, delay="1h")
        Worker(queue, job_types=["ok", "bad"], drain=True).run()
        counts = queue.storage.count_jobs()
        expected = {
            ("ok", JobStatus.COMPLETED): 3,
            ("bad", JobStatus.FAILED): 1,
            ("idle", JobStatus.PENDING): 4,
            ("idle", JobStatus.CANCELLED): 1,
        }
        assert counts == expected
        queue.retry(idle[0])
        assert queue.storage.count_jobs()[("idle", JobStatus.PENDING)] == 5
        assert ("idle", JobStatus.CANCELLED) not in queue.storage.count_jobs()
