"""Typed access to jobs and workflow runs.

``TypedJob[P, O]`` adds a ``P`` payload and gives a ``JobRef[O]``; ``TypedWorkflow[I, O]``
starts a run from an ``I`` input and gives a ``RunRef[O]``. ``dqflow codegen`` writes a
``Jobs`` class with one ``TypedJob`` per declared job type and a ``Workflows`` class with
one ``TypedWorkflow`` per workflow (docs/TYPING.md), so
``jobs.generate_report.add(GenerateReportPayload(...))`` is a ``JobRef[GenerateReportOutput]``
whose ``wait()`` returns the parsed output, and a misspelt name or a wrong payload is a
type error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from pydantic import BaseModel

from dqflow.errors import JobFailedError, WorkflowFailedError
from dqflow.queue import Queue

if TYPE_CHECKING:
    from dqflow.queue.queue import Duration
    from dqflow.record import JobRecord
    from dqflow.workflow_record import WorkflowRun

P = TypeVar("P", contravariant=True)
O = TypeVar("O", covariant=True)  # noqa: E741


@dataclass(frozen=True, slots=True)
class JobRef(Generic[O]):
    """A job added through a typed facade: its id, and its output as ``O`` once it completes."""

    queue: Queue
    id: int
    output_model: type[Any] | None = None

    def get(self) -> JobRecord:
        """The job's record now (``JobNotFoundError`` if it is gone)."""
        return self.queue.require_job(self.id)

    def wait(self, timeout: Duration | None = None) -> O:
        """Block until the job finishes; its output as ``O``. ``JobFailedError`` if it failed
        or was cancelled, ``WaitTimeoutError`` after ``timeout``, ``OutputParseError`` if
        the stored output does not fit ``O``."""
        return self._output(self.queue.wait(self.id, timeout))

    async def wait_async(self, timeout: Duration | None = None) -> O:
        """``wait`` for asyncio code (the event loop never blocks)."""
        return self._output(await self.queue.wait_async(self.id, timeout))

    def _output(self, record: JobRecord) -> O:
        if record.status.value != "completed":
            raise JobFailedError(record)
        return cast("O", _parsed(record, self.output_model))


class TypedJob(Generic[P, O]):
    """One job type with a typed payload ``P`` (a pydantic model, or JSON) and output ``O``."""

    def __init__(self, queue: Queue, job_type: str, output_model: type[Any] | None = None) -> None:
        self.queue = queue
        self.job_type = job_type
        self.output_model = output_model

    def add(
        self,
        payload: P,
        *,
        priority: int | None = None,
        run_at: datetime | None = None,
        delay: Duration | None = None,
        tags: Sequence[str] | None = None,
        idempotency_key: str | None = None,
        meta: Mapping[str, Any] | None = None,
        depends_on: Sequence[int | JobRef[Any]] | None = None,
    ) -> JobRef[O]:
        """Validate and enqueue (as ``Queue.add``); a reference to the job."""
        job_id = self.queue.add(
            self.job_type,
            _json(payload),
            priority=priority,
            run_at=run_at,
            delay=delay,
            tags=tags,
            idempotency_key=idempotency_key,
            meta=meta,
            depends_on=None if depends_on is None else [_id(d) for d in depends_on],
        )
        return JobRef(self.queue, job_id, self.output_model)

    async def add_async(self, payload: P, *, priority: int | None = None, delay: Duration | None = None) -> JobRef[O]:
        """``add`` for asyncio code (``Queue.add_async``)."""
        job_id = await self.queue.add_async(self.job_type, _json(payload), priority=priority, delay=delay)
        return JobRef(self.queue, job_id, self.output_model)

    def ref(self, job_id: int) -> JobRef[O]:
        """A reference to an existing job of this type (e.g. an id stored elsewhere)."""
        return JobRef(self.queue, job_id, self.output_model)


@dataclass(frozen=True, slots=True)
class RunRef(Generic[O]):
    """A workflow run started through a typed facade: its id, and its output as ``O`` once it completes."""

    queue: Queue
    id: int
    output_model: type[Any] | None = None

    def get(self) -> WorkflowRun:
        """The run now (``WorkflowRunNotFoundError`` if it is gone)."""
        return self.queue.require_workflow(self.id)

    def wait(self, timeout: Duration | None = None) -> O:
        """Block until the run finishes; its output as ``O``. ``WorkflowFailedError`` if it failed
        or was cancelled, ``WorkflowWaitTimeoutError`` after ``timeout``, ``OutputParseError`` if
        the stored output does not fit ``O``."""
        return self._output(self.queue.wait_workflow(self.id, timeout))

    async def wait_async(self, timeout: Duration | None = None) -> O:
        """``wait`` for asyncio code (the event loop never blocks)."""
        return self._output(await self.queue.wait_workflow_async(self.id, timeout))

    def _output(self, run: WorkflowRun) -> O:
        if run.status.value != "completed":
            raise WorkflowFailedError(run)
        return cast("O", _parsed(run, self.output_model))


class TypedWorkflow(Generic[P, O]):
    """One workflow with a typed input ``P`` (a pydantic model, or JSON) and output ``O``."""

    def __init__(self, queue: Queue, name: str, output_model: type[Any] | None = None) -> None:
        self.queue = queue
        self.name = name
        self.output_model = output_model

    def start(self, input: P, *, idempotency_key: str | None = None, tags: Sequence[str] | None = None) -> RunRef[O]:
        """Validate the input and start a run (as ``Queue.start_workflow``); a reference to it."""
        run_id = self.queue.start_workflow(self.name, _json(input), idempotency_key=idempotency_key, tags=tags)
        return RunRef(self.queue, run_id, self.output_model)

    def ref(self, run_id: int) -> RunRef[O]:
        """A reference to an existing run of this workflow (e.g. an id stored elsewhere)."""
        return RunRef(self.queue, run_id, self.output_model)


def _parsed(finished: JobRecord | WorkflowRun, model: type[Any] | None) -> Any:
    """The output of a completed job or run: parsed into ``model`` when it is a pydantic model."""
    if model is not None and issubclass(model, BaseModel):
        return finished.output_as(model)
    return finished.output


def _json(payload: Any) -> Any:
    """A model as the JSON it stands for (fields left unset stay absent), anything else as is."""
    if isinstance(payload, BaseModel):
        return payload.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return payload


def _id(dependency: int | JobRef[Any]) -> int:
    return dependency.id if isinstance(dependency, JobRef) else dependency
