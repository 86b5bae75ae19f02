"""Redis's ``settle_and_claim``: ``workflow.lua`` writes the step jobs a settle claims already
claimed (never in a ready or pending set), and the records it answers are built from the plan,
not read back: they must be the records ``get_job`` reads. A run planned again after a version
conflict claims only what the calls before it left of the limit."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from helpers import DOUBLE_JOBS, doubling_chain, make_queue, step_completion

from dqflow import JobStatus, Queue, WorkflowStatus
from dqflow.record import JobRecord
from dqflow.storage import Lease, StepClaim
from dqflow.storage.redis import RedisStorage

LEASE_MS = 30_000
JOBS: dict[str, dict[str, Any]] = {
    **DOUBLE_JOBS,
    "items": {"handler": lambda payload: {"items": list(range(payload["n"]))}, "max_attempts": 1},
    # a type with many options set: each is a field of the hash the record is built from
    "dressed": {
        "handler": lambda payload: payload,
        "max_attempts": 5,
        "timeout": "90s",
        "priority": 7,
        "tags": ["red", "blue"],
        "retry": {"delay": "2s", "backoff": "fixed", "jitter": False, "max_delay": "1m"},
        "dead_letter": "double",
    },
}
N = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
WORKFLOWS: dict[str, Any] = {
    **doubling_chain("abc"),
    "fan": {
        "input": N,
        "steps": {
            "list": {"job": "items", "payload": {"n": "${input.n}"}},
            "each": {
                "job": "dressed",
                "needs": ["list"],
                "for_each": "${steps.list.output.items}",
                "payload": {"n": "${item}", "text": "é\u2028\"'"},
            },
        },
        "returns": {"n": "${steps.each.outputs[*].n}"},
    },
}


@pytest.fixture
def queue(redis_url: str) -> Iterator[Queue]:
    opened = make_queue(redis_url, JOBS, workflows=WORKFLOWS)
    yield opened
    opened.close()


def _storage(queue: Queue) -> RedisStorage:
    assert isinstance(queue.storage, RedisStorage)
    return queue.storage


def _claim(limit: int = 10, lease_ms: int = LEASE_MS) -> StepClaim:
    return StepClaim(worker_id="eager", job_types=None, limit=limit, lease_ms=lease_ms)


def _firsts(queue: Queue) -> list[JobRecord]:
    return sorted(queue.storage.claim_jobs("first", None, 100, LEASE_MS), key=lambda job: job.id)


def test_the_records_claimed_are_those_get_job_reads(queue: Queue) -> None:
    linear = queue.start_workflow("linear", {"n": 1})
    fan = queue.start_workflow("fan", {"n": 3})
    a, listed = _firsts(queue)
    outcomes = [step_completion(a, {"n": 2}), step_completion(listed, {"items": [0, 1, 2]})]
    applied, taken = queue.storage.settle_and_claim(outcomes, _claim())
    assert applied == [True, True]
    assert [(job.workflow_run_id, job.workflow_step, job.workflow_item) for job in taken] == [
        (linear, "b", None),
        (fan, "each", 0),
        (fan, "each", 1),
        (fan, "each", 2),
    ]
    for job in taken:
        assert job == queue.require_job(job.id)
    dressed = taken[1]
    assert (dressed.priority, dressed.max_attempts, dressed.timeout_ms, dressed.tags) == (7, 5, 90_000, ["red", "blue"])
    assert dressed.payload == {"n": 0, "text": "é\u2028\"'"} and dressed.dead_letter is not None
    assert dressed.lease_token == 1 and dressed.attempts == 1 and dressed.locked_at == dressed.started_at
    # the tag indexes hold them like any job's
    assert {job.id for job in queue.list_jobs(tags=["red"]).jobs} == {job.id for job in taken[1:]}


def test_a_job_claimed_at_once_is_in_no_queue_and_in_the_lease_index(queue: Queue, redis_url: str) -> None:
    run_id = queue.start_workflow("fan", {"n": 2})
    (listed,) = _firsts(queue)
    _, taken = queue.storage.settle_and_claim([step_completion(listed, {"items": [0, 1]})], _claim(limit=1))
    (b,) = taken
    key = _storage(queue)._key
    raw = redis.Redis.from_url(redis_url.split("?")[0], decode_responses=True)
    try:
        ready = raw.zrange(f"{key}:ready:dressed", 0, -1)
        assert len(ready) == 1 and not ready[0].endswith(f"{b.id:016d}")  # only the other one is queued
        assert raw.zscore(f"{key}:status:pending", b.id) is None
        assert raw.zscore(f"{key}:status:processing", b.id) == b.id
        assert b.lease_expires_at is not None
        assert raw.zscore(f"{key}:processing", b.id) == round(b.lease_expires_at.timestamp() * 1_000_000)
    finally:
        raw.close()
    assert queue.storage.count_jobs() == {
        ("items", JobStatus.COMPLETED): 1,
        ("dressed", JobStatus.PROCESSING): 1,
        ("dressed", JobStatus.PENDING): 1,
    }
    # its lease is a lease like any: renewed with its token, then settled
    assert queue.storage.renew_leases("eager", [Lease(b.id, b.lease_token)], LEASE_MS) == {b.id}
    assert queue.storage.settle_jobs([step_completion(b, {"n": 0})]) == [True]
    assert queue.require_workflow(run_id).status is WorkflowStatus.RUNNING


def test_an_expired_lease_of_a_job_claimed_at_once_is_reclaimed(queue: Queue) -> None:
    run_id = queue.start_workflow("linear", {"n": 1})
    (a,) = _firsts(queue)
    _, (b,) = queue.storage.settle_and_claim([step_completion(a, {"n": 2})], _claim(lease_ms=1))
    time.sleep(0.05)
    assert [(job.job_id, job.status) for job in queue.storage.reclaim_expired()] == [(b.id, JobStatus.FAILED)]
    assert queue.require_workflow(run_id).status is WorkflowStatus.FAILED


@pytest.mark.parametrize("limit", [2, 3])
def test_a_run_planned_again_after_a_conflict_claims_what_is_left_of_the_limit(queue: Queue, limit: int) -> None:
    run_ids = queue.start_workflows("linear", [{"n": n} for n in range(3)])
    firsts = _firsts(queue)
    _, bs = queue.storage.settle_and_claim([step_completion(job, {"n": 1}) for job in firsts], _claim())
    assert len(bs) == 3
    storage = _storage(queue)
    # another process moved the first run: the state this one knows of it is stale
    storage._client.hincrby(f"{storage._key}:wfrun:{run_ids[0]}", "version", 1)
    conflicts = storage._workflows.conflicts
    bs.sort(key=lambda job: job.workflow_run_id or 0)
    applied, cs = storage.settle_and_claim([step_completion(job, {"n": 2}) for job in bs], _claim(limit=limit))
    assert applied == [True] * 3 and storage._workflows.conflicts == conflicts + 1
    # the runs applied at once claim first; the one planned again gets what is left
    assert [job.workflow_run_id for job in cs] == [*run_ids[1:], run_ids[0]][:limit]
    assert all(job == queue.require_job(job.id) for job in cs)
    pending = queue.list_jobs(status=JobStatus.PENDING).jobs
    assert [job.workflow_run_id for job in pending] == ([run_ids[0]] if limit == 2 else [])
    for run_id in run_ids:
        assert [len(step.job_ids) for step in queue.require_workflow(run_id).steps] == [1, 1, 1]


def test_a_settle_without_a_claim_writes_what_it_wrote_before(queue: Queue) -> None:
    queue.start_workflow("linear", {"n": 1})
    (a,) = _firsts(queue)
    assert queue.storage.settle_jobs([step_completion(a, {"n": 2})]) == [True]
    (b,) = queue.list_jobs(status=JobStatus.PENDING).jobs
    assert [event.event_type for event in queue.get_events(b.id)] == ["added"]
    assert (b.attempts, b.lease_token, b.locked_by, b.started_at) == (0, 0, None, None)


def test_records_claimed_together_share_no_mutable_value(queue: Queue) -> None:
    queue.start_workflow("fan", {"n": 2})
    (listed,) = _firsts(queue)
    _, (first, second) = queue.storage.settle_and_claim([step_completion(listed, {"items": [0, 1]})], _claim())
    assert first.tags == second.tags and first.tags is not second.tags
    assert first.meta is not second.meta and first.error_history is not second.error_history
    first.tags.append("green")
    assert queue.require_job(second.id) == second
