"""Conformance: ``Storage.settle_and_claim`` claims a settle's new step jobs for the settling worker.

The step jobs a completion creates are claimed in the same atomic step as that
completion, as ``claim_jobs`` would claim them (processing, attempt 1, a lease, a
``processing`` event after the ``added`` one), up to the limit and only those
the claim may take: a type the worker runs, due now, under no flow-control key.
The rest stay pending for any worker. Nothing is claimed for an outcome the
storage rejects, nor for a run that ended.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import DOUBLE_JOBS, doubling_chain, make_queue, running_worker, step_completion, wait_until

from dqflow import JobStatus, Queue, WorkflowStatus
from dqflow.record import JobRecord
from dqflow.storage import Completion, Failure, StepClaim

LEASE_MS = 30_000
WORKER = "eager-worker"


def _items(payload: Any) -> Any:
    return {"items": list(range(payload["n"]))}


JOBS: dict[str, dict[str, Any]] = {
    **DOUBLE_JOBS,
    "items": {"handler": _items, "max_attempts": 1},
    "keyed": {"handler": lambda payload: {"n": payload["n"]}, "max_attempts": 1, "concurrency": {"limit": 4}},
}
WORKFLOWS: dict[str, Any] = {
    **doubling_chain("abc"),
    "fan": {
        "input": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
        "steps": {
            "list": {"job": "items", "payload": {"n": "${input.n}"}},
            "each": {
                "job": "double",
                "needs": ["list"],
                "for_each": "${steps.list.output.items}",
                "payload": {"n": "${item}"},
            },
        },
        "returns": {"n": "${steps.each.outputs[*].n}"},
    },
    "keyed": {
        "input": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
        "steps": {
            "a": {"job": "double", "payload": {"n": "${input.n}"}},
            "b": {"job": "keyed", "needs": ["a"], "payload": {"n": "${steps.a.output.n}"}},
        },
        "returns": {"n": "${steps.b.output.n}"},
    },
}


@pytest.fixture
def queue(backend: str) -> Iterator[Queue]:
    opened = make_queue(backend, JOBS, workflows=WORKFLOWS)
    yield opened
    opened.close()


def _claim(limit: int = 10, job_types: frozenset[str] | None = None) -> StepClaim:
    return StepClaim(worker_id=WORKER, job_types=job_types, limit=limit, lease_ms=LEASE_MS)


def _first_job(queue: Queue, run_id: int) -> JobRecord:
    (job,) = queue.storage.claim_jobs("first", None, 10, LEASE_MS)
    assert job.workflow_run_id == run_id
    return job


def test_the_next_step_is_claimed_with_the_completion_of_the_one_before(queue: Queue) -> None:
    run_id = queue.start_workflow("linear", {"n": 3})
    a = _first_job(queue, run_id)
    before = time.time()
    applied, taken = queue.storage.settle_and_claim([step_completion(a, {"n": 6})], _claim())
    assert applied == [True]
    (b,) = taken
    assert (b.workflow_run_id, b.workflow_step, b.payload) == (run_id, "b", {"n": 6})
    assert (b.status, b.attempts, b.locked_by) == (JobStatus.PROCESSING, 1, WORKER)
    assert b.lease_expires_at is not None and b.started_at is not None
    assert before + LEASE_MS / 1000 - 1 <= b.lease_expires_at.timestamp() <= time.time() + LEASE_MS / 1000 + 1
    assert queue.require_job(b.id).lease_token == b.lease_token
    assert queue.require_workflow(run_id).step("b").job_ids == [b.id]
    events = queue.get_events(b.id)
    assert [event.event_type for event in events] == ["added", "processing"]
    assert events[1].data == {"worker_id": WORKER, "attempt": 1}
    assert queue.storage.claim_jobs("other", None, 10, LEASE_MS) == []  # not in the queue any more
    # the claim is a claim like any other: its token completes it, and the run goes on
    applied, taken = queue.storage.settle_and_claim([step_completion(b, {"n": 12})], _claim())
    assert applied == [True] and [job.workflow_step for job in taken] == ["c"]
    (c,) = taken
    assert queue.storage.settle_jobs([step_completion(c, {"n": 24})]) == [True]
    run = queue.require_workflow(run_id)
    assert (run.status, run.output) == (WorkflowStatus.COMPLETED, {"n": 24})


def test_at_most_the_limit_is_claimed_and_the_rest_stay_pending(queue: Queue) -> None:
    run_id = queue.start_workflow("fan", {"n": 5})
    first = _first_job(queue, run_id)
    applied, taken = queue.storage.settle_and_claim(
        [step_completion(first, {"items": [0, 1, 2, 3, 4]})], _claim(limit=2)
    )
    assert applied == [True]
    assert [(job.workflow_item, job.status) for job in taken] == [(0, JobStatus.PROCESSING), (1, JobStatus.PROCESSING)]
    rest = queue.storage.claim_jobs("other", None, 10, LEASE_MS)
    assert sorted(job.workflow_item or 0 for job in rest) == [2, 3, 4]
    assert {job.locked_by for job in rest} == {"other"}
    ids = queue.require_workflow(run_id).step("each").job_ids
    assert sorted(job.id for job in taken + rest) == sorted(ids)


def test_a_job_the_claim_may_not_take_stays_pending(queue: Queue) -> None:
    # a type the worker does not run, a limit of 0, a job under a concurrency key
    for claim, workflow in (
        (_claim(job_types=frozenset({"items"})), "linear"),
        (_claim(limit=0), "linear"),
        (_claim(), "keyed"),
    ):
        run_id = queue.start_workflow(workflow, {"n": 1})
        first = _first_job(queue, run_id)
        applied, taken = queue.storage.settle_and_claim([step_completion(first, {"n": 2})], claim)
        assert (applied, taken) == ([True], [])
        (pending,) = queue.list_jobs(status=JobStatus.PENDING).jobs
        assert pending.workflow_run_id == run_id and [e.event_type for e in queue.get_events(pending.id)] == ["added"]
        queue.cancel_workflow(run_id)


def test_nothing_is_claimed_for_a_rejected_completion_or_a_run_that_failed(queue: Queue) -> None:
    run_id = queue.start_workflow("linear", {"n": 1})
    a = _first_job(queue, run_id)
    stale = Completion(a.id, a.lease_token + 1, json.dumps({"n": 2}), workflow_run_id=run_id)
    assert queue.storage.settle_and_claim([stale], _claim()) == ([False], [])
    assert queue.require_workflow(run_id).step("b").job_ids == []
    failure = Failure(a.id, a.lease_token, "boom", "handler_error", workflow_run_id=run_id)
    assert queue.storage.settle_and_claim([failure], _claim()) == ([True], [])
    assert queue.require_workflow(run_id).status is WorkflowStatus.FAILED
    assert queue.list_jobs(status=JobStatus.PROCESSING).jobs == []


def test_a_batch_claims_the_next_steps_of_several_runs_in_order_of_creation(queue: Queue) -> None:
    run_ids = queue.start_workflows("linear", [{"n": n} for n in range(4)])
    firsts = sorted(queue.storage.claim_jobs("first", None, 10, LEASE_MS), key=lambda job: job.id)
    outcomes = [step_completion(job, {"n": 10 + i}) for i, job in enumerate(firsts)]
    applied, taken = queue.storage.settle_and_claim(outcomes, _claim(limit=3))
    assert applied == [True] * 4
    assert len(taken) == 3 and {job.workflow_step for job in taken} == {"b"}
    assert len({job.workflow_run_id for job in taken}) == 3
    (left,) = queue.list_jobs(status=JobStatus.PENDING).jobs
    assert left.workflow_step == "b" and {left.workflow_run_id, *(j.workflow_run_id for j in taken)} == set(run_ids)
    payloads = {job.workflow_run_id: job.payload for job in [*taken, left]}
    assert payloads == {run_id: {"n": 10 + i} for i, run_id in enumerate(run_ids)}


@pytest.mark.parametrize("eager", [True, False])
def test_a_worker_runs_a_chain_with_or_without_claiming_steps_at_once(queue: Queue, backend: str, eager: bool) -> None:
    run_ids = queue.start_workflows("linear", [{"n": n} for n in range(20)])
    with running_worker(queue, concurrency=4, eager_steps=eager):
        wait_until(lambda: all(queue.require_workflow(r).is_finished for r in run_ids), 30)
    runs = [queue.require_workflow(run_id) for run_id in run_ids]
    assert [run.output for run in runs] == [{"n": 8 * n} for n in range(20)]
    later = [job_id for run in runs for step in ("b", "c") for job_id in run.step(step).job_ids]
    processing = [e for job_id in later for e in queue.get_events(job_id) if e.event_type == "processing"]
    assert len(processing) == len(later) == 40  # each claimed once, eagerly or not
    assert all(queue.require_job(job_id).attempts == 1 for job_id in later)
    # claimed at once: in the atomic step that added it (one clock reading), else by a claim of its own
    at_once = [
        job_id
        for job_id in later
        if len({e.created_at for e in queue.get_events(job_id) if e.event_type in ("added", "processing")}) == 1
    ]
    if eager:
        assert at_once == later
    elif not backend.startswith("redis"):
        # (Redis hands a job made ready to a worker idle at that moment in the same script,
        # eager steps or not: docs/REDIS.md)
        assert at_once == []


def test_steps_claimed_at_once_never_run_beyond_the_concurrency(backend: str) -> None:
    # A worker with a slot free waits for work on a thread that may start what it claims in
    # that slot; a fan-out's jobs claimed by a settle meanwhile fill every slot first.
    running = [0, 0]  # now, most at once
    lock = threading.Lock()

    def tracked(payload: Any, seconds: float) -> Any:
        with lock:
            running[0] += 1
            running[1] = max(running)
        time.sleep(seconds)
        with lock:
            running[0] -= 1
        return payload

    jobs = {
        "items": {"handler": lambda p: tracked({"items": list(range(p["n"]))}, 0.05), "max_attempts": 1},
        "double": {"handler": lambda p: tracked({"n": p["n"] * 2}, 0.3), "max_attempts": 1},
    }
    queue = make_queue(backend, jobs, workflows={"fan": WORKFLOWS["fan"]})
    try:
        with running_worker(queue, concurrency=2, eager_steps=True):
            run_id = queue.start_workflow("fan", {"n": 4})
            wait_until(lambda: running[0] == 2, 10, interval=0.002)  # two of the fan-out's jobs
            extra = queue.add("double", {"n": 1})  # wakes the waiting thread
            wait_until(lambda: queue.require_workflow(run_id).is_finished and queue.require_job(extra).is_finished, 30)
        assert queue.require_workflow(run_id).output == {"n": [0, 2, 4, 6]}
        assert running[1] == 2
    finally:
        queue.close()
