"""SQLite's worker registry (``dqflow_workers``, migration 0009): beat, remove, list."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime

from dqflow.storage.base import WORKER_FORGET_AFTER_S, WorkerInfo

_COLUMNS = "worker_id, host, pid, started_at, last_seen, concurrency, job_types"


def beat(conn: sqlite3.Connection, worker: WorkerInfo) -> None:
    """Upsert ``worker`` seen now and prune the long-unseen (inside the caller's write)."""
    now = time.time()
    conn.execute(
        f"INSERT OR REPLACE INTO dqflow_workers ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            worker.worker_id,
            worker.host,
            worker.pid,
            worker.started_at.timestamp(),
            now,
            worker.concurrency,
            json.dumps(list(worker.job_types)),
        ),
    )
    conn.execute("DELETE FROM dqflow_workers WHERE last_seen < ?", (now - WORKER_FORGET_AFTER_S,))


def remove(conn: sqlite3.Connection, worker_id: str) -> None:
    """Drop a worker's row (inside the caller's write)."""
    conn.execute("DELETE FROM dqflow_workers WHERE worker_id = ?", (worker_id,))


def listed(conn: sqlite3.Connection) -> list[WorkerInfo]:
    """Every registered worker, the most recently seen first."""
    rows = conn.execute(f"SELECT {_COLUMNS} FROM dqflow_workers ORDER BY last_seen DESC, worker_id").fetchall()
    return [
        WorkerInfo(
            worker_id=row[0],
            host=row[1],
            pid=int(row[2]),
            started_at=datetime.fromtimestamp(row[3], UTC),
            last_seen=datetime.fromtimestamp(row[4], UTC),
            concurrency=int(row[5]),
            job_types=tuple(json.loads(row[6])),
        )
        for row in rows
    ]
