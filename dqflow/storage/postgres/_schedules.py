"""PostgreSQL side of schedules: ``claim_tick``, ``schedule_states``, ``set_schedule_paused``.

``claim_tick`` runs in one transaction: ``lock_schedule.sql`` creates or locks the
schedule's row (so workers decide a tick one at a time), the tick's job goes in
through ``add_jobs`` on the same connection, and ``record_tick.sql`` moves the
last tick forward; all commit together.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from dqflow.storage.base import UNFINISHED_STATUSES, AddResult, NewJob, ScheduleState, TickResult, TickVerdict
from dqflow.storage.postgres._queries import Queries

Add = Callable[..., list[AddResult]]

_UNFINISHED = frozenset(status.value for status in UNFINISHED_STATUSES)


def state_of(row: Mapping[str, Any]) -> ScheduleState:
    """A ``dqflow_schedules`` row as a ``ScheduleState``."""
    last = row["last_tick"]
    return ScheduleState(
        name=row["name"],
        last_tick=None if last is None else last.astimezone(UTC),
        last_job_id=row["last_job_id"],
        paused=bool(row["paused"]),
    )


def claim_tick(
    conn: psycopg.Connection[Any],
    queries: Queries,
    add_jobs: Add,
    schedule: str,
    tick: datetime,
    job: NewJob | None,
    skip_while_unfinished: bool,
) -> TickResult:
    """``Storage.claim_tick`` on ``conn`` (the caller holds a transaction open)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(queries.lock_schedule, {"name": schedule})
        row = cur.fetchone()
        assert row is not None
        last = row["last_tick"]
        if last is not None and last >= tick:
            return TickResult(TickVerdict.TAKEN)
        job_id = row["last_job_id"]
        result: TickResult
        if row["paused"]:
            result = TickResult(TickVerdict.PAUSED)
        elif job is None:
            result = TickResult(TickVerdict.SKIPPED)
        elif skip_while_unfinished and row["last_status"] in _UNFINISHED:
            result = TickResult(TickVerdict.OVERLAP)
        else:
            added = add_jobs([job], connection=conn)[0]
            job_id = added.job_id
            result = TickResult(TickVerdict.ENQUEUED if added.created else TickVerdict.TAKEN, added.job_id)
        cur.execute(queries.record_tick, {"name": schedule, "tick": tick, "job_id": job_id})
        return result


def schedule_states(rows: Sequence[Mapping[str, Any]]) -> dict[str, ScheduleState]:
    """The rows of ``schedule_states.sql`` by name."""
    return {row["name"]: state_of(row) for row in rows}
