"""One attempt of a job while this worker holds it, and how it ended."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dqflow.record import JobRecord
from dqflow.storage import Completion, Failure, Lease, Wait
from dqflow.worker.context import JobContext

if TYPE_CHECKING:
    from opentelemetry.trace import Span


@dataclass(eq=False)
class Attempt:
    """A claimed job being run: its record (as claimed), its ``ctx`` and how the run is going."""

    job: JobRecord
    ctx: JobContext
    task: asyncio.Future[Any] | None = None  # an async handler's task, to cancel it
    timer: asyncio.TimerHandle | None = None  # fires at the job's timeout
    settled: bool = False  # the attempt's outcome is decided: later results of its handler are ignored
    holds_slot: bool = True  # False once its slot is free (an abandoned task holds none)
    started_at: float = 0.0  # time.monotonic() when its handler started
    on_thread: bool = False  # a plain sync handler: a handler thread may take it from the buffer itself
    span: Span | None = None  # its ``dqflow.run`` span, when tracing is on

    @property
    def lease(self) -> Lease:
        return Lease(self.job.id, self.job.lease_token)


@dataclass(frozen=True, slots=True)
class Settled:
    """How an attempt ended, ready to write: its outcome, and what listeners are told about it."""

    attempt: Attempt
    outcome: Completion | Failure | Wait
    output: Any = None  # completed: the output stored (for ``job:completed``)
    exception: BaseException | None = None  # failed: what the handler raised, or why it failed
