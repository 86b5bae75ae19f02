"""SQLite side of clean-up: ``delete_finished_jobs`` and ``count_finished_jobs``.

Finished jobs are found by finish time through the partial index ``dqflow_jobs_finished``
(migration 0007), whose expression and condition the statements repeat word for word
so SQLite uses it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from dqflow.enums import JobStatus

_FINISHED_AT = "coalesce(completed_at, cancelled_at, last_failed_at)"
_MATCH = f"""
FROM dqflow_jobs AS j
WHERE status IN ('completed', 'failed', 'cancelled') AND {_FINISHED_AT} < ?
  AND status IN ({{statuses}}){{job_type}}
  AND NOT EXISTS (
      SELECT 1 FROM dqflow_job_dependencies AS d JOIN dqflow_jobs AS w ON w.id = d.job_id
      WHERE d.depends_on_id = j.id AND w.status = 'waiting')
"""


def _where(statuses: Sequence[JobStatus], before: datetime, job_type: str | None) -> tuple[str, list[Any]]:
    sql = _MATCH.format(
        statuses=", ".join("?" * len(statuses)), job_type="" if job_type is None else " AND job_type = ?"
    )
    params: list[Any] = [before.timestamp(), *(status.value for status in statuses)]
    if job_type is not None:
        params.append(job_type)
    return sql, params


def delete_finished(
    conn: sqlite3.Connection, statuses: Sequence[JobStatus], before: datetime, job_type: str | None, limit: int
) -> int:
    """Delete up to ``limit`` matching jobs with their events, links, unique keys and tokens (in the
    caller's transaction)."""
    if not statuses or limit <= 0:
        return 0
    where, params = _where(statuses, before, job_type)
    ids = [row[0] for row in conn.execute(f"SELECT id {where} ORDER BY {_FINISHED_AT} LIMIT ?", (*params, limit))]
    if not ids:
        return 0
    marks = ", ".join("?" * len(ids))
    conn.execute(f"DELETE FROM dqflow_job_events WHERE job_id IN ({marks})", ids)
    conn.execute(f"DELETE FROM dqflow_job_dependencies WHERE job_id IN ({marks})", ids)
    conn.execute(f"DELETE FROM dqflow_job_dependencies WHERE depends_on_id IN ({marks})", ids)
    conn.execute(f"DELETE FROM dqflow_unique_keys WHERE job_id IN ({marks})", ids)
    conn.execute(f"DELETE FROM dqflow_tokens WHERE job_id IN ({marks})", ids)
    conn.execute(f"DELETE FROM dqflow_jobs WHERE id IN ({marks})", ids)
    return len(ids)


def count_finished(
    conn: sqlite3.Connection, statuses: Sequence[JobStatus], before: datetime, job_type: str | None
) -> int:
    """How many jobs ``delete_finished`` would delete with no limit."""
    if not statuses:
        return 0
    where, params = _where(statuses, before, job_type)
    return int(conn.execute(f"SELECT count(*) {where}", params).fetchone()[0])


def delete_old_events(conn: sqlite3.Connection, before: datetime, limit: int) -> int:
    """Delete the events of up to ``limit`` jobs finished before ``before``, after the kept position."""
    row = conn.execute("SELECT position FROM dqflow_cleanup_state WHERE name = 'events'").fetchone()
    after = float("-inf") if row is None else float(row[0])
    rows = conn.execute(
        f"SELECT id, {_FINISHED_AT} FROM dqflow_jobs"
        f" WHERE status IN ('completed', 'failed', 'cancelled') AND {_FINISHED_AT} < ? AND {_FINISHED_AT} > ?"
        f" ORDER BY {_FINISHED_AT} LIMIT ?",
        (before.timestamp(), after, limit),
    ).fetchall()
    if not rows:
        return 0
    ids = [row[0] for row in rows]
    conn.execute(f"DELETE FROM dqflow_job_events WHERE job_id IN ({', '.join('?' * len(ids))})", ids)
    conn.execute(
        "INSERT INTO dqflow_cleanup_state (name, position) VALUES ('events', ?)"
        " ON CONFLICT (name) DO UPDATE SET position = max(position, excluded.position)",
        (rows[-1][1],),
    )
    return len(ids)
