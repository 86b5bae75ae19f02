"""Redis: clean-up deletes a job's tokens also when they predate the job's token set (found by its steps)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import redis

from dqflow.durable.model import NewToken, step_json
from dqflow.enums import JobStatus
from dqflow.storage import Completion, NewJob
from dqflow.storage.redis import RedisStorage


def test_tokens_named_only_by_steps_are_deleted_with_their_job(storage: RedisStorage, raw: redis.Redis) -> None:
    job_id = storage.add_jobs([NewJob("t", "{}")])[0].job_id
    job = storage.claim_jobs("w", None, 1, 30_000)[0]
    for n in (1, 2):
        entry = step_json(f'{{"token_id":"tok_old_{n}","timeout_at":null}}', datetime.now(UTC))
        assert storage.create_token(job_id, job.lease_token, f"dqflow:token:{n}", entry, NewToken(f"tok_old_{n}"))
    assert storage.settle_jobs([Completion(job_id, job.lease_token)]) == [True]
    raw.delete(f"{storage._key}:tokens:{job_id}")  # as written before the set was kept
    later = datetime.now(UTC) + timedelta(hours=1)
    assert storage.delete_finished_jobs([JobStatus.COMPLETED], later) == 1
    assert storage.get_token("tok_old_1") is None and storage.get_token("tok_old_2") is None
    assert raw.keys(f"{storage._key}:token*") == []
