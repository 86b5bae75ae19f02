"""Conformance: ``Queue.start_workflows`` starts a batch of runs in one storage call, on every backend.

Every input is validated before anything is stored; the runs and their first
jobs are written together (all or nothing); idempotency keys hold per run, also
between runs of one batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from helpers import make_queue, running_worker, wait_until

from dqflow import Queue, WorkflowStatus
from dqflow.errors import PayloadValidationError
from dqflow.worker import JobContext
from dqflow.workflow_record import WorkflowRun


def _double(payload: Any, ctx: JobContext) -> Any:
    return {"n": payload["n"] * 2}


def _total(payload: Any, ctx: JobContext) -> Any:
    return {"n": sum(payload["values"])}


JOBS: dict[str, dict[str, Any]] = {
    "double": {"handler": _double, "max_attempts": 1},
    "total": {"handler": _total, "max_attempts": 1},
}
WORKFLOWS: dict[str, Any] = {
    "linear": {
        "input": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
        "steps": {
            "a": {"job": "double", "payload": {"n": "${input.n}"}},
            "b": {"job": "double", "needs": ["a"], "payload": {"n": "${steps.a.output.n}"}},
            "c": {"job": "double", "needs": ["b"], "payload": {"n": "${steps.b.output.n}"}},
        },
        "returns": {"n": "${steps.c.output.n}"},
    },
    "fan": {
        "input": {
            "type": "object",
            "properties": {"values": {"type": "array", "items": {"type": "integer"}}},
            "required": ["values"],
        },
        "steps": {
            "each": {"job": "double", "for_each": "${input.values}", "payload": {"n": "${item}"}},
            "sum": {"job": "total", "needs": ["each"], "payload": {"values": "${steps.each.outputs[*].n}"}},
        },
        "returns": {"sum": "${steps.sum.output.n}"},
    },
}


@pytest.fixture
def queue(backend: str) -> Iterator[Queue]:
    opened = make_queue(backend, JOBS, workflows=WORKFLOWS)
    yield opened
    opened.close()


def _finish(queue: Queue, run_ids: list[int]) -> list[WorkflowRun]:
    with running_worker(queue, concurrency=8):
        for run_id in run_ids:
            wait_until(lambda r=run_id: queue.require_workflow(r).is_finished, 30)
    return [queue.require_workflow(run_id) for run_id in run_ids]


def test_a_batch_of_linear_and_fan_out_runs_starts_and_completes(queue: Queue) -> None:
    started: list[int] = []
    queue.on("workflow:started", lambda data: started.append(data["run_id"]))
    linear = queue.start_workflows("linear", [{"n": n} for n in range(8)], tags=["batch-1"])
    values = [[1, 2, 3], [], list(range(20)), [7]]
    fan = queue.start_workflows("fan", [{"values": v} for v in values])
    assert len(set(linear + fan)) == 12 and linear == sorted(linear) and fan == sorted(fan)
    assert started == linear + fan
    for run_id in linear:  # each run's first job, on its own run
        run = queue.require_workflow(run_id)
        (job_id,) = run.step("a").job_ids
        job = queue.require_job(job_id)
        assert (job.workflow_run_id, job.workflow_step) == (run_id, "a") and "batch-1" in job.tags
        assert run.tags == ["batch-1"] and run.status is WorkflowStatus.RUNNING
    each = [queue.require_workflow(run_id).step("each").job_ids for run_id in fan]
    assert [len(ids) for ids in each] == [len(v) for v in values]
    assert [queue.require_job(i).workflow_item for i in each[2]] == list(range(20))
    assert len({job_id for ids in each for job_id in ids}) == sum(len(v) for v in values)
    runs = _finish(queue, linear + fan)
    assert all(run.status is WorkflowStatus.COMPLETED for run in runs)
    assert [run.output for run in runs[:8]] == [{"n": 8 * n} for n in range(8)]
    assert [run.output for run in runs[8:]] == [{"sum": 2 * sum(v)} for v in values]
    assert [run.input for run in runs[8:]] == [{"values": v} for v in values]


def test_a_bad_input_in_the_middle_stores_nothing_and_names_its_index(queue: Queue) -> None:
    inputs: list[Any] = [{"n": 1}, {"n": 2}, {"n": "three"}, {"n": 4}]
    with pytest.raises(PayloadValidationError, match="input 2 of linear"):
        queue.start_workflows("linear", inputs)
    with pytest.raises(PayloadValidationError, match="input 1 of fan"):
        queue.start_workflows("fan", [{"values": [1]}, {"values": "x"}])
    with pytest.raises(TypeError, match="inputs must be a list"):
        queue.start_workflows("linear", {"n": 1})
    with pytest.raises(ValueError, match="idempotency_keys: 1 keys for 2 inputs"):
        queue.start_workflows("linear", [{"n": 1}, {"n": 2}], idempotency_keys=["k"])
    with pytest.raises(TypeError, match="idempotency_key 1 must be a string"):
        queue.start_workflows("linear", [{"n": 1}, {"n": 2}], idempotency_keys=[None, 7])  # type: ignore[list-item]
    assert queue.list_workflows().runs == []
    assert queue.list_jobs().jobs == []


def test_idempotency_keys_hold_per_run_within_a_batch_and_against_stored_runs(queue: Queue) -> None:
    stored = queue.start_workflow("linear", {"n": 1}, idempotency_key="order-1")
    ids = queue.start_workflows(
        "linear",
        [{"n": 10}, {"n": 20}, {"n": 30}, {"n": 40}, {"n": 50}],
        idempotency_keys=["order-1", None, "order-2", "order-2", "order-3"],
    )
    assert ids[0] == stored and ids[2] == ids[3]
    assert len({stored, *ids}) == 4
    assert queue.require_workflow(ids[3]).input == {"n": 30}  # the first of the batch's runs with that key
    assert queue.require_workflow(stored).input == {"n": 1}
    assert queue.require_workflow(ids[4]).idempotency_key == "order-3"
    assert len(queue.list_workflows().runs) == 4
    assert len(queue.list_jobs().jobs) == 4  # one first job per run stored, none for the repeats
    again = queue.start_workflows("linear", [{"n": 0}, {"n": 0}], idempotency_keys=["order-3", "order-1"])
    assert again == [ids[4], stored]
    assert len(queue.list_jobs().jobs) == 4


def test_an_empty_batch_starts_nothing(queue: Queue) -> None:
    assert queue.start_workflows("linear", []) == []
    assert queue.start_workflows("fan", (), idempotency_keys=[]) == []
    assert queue.list_workflows().runs == []
    assert queue.list_jobs().jobs == []
