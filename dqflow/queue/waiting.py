"""Waiting for a job or a workflow run to finish, woken by the change feed.

``WaitMethods`` is mixed into ``Queue``. A wait subscribes to the queue's
``ChangeFeed`` before its first read, then sleeps until a change of its job (or
of a step job of its run) arrives: PostgreSQL's NOTIFY, a Redis stream read or a
SQLite ``data_version`` check wakes it, not a poll of the record. It still reads
the record every ``WAIT_RECHECK_S`` on its own, so a wait ends even when the feed
is unreachable for a while or trimmed past it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Generic, TypeVar

from dqflow.durations import bounded_duration
from dqflow.errors import WaitTimeoutError, WorkflowWaitTimeoutError
from dqflow.queue.feed import ChangeFeed

if TYPE_CHECKING:
    from dqflow.record import JobRecord
    from dqflow.storage import Storage
    from dqflow.storage.changes import Change
    from dqflow.workflow_record import WorkflowRun

Duration = float | int | str | timedelta
Finished = TypeVar("Finished", "JobRecord", "WorkflowRun")

WAIT_RECHECK_S = 1.0
"""Longest time a wait goes without reading its record (a fallback: the feed wakes it first)."""


class WaitMethods:
    """``Queue.wait`` / ``wait_async`` and ``wait_workflow`` / ``wait_workflow_async``."""

    storage: Storage
    _feed: ChangeFeed | None = None

    def require_job(self, job_id: int) -> JobRecord:  # pragma: no cover - Queue's
        raise NotImplementedError

    def require_workflow(self, run_id: int) -> WorkflowRun:  # pragma: no cover - WorkflowMethods'
        raise NotImplementedError

    @property
    def changes(self) -> ChangeFeed:
        """The queue's one follower of the storage's change feed (started by its first subscriber)."""
        if self._feed is None:
            self._feed = ChangeFeed(self.storage)
        return self._feed

    def _close_feed(self) -> None:
        if self._feed is not None:
            self._feed.close()

    def wait(self, job_id: int, timeout: Duration | None = None) -> JobRecord:
        """Block until the job is completed, failed or cancelled; return its record.

        ``timeout`` (seconds, ``"30s"``, a ``timedelta``; None waits for ever) ends
        the wait with ``WaitTimeoutError``; ``JobNotFoundError`` for an unknown id.
        A failed attempt that will be retried is not the end: it keeps waiting.
        """
        return self._wait(self._job_target(int(job_id)), timeout)

    async def wait_async(self, job_id: int, timeout: Duration | None = None) -> JobRecord:
        """``wait`` for asyncio code: reads run on a thread, the event loop never blocks."""
        return await self._wait_async(self._job_target(int(job_id)), timeout)

    def wait_workflow(self, run_id: int, timeout: Duration | None = None) -> WorkflowRun:
        """Block until the workflow run is completed, failed or cancelled; return it.

        ``WorkflowWaitTimeoutError`` when ``timeout`` passes first (the run goes on);
        ``WorkflowRunNotFoundError`` for an unknown id."""
        return self._wait(self._run_target(int(run_id)), timeout)

    async def wait_workflow_async(self, run_id: int, timeout: Duration | None = None) -> WorkflowRun:
        """``wait_workflow`` for asyncio code."""
        return await self._wait_async(self._run_target(int(run_id)), timeout)

    def _job_target(self, job_id: int) -> _Target[JobRecord]:
        return _Target(
            lambda: self.require_job(job_id),
            lambda change: change.job_id == job_id,
            lambda limit, record: WaitTimeoutError(job_id, limit, record.status.value),
        )

    def _run_target(self, run_id: int) -> _Target[WorkflowRun]:
        return _Target(
            lambda: self.require_workflow(run_id),
            lambda change: change.workflow_run_id == run_id,
            lambda limit, run: WorkflowWaitTimeoutError(run_id, limit, run.status.value),
        )

    def _wait(self, target: _Target[Finished], timeout: Duration | None) -> Finished:
        deadline, limit = _deadline(timeout)
        with self.changes.watch(target.wanted) as watch:
            while True:
                current = target.read()
                if current.is_finished:
                    return current
                watch.wait(_pause(deadline, target, limit, current))

    async def _wait_async(self, target: _Target[Finished], timeout: Duration | None) -> Finished:
        deadline, limit = _deadline(timeout)
        watch = await asyncio.to_thread(self.changes.watch, target.wanted)
        with watch:
            while True:
                current = await asyncio.to_thread(target.read)
                if current.is_finished:
                    return current
                await watch.wait_async(_pause(deadline, target, limit, current))


@dataclass(frozen=True, slots=True)
class _Target(Generic[Finished]):
    """What one wait is for: how to read it, which changes concern it, its timeout error."""

    read: Callable[[], Finished]
    wanted: Callable[[Change], bool]
    timed_out: Callable[[float, Finished], Exception]


def _deadline(timeout: Duration | None) -> tuple[float | None, float]:
    """(monotonic deadline or None, the timeout in seconds)."""
    if timeout is None:
        return None, 0.0
    try:
        seconds = bounded_duration(timeout)
    except ValueError as exc:
        raise ValueError(f"timeout: {exc}") from None
    if seconds < 0:
        raise ValueError(f"timeout must not be negative, got {timeout!r}")
    return time.monotonic() + seconds, seconds


def _pause(deadline: float | None, target: _Target[Finished], limit: float, current: Finished) -> float:
    """How long to sleep before reading again; raises the target's timeout error when time is up."""
    if deadline is None:
        return WAIT_RECHECK_S
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise target.timed_out(limit, current)
    return min(WAIT_RECHECK_S, remaining)
