"""Conformance: ``settle_jobs`` writes a batch of mixed outcomes, fenced, on every backend."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from dqflow import EventType, JobStatus
from dqflow.storage import Completion, Failure, NewJob, Release, Storage, open_storage


@pytest.fixture
def storage(backend: str) -> Iterator[Storage]:
    store = open_storage(backend)
    store.setup()
    yield store
    store.close()


def claim(storage: Storage, n: int, **options: object) -> list[int]:
    storage.add_jobs([NewJob("t", f'{{"n":{i}}}', **options) for i in range(n)])  # type: ignore[arg-type]
    return [job.id for job in storage.claim_jobs("w", None, n, 60_000)]


def tokens(storage: Storage, ids: list[int]) -> list[int]:
    return [storage.get_job(job_id).lease_token for job_id in ids]  # type: ignore[union-attr]


def test_one_batch_mixes_kinds_and_answers_in_input_order(storage: Storage) -> None:
    a, b, c, d, e = claim(storage, 5, max_attempts=5)
    ta, tb, tc, td, te = tokens(storage, [a, b, c, d, e])
    later = datetime.now(UTC) + timedelta(minutes=5)
    flags = storage.settle_jobs(
        [
            Release(c, tc, started=True),
            Failure(b, tb, "boom", "handler_error", later),
            Completion(d, td + 1, '"stale"'),  # wrong token: rejected
            Completion(a, ta, '{"done":1}'),
            Failure(e, te, "gone", "timeout"),
        ]
    )
    assert flags == [True, True, False, True, True]
    ra, rb, rc, rd, re = (storage.get_job(i) for i in (a, b, c, d, e))
    assert ra is not None and rb is not None and rc is not None and rd is not None and re is not None
    assert (ra.status, ra.output) == (JobStatus.COMPLETED, {"done": 1})
    assert (rb.status, rb.failure_reason) == (JobStatus.PENDING, "handler_error")
    assert abs((rb.run_at - later).total_seconds()) < 0.01
    assert (rc.status, rc.attempts) == (JobStatus.PENDING, 1)
    assert (rd.status, rd.output) == (JobStatus.PROCESSING, None)
    assert (re.status, re.failure_reason) == (JobStatus.FAILED, "timeout")
    assert [event.event_type for event in storage.get_events(a)][-1] is EventType.COMPLETED
    assert [event.event_type for event in storage.get_events(e)][-1] is EventType.FAILED


def test_only_the_first_outcome_of_a_job_in_a_batch_is_considered(storage: Storage) -> None:
    job_id, other = claim(storage, 2)
    token, other_token = tokens(storage, [job_id, other])
    flags = storage.settle_jobs(
        [
            Failure(job_id, token, "first", "handler_error"),
            Completion(job_id, token, '"second"'),
            Release(job_id, token, started=False),
            Completion(other, other_token + 1, '"stale"'),  # rejected by the fence...
            Completion(other, other_token, '"fresh"'),  # ...and a second outcome of that job is not tried
        ]
    )
    assert flags == [True, False, False, False, False]
    record = storage.get_job(job_id)
    assert record is not None and record.status is JobStatus.FAILED and record.output is None
    assert [e.event_type for e in storage.get_events(job_id)].count(EventType.FAILED) == 1
    assert storage.get_job(other).status is JobStatus.PROCESSING  # type: ignore[union-attr]


def test_an_empty_batch_writes_nothing(storage: Storage) -> None:
    assert storage.settle_jobs([]) == []


def test_an_unknown_outcome_is_refused_and_changes_nothing(storage: Storage) -> None:
    @dataclass(frozen=True)
    class Snooze:
        job_id: int
        lease_token: int

    (job_id,) = claim(storage, 1)
    (token,) = tokens(storage, [job_id])
    with pytest.raises(TypeError, match="Completion, Failure, Release, not Snooze"):
        storage.settle_jobs([Completion(job_id, token, "1"), Snooze(job_id, token)])  # type: ignore[list-item]
    record = storage.get_job(job_id)
    assert record is not None and record.status is JobStatus.PROCESSING
