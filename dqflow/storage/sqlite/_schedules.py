"""SQLite side of schedules: ``claim_tick``, ``schedule_states``, ``set_schedule_paused``.

Each runs inside the backend's write transaction (``BEGIN IMMEDIATE``), so a tick's
check, its job's insert and the new last tick commit together, once for all workers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from dqflow.storage.base import (
    UNFINISHED_STATUSES,
    AddResult,
    NewJob,
    ScheduleState,
    TickResult,
    TickVerdict,
)

Insert = Callable[[sqlite3.Connection, Sequence[NewJob], float], list[AddResult]]

_UNFINISHED = tuple(status.value for status in UNFINISHED_STATUSES)


def _state(row: sqlite3.Row) -> ScheduleState:
    last = row["last_tick"]
    return ScheduleState(
        name=row["name"],
        last_tick=None if last is None else datetime.fromtimestamp(last, UTC),
        last_job_id=row["last_job_id"],
        paused=bool(row["paused"]),
    )


def claim_tick(
    conn: sqlite3.Connection,
    insert: Insert,
    now: float,
    schedule: str,
    tick: datetime,
    job: NewJob | None,
    skip_while_unfinished: bool,
) -> TickResult:
    """``Storage.claim_tick`` on ``conn`` (inside the caller's write transaction)."""
    tick_s = tick.timestamp()
    conn.execute(
        "INSERT INTO dqflow_schedules (name, updated_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING", (schedule, now)
    )
    row = conn.execute(
        "SELECT s.last_tick, s.last_job_id, s.paused, j.status FROM dqflow_schedules AS s"
        " LEFT JOIN dqflow_jobs AS j ON j.id = s.last_job_id WHERE s.name = ?",
        (schedule,),
    ).fetchone()
    if row["last_tick"] is not None and row["last_tick"] >= tick_s:
        return TickResult(TickVerdict.TAKEN)
    result: TickResult
    job_id = row["last_job_id"]
    if row["paused"]:
        result = TickResult(TickVerdict.PAUSED)
    elif job is None:
        result = TickResult(TickVerdict.SKIPPED)
    elif skip_while_unfinished and row["status"] in _UNFINISHED:
        result = TickResult(TickVerdict.OVERLAP)
    else:
        added = insert(conn, [job], now)[0]
        job_id = added.job_id
        result = TickResult(TickVerdict.ENQUEUED if added.created else TickVerdict.TAKEN, added.job_id)
    conn.execute(
        "UPDATE dqflow_schedules SET last_tick = ?, last_job_id = ?, updated_at = ? WHERE name = ?",
        (tick_s, job_id, now, schedule),
    )
    return result


def schedule_states(conn: sqlite3.Connection) -> dict[str, ScheduleState]:
    """Every stored schedule state, by name."""
    rows = conn.execute("SELECT name, last_tick, last_job_id, paused FROM dqflow_schedules").fetchall()
    return {row["name"]: _state(row) for row in rows}


def set_paused(conn: sqlite3.Connection, now: float, schedule: str, paused: bool) -> ScheduleState:
    """``Storage.set_schedule_paused`` on ``conn`` (inside the caller's write transaction)."""
    row = conn.execute(
        "INSERT INTO dqflow_schedules (name, paused, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at"
        " RETURNING name, last_tick, last_job_id, paused",
        (schedule, int(paused), now),
    ).fetchone()
    return _state(row)
