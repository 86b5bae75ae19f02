"""Pruning flow-control bookkeeping on every backend (``Storage.prune_flow_control``): idle
concurrency slots and ended rate windows of keys no longer in use are deleted, keys in use
keep their counts, and claims running while it prunes never exceed a limit."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from helpers import make_queue

from dqflow import JobRecord
from dqflow.storage import Completion, NewJob, Storage, open_storage
from dqflow.worker._pruner import Pruner


def _keyed(key: str, limit: int = 1) -> NewJob:
    return NewJob("t", "{}", concurrency_key=f"t:{key}", concurrency_limit=limit)


def _rated(key: str, limit: int, window_ms: int) -> NewJob:
    return NewJob("t", "{}", rate_key=f"t:{key}", rate_limit=limit, rate_window_ms=window_ms)


def _run_all(storage: Storage, n: int, job_type: str = "t") -> None:
    """Claim and complete ``n`` ready jobs (a claim that straddles a short rate window's end
    may take fewer: PostgreSQL counts no start then, so claim again, a bounded number of times)."""
    claimed: list[JobRecord] = []
    for _ in range(20):
        claimed += storage.claim_jobs("w", [job_type], n - len(claimed), 30_000)
        if len(claimed) == n:
            break
    assert len(claimed) == n
    assert storage.settle_jobs([Completion(job.id, job.lease_token) for job in claimed]) == [True] * n


def test_unused_keys_are_pruned_and_keys_in_use_keep_their_limits(storage: Storage) -> None:
    n = 20
    storage.add_jobs([_keyed(f"user-{i}") for i in range(n)] + [_rated(f"user-{i}", 2, 50) for i in range(n)])
    _run_all(storage, 2 * n)  # 2n keys used once: idle slots, windows that end within 50 ms
    busy = storage.add_jobs([_keyed("busy"), _keyed("busy")])
    (held,) = storage.claim_jobs("w", ["t"], 2, 30_000)  # one slot of "busy" held
    hourly = storage.add_jobs([_rated("hourly", 1, 3_600_000), _rated("hourly", 1, 3_600_000)])
    (started,) = storage.claim_jobs("w", ["t"], 2, 30_000)  # the hour's one start taken
    assert storage.settle_jobs([Completion(started.id, started.lease_token)]) == [True]
    time.sleep(0.06)
    assert storage.count_flow_control().rate_windows == n + 1

    first = storage.prune_flow_control(limit=5)
    assert 1 <= first <= 10  # at most `limit` slots and `limit` windows
    rest = storage.prune_flow_control(limit=500)
    assert first + rest >= n  # every backend keeps rate windows; PostgreSQL also slot rows
    assert storage.prune_flow_control(limit=500) == 0
    kept = storage.count_flow_control()
    assert kept.rate_windows == 1 and kept.slot_keys <= 1  # "hourly"; "busy" (SQLite stores no slots)

    # the keys in use kept their counts: neither waiting job may start
    assert storage.claim_jobs("w", ["t"], 10, 30_000) == []
    assert storage.settle_jobs([Completion(held.id, held.lease_token)]) == [True]
    storage.prune_flow_control()  # "busy" is idle now: its row may go, its job still starts
    (second,) = storage.claim_jobs("w", ["t"], 10, 30_000)
    assert second.id == busy[1].job_id and second.id != hourly[1].job_id
    assert storage.claim_jobs("w", ["t"], 10, 30_000) == []  # busy's slot taken again; hourly still full


@pytest.fixture
def storages(backend: str) -> Iterator[list[Storage]]:
    opened = [open_storage(backend) for _ in range(4)]
    for store in opened:
        store.setup()
    yield opened
    for store in opened:
        store.close()


def test_limits_hold_while_pruning_runs_concurrently(storages: list[Storage]) -> None:
    keys, rate_limit, window_us = 4, 3, 100_000
    first, *claimers = storages
    first.add_jobs([_keyed(f"k{i % keys}") for i in range(60)] + [_rated("shared", rate_limit, 100) for _ in range(8)])
    holders: Counter[str] = Counter()
    over: list[str] = []
    starts: Counter[int] = Counter()
    lock = threading.Lock()
    stop = threading.Event()
    pruned = [0, 0]  # rows deleted, passes
    deadline = time.monotonic() + 1.2

    def claim_loop(store: Storage) -> None:
        while not stop.is_set() and time.monotonic() < deadline:
            jobs = store.claim_jobs("w", ["t"], 4, 30_000)
            with lock:
                for job in jobs:
                    if job.concurrency_key is not None:
                        holders[job.concurrency_key] += 1
                        if holders[job.concurrency_key] > 1:
                            over.append(f"{job.concurrency_key}: {holders[job.concurrency_key]} at once")
                    else:
                        assert job.started_at is not None
                        starts[int(job.started_at.timestamp() * 1_000_000) // window_us] += 1
            time.sleep(0.003)  # hold the slots a moment
            with lock:
                for job in jobs:
                    if job.concurrency_key is not None:
                        holders[job.concurrency_key] -= 1  # before the settle frees it
            store.settle_jobs([Completion(job.id, job.lease_token) for job in jobs])
            if not jobs:
                time.sleep(0.005)

    def prune_loop(store: Storage) -> None:
        while not stop.is_set() and time.monotonic() < deadline:
            pruned[0] += store.prune_flow_control(limit=50)
            pruned[1] += 1
            time.sleep(0.002)

    def add_loop(store: Storage) -> None:  # rate-limited jobs keep arriving, into open windows
        while not stop.is_set() and time.monotonic() < deadline:
            store.add_jobs([_rated("shared", rate_limit, 100)])
            time.sleep(0.004)

    threads = [threading.Thread(target=claim_loop, args=(store,)) for store in claimers[:2]]
    threads.append(threading.Thread(target=prune_loop, args=(claimers[2],)))
    threads.append(threading.Thread(target=add_loop, args=(first,)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    stop.set()
    assert not any(thread.is_alive() for thread in threads)
    assert over == [], over[:5]
    assert starts and max(starts.values()) <= rate_limit, starts
    assert sum(starts.values()) >= 2 * rate_limit  # starts in several windows
    assert pruned[1] >= 10 and pruned[0] >= 1  # pruning ran, and deleted rows, while claims ran


def test_the_workers_pruner_prunes_flow_control_when_a_type_declares_it(backend: str) -> None:
    limited = {"handler": lambda payload: None, "rate_limit": {"limit": 5, "per": "100ms"}}
    queue = make_queue(backend, {"limited": limited, "plain": {"handler": lambda payload: None}})
    plain_queue = make_queue(backend, {"plain": {"handler": lambda payload: None}})
    plain_only = Pruner(plain_queue.declaration, queue.storage)
    plain_queue.close()
    try:
        queue.add_many([{"job_type": "limited", "payload": {}} for _ in range(3)])
        _run_all(queue.storage, 3, "limited")
        time.sleep(0.11)  # its window has ended
        assert not plain_only.has_work and plain_only.prune_once() == (0, False)
        pruner = Pruner(queue.declaration, queue.storage)
        assert pruner.has_work and pruner.prune_once() == (0, False)
        assert pruner.flow_rows_pruned >= 1 and queue.storage.prune_flow_control() == 0
    finally:
        queue.close()
