"""Deleting old finished jobs on demand (``dqflow cleanup``), in batches, or counting them (a dry run);
and the flow-control bookkeeping of keys no longer in use."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from dqflow.enums import JobStatus
from dqflow.storage.base import FINISHED_STATUSES, finished_statuses

if TYPE_CHECKING:
    from dqflow.queue.queue import Queue

__all__ = ["BATCH", "cleanup", "prune_flow_control"]

BATCH = 500
"""Jobs per delete: each batch is one short transaction or script."""


def cleanup(
    queue: Queue,
    older_than: float,
    *,
    statuses: Sequence[JobStatus | str] = (),
    job_type: str | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> dict[str, int]:
    """Delete (or, with ``dry_run``, count) jobs in ``statuses`` (default: every finished
    status) that finished more than ``older_than`` seconds ago, with their events;
    how many per status. A live status raises ``ValueError`` and nothing changes."""
    chosen = finished_statuses(statuses) if statuses else FINISHED_STATUSES
    before = (datetime.now(UTC) if now is None else now) - timedelta(seconds=older_than)
    storage = queue.storage
    counts: dict[str, int] = {}
    for status in chosen:
        if dry_run:
            counts[status.value] = storage.count_finished_jobs([status], before, job_type=job_type)
            continue
        total = 0
        while True:
            deleted = storage.delete_finished_jobs([status], before, job_type=job_type, limit=BATCH)
            total += deleted
            if deleted < BATCH:
                break
        counts[status.value] = total
    return counts


def prune_flow_control(queue: Queue) -> int:
    """Delete the flow-control bookkeeping of keys not in use (concurrency slots no job holds,
    rate windows that have ended), in batches; how many rows (Redis: entries) were deleted."""
    total = 0
    while True:
        deleted = queue.storage.prune_flow_control(limit=BATCH)
        total += deleted
        if deleted < BATCH:
            return total
