"""SQLite side of unique jobs (``add_unique``), inside the backend's write transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from dqflow.storage.base import AddResult, NewJob, UniqueRule, is_duplicate

Insert = Callable[[sqlite3.Connection, Sequence[NewJob], float], list[AddResult]]


def add_unique(conn: sqlite3.Connection, insert: Insert, now: float, job: NewJob, rule: UniqueRule) -> AddResult:
    """``Storage.add_unique`` on ``conn`` (the write lock is held: check and insert are one step)."""
    row = conn.execute(
        "SELECT j.id, j.status, j.created_at FROM dqflow_unique_keys AS u JOIN dqflow_jobs AS j ON j.id = u.job_id"
        " WHERE u.key = ?",
        (rule.key,),
    ).fetchone()
    if row is not None and is_duplicate(rule, row[1], (now - row[2]) * 1000):
        return AddResult(int(row[0]), False)
    added = insert(conn, [job], now)[0]
    if added.created:
        conn.execute(
            "INSERT INTO dqflow_unique_keys (key, job_id) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET job_id = excluded.job_id",
            (rule.key, added.job_id),
        )
    return added
