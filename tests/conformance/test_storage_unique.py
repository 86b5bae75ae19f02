"""Contract: ``add_unique`` on every backend (windows, states, atomic under concurrent adds)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from helpers import complete

from dqflow.record import JobStatus
from dqflow.storage import AddResult, NewJob, Storage, UniqueRule, open_storage

LIVE = (JobStatus.PENDING, JobStatus.PROCESSING)


def _job(n: int = 1) -> NewJob:
    return NewJob("sync", f'{{"customer": {n}}}')


def test_a_duplicate_gets_the_existing_id_while_it_is_in_the_given_states(storage: Storage) -> None:
    rule = UniqueRule("sync:7", statuses=LIVE)
    first = storage.add_unique(_job(), rule)
    assert first.created
    assert storage.add_unique(_job(), rule) == AddResult(first.job_id, False)
    other = storage.add_unique(_job(2), UniqueRule("sync:8", statuses=LIVE))
    assert other.created and other.job_id != first.job_id
    [claimed] = storage.claim_jobs("w", ["sync"], 1, 30_000)
    assert claimed.id == first.job_id
    assert storage.add_unique(_job(), rule) == AddResult(first.job_id, False)  # processing
    assert complete(storage, claimed)
    second = storage.add_unique(_job(), rule)  # completed: no longer blocks
    assert second.created and second.job_id not in (first.job_id, other.job_id)
    assert storage.add_unique(_job(), rule) == AddResult(second.job_id, False)  # the newest decides


def test_a_duplicate_within_the_window_whatever_its_status(storage: Storage) -> None:
    rule = UniqueRule("report:2030-01", within_ms=300)
    first = storage.add_unique(_job(), rule)
    storage.cancel_job(first.job_id)
    assert storage.add_unique(_job(), rule) == AddResult(first.job_id, False)
    time.sleep(0.4)
    later = storage.add_unique(_job(), rule)
    assert later.created


def test_window_and_states_both_apply(storage: Storage) -> None:
    rule = UniqueRule("both", within_ms=60_000, statuses=(JobStatus.PENDING,))
    first = storage.add_unique(_job(), rule)
    assert storage.add_unique(_job(), rule).job_id == first.job_id
    storage.cancel_job(first.job_id)
    assert storage.add_unique(_job(), rule).created


def test_no_window_and_no_states_means_unique_for_ever(storage: Storage) -> None:
    rule = UniqueRule("once")
    first = storage.add_unique(_job(), rule)
    storage.cancel_job(first.job_id)
    assert storage.add_unique(_job(), rule) == AddResult(first.job_id, False)
    # a cleaned-up job frees its key
    assert storage.delete_finished_jobs([JobStatus.CANCELLED], datetime.now(UTC) + timedelta(seconds=5)) == 1
    assert storage.add_unique(_job(), rule).created


def test_concurrent_adds_on_separate_connections_create_one_job(backend: str) -> None:
    stores = [open_storage(backend) for _ in range(4)]
    for store in stores:  # set up one by one: this test races the adds, not the set-ups
        store.setup()
    results: list[AddResult] = []
    lock = threading.Lock()
    start = threading.Barrier(len(stores), timeout=30)  # a thread that died fails the test, never hangs it

    def add(store: Storage) -> None:
        start.wait()
        for _ in range(10):
            result = store.add_unique(_job(), UniqueRule("race", statuses=LIVE))
            with lock:
                results.append(result)

    threads = [threading.Thread(target=add, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    assert sum(result.created for result in results) == 1
    assert len({result.job_id for result in results}) == 1
