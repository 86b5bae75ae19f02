"""Conformance: durable handlers (steps, sleeps, tokens) on every backend, with real workers.

Each step's function appends a line to a log file (tests/app/durable_handlers.py),
so a test counts how often it really ran.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from app import durable_handlers as dh
from helpers import APP_CONFIG, make_queue, running_worker, start_worker_process, wait_for_status, wait_until

from dqflow import (
    JobStatus,
    PayloadValidationError,
    Queue,
    TokenAlreadyCompletedError,
    TokenExpiredError,
    TokenNotFoundError,
)
from dqflow.enums import EventType
from dqflow.storage import Completion, Wait, open_storage
from dqflow.storage.base import Storage

JOBS: dict[str, dict[str, Any]] = {
    "step_sleep_step": {"handler": dh.step_sleep_step},
    "async_step_sleep_step": {"handler": dh.async_step_sleep_step},
    "step_then_fail": {"handler": dh.step_then_fail, "max_attempts": 2},
    "step_then_fail_once": {"handler": dh.step_then_fail, "max_attempts": 1},
    "sleep_once": {"handler": dh.sleep_once},
    "quick": {"handler": dh.quick},
    "await_token": {"handler": dh.await_token, "max_attempts": 1},
}
SIGNALS = {"approval": {"type": "object", "required": ["approved"], "properties": {"approved": {"type": "boolean"}}}}


@pytest.fixture
def queue(backend: str) -> Any:
    q = make_queue(backend, JOBS, signals=SIGNALS)
    yield q
    q.close()


def _events(queue: Queue, job_id: int) -> list[EventType]:
    return [event.event_type for event in queue.get_events(job_id)]


def _token_id(queue: Queue, job_id: int) -> str:
    """The id of the job's first token (its ``dqflow:token:1`` step), once created."""

    def created() -> str | None:
        job = queue.require_job(job_id)
        step = job.steps.get("dqflow:token:1")
        return None if step is None else str(step.result["token_id"])

    return str(wait_until(created))


# -- steps ------------------------------------------------------------------------------------


@pytest.mark.parametrize("job_type", ["step_sleep_step", "async_step_sleep_step"])
def test_a_step_runs_once_across_a_sleep(queue: Queue, tmp_path: Path, job_type: str) -> None:
    log = str(tmp_path / "steps.log")
    job_id = queue.add(job_type, {"log": log, "sleep": 0.3})
    with running_worker(queue, concurrency=2):
        job = wait_for_status(queue, job_id, "completed")
    assert job.output == {"first": 1, "second": 1}
    assert dh.runs(log, job_id, "call_api") == 1 and dh.runs(log, job_id, "send_mail") == 1
    assert job.attempts == 1, "a wait counts no attempt"
    assert set(job.steps) == {"call_api", "dqflow:sleep:1", "send_mail"}
    assert job.steps["call_api"].result == 1 and job.steps["call_api"].completed_at <= job.completed_at
    assert job.wait is None and job.wake_at is None
    events = _events(queue, job_id)
    assert events.count(EventType.PROCESSING) == 2
    assert events.index(EventType.WAITING) < events.index(EventType.READY) < events.index(EventType.COMPLETED)


def test_a_step_runs_once_across_a_retry(queue: Queue, tmp_path: Path) -> None:
    log = str(tmp_path / "steps.log")
    job_id = queue.add("step_then_fail", {"log": log, "fail_runs": 1})
    with running_worker(queue):
        job = wait_for_status(queue, job_id, "completed")
    assert job.attempts == 2 and len(job.error_history) == 1
    assert job.output == {"first": 1}
    assert dh.runs(log, job_id, "call_api") == 1 and dh.runs(log, job_id, "run") == 2


def test_a_step_runs_once_across_a_sigkill_of_the_worker(backend: str, tmp_path: Path) -> None:
    log = str(tmp_path / "steps.log")
    queue = Queue.from_yaml(APP_CONFIG, backend=backend)
    job_id = queue.add("durable_hang", {"log": log})
    first = start_worker_process(backend, "--job-type", "durable_hang", log=tmp_path / "w1.log")
    try:
        wait_until(lambda: dh.runs(log, job_id, "run") == 1, timeout=60)
        assert "call_api" in queue.require_job(job_id).steps, "the step is stored before the handler goes on"
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        second = start_worker_process(backend, "--job-type", "durable_hang", log=tmp_path / "w2.log")
        try:
            job = wait_for_status(queue, job_id, "completed", timeout=60)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    assert job.output == {"first": 1}
    assert dh.runs(log, job_id, "call_api") == 1 and dh.runs(log, job_id, "run") == 2
    queue.close()


@pytest.mark.parametrize("job_type", ["durable_isolated", "durable_isolated_async"])
def test_steps_of_an_isolated_handler_are_stored_by_the_worker(backend: str, tmp_path: Path, job_type: str) -> None:
    log = str(tmp_path / "steps.log")
    queue = Queue.from_yaml(APP_CONFIG, backend=backend)
    job_id = queue.add(job_type, {"log": log, "sleep": 0.3})
    with running_worker(queue, job_types=[job_type]):
        job = wait_for_status(queue, job_id, "completed", timeout=60)
    assert job.output == {"first": 1, "second": 1}
    assert dh.runs(log, job_id, "call_api") == 1 and dh.runs(log, job_id, "send_mail") == 1
    assert EventType.WAITING in _events(queue, job_id) and job.attempts == 1
    queue.close()


def test_a_step_name_used_twice_or_a_result_that_is_not_json_fails_the_attempt(backend: str) -> None:
    def twice(payload: Any, ctx: Any) -> None:
        ctx.step("a", lambda: 1)
        ctx.step("a", lambda: 2)

    def not_json(payload: Any, ctx: Any) -> None:
        ctx.step("when", lambda: datetime.now(UTC))

    queue = make_queue(backend, {"twice": {"handler": twice, "max_attempts": 1}, "not_json": {"handler": not_json}})
    a = queue.add("twice", {})
    b = queue.add("not_json", {}, max_attempts=1)
    with running_worker(queue):
        failed_a = wait_for_status(queue, a, "failed")
        failed_b = wait_for_status(queue, b, "failed")
    assert "step name 'a' is used twice" in failed_a.error_history[-1]["error"]
    assert "result of step 'when' is not JSON" in failed_b.error_history[-1]["error"]
    assert failed_b.steps == {}
    queue.close()


# -- sleeps -----------------------------------------------------------------------------------


def test_a_sleeping_job_frees_its_slot(queue: Queue, tmp_path: Path) -> None:
    sleeper = queue.add("sleep_once", {"sleep": 1.5})
    with running_worker(queue, concurrency=1):
        wait_for_status(queue, sleeper, "waiting")
        others = [queue.add("quick", {"n": n}) for n in range(3)]
        done = [wait_for_status(queue, other, "completed", timeout=10) for other in others]
        assert queue.require_job(sleeper).status is JobStatus.WAITING, "the others ran while it slept"
        woke = wait_for_status(queue, sleeper, "completed", timeout=15)
    assert all(job.completed_at < woke.completed_at for job in done)
    assert woke.attempts == 1 and woke.output == {"woke": True}
    waited = woke.completed_at - woke.created_at
    assert timedelta(seconds=1.5) <= waited < timedelta(seconds=10)


def test_sleep_until_a_time_past_goes_on_at_once(queue: Queue) -> None:
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    job_id = queue.add("sleep_once", {"until": past})
    with running_worker(queue):
        job = wait_for_status(queue, job_id, "completed")
    assert EventType.WAITING not in _events(queue, job_id)
    assert job.steps == {}


def test_cancelling_a_sleeping_job(queue: Queue) -> None:
    job_id = queue.add("sleep_once", {"sleep": 0.5})
    with running_worker(queue):
        wait_for_status(queue, job_id, "waiting")
        cancelled = queue.cancel(job_id)
        assert cancelled.status is JobStatus.CANCELLED and cancelled.wait is None and cancelled.wake_at is None
        time.sleep(1.0)  # past its wake time: it stays cancelled
        assert queue.require_job(job_id).status is JobStatus.CANCELLED
        assert queue.storage.next_due_in(None) is None, "a cancelled sleeper wakes no worker"


def test_a_thousand_sleeping_jobs_hold_no_slot(backend: str) -> None:
    queue = make_queue(backend, {"sleep_once": {"handler": dh.sleep_once}})
    ids = queue.add_many([{"job_type": "sleep_once", "payload": {"sleep": 1.0}} for _ in range(1000)])
    started = time.monotonic()
    with running_worker(queue, concurrency=4):
        wait_until(lambda: queue.count_jobs().get(("sleep_once", JobStatus.COMPLETED), 0) == 1000, timeout=60)
    elapsed = time.monotonic() - started
    jobs = queue.list_jobs(status="completed", limit=1000).jobs
    assert {job.id for job in jobs} == set(ids)
    finished = sorted(job.completed_at for job in jobs)
    spread = (finished[-1] - finished[0]).total_seconds()
    # 4 slots holding 1 s sleeps would take 250 s; no slot is held, so all finish together
    assert elapsed < 60 and spread < 15, (elapsed, spread)
    assert all(job.attempts == 1 for job in jobs)
    queue.close()


# -- tokens -----------------------------------------------------------------------------------


def test_a_token_completed_while_the_handler_waits(queue: Queue) -> None:
    job_id = queue.add("await_token", {"schema": "approval"})
    seen: list[dict[str, Any]] = []
    queue.on("job:waiting", seen.append)
    with running_worker(queue):
        token_id = _token_id(queue, job_id)
        waiting = wait_for_status(queue, job_id, "waiting")
        assert waiting.wait is not None and waiting.wait.kind == "token" and waiting.wait.token_id == token_id
        assert queue.get_token(token_id).status == "pending"
        token = queue.complete_token(token_id, {"approved": True})
        assert token.status == "completed" and token.data == {"approved": True} and token.job_id == job_id
        job = wait_for_status(queue, job_id, "completed")
    assert job.output == {"data": {"approved": True}, "token": token_id}
    assert job.attempts == 1
    assert [event["token_id"] for event in seen] == [token_id]
    with pytest.raises(TokenAlreadyCompletedError):
        queue.complete_token(token_id, {"approved": False})
    assert queue.get_token(token_id).data == {"approved": True}


def test_a_token_completed_before_the_handler_waits_for_it(queue: Queue, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    job_id = queue.add("await_token", {"gate": str(gate)})
    with running_worker(queue):
        token_id = _token_id(queue, job_id)
        queue.complete_token(token_id, [1, "two"])
        gate.touch()
        job = wait_for_status(queue, job_id, "completed")
    assert job.output == {"data": [1, "two"], "token": token_id}
    assert EventType.WAITING not in _events(queue, job_id)


def test_a_token_that_times_out(queue: Queue) -> None:
    raising = queue.add("await_token", {"timeout": 0.3})
    defaulted = queue.add("await_token", {"timeout": 0.3, "default": "nobody answered"})
    with running_worker(queue):
        failed = wait_for_status(queue, raising, "failed", timeout=15)
        done = wait_for_status(queue, defaulted, "completed", timeout=15)
    assert "timed out before it was completed" in failed.error_history[-1]["error"]
    assert done.output["data"] == "nobody answered"
    token_id = done.output["token"]
    assert queue.get_token(token_id).status == "expired"
    with pytest.raises(TokenExpiredError):
        queue.complete_token(token_id, 1)
    assert queue.get_token(token_id).data is None


def test_token_data_refused_by_its_schema_changes_nothing(queue: Queue) -> None:
    inline = {"type": "integer", "minimum": 0}
    by_name = queue.add("await_token", {"schema": "approval"})
    inline_job = queue.add("await_token", {"schema": inline})
    with running_worker(queue):
        for job_id, bad, good in ((by_name, {"approved": "yes"}, {"approved": False}), (inline_job, -1, 7)):
            token_id = _token_id(queue, job_id)
            wait_for_status(queue, job_id, "waiting")
            with pytest.raises(PayloadValidationError, match=token_id):
                queue.complete_token(token_id, bad)
            assert queue.get_token(token_id).status == "pending"
            assert queue.require_job(job_id).status is JobStatus.WAITING
            queue.complete_token(token_id, good)
            assert wait_for_status(queue, job_id, "completed").output["data"] == good
    with pytest.raises(TokenNotFoundError):
        queue.complete_token("tok_nope", 1)


def test_cancelling_a_job_that_waits_for_a_token(queue: Queue) -> None:
    job_id = queue.add("await_token", {})
    with running_worker(queue):
        token_id = _token_id(queue, job_id)
        wait_for_status(queue, job_id, "waiting")
        queue.cancel(job_id)
        with pytest.raises(TokenExpiredError, match="cancelled"):
            queue.complete_token(token_id, 1)
        time.sleep(0.3)
        assert queue.require_job(job_id).status is JobStatus.CANCELLED


# -- retry ------------------------------------------------------------------------------------


def test_retry_keeps_completed_steps_and_reset_steps_clears_them(queue: Queue, tmp_path: Path) -> None:
    log = str(tmp_path / "steps.log")
    job_id = queue.add("step_then_fail_once", {"log": log, "fail_runs": 2})
    with running_worker(queue):
        wait_for_status(queue, job_id, "failed")
        assert dh.runs(log, job_id, "call_api") == 1
        queue.retry(job_id)
        wait_until(lambda: dh.runs(log, job_id, "run") == 2)
        wait_for_status(queue, job_id, "failed")
        assert dh.runs(log, job_id, "call_api") == 1, "kept steps are replayed, not run again"
        assert queue.retry(job_id, reset_steps=True).steps == {}
        job = wait_for_status(queue, job_id, "completed")
    assert dh.runs(log, job_id, "call_api") == 2
    assert job.output == {"first": 2}


# -- the storage contract ---------------------------------------------------------------------


def _storage(backend: str) -> Storage:
    storage = open_storage(backend)
    storage.setup()
    return storage


def test_wait_is_fenced_refunds_the_attempt_and_wakes_when_due(backend: str) -> None:
    from helpers import add_job, claim_one

    storage = _storage(backend)
    job_id = add_job(storage)
    job = claim_one(storage)
    until = datetime.now(UTC) + timedelta(seconds=0.3)
    assert storage.settle_jobs([Wait(job_id, job.lease_token + 1, until)]) == [False]
    assert storage.settle_jobs([Wait(job_id, job.lease_token, until), Completion(job_id, job.lease_token)]) == [
        True,
        False,
    ]
    waiting = storage.get_job(job_id)
    assert waiting is not None and waiting.status is JobStatus.WAITING and waiting.attempts == 0
    assert waiting.wake_at is not None and abs((waiting.wake_at - until).total_seconds()) < 0.001
    assert waiting.lease_token != job.lease_token and waiting.locked_by is None
    due = storage.next_due_in(None)
    assert due is not None and 0 < due <= 0.3
    assert storage.claim_jobs("w", None, 5, 1000) == []
    assert storage.wake_due_jobs() == 0
    time.sleep(0.35)
    assert storage.next_due_in(None) == 0
    assert storage.wake_due_jobs() == 1
    again = claim_one(storage)
    assert again.id == job_id and again.attempts == 1 and again.wait is None
    assert not storage.save_step(
        job_id, job.lease_token, "late", '{"result":1,"completed_at":"2026-01-01T00:00:00+00:00"}'
    )
    storage.close()


# -- a workflow step may be a durable handler ---------------------------------------------------


def _approve_step(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    quote = ctx.step("quote", lambda: payload["n"] * 10)
    ctx.sleep(0.2)
    decision = ctx.wait_for_token(ctx.create_token(timeout=60))
    return {"n": quote + decision["extra"]}


def test_a_workflow_step_that_waits_holds_its_run_running_but_no_worker(backend: str) -> None:
    from dqflow import WorkflowStatus

    n_schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    workflows = {
        "approval": {
            "input": n_schema,
            "steps": {
                "approve": {"job": "approve", "payload": {"n": "${input.n}"}},
                "after": {"job": "quick", "needs": ["approve"], "payload": {"n": "${steps.approve.output.n}"}},
            },
            "returns": {"n": "${steps.after.output.n}"},
        }
    }
    jobs = {"approve": {"handler": _approve_step, "max_attempts": 1}, "quick": {"handler": dh.quick}}
    queue = make_queue(backend, jobs, workflows=workflows)
    run_id = queue.start_workflow("approval", {"n": 4})
    with running_worker(queue, concurrency=1):
        step_job = wait_until(
            lambda: next((j for j in queue.list_jobs(job_type="approve").jobs if "dqflow:token:1" in j.steps), None)
        )
        wait_for_status(queue, step_job.id, "waiting")
        assert queue.require_workflow(run_id).status is WorkflowStatus.RUNNING
        other = queue.add("quick", {"n": 1})
        wait_for_status(queue, other, "completed")  # the one slot is free while the step waits
        queue.complete_token(str(step_job.steps["dqflow:token:1"].result["token_id"]), {"extra": 2})
        wait_until(lambda: queue.require_workflow(run_id).is_finished, timeout=30)
    run = queue.require_workflow(run_id)
    assert run.status is WorkflowStatus.COMPLETED and run.output == {"n": 42}
    queue.close()


def test_a_wait_settled_in_one_batch_with_a_step_job_end(backend: str) -> None:
    n_schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    workflows = {
        "pair": {
            "input": n_schema,
            "steps": {
                "a": {"job": "quick", "payload": {"n": "${input.n}"}},
                "b": {"job": "quick", "payload": {"n": "${input.n}"}},
            },
        }
    }
    queue = make_queue(backend, {"quick": {"handler": dh.quick}}, workflows=workflows)
    run_id = queue.start_workflow("pair", {"n": 1})
    first, second = queue.storage.claim_jobs("w", None, 2, 30_000)
    until = datetime.now(UTC) + timedelta(seconds=30)
    flags = queue.storage.settle_jobs(
        [
            Completion(first.id, first.lease_token, '{"n": 1}', first.workflow_run_id),
            Wait(second.id, second.lease_token, until),
        ]
    )
    assert flags == [True, True]
    assert queue.require_job(first.id).status is JobStatus.COMPLETED
    waiting = queue.require_job(second.id)
    assert waiting.status is JobStatus.WAITING and waiting.wait is not None and waiting.wait.kind == "sleep"
    assert queue.require_workflow(run_id).status.value == "running"
    queue.close()
