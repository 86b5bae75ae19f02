"""Redis settles of step jobs planned from what the worker holds: the job as claimed and the run as
this process last wrote it. Whatever that knowledge misses (another process moved the run, the job
was taken away, the completion names another run, the output is the stored one) is caught by the
script's guards and planned again from a read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import make_queue

from dqflow import JobStatus, Queue, WorkflowStatus
from dqflow.storage import Completion
from dqflow.storage.redis import RedisStorage

STEPS = {
    "a": {"job": "t", "payload": {"n": "${input.n}"}},
    "b": {"job": "t", "needs": ["a"], "payload": {"n": "${steps.a.output.n}"}},
    "c": {"job": "t", "needs": ["b"], "payload": {"n": "${steps.b.output.n}"}},
}
WORKFLOWS = {"chain": {"input": {"type": "object"}, "steps": STEPS, "returns": "${steps.c.output.n}"}}
JOBS = {"t": {"handler": lambda payload, ctx: payload, "payload": {"type": "object"}, "output": {"type": "object"}}}


@pytest.fixture
def queues(redis_url: str) -> Iterator[tuple[Queue, Queue]]:
    """Two queues on one Redis prefix: two "worker processes", each with its own storage."""
    first = make_queue(redis_url, JOBS, workflows=WORKFLOWS)
    second = make_queue(redis_url, JOBS, workflows=WORKFLOWS)
    yield first, second
    first.close()
    second.close()


def _storage(queue: Queue) -> RedisStorage:
    assert isinstance(queue.storage, RedisStorage)
    return queue.storage


def _complete(queue: Queue, output: dict[str, Any] | None = None) -> list[bool]:
    (job,) = queue.storage.claim_jobs("w", None, 1, 60_000)
    text = None if output is None else f'{{"n": {output["n"]}}}'
    return queue.storage.settle_jobs([Completion(job.id, job.lease_token, text, job.workflow_run_id)])


def test_a_chain_settled_by_one_process_is_planned_from_what_it_wrote(queues: tuple[Queue, Queue]) -> None:
    queue, _ = queues
    run_id = queue.start_workflow("chain", {"n": 1})
    for n in (1, 2, 3):
        assert _complete(queue, {"n": n}) == [True]
    run = queue.require_workflow(run_id)
    assert run.status is WorkflowStatus.COMPLETED and run.output == 3
    assert _storage(queue)._workflows.conflicts == 0
    # the ids the script drew are the ones the stored steps name
    assert [step.job_ids for step in run.steps] == [[job.id] for job in reversed(queue.list_jobs().jobs)]


def test_a_run_moved_by_another_process_is_read_again_and_moved_once(queues: tuple[Queue, Queue]) -> None:
    first, second = queues
    run_id = first.start_workflow("chain", {"n": 1})
    assert _complete(first, {"n": 1}) == [True]  # the first process knows the run after a
    assert _complete(second, {"n": 2}) == [True]  # the second moves it (b): the first's knowledge is stale
    assert _complete(first, {"n": 3}) == [True]  # c: conflicts, read again, applied
    assert _storage(first)._workflows.conflicts == 1
    run = first.require_workflow(run_id)
    assert run.status is WorkflowStatus.COMPLETED and run.output == 3
    assert [len(step.job_ids) for step in run.steps] == [1, 1, 1]
    assert first.storage.count_jobs() == {("t", JobStatus.COMPLETED): 3}
    # known states that turned out stale are not trusted for a while: read before planning, no conflict
    again = first.start_workflow("chain", {"n": 1})
    assert [_complete(q, {"n": 1}) for q in (first, second, first)] == [[True]] * 3
    assert _storage(first)._workflows.conflicts == 1
    assert first.require_workflow(again).status is WorkflowStatus.COMPLETED


def test_a_completion_the_worker_no_longer_holds_is_refused_and_the_rest_of_the_batch_applied(
    queues: tuple[Queue, Queue],
) -> None:
    queue, _ = queues
    lost, kept = queue.start_workflow("chain", {"n": 1}), queue.start_workflow("chain", {"n": 2})
    assert _complete(queue, {"n": 1}) == [True]  # both runs known to this process
    assert _complete(queue, {"n": 2}) == [True]
    jobs = queue.storage.claim_jobs("w", None, 2, 60_000)
    lost_job = next(job for job in jobs if job.workflow_run_id == lost)
    queue.cancel(lost_job.id)  # its token bumped: the worker's completion is stale
    completions = [Completion(job.id, job.lease_token, '{"n": 5}', job.workflow_run_id) for job in jobs]
    assert queue.storage.settle_jobs(completions) == [job.id != lost_job.id for job in jobs]
    assert queue.require_workflow(lost).status is WorkflowStatus.FAILED
    assert queue.get_job(lost_job.id).status is JobStatus.CANCELLED  # type: ignore[union-attr]
    assert [step.status.value for step in queue.require_workflow(kept).steps] == ["completed", "completed", "running"]


def test_a_completion_naming_another_run_moves_the_run_of_its_job(queues: tuple[Queue, Queue]) -> None:
    queue, _ = queues
    run_id, other = queue.start_workflow("chain", {"n": 1}), queue.start_workflow("chain", {"n": 2})
    (job,) = [j for j in queue.storage.claim_jobs("w", None, 2, 60_000) if j.workflow_run_id == run_id]
    assert queue.storage.settle_jobs([Completion(job.id, job.lease_token, '{"n": 7}', other)]) == [True]
    assert [s.status.value for s in queue.require_workflow(run_id).steps] == ["completed", "running", "waiting"]
    assert [s.status.value for s in queue.require_workflow(other).steps] == ["running", "waiting", "waiting"]


def test_a_completion_that_keeps_the_stored_output_feeds_it_to_the_next_step(queues: tuple[Queue, Queue]) -> None:
    queue, _ = queues
    run_id = queue.start_workflow("chain", {"n": 1})
    assert _complete(queue, {"n": 1}) == [True]  # the run is known: only the output is read
    (job,) = queue.storage.claim_jobs("w", None, 1, 60_000)
    assert queue.storage.set_output(job.id, job.lease_token, '{"n": 41}')
    assert queue.storage.settle_jobs([Completion(job.id, job.lease_token, None, run_id)]) == [True]
    (c_id,) = queue.require_workflow(run_id).step("c").job_ids
    assert queue.get_job(c_id).payload == {"n": 41}  # type: ignore[union-attr]


def test_an_output_with_a_job_ids_key_is_stored_as_given_beside_the_ids_drawn(queues: tuple[Queue, Queue]) -> None:
    queue, _ = queues
    run_id = queue.start_workflow("chain", {"n": 1})
    (job,) = queue.storage.claim_jobs("w", None, 1, 60_000)
    output = '{"n": 1, "job_ids": [-1, -2], "steps": [{"job_ids": [-1]}]}'
    assert queue.storage.settle_jobs([Completion(job.id, job.lease_token, output, run_id)]) == [True]
    run = queue.require_workflow(run_id)
    assert run.step("a").output == {"n": 1, "job_ids": [-1, -2], "steps": [{"job_ids": [-1]}]}
    (b_id,) = run.step("b").job_ids
    assert b_id > job.id and queue.get_job(b_id).workflow_step == "b"  # type: ignore[union-attr]


def test_a_fan_out_stores_the_ids_drawn_for_each_element(redis_url: str) -> None:
    steps = {
        "a": {"job": "t", "payload": {"n": "${input.n}"}},
        "each": {"job": "t", "needs": ["a"], "for_each": "${input.items}", "payload": {"n": "${item}"}},
    }
    workflows = {"fan": {"input": {"type": "object"}, "steps": steps}}
    queue = make_queue(redis_url, JOBS, workflows=workflows)
    try:
        run_id = queue.start_workflow("fan", {"n": 0, "items": [1, 2, 3]})
        assert _complete(queue, {"n": 0}) == [True]
        ids = queue.require_workflow(run_id).step("each").job_ids
        assert len(ids) == 3 and ids == list(range(ids[0], ids[0] + 3))
        assert [queue.get_job(i).payload for i in ids] == [{"n": 1}, {"n": 2}, {"n": 3}]  # type: ignore[union-attr]
    finally:
        queue.close()


def test_a_step_state_stored_in_another_json_form_is_read_and_moved(queues: tuple[Queue, Queue]) -> None:
    queue, _ = queues
    storage = _storage(queue)
    run_id = queue.start_workflow("chain", {"n": 1})
    key = f"{storage._key}:wfrun:{run_id}"
    spaced = json.dumps(json.loads(storage._client.hget(key, "steps")), indent=1)  # not dqflow's compact form
    storage._client.hset(key, "steps", spaced)
    for n in (1, 2, 3):
        assert _complete(queue, {"n": n}) == [True]
    run = queue.require_workflow(run_id)
    assert run.status is WorkflowStatus.COMPLETED and run.output == 3
    assert [step.job_ids for step in run.steps] == [[job.id] for job in reversed(queue.list_jobs().jobs)]


def test_runs_that_conflict_again_when_planned_again_are_read_and_moved_once(
    queues: tuple[Queue, Queue], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process moves two runs before a batch's script, then one of them again before the
    script of the batch's second plan: the third plan holds that run's job alone."""
    queue, _ = queues
    run_ids = [queue.start_workflow("chain", {"n": n}) for n in range(3)]
    jobs = sorted(queue.storage.claim_jobs("w", None, 10, 60_000), key=lambda job: job.id)
    storage = _storage(queue)
    workflows = storage._workflows
    applies = 0
    apply = workflows._apply

    def another_process_moves_first(plan: Any) -> list[Any]:
        nonlocal applies
        applies += 1
        moved = run_ids[:2] if applies == 1 else run_ids[:1] if applies == 2 else []
        for run_id in moved:  # as a settle by another process does: the run's version goes up
            storage._client.hincrby(f"{storage._key}:wfrun:{run_id}", "version", 1)
        return apply(plan)

    monkeypatch.setattr(workflows, "_apply", another_process_moves_first)
    outcomes = [Completion(job.id, job.lease_token, '{"n": 5}', job.workflow_run_id) for job in jobs]
    assert queue.storage.settle_jobs(outcomes) == [True, True, True]
    assert applies == 3 and workflows.conflicts == 2
    for run_id in run_ids:
        run = queue.require_workflow(run_id)
        assert [len(step.job_ids) for step in run.steps] == [1, 1, 0]
        assert run.step("a").output == {"n": 5}
    assert queue.storage.count_jobs() == {("t", JobStatus.COMPLETED): 3, ("t", JobStatus.PENDING): 3}
