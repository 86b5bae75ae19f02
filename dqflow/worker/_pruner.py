"""The pruner: deletes finished jobs older than their type's ``retention`` window, the
history of jobs finished longer ago than ``defaults.retention.events``, and the flow-control
bookkeeping of keys no longer in use (idle concurrency slots, ended rate windows), in small batches.

Each pass asks storage for at most one batch (``BATCH`` jobs) per job type and
status with a window, so a pass is short and holds no long lock; a full batch
means more is waiting, and the maintenance loop comes back soon instead of at
the next interval. Every worker prunes; storage makes concurrent passes safe.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

from dqflow.declaration import Declaration
from dqflow.enums import JobStatus

__all__ = ["BATCH", "Pruner"]

BATCH = 500
"""Most jobs one storage call deletes."""


class PruneStore(Protocol):
    """The storage calls the pruner makes (``Storage`` has them)."""

    def delete_old_events(self, before: datetime, *, limit: int = 500) -> int: ...

    def delete_finished_jobs(
        self, statuses: Sequence[JobStatus], before: datetime, *, job_type: str | None = None, limit: int = 500
    ) -> int: ...

    def prune_flow_control(self, *, limit: int = 500) -> int: ...


class Pruner:
    """One pass at a time over the job types of ``declaration`` that declare a retention window."""

    def __init__(
        self, declaration: Declaration, store: PruneStore, *, now: Callable[[], datetime] | None = None
    ) -> None:
        self._store = store
        self._now = now or (lambda: datetime.now(UTC))
        self.plan: list[tuple[str, JobStatus, timedelta]] = [
            (name, JobStatus(status), timedelta(seconds=seconds))
            for name, spec in declaration.job_types.items()
            for status, seconds in spec.retention.windows().items()
        ]
        events = declaration.events_retention
        self.events_window = None if events is None else timedelta(seconds=events)
        #: whether a job type declares concurrency or rate limits (their keys leave bookkeeping)
        self.flow_control = any(
            spec.concurrency is not None or spec.rate_limit is not None or spec.group_concurrency is not None
            for spec in declaration.job_types.values()
        )
        #: flow-control rows (slots, rate windows) deleted so far
        self.flow_rows_pruned = 0

    @property
    def has_work(self) -> bool:
        """Whether anything is declared to prune."""
        return bool(self.plan) or self.events_window is not None or self.flow_control

    def prune_once(self) -> tuple[int, bool]:
        """Delete one batch per (type, status) at most, one batch of histories and one of unused
        flow-control rows; how many jobs were deleted, and whether more is left."""
        now = self._now()
        deleted, more = 0, False
        for job_type, status, window in self.plan:
            count = self._store.delete_finished_jobs([status], now - window, job_type=job_type, limit=BATCH)
            deleted += count
            more = more or count >= BATCH
        if self.events_window is not None:
            visited = self._store.delete_old_events(now - self.events_window, limit=BATCH)
            more = more or visited >= BATCH
        if self.flow_control:
            rows = self._store.prune_flow_control(limit=BATCH)
            self.flow_rows_pruned += rows
            more = more or rows >= BATCH
        return deleted, more
