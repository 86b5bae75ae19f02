"""Typed access to jobs: ``TypedJob[P, O]`` adds a ``P`` payload and gives a ``JobRef[O]``.

``dqflow codegen`` writes a ``Jobs`` class with one ``TypedJob`` per declared job type
(docs/TYPING.md), so ``jobs.generate_report.add(GenerateReportPayload(...))`` is a
``JobRef[GenerateReportOutput]`` whose ``wait()`` returns the parsed output, and a
misspelt job type or a wrong payload is a type error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel

from dqflow.errors import JobFailedError
from dqflow.queue import Queue

if TYPE_CHECKING:
    from dqflow.queue.queue import Duration
    from dqflow.record import JobRecord

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
        model = self.output_model
        if model is not None and issubclass(model, BaseModel):
            return record.output_as(model)  # type: ignore[return-value]
        return record.output  # type: ignore[no-any-return]


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


def _json(payload: Any) -> Any:
    """A model as the JSON it stands for (fields left unset stay absent), anything else as is."""
    if isinstance(payload, BaseModel):
        return payload.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return payload


def _id(dependency: int | JobRef[Any]) -> int:
    return dependency.id if isinstance(dependency, JobRef) else dependency
