"""A drain (``Worker(drain=True)``, ``dqflow run --drain``) runs the jobs its own completions make
ready (a job's dependents, a workflow's next steps), even when they become ready while a claim is
in flight: it looks again before it decides nothing is left."""

from __future__ import annotations

from typing import Any

from helpers import make_queue

from dqflow import JobStatus, Worker, WorkflowStatus
from dqflow.declaration import Declaration
from dqflow.queue import Queue

ROUNDS = 60


def _echo(payload: dict[str, Any]) -> dict[str, Any]:
    return {"n": payload.get("n", 0)}


def test_one_drain_runs_the_dependents_its_completions_release(backend: str) -> None:
    with make_queue(backend, {"t": {"handler": _echo, "payload": {"type": "object"}}}) as queue:
        left_behind = []
        for _ in range(ROUNDS):  # the race is a matter of timing: many rounds, one drain each
            first, second = queue.add("t", {"n": 1}), queue.add("t", {"n": 2})
            dependent = queue.add("t", {"n": 3}, depends_on=[first, second])
            Worker(queue, drain=True).run()
            if queue.require_job(dependent).status is not JobStatus.COMPLETED:
                left_behind.append(dependent)
                Worker(queue, drain=True).run()
        assert left_behind == []


def test_one_drain_runs_a_whole_workflow(backend: str) -> None:
    number = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}
    declaration = Declaration.build(
        {"step": {"handler": _echo, "payload": number, "output": number}},
        worker={"poll_interval": "100ms"},
        workflows={
            "chain": {
                "input": number,
                "steps": {
                    "a": {"job": "step", "payload": {"n": "${input.n}"}},
                    "b": {"job": "step", "needs": ["a"], "payload": {"n": "${steps.a.output.n}"}},
                    "c": {"job": "step", "needs": ["b"], "payload": {"n": "${steps.b.output.n}"}},
                },
                "returns": {"n": "${steps.c.output.n}"},
            }
        },
    )
    with Queue(declaration, backend) as queue:
        unfinished = []
        for n in range(ROUNDS // 3):
            run_id = queue.start_workflow("chain", {"n": n})
            Worker(queue, drain=True).run()
            run = queue.require_workflow(run_id)
            if run.status is not WorkflowStatus.COMPLETED:
                unfinished.append((run_id, [s.status.value for s in run.steps]))
                Worker(queue, drain=True).run()
        assert unfinished == []
