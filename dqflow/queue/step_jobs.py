"""The jobs of workflow steps, built the way ``Queue.add`` builds a job, minus its per-call work.

A step job's options come from its job type's declaration alone (no per-call
priority, delay, timeout, retry or key): everything but the payload, the tags,
the trace (``meta``) and the flow-control keys is the same for every job of a
type. ``StepJobs`` builds the first job of each type through the queue's full
path (``Queue.new_job``) and keeps those fields; every later job validates its
payload like ``add`` does and fills in only what differs. The runtime calls it
inside the atomic step that ends a step job, so it runs once per planned job.

A later job's payload is encoded once (``json_values.strict_text``) and checked
with the type's compiled schema; a payload that any of it doubts goes through
the queue's whole check (``Queue.validate_payload``), whose error it raises.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from dqflow.declaration.flow import flow_options
from dqflow.json_values import strict_text
from dqflow.storage.base import NewJob

if TYPE_CHECKING:
    from dqflow.declaration import Declaration
    from dqflow.declaration.schemas import SchemaValidator
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
_FIELDS = tuple(f.name for f in fields(NewJob))
_PER_TYPE = tuple(name for name in _FIELDS if name not in _PER_JOB)
_DEFAULTS = NewJob("", "")  # the per-job fields a step job does not set: their defaults
_AT = {name: index for index, name in enumerate(_FIELDS)}
_PAYLOAD, _TAGS, _RUN, _STEP, _ITEM = (
    _AT[name] for name in ("payload_json", "tags", "workflow_run_id", "workflow_step", "workflow_item")
)
_SLOT_SETTERS = tuple(getattr(NewJob, name).__set__ for name in _FIELDS)
"""``NewJob``'s slots, set through their descriptors: its frozen ``__init__`` goes through
``object.__setattr__`` for each field, twice as slow (it does nothing else: no ``__post_init__``)."""


def _new_job(values: list[Any], setters: tuple[Callable[[NewJob, Any], None], ...] = _SLOT_SETTERS) -> NewJob:
    """``NewJob(*values)``: every field, in order."""
    job = object.__new__(NewJob)
    for set_slot, value in zip(setters, values):  # noqa: B905 - one value per field, always
        set_slot(job, value)
    return job


@dataclass(frozen=True, slots=True)
class _TypeTemplate:
    """What every later step job of a type shares: ``NewJob``'s fields in order (the per-job
    ones at their defaults), the type's tags, whether its flow control reads the payload,
    its payload schema and the payload size limit."""

    values: tuple[Any, ...]
    tags: tuple[str, ...]
    flow_controlled: bool
    schema: SchemaValidator | None
    limit: int


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
        self._per_type: dict[str, _TypeTemplate] = {}

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
        template = self._per_type.get(job_type)
        if template is None or trace:
            return self._full(job_type, payload, tags, trace, run_id, step, item)
        payload_json = strict_text(payload)
        if (
            payload_json is None
            or len(payload_json) * 4 > template.limit  # only then can the UTF-8 size be over it
            or (template.schema is not None and not template.schema.is_valid(payload))
        ):
            payload_json = self._validate_payload(job_type, payload)  # the whole check: its error, or the same text
        values = list(template.values)
        values[_PAYLOAD] = payload_json
        values[_TAGS] = tuple(dict.fromkeys((*template.tags, *tags))) if tags else template.tags
        values[_RUN], values[_STEP], values[_ITEM] = run_id, step, item
        if template.flow_controlled:
            for name, value in flow_options(self._declaration.job_types[job_type], payload_json, None).items():
                values[_AT[name]] = value
        return _new_job(values)

    def _full(
        self,
        job_type: str,
        payload: Any,
        tags: tuple[str, ...],
        trace: Mapping[str, str] | None,
        run_id: int | None,
        step: str,
        item: int | None,
    ) -> NewJob:
        """The queue's full path (the first job of a type keeps its fixed fields for the later ones)."""
        from dqflow.queue.queue import JobSpec

        declared = self._declaration.job_types[job_type]
        merged = tuple(dict.fromkeys((*declared.tags, *tags)))
        job = self._new_job(JobSpec(job_type, payload, tags=merged, meta=trace))
        if job_type not in self._per_type:
            fixed = {name: getattr(job, name) for name in _PER_TYPE}
            values = tuple(fixed.get(name, getattr(_DEFAULTS, name)) for name in _FIELDS)
            flow_controlled = declared.concurrency is not None or declared.rate_limit is not None
            self._per_type[job_type] = _TypeTemplate(
                values,
                tuple(dict.fromkeys(declared.tags)),
                flow_controlled,
                declared.payload_schema,
                self._declaration.limits.max_payload_bytes,
            )
        return replace(job, workflow_run_id=run_id, workflow_step=step, workflow_item=item)
