"""The jobs of workflow steps, built the way ``Queue.add`` builds a job, minus its per-call work.

A step job's options come from its job type's declaration alone (no per-call
priority, delay, timeout, retry or key): everything but the payload, the tags,
the trace (``meta``) and the flow-control keys is the same for every job of a
type. ``StepJobs`` builds the first job of each type through the queue's full
path (``Queue.new_job``) and keeps those fields; every later job validates its
payload like ``add`` does and fills in only what differs. The runtime calls it
inside the atomic step that ends a step job, so it runs once per planned job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any

from dqflow.declaration.flow import flow_options
from dqflow.storage.base import NewJob

if TYPE_CHECKING:
    from dqflow.declaration import Declaration
    from dqflow.queue.queue import JobSpec

__all__ = ["StepJobs"]

_PER_JOB = frozenset(
    {
        "payload_json",
        "tags",
        "meta_json",  # "{}" unless the run is traced (then the job goes the full way)
        "workflow_run_id",
        "workflow_step",
        "workflow_item",
        "concurrency_key",
        "concurrency_limit",
        "rate_key",
        "rate_limit",
        "rate_window_ms",
    }
)
_PER_TYPE = tuple(f.name for f in fields(NewJob) if f.name not in _PER_JOB)


class StepJobs:
    """The ``JobFactory`` of a queue's workflows (see ``dqflow.workflows.runtime``)."""

    def __init__(
        self,
        declaration: Declaration,
        new_job: Callable[[JobSpec], NewJob],
        validate_payload: Callable[[str, Any], str],
    ) -> None:
        self._declaration = declaration
        self._new_job = new_job
        self._validate_payload = validate_payload
        self._per_type: dict[str, dict[str, Any]] = {}

    def __call__(
        self,
        job_type: str,
        payload: Any,
        tags: tuple[str, ...],
        trace: Mapping[str, str] | None,
        run_id: int | None,
        step: str,
        item: int | None,
    ) -> NewJob:
        """A validated step job (``ValidationFailed`` for a payload its schema refuses)."""
        from dqflow.queue.queue import JobSpec

        declared = self._declaration.job_types[job_type]
        merged = tuple(dict.fromkeys((*declared.tags, *tags)))
        shared = self._per_type.get(job_type)
        if shared is None or trace:  # the queue's full path (the first job of a type keeps its fixed fields)
            job = self._new_job(JobSpec(job_type, payload, tags=merged, meta=trace))
            if shared is None:
                self._per_type[job_type] = {name: getattr(job, name) for name in _PER_TYPE}
            return replace(job, workflow_run_id=run_id, workflow_step=step, workflow_item=item)
        payload_json = self._validate_payload(job_type, payload)
        return NewJob(
            **shared,
            payload_json=payload_json,
            tags=merged,
            workflow_run_id=run_id,
            workflow_step=step,
            workflow_item=item,
            **flow_options(declared, payload_json, None),
        )
