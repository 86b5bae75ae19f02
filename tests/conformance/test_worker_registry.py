"""The worker registry (``beat_worker`` / ``remove_worker`` / ``list_workers``) and
``oldest_pending``, on every backend; a running worker registers itself."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from helpers import add_job, claim_one, make_queue, running_worker, wait_until

from dqflow.storage import Storage, WorkerInfo

STARTED = datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)


def info(worker_id: str, **changes: object) -> WorkerInfo:
    base = WorkerInfo(worker_id, "host-a", 4242, STARTED, 8, ("report", "email"))
    return replace(base, **changes)  # type: ignore[arg-type]


def test_beat_list_and_remove(storage: Storage) -> None:
    assert storage.list_workers() == []
    before = datetime.now(UTC) - timedelta(seconds=5)
    storage.beat_worker(info("w1"))
    time.sleep(0.01)
    storage.beat_worker(info("w2", host="host-b", pid=7, concurrency=1, job_types=()))
    workers = storage.list_workers()
    assert [w.worker_id for w in workers] == ["w2", "w1"]  # the most recently seen first
    w2, w1 = workers
    assert (w1.host, w1.pid, w1.concurrency, w1.job_types, w1.started_at) == (
        "host-a",
        4242,
        8,
        ("report", "email"),
        STARTED,
    )
    assert (w2.host, w2.pid, w2.concurrency, w2.job_types) == ("host-b", 7, 1, ())
    assert w1.last_seen is not None and before < w1.last_seen < datetime.now(UTC) + timedelta(seconds=5)
    storage.beat_worker(info("w1", concurrency=16))  # a later beat replaces the entry
    workers = storage.list_workers()
    assert [w.worker_id for w in workers] == ["w1", "w2"] and workers[0].concurrency == 16
    assert workers[0].last_seen is not None and w1.last_seen < workers[0].last_seen
    storage.remove_worker("w1")
    storage.remove_worker("never-there")
    assert [w.worker_id for w in storage.list_workers()] == ["w2"]


def test_oldest_pending(storage: Storage) -> None:
    assert storage.oldest_pending() is None
    first = add_job(storage, "t")
    second = add_job(storage, "u")
    oldest = storage.oldest_pending()
    assert oldest is not None and oldest.id == first
    claim_one(storage)  # the first one starts running
    oldest = storage.oldest_pending()
    assert oldest is not None and oldest.id == second and oldest.job_type == "u"


def test_a_running_worker_is_registered_until_it_stops(backend: str) -> None:
    jobs = {"ok": {"handler": lambda payload: None}}
    with make_queue(backend, jobs) as queue:
        with running_worker(queue, concurrency=3) as worker:
            [seen] = wait_until(queue.storage.list_workers)
            assert seen.worker_id == worker.worker_id and seen.concurrency == 3 and seen.job_types == ("ok",)
        assert queue.storage.list_workers() == []
