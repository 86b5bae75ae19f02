"""Conformance: running workflows on every backend, through the public Queue API.

Step jobs are ordinary jobs run by a real (in-process) worker. When a step's
last job completes, the steps it readies get their jobs in the same atomic
write; a step that fails for good fails the run; ``retry_workflow`` carries on
and ``cancel_workflow`` stops. The race test completes the two parents of a
join at the same moment on two threads: the join's job is created once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from helpers import make_queue, running_worker, wait_until
from pydantic import BaseModel

from dqflow import Queue, StepStatus, WorkflowStatus
from dqflow.enums import FailureReason, JobStatus
from dqflow.errors import (
    InvalidJobStateError,
    InvalidWorkflowStateError,
    OutputParseError,
    PayloadValidationError,
    UnknownWorkflowError,
    WorkflowRunNotFoundError,
)
from dqflow.record import JobRecord
from dqflow.storage.base import Completion
from dqflow.worker import JobContext
from dqflow.workflow_record import WorkflowRun

OBJECT: dict[str, Any] = {"type": "object"}
N_INPUT = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def _double(payload: Any, ctx: JobContext) -> Any:
    return {"n": payload["n"] * 2}


def _add_one(payload: Any, ctx: JobContext) -> Any:
    return {"n": payload["n"] + 1}


def _total(payload: Any, ctx: JobContext) -> Any:
    return {"n": sum(payload["values"])}


JOBS: dict[str, dict[str, Any]] = {
    "double": {"handler": _double, "max_attempts": 1},
    "add_one": {"handler": _add_one, "max_attempts": 1},
    "total": {"handler": _total, "max_attempts": 1},
}


def _queue(backend: str, workflows: Mapping[str, Any], jobs: Mapping[str, Any] | None = None) -> Queue:
    return make_queue(backend, {**JOBS, **(jobs or {})}, workflows=workflows)


@pytest.fixture
def closing() -> Iterator[list[Queue]]:
    queues: list[Queue] = []
    yield queues
    for queue in queues:
        queue.close()


def _finish(queue: Queue, *run_ids: int, timeout: float = 30.0) -> list[WorkflowRun]:
    with running_worker(queue, concurrency=4):
        for run_id in run_ids:
            wait_until(lambda r=run_id: queue.require_workflow(r).is_finished, timeout)
    return [queue.require_workflow(run_id) for run_id in run_ids]


def _statuses(run: WorkflowRun) -> dict[str, str]:
    return {step.name: step.status.value for step in run.steps}


LINEAR = {
    "linear": {
        "input": N_INPUT,
        "steps": {
            "a": {"job": "double", "payload": {"n": "${input.n}"}},
            "b": {"job": "add_one", "needs": ["a"], "payload": {"n": "${steps.a.output.n}"}},
            "c": {"job": "double", "needs": ["b"], "payload": {"n": "${steps.b.output.n}"}},
        },
        "returns": {"result": "${steps.c.output.n}", "label": "n=${steps.a.output.n}"},
    }
}


def test_a_linear_workflow_passes_each_output_on_and_stores_the_result(backend: str, closing: list[Queue]) -> None:
    queue = _queue(backend, LINEAR)
    closing.append(queue)
    seen: list[tuple[str, dict[str, Any]]] = []
    for event in ("workflow:started", "workflow:completed", "workflow:failed"):
        queue.on(event, lambda data, e=event: seen.append((e, data)))
    run_id = queue.start_workflow("linear", {"n": 3}, tags=["batch-7"])
    started = queue.require_workflow(run_id)
    assert started.status is WorkflowStatus.RUNNING
    assert _statuses(started) == {"a": "running", "b": "waiting", "c": "waiting"}
    (run,) = _finish(queue, run_id)
    assert run.status is WorkflowStatus.COMPLETED
    assert run.output == {"result": 14, "label": "n=6"}
    assert [step.output for step in run.steps] == [{"n": 6}, {"n": 7}, {"n": 14}]
    assert run.tags == ["batch-7"] and run.completed_at is not None and run.failure_reason is None

    class Result(BaseModel):
        result: int
        label: str

    assert run.output_as(Result) == Result(result=14, label="n=6")
    for index, step in enumerate(run.steps):
        (job_id,) = step.job_ids
        job = queue.require_job(job_id)
        assert (job.workflow_run_id, job.workflow_step, job.workflow_item) == (run_id, step.name, None)
        assert job.status is JobStatus.COMPLETED and "batch-7" in job.tags
        if index:
            assert job_id > run.steps[index - 1].job_ids[0]
    assert [name for name, _ in seen] == ["workflow:started", "workflow:completed"]
    assert seen[1][1] == {"run_id": run_id, "workflow": "linear"}


def test_a_diamond_creates_the_joined_step_once_with_both_outputs(backend: str, closing: list[Queue]) -> None:
    workflows = {
        "diamond": {
            "input": N_INPUT,
            "steps": {
                "top": {"job": "double", "payload": {"n": "${input.n}"}},
                "left": {"job": "add_one", "needs": ["top"], "payload": {"n": "${steps.top.output.n}"}},
                "right": {"job": "double", "needs": ["top"], "payload": {"n": "${steps.top.output.n}"}},
                "join": {
                    "job": "total",
                    "needs": ["left", "right"],
                    "payload": {"values": ["${steps.left.output.n}", "${steps.right.output.n}"]},
                },
            },
            "returns": "${steps.join.output.n}",
        }
    }
    queue = _queue(backend, workflows)
    closing.append(queue)
    runs = _finish(queue, *(queue.start_workflow("diamond", {"n": n}) for n in range(5)))
    for n, run in enumerate(runs):
        assert run.status is WorkflowStatus.COMPLETED
        assert run.output == (2 * n + 1) + (4 * n)
        assert len(run.step("join").job_ids) == 1
    joins = queue.list_jobs(job_type="total", limit=100).jobs
    assert len(joins) == 5


FAN = {
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
        "returns": {"doubled": "${steps.each.outputs[*].n}", "sum": "${steps.sum.output.n}"},
    }
}


def test_fan_out_and_fan_in_keep_element_order(backend: str, closing: list[Queue]) -> None:
    queue = _queue(backend, FAN)
    closing.append(queue)
    values = list(range(100, 0, -1))
    run_id = queue.start_workflow("fan", {"values": values})
    each = queue.require_workflow(run_id).step("each")
    assert len(each.job_ids) == 100
    items = [queue.require_job(job_id).workflow_item for job_id in each.job_ids]
    assert items == list(range(100))
    (run,) = _finish(queue, run_id, timeout=60)
    assert run.status is WorkflowStatus.COMPLETED
    assert run.output == {"doubled": [2 * v for v in values], "sum": 2 * sum(values)}
    assert run.step("each").outputs == [{"n": 2 * v} for v in values]
    assert run.step("sum").outputs is None


def test_an_empty_fan_out_completes_at_once_with_no_outputs(backend: str, closing: list[Queue]) -> None:
    queue = _queue(backend, FAN)
    closing.append(queue)
    run_id = queue.start_workflow("fan", {"values": []})
    run = queue.require_workflow(run_id)
    each = run.step("each")
    assert each.status is StepStatus.COMPLETED and each.outputs == [] and each.job_ids == []
    assert run.step("sum").status is StepStatus.RUNNING
    (run,) = _finish(queue, run_id)
    assert run.output == {"doubled": [], "sum": 0}


def test_a_false_if_skips_the_step_and_its_dependents_and_returns_null(backend: str, closing: list[Queue]) -> None:
    workflows = {
        "maybe": {
            "input": {
                "type": "object",
                "properties": {"n": {"type": "integer"}, "go": {"type": "boolean"}},
                "required": ["n", "go"],
            },
            "steps": {
                "first": {"job": "double", "payload": {"n": "${input.n}"}},
                "gated": {"job": "add_one", "needs": ["first"], "if": "${input.go}", "payload": {"n": 1}},
                "after": {"job": "double", "needs": ["gated"], "payload": {"n": "${steps.gated.output.n}"}},
            },
            "returns": {"first": "${steps.first.output.n}", "after": "${steps.after.output.n}"},
        }
    }
    queue = _queue(backend, workflows)
    closing.append(queue)
    skipped_id, ran_id = (
        queue.start_workflow("maybe", {"n": 2, "go": False}),
        queue.start_workflow("maybe", {"n": 2, "go": True}),
    )
    skipped, ran = _finish(queue, skipped_id, ran_id)
    assert skipped.status is WorkflowStatus.COMPLETED
    assert _statuses(skipped) == {"first": "completed", "gated": "skipped", "after": "skipped"}
    assert skipped.step("gated").skipped_reason == "if ${input.go} is false"
    assert skipped.step("after").skipped_reason == "needs 'gated', which was skipped"
    assert skipped.step("gated").job_ids == [] and skipped.output == {"first": 4, "after": None}
    assert ran.output == {"first": 4, "after": 4}


def test_a_payload_refused_at_run_time_fails_the_step_with_invalid_payload(backend: str, closing: list[Queue]) -> None:
    # the producer has no output schema: the checker cannot prove the link, the runtime refuses it
    jobs = {
        "loose": {"handler": lambda payload, ctx: {"n": "not a number"}, "max_attempts": 1},
        "strict": {
            "handler": _double,
            "payload": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
        },
    }
    workflows = {
        "bad": {
            "input": OBJECT,
            "steps": {
                "make": {"job": "loose"},
                "use": {"job": "strict", "needs": ["make"], "payload": {"n": "${steps.make.output.n}"}},
                "never": {"job": "double", "needs": ["use"], "payload": {"n": 1}},
            },
        }
    }
    queue = _queue(backend, workflows, jobs)
    closing.append(queue)
    failures: list[dict[str, Any]] = []
    queue.on("workflow:failed", failures.append)
    (run,) = _finish(queue, queue.start_workflow("bad", {}))
    assert run.status is WorkflowStatus.FAILED
    assert run.failure_reason == FailureReason.INVALID_PAYLOAD.value
    assert _statuses(run) == {"make": "completed", "use": "failed", "never": "cancelled"}
    assert run.step("use").job_ids == []
    assert "payload of strict" in (run.step("use").error or "")
    assert run.error is not None and run.error.startswith("step 'use' failed:")
    assert failures == [{"run_id": run.id, "workflow": "bad", "failure_reason": "invalid_payload"}]
    with pytest.raises(OutputParseError, match="has no output yet"):
        run.output_as(BaseModel)


def _flaky_jobs(state: dict[str, bool]) -> dict[str, Any]:
    def slow(payload: Any, ctx: JobContext) -> Any:
        if state.get("hold", True):  # until the test lets it go: runs until cancelled (at most 10 s)
            ctx.wait_cancelled(10)
        return {"n": 0}

    def flaky(payload: Any, ctx: JobContext) -> Any:
        if state["fail"]:
            raise RuntimeError("flaky step broke")
        return {"n": payload["n"]}

    return {"slow": {"handler": slow, "max_attempts": 1}, "flaky": {"handler": flaky, "max_attempts": 1}}


FLAKY = {
    "flaky": {
        "input": N_INPUT,
        "steps": {
            "breaks": {"job": "flaky", "payload": {"n": "${input.n}"}},
            "slow": {"job": "slow", "payload": {}},
            "later": {"job": "add_one", "needs": ["breaks"], "payload": {"n": "${steps.breaks.output.n}"}},
        },
        "returns": "${steps.later.output.n}",
    }
}


def test_a_failed_step_fails_the_run_cancels_the_rest_and_retry_carries_on(backend: str, closing: list[Queue]) -> None:
    state = {"fail": True}
    queue = _queue(backend, FLAKY, _flaky_jobs(state))
    closing.append(queue)
    run_id = queue.start_workflow("flaky", {"n": 41})
    (run,) = _finish(queue, run_id)
    assert run.status is WorkflowStatus.FAILED and run.failure_reason == "handler_error"
    assert _statuses(run) == {"breaks": "failed", "slow": "cancelled", "later": "cancelled"}
    assert "flaky step broke" in (run.error or "")
    slow_job = queue.require_job(run.step("slow").job_ids[0])
    assert slow_job.status is JobStatus.CANCELLED and slow_job.failure_reason == "workflow_failed"
    with pytest.raises(InvalidWorkflowStateError, match="only a running run can be cancelled"):
        queue.cancel_workflow(run_id)

    state["fail"] = False
    state["hold"] = False  # the re-run slow step need not wait
    retried = queue.retry_workflow(run_id)
    assert retried.status is WorkflowStatus.RUNNING and retried.error is None
    assert _statuses(retried) == {"breaks": "running", "slow": "running", "later": "waiting"}
    assert retried.step("breaks").job_ids == run.step("breaks").job_ids  # the same job runs again
    with pytest.raises(InvalidWorkflowStateError, match="only a failed or cancelled run can be retried"):
        queue.retry_workflow(run_id)
    (done,) = _finish(queue, run_id)
    assert done.status is WorkflowStatus.COMPLETED and done.output == 42
    assert _statuses(done) == {"breaks": "completed", "slow": "completed", "later": "completed"}


def test_cancel_workflow_cancels_its_unfinished_jobs_and_stops_the_handlers(backend: str, closing: list[Queue]) -> None:
    state = {"fail": False}
    queue = _queue(backend, FLAKY, _flaky_jobs(state))
    closing.append(queue)
    events: list[dict[str, Any]] = []
    queue.on("workflow:cancelled", events.append)
    run_id = queue.start_workflow("flaky", {"n": 1})
    with running_worker(queue, concurrency=4):
        slow_id = queue.require_workflow(run_id).step("slow").job_ids[0]
        wait_until(lambda: queue.require_job(slow_id).status is JobStatus.PROCESSING)
        started = time.monotonic()
        run = queue.cancel_workflow(run_id)
        assert run.status is WorkflowStatus.CANCELLED and run.completed_at is not None
        assert run.step("slow").status is StepStatus.CANCELLED
        slow = queue.require_job(slow_id)
        assert slow.status is JobStatus.CANCELLED and slow.failure_reason == "workflow_cancelled"
    assert time.monotonic() - started < 8  # the handler saw the cancellation (it waits up to 10 s)
    assert events == [{"run_id": run_id, "workflow": "flaky", "failure_reason": "cancelled"}]
    assert queue.require_workflow(run_id).status is WorkflowStatus.CANCELLED
    with pytest.raises(InvalidWorkflowStateError):
        queue.cancel_workflow(run_id)
    state["hold"] = False  # the re-run slow step need not wait
    (done,) = [queue.retry_workflow(run_id)]
    assert done.status is WorkflowStatus.RUNNING
    (done,) = _finish(queue, run_id)
    assert done.status is WorkflowStatus.COMPLETED and done.output == 2


def test_cancelling_a_step_job_fails_its_run(backend: str, closing: list[Queue]) -> None:
    queue = _queue(backend, LINEAR)
    closing.append(queue)
    run_id = queue.start_workflow("linear", {"n": 1})
    job_id = queue.require_workflow(run_id).step("a").job_ids[0]
    queue.cancel(job_id)
    run = queue.require_workflow(run_id)
    assert run.status is WorkflowStatus.FAILED and run.failure_reason == "cancelled"
    assert _statuses(run) == {"a": "failed", "b": "cancelled", "c": "cancelled"}
    with pytest.raises(InvalidJobStateError):
        queue.cancel(job_id)


def test_a_step_job_whose_lease_expires_on_its_last_attempt_fails_the_run(backend: str, closing: list[Queue]) -> None:
    queue = _queue(backend, LINEAR)
    closing.append(queue)
    run_id = queue.start_workflow("linear", {"n": 1})
    (job,) = queue.storage.claim_jobs("gone", None, 10, 1)  # a worker that dies at once
    time.sleep(0.05)
    assert [r.job_id for r in queue.storage.reclaim_expired()] == [job.id]
    run = queue.require_workflow(run_id)
    assert run.status is WorkflowStatus.FAILED and run.failure_reason == "lease_expired"
    assert queue.require_job(job.id).status is JobStatus.FAILED


def test_returns_that_do_not_fit_the_output_schema_fail_the_run(backend: str, closing: list[Queue]) -> None:
    workflows = {
        "typed": {
            "input": N_INPUT,
            "output": {"type": "object", "properties": {"n": {"type": "integer", "maximum": 5}}, "required": ["n"]},
            "steps": {"a": {"job": "double", "payload": {"n": "${input.n}"}}},
            "returns": {"n": "${steps.a.output.n}"},
        }
    }
    queue = _queue(backend, workflows)
    closing.append(queue)
    good, bad = _finish(queue, queue.start_workflow("typed", {"n": 2}), queue.start_workflow("typed", {"n": 3}))
    assert good.status is WorkflowStatus.COMPLETED and good.output == {"n": 4}
    assert bad.status is WorkflowStatus.FAILED and bad.failure_reason == "invalid_output"
    assert "greater than the maximum of 5" in (bad.error or "") and bad.output is None


def test_start_refuses_bad_input_and_unknown_names_storing_nothing(backend: str, closing: list[Queue]) -> None:
    queue = _queue(backend, LINEAR)
    closing.append(queue)
    with pytest.raises(PayloadValidationError, match="input of linear"):
        queue.start_workflow("linear", {"n": "three"})
    with pytest.raises(UnknownWorkflowError, match="unknown workflow 'nope' \\(declared: linear\\)"):
        queue.start_workflow("nope", {"n": 1})
    assert queue.list_workflows().runs == []
    assert queue.list_jobs().jobs == []
    assert queue.get_workflow(1) is None
    with pytest.raises(WorkflowRunNotFoundError, match="no workflow run with id 99"):
        queue.require_workflow(99)
    with pytest.raises(WorkflowRunNotFoundError):
        queue.cancel_workflow(99)


def test_an_idempotency_key_starts_one_run(backend: str, closing: list[Queue]) -> None:
    queue = _queue(backend, LINEAR)
    closing.append(queue)
    first = queue.start_workflow("linear", {"n": 1}, idempotency_key="order-1")
    assert queue.start_workflow("linear", {"n": 2}, idempotency_key="order-1") == first
    other = queue.start_workflow("linear", {"n": 1}, idempotency_key="order-2")
    assert other != first
    assert [run.id for run in queue.list_workflows().runs] == [other, first]
    assert queue.require_workflow(first).idempotency_key == "order-1"
    assert len(queue.list_jobs().jobs) == 2


def test_list_workflows_pages_newest_first_and_filters(backend: str, closing: list[Queue]) -> None:
    queue = _queue(backend, {**LINEAR, **FAN})
    closing.append(queue)
    linear = [queue.start_workflow("linear", {"n": n}) for n in range(5)]
    fans = [queue.start_workflow("fan", {"values": []}) for _ in range(3)]
    queue.cancel_workflow(linear[1])
    seen: list[int] = []
    cursor = None
    while True:
        page = queue.list_workflows(limit=3, cursor=cursor)
        seen += [run.id for run in page.runs]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == sorted(linear + fans, reverse=True)
    assert [run.id for run in queue.list_workflows(name="linear").runs] == linear[::-1]
    assert [run.id for run in queue.list_workflows(statuses=["cancelled"]).runs] == [linear[1]]
    running = queue.list_workflows(name="linear", statuses=[WorkflowStatus.RUNNING], limit=2)
    assert [run.id for run in running.runs] == [linear[4], linear[3]] and running.next_cursor == linear[3]
    rest = queue.list_workflows(name="linear", statuses=["running"], limit=2, cursor=running.next_cursor)
    assert [run.id for run in rest.runs] == [linear[2], linear[0]] and rest.next_cursor is None
    with pytest.raises(ValueError, match="unknown workflow status 'done'"):
        queue.list_workflows(statuses=["done"])


JOIN = {
    "join": {
        "input": N_INPUT,
        "steps": {
            "left": {"job": "double", "payload": {"n": "${input.n}"}},
            "right": {"job": "add_one", "payload": {"n": "${input.n}"}},
            "both": {
                "job": "total",
                "needs": ["left", "right"],
                "payload": {"values": ["${steps.left.output.n}", "${steps.right.output.n}"]},
            },
        },
    }
}


def _settle_together(
    queue: Queue, job: JobRecord, output: str, barrier: threading.Barrier, results: list[list[bool]]
) -> None:
    completion = Completion(job.id, job.lease_token, output, job.workflow_run_id)
    barrier.wait()
    results.append(queue.storage.settle_jobs([completion]))


def test_two_parents_completed_at_the_same_moment_create_the_join_once(backend: str, closing: list[Queue]) -> None:
    queue = _queue(backend, JOIN)
    other = _queue(backend, JOIN)  # the second "worker process": its own connections
    closing += [queue, other]
    for n in range(8):
        run_id = queue.start_workflow("join", {"n": n})
        claimed = queue.storage.claim_jobs("w", ["double", "add_one"], 10, 30_000)
        assert len(claimed) == 2
        barrier = threading.Barrier(2)
        results: list[list[bool]] = []
        outputs = {"double": f'{{"n": {n * 2}}}', "add_one": f'{{"n": {n + 1}}}'}
        threads = [
            threading.Thread(target=_settle_together, args=(target, job, outputs[job.job_type], barrier, results))
            for target, job in zip((queue, other), claimed, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert results == [[True], [True]]
        run = queue.require_workflow(run_id)
        assert _statuses(run) == {"left": "completed", "right": "completed", "both": "running"}
        assert len(run.step("both").job_ids) == 1
        totals = queue.list_jobs(job_type="total", status="pending").jobs
        assert [job.id for job in totals] == run.step("both").job_ids
        assert totals[0].payload == {"values": [n * 2, n + 1]}
        queue.cancel_workflow(run_id)


def test_one_storage_settles_a_fan_out_from_two_threads_at_once(backend: str, closing: list[Queue]) -> None:
    """A worker may have ``concurrent_settles`` writes in flight on one storage object: two
    threads' batches of one run's step jobs each apply once, and the fan-in is made once."""
    queue = _queue(backend, FAN)
    closing.append(queue)
    storage = queue.storage
    values = list(range(1, 41))
    for _ in range(3):
        run_id = queue.start_workflow("fan", {"values": values})
        claimed = storage.claim_jobs("w", ["double"], 100, 30_000)
        assert len(claimed) == len(values)
        barrier = threading.Barrier(2)
        results: list[list[bool]] = []

        def settle(
            jobs: list[JobRecord], barrier: threading.Barrier = barrier, results: list[list[bool]] = results
        ) -> None:
            completions = [
                Completion(job.id, job.lease_token, f'{{"n": {2 * job.payload["n"]}}}', job.workflow_run_id)
                for job in jobs
            ]
            barrier.wait()
            for start in range(0, len(completions), 4):  # batches of the two threads interleave
                results.append(storage.settle_jobs(completions[start : start + 4]))

        threads = [threading.Thread(target=settle, args=(claimed[half::2],)) for half in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sum(len(flags) for flags in results) == len(values) and all(all(flags) for flags in results)
        run = queue.require_workflow(run_id)
        assert run.step("each").status is StepStatus.COMPLETED
        assert run.step("each").outputs == [{"n": 2 * v} for v in values]
        sums = [job for job in queue.list_jobs(job_type="total", limit=100).jobs if job.workflow_run_id == run_id]
        assert [job.id for job in sums] == run.step("sum").job_ids
        assert sums[0].payload == {"values": [2 * v for v in values]}
        queue.cancel_workflow(run_id)


def test_retry_runs_again_only_the_fan_out_elements_that_did_not_complete(backend: str, closing: list[Queue]) -> None:
    broken = {3}
    calls: list[int] = []

    def picky(payload: Any, ctx: JobContext) -> Any:
        calls.append(payload["n"])
        if payload["n"] in broken:
            raise ValueError(f"cannot take {payload['n']}")
        return {"n": payload["n"] * 2}

    workflows = {
        "fan": {
            **FAN["fan"],
            "steps": {**FAN["fan"]["steps"], "each": {**FAN["fan"]["steps"]["each"], "job": "picky"}},
        }
    }
    queue = _queue(backend, workflows, {"picky": {"handler": picky, "max_attempts": 1}})
    closing.append(queue)
    (run,) = _finish(queue, queue.start_workflow("fan", {"values": [1, 2, 3, 4]}))
    assert run.status is WorkflowStatus.FAILED and "cannot take 3" in (run.error or "")
    assert run.step("each").status is StepStatus.FAILED and run.step("sum").status is StepStatus.CANCELLED
    assert sorted(calls) == [1, 2, 3, 4]
    broken.clear()
    calls.clear()
    queue.retry_workflow(run.id)
    (done,) = _finish(queue, run.id)
    assert calls == [3]  # the completed elements keep their outputs
    assert done.status is WorkflowStatus.COMPLETED and done.output == {"doubled": [2, 4, 6, 8], "sum": 20}


def test_retry_plans_a_refused_step_again_from_the_current_declaration(backend: str, closing: list[Queue]) -> None:
    strict = {"type": "object", "properties": {"n": {"type": "integer", "maximum": 10}}, "required": ["n"]}
    workflows = {
        "capped": {
            "input": OBJECT,
            "steps": {"only": {"job": "capped", "payload": {"n": "${input.n}"}}},
            "returns": "${steps.only.output.n}",
        }
    }
    queue = _queue(backend, workflows, {"capped": {"handler": _double, "payload": strict}})
    closing.append(queue)
    run_id = queue.start_workflow("capped", {"n": 50})
    run = queue.require_workflow(run_id)
    assert run.status is WorkflowStatus.FAILED and run.failure_reason == "invalid_payload"
    assert queue.list_jobs().jobs == []
    relaxed = {**strict, "properties": {"n": {"type": "integer"}}}
    fixed = _queue(backend, workflows, {"capped": {"handler": _double, "payload": relaxed}})
    closing.append(fixed)
    assert fixed.retry_workflow(run_id).step("only").status is StepStatus.RUNNING
    (done,) = _finish(fixed, run_id)
    assert done.status is WorkflowStatus.COMPLETED and done.output == 100


def test_the_change_feed_names_the_run_of_each_step_job(backend: str, closing: list[Queue]) -> None:
    queue = _queue(backend, LINEAR)
    closing.append(queue)
    cursor = queue.storage.change_cursor()
    plain = queue.add("double", {"n": 1})
    (run,) = _finish(queue, queue.start_workflow("linear", {"n": 1}))
    changes = queue.storage.read_changes(cursor, 1000)
    step_jobs = {job_id for step in run.steps for job_id in step.job_ids}
    completed = {c.job_id: c.workflow_run_id for c in changes if c.kind == "completed"}
    assert completed == {plain: None, **dict.fromkeys(step_jobs, run.id)}


def test_a_run_of_a_workflow_no_longer_declared_can_be_cancelled_not_retried(
    backend: str, closing: list[Queue]
) -> None:
    queue = _queue(backend, LINEAR)
    later = _queue(backend, FAN)  # the next deploy dropped `linear`
    closing += [queue, later]
    run_id = queue.start_workflow("linear", {"n": 1})
    assert later.cancel_workflow(run_id).status is WorkflowStatus.CANCELLED
    with pytest.raises(UnknownWorkflowError, match="workflow 'linear' is not declared \\(declared: fan\\)"):
        later.retry_workflow(run_id)
    assert later.require_workflow(run_id).status is WorkflowStatus.CANCELLED
