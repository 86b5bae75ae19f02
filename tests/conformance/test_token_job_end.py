"""Wait tokens whose job ended without them, on every backend: a token of a cancelled, failed
for good or completed job reads as ``abandoned`` and refuses data with
``TokenJobFinishedError`` (changing nothing); clean-up deletes the tokens of the jobs it deletes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from helpers import make_queue

from dqflow import Queue
from dqflow.durable.model import NewToken, TokenStatus, step_json
from dqflow.errors import TokenExpiredError, TokenJobFinishedError
from dqflow.storage import Completion, Failure, NewJob, Wait

JOBS: dict[str, dict[str, Any]] = {"t": {"handler": lambda payload: None}}


@pytest.fixture
def queue(backend: str) -> Any:
    q = make_queue(backend, JOBS)
    yield q
    q.close()


def _job_with_token(queue: Queue, n: int, *, wait: bool) -> tuple[int, int, str]:
    """A processing job (one attempt allowed) that created token ``tok_end_<n>``; waiting for it when ``wait``."""
    storage = queue.storage
    job_id = storage.add_jobs([NewJob("t", "{}", max_attempts=1)])[0].job_id
    job = storage.claim_jobs("w", ["t"], 1, 30_000)[0]
    token_id = f"tok_end_{n}_{job_id}"
    entry = step_json(f'{{"token_id":"{token_id}","timeout_at":null}}', datetime.now(UTC))
    assert storage.create_token(job_id, job.lease_token, "dqflow:token:1", entry, NewToken(token_id))
    if wait:
        assert storage.settle_jobs([Wait(job_id, job.lease_token, None, token_id)]) == [True]
    return job_id, job.lease_token, token_id


def test_a_token_of_a_finished_job_is_abandoned_and_refuses_data(queue: Queue) -> None:
    storage = queue.storage
    cancelled, _, cancelled_token = _job_with_token(queue, 1, wait=True)
    queue.cancel(cancelled)
    failed, lease, failed_token = _job_with_token(queue, 2, wait=False)
    assert storage.settle_jobs([Failure(failed, lease, "boom", "handler_error")]) == [True]
    completed, lease, completed_token = _job_with_token(queue, 3, wait=False)
    assert storage.settle_jobs([Completion(completed, lease)]) == [True]
    live, _, live_token = _job_with_token(queue, 4, wait=True)

    for token_id, job_id, ended in (
        (cancelled_token, cancelled, "cancelled"),
        (failed_token, failed, "failed for good"),
        (completed_token, completed, "completed"),
    ):
        token = queue.get_token(token_id)
        assert token is not None and token.status is TokenStatus.ABANDONED, token_id
        with pytest.raises(TokenJobFinishedError, match=f"its job {job_id} was {ended}") as refused:
            queue.complete_token(token_id, {"late": True})
        assert isinstance(refused.value, TokenExpiredError)  # HTTP 409, CLI exit code as before
        assert refused.value.job_id == job_id
        again = queue.get_token(token_id)
        assert again is not None and again.status is TokenStatus.ABANDONED and again.data is None
        assert again.completed_at is None
    waiting = queue.get_token(live_token)
    assert waiting is not None and waiting.status is TokenStatus.PENDING
    assert queue.complete_token(live_token, 1).status is TokenStatus.COMPLETED
    assert queue.require_job(live).status == "pending"


def test_cleanup_deletes_the_tokens_of_the_jobs_it_deletes(queue: Queue) -> None:
    storage = queue.storage
    cancelled, _, cancelled_token = _job_with_token(queue, 1, wait=True)
    queue.cancel(cancelled)
    done, lease, done_token = _job_with_token(queue, 2, wait=False)
    assert storage.settle_jobs([Completion(done, lease)]) == [True]
    live, _, live_token = _job_with_token(queue, 3, wait=True)
    later = datetime.now(UTC) + timedelta(hours=1)
    assert storage.delete_finished_jobs(["completed", "cancelled"], later) == 2  # type: ignore[list-item]
    assert queue.get_token(cancelled_token) is None and queue.get_token(done_token) is None
    kept = queue.get_token(live_token)
    assert kept is not None and kept.status is TokenStatus.PENDING and queue.get_job(live) is not None
