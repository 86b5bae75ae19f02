"""Redis hand-off to idle workers: what happens when the worker is not there to take it; a workflow's
next step handed over by the settle that readies it."""

from __future__ import annotations

import time
from typing import Any

import redis
from helpers import make_queue

from dqflow import JobStatus
from dqflow.storage import Completion, NewJob
from dqflow.storage.redis import RedisStorage


def register_idle(storage: RedisStorage, worker: str, lease_ms: int, wait_ms: int) -> None:
    """What wait_and_claim does before it blocks (claim.lua with a wait), without the pop."""
    assert storage._run("claim", "claim jobs", worker, 4, lease_ms, 0, wait_ms) == []


def test_a_hand_off_that_raced_the_wake_up_is_taken_by_the_next_claim(storage: RedisStorage) -> None:
    register_idle(storage, "w1", 60_000, 5_000)
    (added,) = storage.add_jobs([NewJob("t", "{}")])
    assert storage.get_job(added.job_id).locked_by == "w1"  # type: ignore[union-attr]
    (job,) = storage.claim_jobs("w1", None, 4, 60_000)
    assert job.id == added.job_id and job.status is JobStatus.PROCESSING
    assert storage.claim_jobs("w1", None, 4, 60_000) == []  # the inbox is empty now


def test_a_job_handed_to_a_worker_that_is_gone_comes_back_when_its_lease_expires(
    storage: RedisStorage, raw: redis.Redis
) -> None:
    register_idle(storage, "ghost", 200, 5_000)
    (added,) = storage.add_jobs([NewJob("t", "{}")])
    assert storage.get_job(added.job_id).status is JobStatus.PROCESSING  # type: ignore[union-attr]
    time.sleep(0.35)
    assert [r.job_id for r in storage.reclaim_expired()] == [added.job_id]
    assert raw.exists("{" + storage.prefix + "}:inbox:ghost") == 0  # the unread inbox expired with the lease
    (job,) = storage.claim_jobs("w2", None, 4, 60_000)
    assert job.id == added.job_id and job.attempts == 2


def test_an_expired_registration_gets_nothing(storage: RedisStorage) -> None:
    register_idle(storage, "late", 60_000, 1)  # idle for 1 ms (and a second of grace)
    time.sleep(1.1)
    (added,) = storage.add_jobs([NewJob("t", "{}")])
    assert storage.get_job(added.job_id).status is JobStatus.PENDING  # type: ignore[union-attr]


def test_a_batch_hands_the_best_jobs_up_to_the_workers_limit(storage: RedisStorage) -> None:
    register_idle(storage, "w1", 60_000, 5_000)  # limit 4
    added = storage.add_jobs([NewJob("t", "{}", priority=p) for p in range(6)])
    handed = storage.claim_jobs("w1", None, 4, 60_000)
    assert sorted(job.priority for job in handed) == [2, 3, 4, 5]
    assert {job.id for job in handed} <= {a.job_id for a in added}


def _step(payload: Any, ctx: Any) -> Any:
    return payload


def test_the_settle_that_readies_a_workflow_step_hands_its_job_to_an_idle_worker(redis_url: str) -> None:
    steps = {"a": {"job": "t", "payload": {"n": "${input.n}"}}, "b": {"job": "t", "needs": ["a"], "payload": {}}}
    jobs = {"t": {"handler": _step, "payload": {"type": "object"}, "output": {"type": "object"}}}
    with make_queue(redis_url, jobs, workflows={"two": {"input": {"type": "object"}, "steps": steps}}) as queue:
        storage = queue.storage
        assert isinstance(storage, RedisStorage)
        run_id = queue.start_workflow("two", {"n": 1})
        (a,) = storage.claim_jobs("w1", None, 4, 60_000)
        register_idle(storage, "w2", 60_000, 5_000)
        assert storage.settle_jobs([Completion(a.id, a.lease_token, '{"n": 1}', run_id)]) == [True]
        (b_id,) = queue.require_workflow(run_id).step("b").job_ids
        handed = storage.get_job(b_id)
        assert handed is not None and handed.status is JobStatus.PROCESSING and handed.locked_by == "w2"
        (job,) = storage.claim_jobs("w2", None, 4, 60_000)  # from its inbox, fenced like any claim
        assert job.id == b_id and job.lease_token == handed.lease_token
        assert storage.settle_jobs([Completion(job.id, job.lease_token, "{}", run_id)]) == [True]
        assert queue.require_workflow(run_id).status.value == "completed"
