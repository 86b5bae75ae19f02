"""Retention on every backend: the worker's pruner (bounded batches, per type and status) and ``cleanup``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from helpers import make_queue

from dqflow import Queue
from dqflow.queue.cleanup import cleanup
from dqflow.storage import Completion, Failure
from dqflow.worker._pruner import BATCH, Pruner

JOBS = {
    "kept": {"handler": lambda payload: None, "retention": {"completed": None}},
    "short": {"handler": lambda payload: None, "retention": {"completed": "1h"}},
    "plain": {"handler": lambda payload: None},
}
DEFAULTS = {
    "retention": {"completed": "7d", "failed": "30d", "events": "1d"},
    "retry": {"delay": "50ms", "jitter": False},
}


def _finish(queue: Queue, job_type: str, n: int, *, failed: bool = False) -> list[int]:
    ids = queue.add_many([{"job_type": job_type, "payload": {"n": i}} for i in range(n)])
    claimed = queue.storage.claim_jobs("w", [job_type], n, 30_000)
    if failed:
        outcomes = [Failure(job.id, job.lease_token, "boom", "handler_error") for job in claimed]
    else:
        outcomes = [Completion(job.id, job.lease_token) for job in claimed]  # type: ignore[misc]
    assert queue.storage.settle_jobs(outcomes) == [True] * n
    return ids


def _alive(queue: Queue, ids: list[int]) -> int:
    return sum(queue.get_job(job_id) is not None for job_id in ids)


def test_the_pruner_follows_each_types_windows_in_bounded_batches(backend: str) -> None:
    queue = make_queue(backend, JOBS, defaults=DEFAULTS)
    kept, short, plain = _finish(queue, "kept", 3), _finish(queue, "short", BATCH + 20), _finish(queue, "plain", 4)
    plain_failed = _finish(queue, "plain", 2, failed=True)
    pending = queue.add("plain", {"n": 0})
    now = datetime.now(UTC)
    at = now
    pruner = Pruner(queue.declaration, queue.storage, now=lambda: at)
    assert pruner.prune_once() == (0, False)  # nothing is old enough yet
    at = now + timedelta(hours=2)
    assert pruner.prune_once() == (BATCH, True)  # one bounded batch, more left
    assert pruner.prune_once() == (20, False)
    assert _alive(queue, short) == 0 and _alive(queue, plain + plain_failed + kept) == 9
    assert queue.get_events(kept[0]) != []
    at = now + timedelta(days=2)  # past the events window: histories go, the jobs stay
    assert pruner.prune_once() == (0, False)
    assert queue.get_events(kept[0]) == [] and _alive(queue, kept + plain + plain_failed) == 9
    assert queue.get_events(pending) != []
    at = now + timedelta(days=8)
    assert pruner.prune_once() == (4, False)  # plain's completed: the defaults' 7d
    assert _alive(queue, plain_failed) == 2  # failed: 30d
    at = now + timedelta(days=31)
    assert pruner.prune_once() == (2, False)
    at = now + timedelta(days=3650)
    assert pruner.prune_once() == (0, False)
    assert _alive(queue, kept) == 3 and queue.get_job(pending) is not None  # kept for ever; live
    queue.close()


def test_cleanup_counts_then_deletes_in_batches(backend: str) -> None:
    queue = make_queue(backend, JOBS)
    done = _finish(queue, "plain", BATCH + 5)
    failed = _finish(queue, "short", 3, failed=True)
    later = datetime.now(UTC) + timedelta(days=2)
    assert cleanup(queue, 86_400, dry_run=True, now=later) == {"completed": BATCH + 5, "failed": 3, "cancelled": 0}
    assert cleanup(queue, 86_400, statuses=["failed"], job_type="plain", now=later) == {"failed": 0}
    assert cleanup(queue, 3 * 86_400, now=later) == {"completed": 0, "failed": 0, "cancelled": 0}
    assert _alive(queue, done + failed) == BATCH + 8
    assert cleanup(queue, 86_400, statuses=["completed"], now=later) == {"completed": BATCH + 5}
    assert _alive(queue, done) == 0 and _alive(queue, failed) == 3
    assert queue.get_events(done[0]) == []
    queue.close()
