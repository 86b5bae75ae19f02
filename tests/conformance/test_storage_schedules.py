"""Contract: ``claim_tick``, ``schedule_states`` and ``set_schedule_paused`` on every backend."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from dqflow.record import JobStatus
from dqflow.storage import Completion, NewJob, Storage, TickResult, TickVerdict, open_storage

T0 = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)


def _job(tick: datetime, name: str = "nightly") -> NewJob:
    return NewJob("report", '{"day": 1}', idempotency_key=f"schedule:{name}:{tick.isoformat()}")


def test_a_tick_is_enqueued_once_and_moves_the_last_tick(storage: Storage) -> None:
    first = storage.claim_tick("nightly", T0, _job(T0))
    assert first.verdict is TickVerdict.ENQUEUED and first.job_id is not None
    job = storage.get_job(first.job_id)
    assert job is not None and job.job_type == "report" and job.status is JobStatus.PENDING
    assert storage.claim_tick("nightly", T0, _job(T0)) == TickResult(TickVerdict.TAKEN)
    assert storage.claim_tick("nightly", T0 - timedelta(minutes=1), _job(T0)) == TickResult(TickVerdict.TAKEN)
    state = storage.schedule_states()["nightly"]
    assert (state.last_tick, state.last_job_id, state.paused) == (T0, first.job_id, False)
    later = T0 + timedelta(minutes=1)
    second = storage.claim_tick("nightly", later, _job(later))
    assert second.verdict is TickVerdict.ENQUEUED and second.job_id not in (None, first.job_id)
    assert storage.schedule_states()["nightly"].last_tick == later


def test_a_tick_whose_key_exists_is_taken_with_that_job(storage: Storage) -> None:
    existing = storage.add_jobs([_job(T0)])[0].job_id
    assert storage.claim_tick("nightly", T0, _job(T0)) == TickResult(TickVerdict.TAKEN, existing)
    assert storage.schedule_states()["nightly"].last_tick == T0


def test_many_threads_on_separate_connections_enqueue_each_tick_once(backend: str) -> None:
    ticks = [T0 + timedelta(minutes=m) for m in range(10)]
    stores = [open_storage(backend) for _ in range(4)]
    results: list[TickResult] = []
    lock = threading.Lock()

    def claim(store: Storage) -> None:
        store.setup()
        for tick in ticks:
            result = store.claim_tick("every-minute", tick, _job(tick, "every-minute"))
            with lock:
                results.append(result)

    threads = [threading.Thread(target=claim, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    enqueued = [r for r in results if r.verdict is TickVerdict.ENQUEUED]
    assert len(enqueued) == len(ticks)
    assert len({r.job_id for r in enqueued}) == len(ticks)
    assert all(r.verdict is TickVerdict.TAKEN for r in results if r not in enqueued)


def test_no_job_records_the_tick_as_skipped(storage: Storage) -> None:
    assert storage.claim_tick("nightly", T0, None) == TickResult(TickVerdict.SKIPPED)
    state = storage.schedule_states()["nightly"]
    assert state.last_tick == T0 and state.last_job_id is None
    assert storage.claim_tick("nightly", T0, _job(T0)) == TickResult(TickVerdict.TAKEN)


def test_overlap_skips_while_the_last_job_is_unfinished(storage: Storage) -> None:
    first = storage.claim_tick("sync", T0, _job(T0, "sync"), skip_while_unfinished=True)
    assert first.verdict is TickVerdict.ENQUEUED and first.job_id is not None
    t1, t2, t3 = (T0 + timedelta(minutes=m) for m in (1, 2, 3))
    assert storage.claim_tick("sync", t1, _job(t1, "sync"), skip_while_unfinished=True).verdict is TickVerdict.OVERLAP
    [claimed] = storage.claim_jobs("w", ["report"], 1, 30_000)
    assert storage.claim_tick("sync", t2, _job(t2, "sync"), skip_while_unfinished=True).verdict is TickVerdict.OVERLAP
    assert storage.schedule_states()["sync"].last_job_id == first.job_id
    assert storage.settle_jobs([Completion(claimed.id, claimed.lease_token)]) == [True]
    third = storage.claim_tick("sync", t3, _job(t3, "sync"), skip_while_unfinished=True)
    assert third.verdict is TickVerdict.ENQUEUED
    # overlap: allow adds while the last one still runs
    t4 = T0 + timedelta(minutes=4)
    assert storage.claim_tick("sync", t4, _job(t4, "sync")).verdict is TickVerdict.ENQUEUED


def test_pause_and_resume_are_kept_and_a_paused_tick_adds_nothing(backend: str) -> None:
    store = open_storage(backend)
    store.setup()
    state = store.set_schedule_paused("nightly", True)
    assert (state.name, state.paused, state.last_tick) == ("nightly", True, None)
    assert store.claim_tick("nightly", T0, _job(T0)) == TickResult(TickVerdict.PAUSED)
    store.close()
    reopened = open_storage(backend)
    reopened.setup()
    try:
        state = reopened.schedule_states()["nightly"]
        assert state.paused and state.last_tick == T0 and state.last_job_id is None
        resumed = reopened.set_schedule_paused("nightly", False)
        assert not resumed.paused and resumed.last_tick == T0
        later = T0 + timedelta(hours=1)
        assert reopened.claim_tick("nightly", later, _job(later)).verdict is TickVerdict.ENQUEUED
        assert reopened.schedule_states()["nightly"].paused is False
    finally:
        reopened.close()


def test_states_list_every_schedule_seen(storage: Storage) -> None:
    assert storage.schedule_states() == {}
    storage.claim_tick("a", T0, None)
    storage.set_schedule_paused("b", True)
    states = storage.schedule_states()
    assert sorted(states) == ["a", "b"]
    assert states["a"].last_tick == T0 and not states["a"].paused
    assert states["b"].last_tick is None and states["b"].paused
