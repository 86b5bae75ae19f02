"""The change feed: what happened to jobs, in order, readable from any process.

Every backend keeps a capped, ordered log of the changes a live view needs:
the job events (processing, completed, failed, retried, cancelled, edited,
reclaimed; ``added`` is left out) and the progress and output writes, which
record no event. Writers fill it in the same atomic step as the change itself
(SQLite and PostgreSQL triggers, the Redis scripts), so it covers every worker
process on every machine. A reader keeps a cursor and asks for what came after
it; ``wait_for_changes`` blocks until something may have (PostgreSQL
LISTEN/NOTIFY, a Redis stream read, a SQLite ``data_version`` check).

The log keeps the newest ``CHANGES_KEPT`` entries (about: trimming is lazy);
a reader that falls further behind misses the oldest ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

CHANGES_KEPT = 10_000

PROGRESS = "progress"
OUTPUT = "output"


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of the feed.

    ``kind`` is ``progress``, ``output`` or an event type (``completed``,
    ``failed``, ...). ``data`` is the event's data, ``{"progress": n}`` for a
    progress write, and empty for an output write (read the job for the
    output: a feed entry never copies it). ``cursor`` is opaque and ordered:
    pass it back as ``after`` to read what came next. ``workflow_run_id`` is the
    run of a workflow step job (None for a plain job): follow one run's jobs by it.
    """

    cursor: str
    job_id: int
    job_type: str
    kind: str
    at: datetime
    data: dict[str, Any] = field(default_factory=dict)
    workflow_run_id: int | None = None


def int_cursor(after: str) -> int:
    """A SQL backend's cursor (the feed row id) from its text; ``ValueError`` names the problem."""
    try:
        value = int(after)
    except (TypeError, ValueError):
        raise ValueError(f"invalid change cursor {after!r}: expected a number") from None
    if value < 0:
        raise ValueError(f"invalid change cursor {after!r}: must not be negative")
    return value
