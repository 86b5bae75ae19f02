"""PostgreSQL side of schedules (``claim_tick``, ``schedule_states``, ``set_schedule_paused``) and unique jobs
(``add_unique``).

``claim_tick`` runs in one transaction: ``lock_schedule.sql`` creates or locks the
schedule's row (so workers decide a tick one at a time), the tick's job goes in
through ``add_jobs`` on the same connection, and ``record_tick.sql`` moves the
last tick forward; all commit together. ``add_unique`` works alike: the unique key's row
(``lock_unique_key.sql``) is the lock, the job goes in through ``add_jobs``, and
``set_unique_key.sql`` records it as the key's newest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from dqflow.storage.base import (
    UNFINISHED_STATUSES,
    AddResult,
    NewJob,
    ScheduleState,
    TickResult,
    TickVerdict,
    UniqueRule,
    is_duplicate,
)
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
        elif skip_while_unfinished and _job_state(cur, queries, job_id)[0] in _UNFINISHED:
            result = TickResult(TickVerdict.OVERLAP)
        else:
            added = add_jobs([job], connection=conn)[0]
            job_id = added.job_id
            result = TickResult(TickVerdict.ENQUEUED if added.created else TickVerdict.TAKEN, added.job_id)
        cur.execute(queries.record_tick, {"name": schedule, "tick": tick, "job_id": job_id})
        return result


def _job_state(cur: psycopg.Cursor[Any], queries: Queries, job_id: int | None) -> tuple[str | None, float]:
    """Status and age (ms) of job ``job_id`` (None, 0 when there is none)."""
    if not job_id:
        return None, 0.0
    cur.execute(queries.job_status_age, {"job_id": job_id})
    row = cur.fetchone()
    return (None, 0.0) if row is None else (row["status"], float(row["age_ms"]))


def schedule_states(rows: Sequence[Mapping[str, Any]]) -> dict[str, ScheduleState]:
    """The rows of ``schedule_states.sql`` by name."""
    return {row["name"]: state_of(row) for row in rows}


def add_unique(
    conn: psycopg.Connection[Any], queries: Queries, add_jobs: Add, job: NewJob, rule: UniqueRule
) -> AddResult:
    """``Storage.add_unique`` on ``conn`` (the caller holds a transaction open; the key's row is its lock)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(queries.lock_unique_key, {"key": rule.key})
        row = cur.fetchone()
        assert row is not None
        status, age_ms = _job_state(cur, queries, row["job_id"])
        if status is not None and is_duplicate(rule, status, age_ms):
            return AddResult(int(row["job_id"]), False)
        added = add_jobs([job], connection=conn)[0]
        if added.created:
            cur.execute(queries.set_unique_key, {"key": rule.key, "job_id": added.job_id})
        return added
