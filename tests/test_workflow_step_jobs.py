"""Step jobs built by the runtime's factory (queue/step_jobs.py) are the jobs ``Queue.new_job`` builds."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from dqflow import Declaration, Queue
from dqflow.errors import PayloadValidationError
from dqflow.queue.queue import JobSpec
from dqflow.queue.step_jobs import StepJobs


def _noop(payload: Any) -> Any:
    return payload


def _queue() -> Queue:
    jobs = {
        "send": {
            "handler": _noop,
            "payload": {"type": "object", "required": ["customer"], "properties": {"customer": {"type": "string"}}},
            "priority": 3,
            "max_attempts": 5,
            "timeout": "2m",
            "tags": ["mail"],
            "retry": {"delay": "3s", "backoff": "fixed", "jitter": False},
            "concurrency": {"limit": 2, "key": "${payload.customer}"},
            "rate_limit": {"limit": 10, "per": "1s", "key": "c-${payload.customer}"},
            "dead_letter": "parked",
        },
        "parked": {"handler": _noop},
    }
    return Queue(Declaration.build(jobs), backend="sqlite:///:memory:")


@pytest.mark.parametrize("trace", [None, {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}])
def test_every_step_job_is_the_job_new_job_builds(trace: dict[str, str] | None) -> None:
    with _queue() as queue:
        factory = StepJobs(queue.declaration, queue.new_job, queue.validate_payload)
        for n, customer in enumerate(["acme", "zeta", "acme"]):  # the first one fills the per-type cache
            payload = {"customer": customer}
            built = factory("send", payload, ("run-tag", "mail"), trace, 7, "s", n)
            expected = queue.new_job(JobSpec("send", payload, tags=("mail", "run-tag"), meta=trace))
            assert built == replace(expected, workflow_run_id=7, workflow_step="s", workflow_item=n)


def test_a_payload_its_schema_refuses_raises_after_the_first_job_too() -> None:
    with _queue() as queue:
        factory = StepJobs(queue.declaration, queue.new_job, queue.validate_payload)
        factory("send", {"customer": "acme"}, (), None, 1, "s", None)
        with pytest.raises(PayloadValidationError, match="customer"):
            factory("send", {"customer": 1}, (), None, 1, "s", None)


def test_a_step_job_set_slot_by_slot_is_the_job_new_jobs_init_builds() -> None:
    from dataclasses import fields

    from dqflow.queue.step_jobs import _new_job
    from dqflow.storage.base import NewJob

    assert not hasattr(NewJob, "__post_init__")  # __init__ only sets the fields: the slots may be set directly
    values = [f"value-{field.name}" for field in fields(NewJob)]
    built = _new_job(values)
    assert built == NewJob(*values) and hash(built) == hash(NewJob(*values))
    with pytest.raises(AttributeError):
        built.payload_json = "{}"  # type: ignore[misc]  # still frozen
