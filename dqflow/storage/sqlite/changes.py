"""SQLite's change feed: ``dqflow_job_changes``, filled by triggers (migration ``0003_change_feed.sql``).

One writer at a time means row ids are handed out in commit order, so reading
``id > cursor`` never skips a row that commits later.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from datetime import UTC, datetime

from dqflow.storage.changes import Change, int_cursor

_READ = """
SELECT c.id, c.job_id, j.job_type, c.kind, c.created_at, c.data, j.workflow_run_id
FROM dqflow_job_changes c JOIN dqflow_jobs j ON j.id = c.job_id
WHERE c.id > ? ORDER BY c.id LIMIT ?
"""
_NEWEST = "SELECT coalesce(max(id), 0) FROM dqflow_job_changes"


def change_cursor(conn: sqlite3.Connection) -> str:
    return str(conn.execute(_NEWEST).fetchone()[0])


def read_changes(conn: sqlite3.Connection, after: str, limit: int) -> list[Change]:
    rows = conn.execute(_READ, (int_cursor(after), max(1, limit))).fetchall()
    return [
        Change(
            cursor=str(row[0]),
            job_id=int(row[1]),
            job_type=str(row[2]),
            kind=str(row[3]),
            at=datetime.fromtimestamp(float(row[4]), UTC),
            data=json.loads(row[5]) if row[5] else {},
            workflow_run_id=row[6],
        )
        for row in rows
    ]


def wait_for_changes(conn: sqlite3.Connection, after: str, timeout: float, poll: float, stop: threading.Event) -> None:
    """Return once the feed has a row after ``after``, ``timeout`` passes or ``stop`` is set.

    Between checks only ``PRAGMA data_version`` is read (it changes when another
    connection commits): a few microseconds, no table access.
    """
    position = int_cursor(after)
    deadline = time.monotonic() + timeout
    while True:
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if int(conn.execute(_NEWEST).fetchone()[0]) > position:
            return
        while conn.execute("PRAGMA data_version").fetchone()[0] == version:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or stop.is_set():
                return
            time.sleep(min(poll, remaining))
