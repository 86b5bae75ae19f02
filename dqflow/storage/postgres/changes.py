"""PostgreSQL's change feed: ``dqflow_job_changes`` (migration 0003), read in (txid, id) order.

Cursors are ``"<txid>:<id>"``. Only rows of transactions older than every running
one are read, so the order is final: a slow transaction's rows are answered once
it ends, never skipped. New rows are announced on ``dqflow_changes.<schema>``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dqflow.storage.changes import Change

if TYPE_CHECKING:
    from dqflow.storage.postgres.backend import PostgresStorage

START = "0:0"


def parse_cursor(after: str) -> dict[str, Any]:
    """``"<txid>:<id>"`` → query parameters; ``ValueError`` names the problem."""
    txid, sep, row_id = str(after).partition(":")
    if not sep or not txid.isdigit() or not row_id.isdigit():
        raise ValueError(f"invalid change cursor {after!r}: expected '<txid>:<id>'")
    return {"txid": txid, "id": int(row_id)}


def change_cursor(storage: PostgresStorage) -> str:
    row = storage._rows("reading the change feed", storage._q.newest_change, {})[0]
    return str(row["cursor"] or START)


def channel(storage: PostgresStorage) -> str:
    """The NOTIFY channel the triggers use: ``dqflow_changes.<the table's schema>``, 63 bytes at most."""
    row = storage._rows("reading the change feed", storage._q.newest_change, {})[0]
    return ("dqflow_changes." + str(row["schema"])).encode()[:63].decode(errors="ignore")


def read_changes(storage: PostgresStorage, after: str, limit: int) -> list[Change]:
    params = {**parse_cursor(after), "limit": max(1, limit)}
    rows = storage._rows("reading the change feed", storage._q.read_changes, params)
    return [
        Change(
            cursor=f"{row['txid']}:{row['id']}",
            job_id=int(row["job_id"]),
            job_type=str(row["job_type"]),
            kind=str(row["kind"]),
            at=row["created_at"],
            data=row["data"] or {},
        )
        for row in rows
    ]
