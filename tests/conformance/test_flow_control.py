"""Contract: flow control on every backend (docs/FLOW_CONTROL.md).

Concurrency keys: at most ``concurrency_limit`` jobs with one key are processing at
once, enforced inside ``claim_jobs`` (batch claims included); a held-back job stays
pending without holding back other keys' jobs, and every way out of processing frees
its slot. Rate limits: at most ``rate_limit`` starts per fixed window per key.
Dead-letter: a job that fails for good adds its dead-letter job in the same step.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import jsonschema
from helpers import add_job, add_jobs

from dqflow.declaration.dead_letter import envelope_schema
from dqflow.record import EventType, JobRecord, JobStatus
from dqflow.storage import Completion, Failure, JobFilter, NewJob, Release, Storage, open_storage

LEASE_MS = 30_000


def _keys(jobs: list[object]) -> Counter[str | None]:
    return Counter(job.concurrency_key for job in jobs)  # type: ignore[attr-defined]


def test_the_key_and_limit_are_stored_with_the_job(storage: Storage) -> None:
    job_id = add_job(storage, concurrency_key="t:acme", concurrency_limit=2)
    plain = add_job(storage)
    job = storage.get_job(job_id)
    assert job is not None and job.concurrency_key == "t:acme" and job.concurrency_limit == 2
    other = storage.get_job(plain)
    assert other is not None and other.concurrency_key is None and other.concurrency_limit is None


def test_a_batch_claim_takes_at_most_the_limit_per_key(storage: Storage) -> None:
    add_jobs(storage, 6, concurrency_key="a", concurrency_limit=2)
    add_jobs(storage, 6, concurrency_key="b", concurrency_limit=1)
    plain = add_jobs(storage, 2)
    claimed = storage.claim_jobs("w", None, 50, LEASE_MS)
    assert _keys(claimed) == Counter({"a": 2, "b": 1, None: 2})
    assert {j.id for j in claimed} >= set(plain)
    assert storage.claim_jobs("w2", None, 50, LEASE_MS) == []
    assert storage.next_due_in(None) is None  # held-back jobs are not "due": no busy polling


def test_held_back_jobs_do_not_hold_back_other_keys(storage: Storage) -> None:
    now = datetime.now(UTC)
    # 30 jobs of key "busy" come first in claim order, then one of key "free"
    add_jobs(storage, 30, concurrency_key="busy", concurrency_limit=1, run_at=now - timedelta(seconds=10))
    free = add_job(storage, concurrency_key="free", concurrency_limit=1, run_at=now - timedelta(seconds=5))
    first = storage.claim_jobs("w", None, 1, LEASE_MS)
    assert _keys(first) == Counter({"busy": 1})
    # the busy key's 29 others are passed over, in one claim of one job
    [second] = storage.claim_jobs("w", None, 1, LEASE_MS)
    assert second.id == free
    assert storage.claim_jobs("w", None, 5, LEASE_MS) == []


def test_priority_then_age_order_holds_among_claimable_jobs(storage: Storage) -> None:
    now = datetime.now(UTC)
    low = add_job(storage, concurrency_key="k", concurrency_limit=1, priority=1, run_at=now - timedelta(seconds=3))
    high = add_job(storage, concurrency_key="k", concurrency_limit=1, priority=5, run_at=now - timedelta(seconds=1))
    old = add_job(storage, concurrency_key="j", concurrency_limit=1, run_at=now - timedelta(seconds=9))
    claimed = storage.claim_jobs("w", None, 10, LEASE_MS)
    assert [j.id for j in claimed] == [high, old]
    [done] = [j for j in claimed if j.id == high]
    assert storage.settle_jobs([Completion(done.id, done.lease_token)]) == [True]
    assert [j.id for j in storage.claim_jobs("w", None, 10, LEASE_MS)] == [low]


def _freed_by(storage: Storage, finish: str) -> None:
    add_jobs(storage, 3, concurrency_key="k", concurrency_limit=1)
    [held] = storage.claim_jobs("w", None, 10, LEASE_MS)
    assert storage.claim_jobs("w", None, 10, LEASE_MS) == []
    if finish == "complete":
        assert storage.settle_jobs([Completion(held.id, held.lease_token)]) == [True]
    elif finish == "fail":
        assert storage.settle_jobs([Failure(held.id, held.lease_token, "boom", "handler_error")]) == [True]
    elif finish == "retry":
        retry_at = datetime.now(UTC) + timedelta(hours=1)
        failure = Failure(held.id, held.lease_token, "boom", "handler_error", retry_at=retry_at)
        assert storage.settle_jobs([failure]) == [True]
    elif finish == "release":
        assert storage.settle_jobs([Release(held.id, held.lease_token, started=True)]) == [True]
    elif finish == "cancel":
        assert storage.cancel_job(held.id).status is JobStatus.CANCELLED
    assert storage.next_due_in(None) == 0.0
    [after] = storage.claim_jobs("w", None, 10, LEASE_MS)
    assert after.concurrency_key == "k"
    assert storage.claim_jobs("w", None, 10, LEASE_MS) == []


def test_a_completion_frees_the_slot(storage: Storage) -> None:
    _freed_by(storage, "complete")


def test_a_failure_for_good_frees_the_slot(storage: Storage) -> None:
    _freed_by(storage, "fail")


def test_a_failure_that_retries_later_frees_the_slot(storage: Storage) -> None:
    _freed_by(storage, "retry")


def test_a_release_frees_the_slot(storage: Storage) -> None:
    _freed_by(storage, "release")


def test_cancelling_a_processing_job_frees_the_slot(storage: Storage) -> None:
    _freed_by(storage, "cancel")


def test_a_reclaimed_lease_frees_the_slot(storage: Storage) -> None:
    first, second = add_jobs(storage, 2, concurrency_key="k", concurrency_limit=1, max_attempts=1)
    [held] = storage.claim_jobs("w", None, 10, 50)
    assert held.id == first
    time.sleep(0.2)
    assert [(r.job_id, r.status) for r in storage.reclaim_expired()] == [(first, JobStatus.FAILED)]
    [after] = storage.claim_jobs("w", None, 10, LEASE_MS)
    assert after.id == second


def test_a_reclaimed_job_back_to_pending_frees_its_slot_for_itself(storage: Storage) -> None:
    job_id = add_job(storage, concurrency_key="k", concurrency_limit=1, max_attempts=3)
    storage.claim_jobs("w", None, 1, 50)
    time.sleep(0.2)
    assert [r.status for r in storage.reclaim_expired()] == [JobStatus.PENDING]
    [again] = storage.claim_jobs("w", None, 1, LEASE_MS)
    assert again.id == job_id and again.attempts == 2


def test_a_cancelled_held_back_job_is_never_claimed(storage: Storage) -> None:
    first, second, third = add_jobs(storage, 3, concurrency_key="k", concurrency_limit=1)
    [held] = storage.claim_jobs("w", None, 10, LEASE_MS)
    assert held.id == first
    storage.cancel_job(second)
    storage.settle_jobs([Completion(held.id, held.lease_token)])
    assert [j.id for j in storage.claim_jobs("w", None, 10, LEASE_MS)] == [third]


def test_a_type_filter_and_a_key_shared_by_two_types(storage: Storage) -> None:
    # a group: one key across job types
    a = add_job(storage, "a", concurrency_key="group:g", concurrency_limit=1)
    b = add_job(storage, "b", concurrency_key="group:g", concurrency_limit=1)
    [first] = storage.claim_jobs("w", ["a"], 5, LEASE_MS)
    assert first.id == a
    assert storage.claim_jobs("w", ["b"], 5, LEASE_MS) == []
    storage.settle_jobs([Completion(first.id, first.lease_token)])
    assert [j.id for j in storage.claim_jobs("w", ["b"], 5, LEASE_MS)] == [b]


def test_concurrent_claimers_never_exceed_the_limit(backend: str, storage: Storage) -> None:
    """Eight threads, each with its own storage, claim and complete in batches."""
    keys = [f"k{n}" for n in range(4)]
    for key in keys:
        add_jobs(storage, 40, concurrency_key=key, concurrency_limit=2)
    lock = threading.Lock()
    running: Counter[str] = Counter()
    peak: Counter[str] = Counter()
    done: list[int] = []
    errors: list[BaseException] = []

    def claimer(n: int) -> None:
        store = open_storage(backend)
        store.setup()
        try:
            idle_since = time.monotonic()
            while time.monotonic() - idle_since < 1.0:
                jobs = store.claim_jobs(f"w{n}", None, 5, LEASE_MS)
                if not jobs:
                    time.sleep(0.005)
                    continue
                idle_since = time.monotonic()
                with lock:
                    for job in jobs:
                        running[job.concurrency_key or ""] += 1
                        key = job.concurrency_key or ""
                        peak[key] = max(peak[key], running[key])
                time.sleep(0.002)
                with lock:
                    for job in jobs:
                        running[job.concurrency_key or ""] -= 1
                # a job's slot is free once settled: count it out first
                assert all(store.settle_jobs([Completion(j.id, j.lease_token) for j in jobs]))
                with lock:
                    done.extend(j.id for j in jobs)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert len(done) == len(set(done)) == 160
    assert peak == Counter(dict.fromkeys(keys, 2))


# -- rate limits ------------------------------------------------------------------------


def _window_left(window_ms: int) -> float:
    """Seconds left in the current fixed window of ``window_ms`` (windows are aligned to the epoch)."""
    window = window_ms / 1000
    return window - time.time() % window


def _fresh_window(window_ms: int, room: float) -> None:
    """Wait for a new window if less than ``room`` seconds are left in this one."""
    left = _window_left(window_ms)
    if left < room:
        time.sleep(left + 0.01)


def test_a_rate_limit_caps_starts_per_window_then_lets_the_rest_start(storage: Storage) -> None:
    window_ms = 2_000
    _fresh_window(window_ms, 1.5)
    add_jobs(storage, 5, rate_key="r", rate_limit=2, rate_window_ms=window_ms)
    first = storage.claim_jobs("w", None, 10, LEASE_MS)
    assert len(first) == 2 and {j.rate_key for j in first} == {"r"}
    # completing them does not give starts back: the window counts starts
    assert all(storage.settle_jobs([Completion(j.id, j.lease_token) for j in first]))
    assert storage.claim_jobs("w", None, 10, LEASE_MS) == []
    due = storage.next_due_in(None)
    assert due is not None and 0 < due <= _window_left(window_ms) + 0.05
    time.sleep(due + 0.02)
    assert len(storage.claim_jobs("w", None, 10, LEASE_MS)) == 2
    time.sleep(_window_left(window_ms) + 0.02)
    assert len(storage.claim_jobs("w", None, 10, LEASE_MS)) == 1


def test_a_full_rate_window_does_not_hold_back_other_keys_or_plain_jobs(storage: Storage) -> None:
    window_ms = 60_000
    _fresh_window(window_ms, 10)
    now = datetime.now(UTC)
    add_jobs(storage, 20, rate_key="slow", rate_limit=1, rate_window_ms=window_ms, run_at=now - timedelta(seconds=9))
    other = add_job(
        storage, rate_key="other", rate_limit=1, rate_window_ms=window_ms, run_at=now - timedelta(seconds=5)
    )
    plain = add_job(storage, run_at=now - timedelta(seconds=4))
    first = storage.claim_jobs("w", None, 1, LEASE_MS)
    assert [j.rate_key for j in first] == ["slow"]
    assert [j.id for j in storage.claim_jobs("w", None, 1, LEASE_MS)] == [other]
    assert [j.id for j in storage.claim_jobs("w", None, 5, LEASE_MS)] == [plain]
    due = storage.next_due_in(None)
    assert due is not None and due > 5  # the held-back jobs are due when their window ends


def test_a_job_with_a_rate_limit_and_a_concurrency_key_needs_both(storage: Storage) -> None:
    window_ms = 60_000
    _fresh_window(window_ms, 10)
    options = {"rate_key": "r", "rate_limit": 3, "rate_window_ms": window_ms}
    add_jobs(storage, 5, concurrency_key="k", concurrency_limit=1, **options)
    [held] = storage.claim_jobs("w", None, 10, LEASE_MS)
    assert storage.claim_jobs("w", None, 10, LEASE_MS) == []
    for _ in range(2):
        storage.settle_jobs([Completion(held.id, held.lease_token)])
        [held] = storage.claim_jobs("w", None, 10, LEASE_MS)
    storage.settle_jobs([Completion(held.id, held.lease_token)])
    # three starts used the window up; the slot is free but the rate is not
    assert storage.claim_jobs("w", None, 10, LEASE_MS) == []


def test_concurrent_claimers_never_start_more_than_the_rate(backend: str, storage: Storage) -> None:
    window_ms = 60_000
    _fresh_window(window_ms, 15)
    add_jobs(storage, 60, rate_key="r", rate_limit=7, rate_window_ms=window_ms)
    claimed: list[int] = []
    lock = threading.Lock()

    def claimer(n: int) -> None:
        store = open_storage(backend)
        store.setup()
        try:
            for _ in range(20):
                jobs = store.claim_jobs(f"w{n}", None, 3, LEASE_MS)
                with lock:
                    claimed.extend(j.id for j in jobs)
        finally:
            store.close()

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(claimed) == len(set(claimed)) == 7


# -- dead-letter ------------------------------------------------------------------------

DEAD_LETTER = json.dumps(
    {
        "job_type": "dlq",
        "priority": 7,
        "max_attempts": 5,
        "timeout_ms": 2500,
        "retry_delay_ms": 1000,
        "retry_backoff": "fixed",
        "retry_max_delay_ms": None,
        "retry_jitter": False,
    }
)


def _dead_letter_of(storage: Storage, job_id: int) -> JobRecord:
    page = storage.list_jobs(JobFilter(job_type="dlq"))
    assert len(page.jobs) == 1, page.jobs
    [letter] = page.jobs
    assert letter.payload["original_id"] == job_id
    return letter


def _check_envelope(storage: Storage, job_id: int, letter: JobRecord, reason: str) -> None:
    failed = storage.get_job(job_id)
    assert failed is not None and failed.status is JobStatus.FAILED
    envelope = letter.payload
    assert set(envelope) == {
        "original_id",
        "job_type",
        "payload",
        "error_history",
        "failure_reason",
        "failed_at",
        "attempts",
    }
    assert envelope["job_type"] == "t"
    assert envelope["payload"] == {"n": 0, "big": 10**16, "text": "é\u2028"}
    assert envelope["error_history"] == failed.error_history
    assert envelope["failure_reason"] == reason == failed.failure_reason
    assert envelope["attempts"] == failed.attempts
    failed_at = datetime.fromisoformat(envelope["failed_at"])
    assert abs((failed_at - datetime.now(UTC)).total_seconds()) < 30
    jsonschema.validate(envelope, envelope_schema())
    # the dead-letter job takes the options it was given, is pending now and has an `added` event
    assert letter.status is JobStatus.PENDING and letter.priority == 7 and letter.max_attempts == 5
    assert letter.timeout_ms == 2500 and letter.retry_delay_ms == 1000 and letter.retry_backoff == "fixed"
    assert letter.retry_jitter is False and letter.retry_max_delay_ms is None and letter.dead_letter is None
    assert [e.event_type for e in storage.get_events(letter.id)] == [EventType.ADDED]
    assert storage.next_due_in(["dlq"]) == 0.0


def _add_failing(storage: Storage, **options: object) -> int:
    payload = '{"n": 0, "big": 10000000000000000, "text": "\\u00e9\\u2028"}'
    [result] = storage.add_jobs([NewJob("t", payload, dead_letter_json=DEAD_LETTER, **options)])  # type: ignore[arg-type]
    return result.job_id


def test_a_job_that_fails_for_good_adds_its_dead_letter_job(storage: Storage) -> None:
    job_id = _add_failing(storage, max_attempts=2)
    [job] = storage.claim_jobs("w", ["t"], 1, LEASE_MS)
    retry_at = datetime.now(UTC) - timedelta(seconds=1)
    assert storage.settle_jobs([Failure(job.id, job.lease_token, "first", "handler_error", retry_at=retry_at)])
    assert storage.list_jobs(JobFilter(job_type="dlq")).jobs == []  # a retry is not a dead letter
    [job] = storage.claim_jobs("w", ["t"], 1, LEASE_MS)
    assert storage.settle_jobs([Failure(job.id, job.lease_token, "second", "timeout", traceback="tb")]) == [True]
    letter = _dead_letter_of(storage, job_id)
    _check_envelope(storage, job_id, letter, "timeout")
    assert [entry["error"] for entry in letter.payload["error_history"]] == ["first", "second"]
    [claimed] = storage.claim_jobs("w", ["dlq"], 5, LEASE_MS)
    assert claimed.id == letter.id


def test_a_lease_expiring_on_the_last_attempt_adds_the_dead_letter_job(storage: Storage) -> None:
    job_id = _add_failing(storage, max_attempts=1)
    storage.claim_jobs("w", ["t"], 1, 50)
    time.sleep(0.2)
    assert [(r.job_id, r.status) for r in storage.reclaim_expired()] == [(job_id, JobStatus.FAILED)]
    _check_envelope(storage, job_id, _dead_letter_of(storage, job_id), "lease_expired")


def test_completed_cancelled_and_plain_failed_jobs_add_no_dead_letter(storage: Storage) -> None:
    done = _add_failing(storage)
    cancelled = _add_failing(storage)
    add_job(storage, max_attempts=1)
    jobs = {j.id: j for j in storage.claim_jobs("w", ["t"], 3, LEASE_MS)}
    assert storage.settle_jobs([Completion(done, jobs[done].lease_token)]) == [True]
    storage.cancel_job(cancelled)
    [plain] = [j for i, j in jobs.items() if i not in (done, cancelled)]
    assert storage.settle_jobs([Failure(plain.id, plain.lease_token, "boom", "handler_error")]) == [True]
    assert storage.list_jobs(JobFilter(job_type="dlq")).jobs == []
