"""SQLite flow control: which ready jobs a claim may take when some are limited.

SQLite has one writer, so everything here runs inside the claim's write transaction
and cannot go stale: a concurrency key's processing jobs are counted through the
partial index ``dqflow_jobs_concurrency_processing`` (any change that takes a job out
of processing frees its slot by itself), and a rate key's starts in its current
fixed window are kept in ``dqflow_rate_windows``.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Sequence
from typing import Any

ANY_LIMITED_PENDING = (
    "SELECT 1 FROM dqflow_jobs INDEXED BY dqflow_jobs_limited_pending"
    " WHERE status = 'pending' AND (concurrency_key IS NOT NULL OR rate_key IS NOT NULL) LIMIT 1"
)
"""A row when some pending job has a concurrency or rate key (none: the plain claim will do)."""

NOT_HELD_BACK = (
    "(c.concurrency_key IS NULL OR (SELECT count(*) FROM dqflow_jobs AS p"
    " INDEXED BY dqflow_jobs_concurrency_processing"
    " WHERE p.status = 'processing' AND p.concurrency_key = c.concurrency_key) < c.concurrency_limit)"
)
"""SQL (jobs aliased ``c``): true unless the job's concurrency key has all its slots taken."""

NEXT_DUE = (
    "SELECT min(CASE WHEN w.key IS NULL THEN c.run_at ELSE max(c.run_at, w.window_end) END)"
    " FROM dqflow_jobs AS c LEFT JOIN dqflow_rate_windows AS w"
    " ON w.key = c.rate_key AND w.window_end > ? AND w.starts >= c.rate_limit"
    f" WHERE c.status = 'pending' AND {NOT_HELD_BACK}"
)
"""SQL: when the first pending job may start (its run_at, or the end of its full rate
window), leaving out jobs whose concurrency slots are all taken; one parameter, now."""


class _Counts:
    """Slots and window starts taken so far, as the claim picks jobs."""

    def __init__(self, conn: sqlite3.Connection, now: float) -> None:
        self.conn = conn
        self.now = now
        rows = conn.execute(
            "SELECT concurrency_key, count(*), max(concurrency_limit) FROM dqflow_jobs"
            " INDEXED BY dqflow_jobs_concurrency_processing"
            " WHERE status = 'processing' AND concurrency_key IS NOT NULL GROUP BY concurrency_key"
        ).fetchall()
        self.active = {key: count for key, count, _ in rows}
        self.full_slots = {key for key, count, limit in rows if count >= limit}
        windows = conn.execute(
            "SELECT key, window_end, starts, lim FROM dqflow_rate_windows WHERE window_end > ?", (now,)
        ).fetchall()
        self.windows = {key: (end, starts) for key, end, starts, _ in windows}
        self.full_windows = {key for key, _, starts, limit in windows if starts >= limit}
        self.limits: dict[str, int] = {}

    def _window(self, key: str, window_ms: int) -> tuple[float, int]:
        window = self.windows.get(key)
        if window is None or window[0] <= self.now:
            window_s = window_ms / 1000
            window = (math.floor(self.now / window_s) * window_s + window_s, 0)
            self.windows[key] = window
        return window

    def admit(self, key: str | None, limit: int | None, rate_key: str | None, rate: int | None, ms: int | None) -> bool:
        """Take a slot and a start for one job if both are free (closing what fills up)."""
        if rate_key is not None and rate is not None and ms is not None:
            end, starts = self._window(rate_key, ms)
            if starts >= rate:
                self.full_windows.add(rate_key)
                return False
        if key is not None and limit is not None and self.active.get(key, 0) >= limit:
            self.full_slots.add(key)
            return False
        if rate_key is not None and rate is not None:
            end, starts = self.windows[rate_key]
            self.windows[rate_key] = (end, starts + 1)
            self.limits[rate_key] = rate
            if starts + 1 >= rate:
                self.full_windows.add(rate_key)
        if key is not None and limit is not None:
            self.active[key] = self.active.get(key, 0) + 1
            if self.active[key] >= limit:
                self.full_slots.add(key)
        return True

    def save_windows(self) -> None:
        """Write the windows this claim counted starts in."""
        if self.limits:
            self.conn.executemany(
                "INSERT INTO dqflow_rate_windows (key, window_end, starts, lim) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET window_end = excluded.window_end, starts = excluded.starts,"
                " lim = excluded.lim",
                [(key, *self.windows[key], limit) for key, limit in self.limits.items()],
            )


def pick_limited(
    conn: sqlite3.Connection, now: float, type_clause: str, job_types: Sequence[str], limit: int
) -> list[int]:
    """Ids of up to ``limit`` ready jobs in claim order, none over its key's limit or window.

    Full keys are left out by the query, so a blocked key does not hold back the jobs
    behind it; a key that fills up within the batch joins them and the query is asked
    again for the rest (each round either fills the batch or closes a key).
    """
    counts = _Counts(conn, now)
    picked: list[int] = []
    while len(picked) < limit:
        want = limit - len(picked)
        closed = len(counts.full_slots) + len(counts.full_windows)
        params: list[Any] = [
            now,
            *job_types,
            json.dumps(sorted(counts.full_slots)),
            json.dumps(sorted(counts.full_windows)),
            json.dumps(picked),
            want,
        ]
        rows = conn.execute(
            "SELECT id, concurrency_key, concurrency_limit, rate_key, rate_limit, rate_window_ms FROM dqflow_jobs"
            f" INDEXED BY dqflow_jobs_ready WHERE status = 'pending' AND run_at <= ?{type_clause}"
            " AND (concurrency_key IS NULL OR concurrency_key NOT IN (SELECT value FROM json_each(?)))"
            " AND (rate_key IS NULL OR rate_key NOT IN (SELECT value FROM json_each(?)))"
            " AND id NOT IN (SELECT value FROM json_each(?))"
            " ORDER BY priority DESC, run_at, id LIMIT ?",
            params,
        ).fetchall()
        for job_id, key, key_limit, rate_key, rate, window_ms in rows:
            if counts.admit(key, key_limit, rate_key, rate, window_ms):
                picked.append(job_id)
        if len(rows) < want or len(counts.full_slots) + len(counts.full_windows) == closed:
            break
    counts.save_windows()
    return picked


def prune_windows(conn: sqlite3.Connection, now: float, limit: int) -> int:
    """Delete up to ``limit`` rate windows that ended by ``now`` (read under the write lock, as
    the claim reads its clock): a claim that finds no row starts a fresh window, as it would."""
    if limit <= 0:
        return 0
    cursor = conn.execute(
        "DELETE FROM dqflow_rate_windows WHERE key IN"
        " (SELECT key FROM dqflow_rate_windows WHERE window_end <= ? ORDER BY key LIMIT ?)",
        (now, limit),
    )
    return cursor.rowcount


def envelope(job_id: int, job_type: str, payload: str, history: str, reason: str | None, at: str, attempts: int) -> str:
    """The dead-letter payload (dqflow/schemas/dead_letter.json) as JSON text, the original
    payload and history kept as stored."""
    return (
        f'{{"original_id":{job_id},"job_type":{json.dumps(job_type)},"payload":{payload},'
        f'"error_history":{history},"failure_reason":{json.dumps(reason)},"failed_at":{json.dumps(at)},'
        f'"attempts":{attempts}}}'
    )
