"""Contract: leases (renew, reclaim), fenced progress and output writes, wake-ups, close."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from helpers import add_job, add_jobs, claim_one, complete, event_types, fail, release

from dqflow.record import EventType, JobStatus
from dqflow.storage import Lease, Storage, open_storage

# -- renew -------------------------------------------------------------------------------


def test_renew_extends_only_the_leases_still_held(storage: Storage) -> None:
    a, b, c = add_jobs(storage, 3)
    jobs = {j.id: j for j in storage.claim_jobs("w", None, 3, 1_000)}
    storage.cancel_job(b)
    leases = [Lease(a, jobs[a].lease_token), Lease(b, jobs[b].lease_token), Lease(c, 12345)]
    assert storage.renew_leases("w", leases, 60_000) == {a}
    renewed = storage.get_job(a)
    assert renewed is not None and renewed.lease_expires_at is not None
    assert renewed.lease_expires_at > datetime.now(UTC) + timedelta(seconds=50)
    assert event_types(storage, a) == [EventType.ADDED, EventType.PROCESSING]  # renewals record no event
    assert storage.renew_leases("w", [], 1_000) == set()
    time.sleep(1.05)
    reclaimed = {r.job_id for r in storage.reclaim_expired()}
    assert reclaimed == {c}  # the renewed lease has not expired; c's was never renewed


# -- progress and output -----------------------------------------------------------------


def test_progress_and_output_are_fenced_and_last_write_wins(storage: Storage) -> None:
    job_id = add_job(storage)
    assert storage.set_progress(job_id, 0, 10) is False  # pending: nobody holds it
    assert storage.set_output(job_id, 0, "1") is False
    job = claim_one(storage)
    assert storage.set_progress(job_id, job.lease_token, 0)
    assert storage.set_progress(job_id, job.lease_token, 100)
    assert storage.set_progress(job_id, job.lease_token + 5, 10) is False
    assert storage.set_output(job_id, job.lease_token, '{"a": 1}')
    assert storage.set_output(job_id, job.lease_token, '{"a": 2}')
    assert storage.set_output(job_id, job.lease_token - 1, '{"a": 3}') is False
    record = storage.get_job(job_id)
    assert record is not None and record.progress == 100 and record.output == {"a": 2}
    assert event_types(storage, job_id) == [EventType.ADDED, EventType.PROCESSING]  # no events


def test_progress_outside_0_to_100_is_refused(storage: Storage) -> None:
    job_id = add_job(storage)
    job = claim_one(storage)
    assert storage.set_progress(job_id, job.lease_token, 30)
    for bad in (101, -1):
        with pytest.raises(ValueError, match="progress"):
            storage.set_progress(job_id, job.lease_token, bad)
    record = storage.get_job(job_id)
    assert record is not None and record.progress == 30


# -- reclaim -----------------------------------------------------------------------------


def test_reclaim_returns_expired_jobs_or_fails_them(storage: Storage) -> None:
    again = add_job(storage, priority=3, max_attempts=2)
    used_up = add_job(storage, priority=2, max_attempts=1)
    healthy = add_job(storage)
    short = {j.id: j for j in storage.claim_jobs("dead-worker", None, 2, 100)}
    long = claim_one(storage, "alive", 30_000)
    assert long.id == healthy
    assert storage.reclaim_expired() == []  # nothing has expired yet
    time.sleep(0.25)
    reclaimed = storage.reclaim_expired()
    assert {(r.job_id, r.status) for r in reclaimed} == {(again, JobStatus.PENDING), (used_up, JobStatus.FAILED)}

    pending = storage.get_job(again)
    assert pending is not None and pending.status is JobStatus.PENDING
    assert pending.locked_by is None and pending.lease_expires_at is None
    assert pending.lease_token > short[again].lease_token and pending.attempts == 1
    assert pending.run_at <= datetime.now(UTC)
    assert storage.get_events(again)[-1].event_type is EventType.RECLAIMED
    assert storage.get_events(again)[-1].data == {"attempt": 1, "previous_worker": "dead-worker"}

    failed = storage.get_job(used_up)
    assert failed is not None and failed.status is JobStatus.FAILED
    assert failed.failure_reason == "lease_expired" and failed.lease_token > short[used_up].lease_token
    [entry] = failed.error_history
    assert entry["reason"] == "lease_expired" and entry["attempt"] == 1 and "attempts" in entry["error"]
    assert failed.last_failed_at is not None
    last = storage.get_events(used_up)[-1]
    assert last.event_type is EventType.FAILED and last.data is not None
    assert last.data["will_retry"] is False and last.data["reason"] == "lease_expired"

    live = storage.get_job(healthy)
    assert live is not None and live.status is JobStatus.PROCESSING
    assert storage.reclaim_expired() == []
    # the dead worker's late writes are rejected
    assert complete(storage, short[again], '{"stale": true}') is False
    assert storage.set_output(again, short[again].lease_token, '{"stale": true}') is False
    assert fail(storage, short[used_up]) is False
    fresh = claim_one(storage)
    assert fresh.id == again and fresh.attempts == 2
    assert complete(storage, fresh, '{"fresh": true}')
    assert storage.get_job(again).output == {"fresh": True}  # type: ignore[union-attr]


# -- wake-ups ----------------------------------------------------------------------------


def test_wait_for_jobs_returns_after_the_timeout_without_work(storage: Storage) -> None:
    storage.wait_for_jobs(0, None)  # forget wake-ups from before the test
    started = time.monotonic()
    storage.wait_for_jobs(0.2, None)
    assert 0.18 <= time.monotonic() - started < 0.6
    started = time.monotonic()
    storage.wait_for_jobs(0, None)
    storage.wait_for_jobs(-1, None)
    assert time.monotonic() - started < 0.1


def _wakes_within(storage: Storage, make_ready: Callable[[], object], limit: float = 0.5) -> float:
    """Seconds from ``make_ready()`` to a thread blocked in ``wait_for_jobs`` waking up."""
    storage.wait_for_jobs(0, None)  # forget wake-ups from before
    woke: list[float] = []
    waiting = threading.Event()

    def waiter() -> None:
        waiting.set()
        storage.wait_for_jobs(5.0, None)
        woke.append(time.monotonic())

    thread = threading.Thread(target=waiter)
    thread.start()
    waiting.wait()
    time.sleep(0.3)
    started = time.monotonic()
    make_ready()
    thread.join(6)
    assert woke, "wait_for_jobs did not return"
    assert woke[0] - started < limit, woke[0] - started
    return woke[0] - started


def test_an_add_wakes_a_waiting_worker(storage: Storage) -> None:
    _wakes_within(storage, lambda: add_job(storage))


def test_a_release_or_retry_wakes_a_waiting_worker(storage: Storage) -> None:
    ids = add_jobs(storage, 2, max_attempts=1)
    first, second = storage.claim_jobs("w", None, 2, 30_000)
    _wakes_within(storage, lambda: release(storage, first, started=False))
    assert fail(storage, second)
    _wakes_within(storage, lambda: storage.retry_job(second.id))
    assert {j.id for j in storage.claim_jobs("w", None, 5, 30_000)} == set(ids)


# -- lifecycle ---------------------------------------------------------------------------


def test_setup_twice_and_close_twice(backend: str) -> None:
    store = open_storage(backend)
    store.setup()
    store.setup()
    job_id = add_job(store)
    store.close()
    store.close()
    store.wait_for_jobs(0.01, None)  # an idle wait after close neither hangs nor raises
    again = open_storage(backend)
    again.setup()
    try:
        assert again.get_job(job_id) is not None  # data outlives the storage object
    finally:
        again.close()
