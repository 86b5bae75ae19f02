"""SQLite flow control: which ready jobs a claim may take when some have concurrency keys.

SQLite has one writer, so counting a key's processing jobs (partial index
``dqflow_jobs_concurrency_processing``) inside the claim's write transaction is
exact: nothing else can start or finish a job between the count and the claim.
Slots free themselves: any change that takes a job out of processing lowers the count.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

NOT_HELD_BACK = (
    "(c.concurrency_key IS NULL OR (SELECT count(*) FROM dqflow_jobs AS p"
    " INDEXED BY dqflow_jobs_concurrency_processing"
    " WHERE p.status = 'processing' AND p.concurrency_key = c.concurrency_key) < c.concurrency_limit)"
)
"""SQL (jobs aliased ``c``): true unless the job's concurrency key has all its slots taken."""


def _active(conn: sqlite3.Connection) -> tuple[dict[str, int], list[str]]:
    """Processing jobs per concurrency key, and the keys whose slots are all taken."""
    rows = conn.execute(
        "SELECT concurrency_key, count(*), max(concurrency_limit) FROM dqflow_jobs"
        " INDEXED BY dqflow_jobs_concurrency_processing"
        " WHERE status = 'processing' AND concurrency_key IS NOT NULL GROUP BY concurrency_key"
    ).fetchall()
    return {key: count for key, count, _ in rows}, [key for key, count, limit in rows if count >= limit]


def pick_keyed(
    conn: sqlite3.Connection, now: float, type_clause: str, job_types: Sequence[str], limit: int
) -> list[int]:
    """Ids of up to ``limit`` ready jobs in claim order, none over its key's limit.

    Full keys are left out by the query, so a blocked key does not hold back the jobs
    behind it; a key that fills up within the batch joins them and the query is asked
    again for the rest (each round either fills the batch or closes a key).
    """
    active, full = _active(conn)
    picked: list[int] = []
    while len(picked) < limit:
        want = limit - len(picked)
        params: list[Any] = [now, *job_types, json.dumps(full), json.dumps(picked), want]
        rows = conn.execute(
            "SELECT id, concurrency_key, concurrency_limit FROM dqflow_jobs INDEXED BY dqflow_jobs_ready"
            f" WHERE status = 'pending' AND run_at <= ?{type_clause}"
            " AND (concurrency_key IS NULL OR concurrency_key NOT IN (SELECT value FROM json_each(?)))"
            " AND id NOT IN (SELECT value FROM json_each(?))"
            " ORDER BY priority DESC, run_at, id LIMIT ?",
            params,
        ).fetchall()
        closed = False
        for job_id, key, key_limit in rows:
            if key is None:
                picked.append(job_id)
                continue
            if key in full:
                continue
            count = active.get(key, 0)
            if count < key_limit:
                picked.append(job_id)
                active[key] = count + 1
            if active.get(key, 0) >= key_limit:
                full.append(key)
                closed = True
        if len(rows) < want or not closed:
            break
    return picked
