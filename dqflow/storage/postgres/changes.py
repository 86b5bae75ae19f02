"""PostgreSQL's change feed: ``dqflow_job_changes`` (migration 0003), read in id order.

Ids come from a sequence when a row is inserted, but rows become visible when
their transaction commits, so a row can appear after a higher id was already
read. A reader therefore stops at a gap in the ids and reads again once the
missing row is there (its commit sends a NOTIFY); a gap still open after
``GAP_GRACE_SECONDS`` is an insert that rolled back, and is passed. Every writer
of the feed is one short statement, so a real row never takes that long.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dqflow.storage.changes import CHANGES_KEPT, Change, int_cursor

if TYPE_CHECKING:
    from dqflow.storage.postgres.backend import PostgresStorage

GAP_GRACE_SECONDS = 5.0


def change_cursor(storage: PostgresStorage) -> str:
    row = storage._rows("reading the change feed", storage._q.newest_change, {})[0]
    return str(row["cursor"])


def channel(storage: PostgresStorage) -> str:
    """The NOTIFY channel the triggers use: ``dqflow_changes.<the table's schema>``, 63 bytes at most."""
    row = storage._rows("reading the change feed", storage._q.newest_change, {})[0]
    return ("dqflow_changes." + str(row["schema"])).encode()[:63].decode(errors="ignore")


def read_changes(storage: PostgresStorage, after: str, limit: int) -> list[Change]:
    expected = int_cursor(after) + 1
    params = {"after": expected - 1, "limit": max(1, limit)}
    rows = storage._rows("reading the change feed", storage._q.read_changes, params)
    changes: list[Change] = []
    if rows and expected < int(rows[0]["oldest"]) and int(rows[0]["newest"]) - expected >= CHANGES_KEPT // 2:
        expected = int(rows[0]["oldest"])  # far behind, in the trimmed part of the log: those are gone
    for row in rows:
        if row["id"] != expected and float(row["age"]) < GAP_GRACE_SECONDS:
            break  # an earlier row is still being committed: answer it first, next time
        expected = int(row["id"]) + 1
        changes.append(
            Change(
                cursor=str(row["id"]),
                job_id=int(row["job_id"]),
                job_type=str(row["job_type"]),
                kind=str(row["kind"]),
                at=row["created_at"],
                data=row["data"] or {},
                workflow_run_id=row["workflow_run_id"],
            )
        )
    return changes
