"""Flow control through the queue API and a worker, on every backend: keys resolved at add
time, groups, a worker held to a concurrency key, and a dead-letter job run end to end."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from helpers import make_queue, running_worker, wait_for_status, wait_until

from dqflow import JobStatus, Worker
from dqflow.errors import PayloadValidationError
from dqflow.storage import JobFilter

CUSTOMER = {
    "type": "object",
    "properties": {"customer": {"type": "string"}, "n": {"type": "integer"}},
    "required": ["customer"],
}


def _noop(payload: Any) -> None:
    return None


def test_the_concurrency_and_rate_keys_are_resolved_from_the_payload(backend: str) -> None:
    jobs = {
        "send": {
            "handler": _noop,
            "payload": CUSTOMER,
            "concurrency": {"limit": 2, "key": "${payload.customer}"},
            "rate_limit": {"limit": 10, "per": "1s", "key": "c-${payload.customer}"},
        },
        "sync": {"handler": _noop, "concurrency": {"limit": 1}},
        "plain": {"handler": _noop},
    }
    with make_queue(backend, jobs) as queue:
        send = queue.get_job(queue.add("send", {"customer": "acme"}))
        assert (send.concurrency_key, send.concurrency_limit) == ("send:acme", 2)
        assert (send.rate_key, send.rate_limit, send.rate_window_ms) == ("send:c-acme", 10, 1000)
        sync = queue.get_job(queue.add("sync", {}))
        assert (sync.concurrency_key, sync.concurrency_limit, sync.rate_key) == ("sync", 1, None)
        plain = queue.get_job(queue.add("plain", {}))
        assert (plain.concurrency_key, plain.rate_key, plain.dead_letter) == (None, None, None)


def test_a_group_shares_one_limit_across_job_types(backend: str) -> None:
    jobs = {
        "a": {"handler": _noop, "group_concurrency": 1},
        "b": {"handler": _noop, "concurrency": {"limit": 4}},
        "c": {"handler": _noop},
    }
    with make_queue(backend, jobs) as queue:
        a = queue.get_job(queue.add("a", {}, group="tenant-1"))
        b = queue.get_job(queue.add("b", {}, group="tenant-1"))
        assert (a.concurrency_key, a.concurrency_limit) == ("group:tenant-1", 1)
        assert (b.concurrency_key, b.concurrency_limit) == ("group:tenant-1", 4)
        with pytest.raises(ValueError, match="group='tenant-1' needs a limit: set group_concurrency"):
            queue.add("c", {}, group="tenant-1")
        with pytest.raises(ValueError, match="group must be a non-empty string"):
            queue.add("a", {}, group="")
        queue.add("a", {}, group="tenant-1")
        [first] = queue.storage.claim_jobs("w", ["a"], 10, 30_000)
        assert first.id == a.id
        assert queue.storage.claim_jobs("w", ["a"], 10, 30_000) == []


def test_a_group_id_from_the_defaults(backend: str) -> None:
    with make_queue(backend, {"a": {"handler": _noop}}, defaults={"group_concurrency": 2}) as queue:
        job = queue.get_job(queue.add("a", {}, group="g"))
        assert (job.concurrency_key, job.concurrency_limit) == ("group:g", 2)


def test_a_worker_runs_at_most_the_limit_of_a_key_at_once(backend: str) -> None:
    lock = threading.Lock()
    running: dict[str, int] = {}
    peak: dict[str, int] = {}

    def handler(payload: Any) -> None:
        key = payload["customer"]
        with lock:
            running[key] = running.get(key, 0) + 1
            peak[key] = max(peak.get(key, 0), running[key])
        time.sleep(0.02)
        with lock:
            running[key] -= 1

    jobs = {
        "send": {"handler": handler, "payload": CUSTOMER, "concurrency": {"limit": 1, "key": "${payload.customer}"}}
    }
    with make_queue(backend, jobs) as queue:
        queue.add_many([{"job_type": "send", "payload": {"customer": f"c{n % 3}", "n": n}} for n in range(30)])
        Worker(queue, drain=True, concurrency=8).run()
        assert queue.count_jobs() == {("send", JobStatus.COMPLETED): 30}
    assert peak == {"c0": 1, "c1": 1, "c2": 1}


def test_a_job_that_fails_for_good_is_handed_to_its_dead_letter_type(backend: str) -> None:
    seen: list[dict[str, Any]] = []

    def fail(payload: Any) -> None:
        raise RuntimeError(f"cannot send to {payload['customer']}")

    jobs = {
        "send": {"handler": fail, "payload": CUSTOMER, "max_attempts": 2},
        "dead": {"handler": seen.append, "payload": "dqflow/schemas/dead_letter.json", "priority": 3},
    }
    with make_queue(backend, jobs, defaults={"dead_letter": "dead", "retry": {"delay": "10ms"}}) as queue:
        job_id = queue.add("send", {"customer": "acme"})
        assert queue.get_job(job_id).dead_letter == {
            "job_type": "dead",
            "priority": 3,
            "max_attempts": 3,
            "timeout_ms": None,
            "retry_delay_ms": 10,
            "retry_backoff": "exponential",
            "retry_max_delay_ms": 600_000,
            "retry_jitter": True,
        }
        with running_worker(queue):
            assert wait_for_status(queue, job_id, "failed").failure_reason == "handler_error"
            letters = wait_until(lambda: queue.storage.list_jobs(JobFilter(job_type="dead")).jobs)
            assert wait_for_status(queue, letters[0].id, "completed").dead_letter is None
    [envelope] = seen
    assert envelope["original_id"] == job_id and envelope["payload"] == {"customer": "acme"}
    assert envelope["attempts"] == 2 and envelope["failure_reason"] == "handler_error"
    assert [e["error"] for e in envelope["error_history"]] == ["RuntimeError: cannot send to acme"] * 2


def test_a_key_value_the_schema_does_not_guarantee_is_refused_at_add(backend: str) -> None:
    schema = {"type": "object", "properties": {"customer": {"type": ["string", "integer"]}}, "required": ["customer"]}
    jobs = {"send": {"handler": _noop, "payload": schema, "concurrency": {"limit": 1, "key": "${payload.customer}"}}}
    with make_queue(backend, jobs) as queue:
        assert queue.get_job(queue.add("send", {"customer": 12})).concurrency_key == "send:12"
        with pytest.raises(PayloadValidationError):
            queue.add("send", {"customer": None})


def test_workflow_step_jobs_take_their_job_types_limits(backend: str) -> None:
    """A fan-out of 12 step jobs whose type allows 2 at once per key: never more run."""
    lock = threading.Lock()
    running = [0]
    peak = [0]

    def double(payload: Any) -> Any:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return {"n": payload["n"] * 2}

    n_payload = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    jobs = {"double": {"handler": double, "payload": n_payload, "concurrency": {"limit": 2}, "dead_letter": "dead"}}
    jobs["dead"] = {"handler": _noop}
    workflows = {
        "fan": {
            "input": {
                "type": "object",
                "properties": {"values": {"type": "array", "items": {"type": "integer"}}},
                "required": ["values"],
            },
            "steps": {"each": {"job": "double", "for_each": "${input.values}", "payload": {"n": "${item}"}}},
            "returns": {"doubled": "${steps.each.outputs[*].n}"},
        }
    }
    with make_queue(backend, jobs, workflows=workflows) as queue:
        run_id = queue.start_workflow("fan", {"values": list(range(12))})
        step_jobs = [queue.get_job(job_id) for job_id in queue.require_workflow(run_id).step("each").job_ids]
        assert {(j.concurrency_key, j.concurrency_limit) for j in step_jobs} == {("double", 2)}
        assert all(j.dead_letter is not None and j.dead_letter["job_type"] == "dead" for j in step_jobs)
        with running_worker(queue, concurrency=8):
            wait_until(lambda: queue.require_workflow(run_id).is_finished, 30)
        assert queue.require_workflow(run_id).output == {"doubled": [2 * n for n in range(12)]}
    assert peak[0] == 2


def test_a_workflow_step_job_that_fails_for_good_is_dead_lettered(backend: str) -> None:
    def boom(payload: Any) -> Any:
        raise RuntimeError("step broke")

    jobs = {
        "step": {"handler": boom, "max_attempts": 1, "dead_letter": "dead", "concurrency": {"limit": 1}},
        "dead": {"handler": _noop},
    }
    workflows = {"one": {"input": {"type": "object"}, "steps": {"only": {"job": "step", "payload": {}}}}}
    with make_queue(backend, jobs, workflows=workflows) as queue:
        run_id = queue.start_workflow("one", {})
        [job_id] = queue.require_workflow(run_id).step("only").job_ids
        with running_worker(queue):
            wait_until(lambda: queue.require_workflow(run_id).is_finished, 30)
            letters = wait_until(lambda: queue.storage.list_jobs(JobFilter(job_type="dead")).jobs)
            wait_for_status(queue, letters[0].id, "completed")
        assert letters[0].payload["original_id"] == job_id
        assert letters[0].payload["error_history"][0]["error"] == "RuntimeError: step broke"
        # its slot was given back: another job of the type starts
        other = queue.add("step", {})
        with running_worker(queue):
            wait_for_status(queue, other, "failed")
