"""SQLite: durable handlers' writes (steps, waits, tokens), each inside the caller's write transaction.

Step entries are appended to the job's ``steps`` JSON text as written (never
re-encoded), so results keep their exact JSON, as outputs do.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from dqflow.durable.model import FINISHED_JOB_STATUSES, NewToken, TokenRecord, TokenStatus, shown_token_status
from dqflow.errors import TokenAlreadyCompletedError, TokenExpiredError, TokenJobFinishedError, TokenNotFoundError
from dqflow.storage.base import Wait

# Appends the member text ?1 ('"name":{...}') to a job's steps object.
STEPS_APPEND = (
    "CASE WHEN steps = '{}' THEN '{' || ?1 || '}' ELSE substr(steps, 1, length(steps) - 1) || ',' || ?1 || '}' END"
)


def step_member(name: str, step_json: str) -> str:
    """The ``"name": entry`` text appended to a job's steps."""
    return f"{json.dumps(name)}:{step_json}"


def _event(conn: sqlite3.Connection, job_id: int, kind: str, now: float, data: dict[str, Any] | None) -> None:
    conn.execute(
        "INSERT INTO dqflow_job_events (job_id, event_type, created_at, data) VALUES (?, ?, ?, ?)",
        (job_id, kind, now, None if data is None else json.dumps(data)),
    )


def save_step(conn: sqlite3.Connection, job_id: int, lease_token: int, member: str, now: float) -> bool:
    cursor = conn.execute(
        f"UPDATE dqflow_jobs SET steps = {STEPS_APPEND}, updated_at = ?2"
        " WHERE id = ?3 AND lease_token = ?4 AND status = 'processing'",
        (member, now, job_id, lease_token),
    )
    return cursor.rowcount == 1


def create_token(
    conn: sqlite3.Connection, job_id: int, lease_token: int, member: str, token: NewToken, now: float
) -> bool:
    if not save_step(conn, job_id, lease_token, member, now):
        return False
    conn.execute(
        "INSERT INTO dqflow_tokens (id, job_id, status, signal, schema, timeout_at, created_at)"
        " VALUES (?, ?, 'pending', ?, ?, ?, ?)",
        (
            token.id,
            job_id,
            token.signal,
            token.schema_json,
            None if token.timeout_at is None else token.timeout_at.timestamp(),
            now,
        ),
    )
    return True


def _time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def token_record(row: sqlite3.Row) -> TokenRecord:
    fields = dict(zip(row.keys(), row, strict=True))
    fields["status"] = shown_token_status(fields["status"], fields.pop("job_status"))
    for name in ("schema", "data"):
        if fields[name] is not None:
            fields[name] = json.loads(fields[name])
    for name in ("timeout_at", "created_at", "completed_at"):
        fields[name] = _time(fields[name])
    return TokenRecord.from_storage(fields)


def get_token(conn: sqlite3.Connection, token_id: str) -> TokenRecord | None:
    row = conn.execute(
        "SELECT t.*, j.status AS job_status FROM dqflow_tokens AS t LEFT JOIN dqflow_jobs AS j ON j.id = t.job_id"
        " WHERE t.id = ?",
        (token_id,),
    ).fetchone()
    return None if row is None else token_record(row)


def complete_token(conn: sqlite3.Connection, token_id: str, data_json: str, now: float) -> TokenRecord:
    token = get_token(conn, token_id)
    if token is None:
        raise TokenNotFoundError(token_id)
    if token.status is TokenStatus.COMPLETED:
        raise TokenAlreadyCompletedError(f"token {token_id} was already completed: its data is kept")
    if token.status is TokenStatus.EXPIRED or (token.timeout_at is not None and token.timeout_at.timestamp() <= now):
        raise TokenExpiredError(f"token {token_id} expired (its timeout passed): job {token.job_id} went on without it")
    job = conn.execute("SELECT status, wait FROM dqflow_jobs WHERE id = ?", (token.job_id,)).fetchone()
    if job is None or job[0] in FINISHED_JOB_STATUSES:
        raise TokenJobFinishedError(token_id, token.job_id, None if job is None else job[0])
    conn.execute(
        "UPDATE dqflow_tokens SET status = 'completed', data = ?, completed_at = ? WHERE id = ?",
        (data_json, now, token_id),
    )
    if job[0] == "waiting" and job[1] is not None and json.loads(job[1]).get("token_id") == token_id:
        _ready(conn, token.job_id, now, {"token_id": token_id, "reason": "token_completed"})
    found = get_token(conn, token_id)
    assert found is not None
    return found


def _ready(conn: sqlite3.Connection, job_id: int, now: float, data: dict[str, Any]) -> None:
    conn.execute(
        "UPDATE dqflow_jobs SET status = 'pending', run_at = ?, wait = NULL, wake_at = NULL, updated_at = ?"
        " WHERE id = ?",
        (now, now, job_id),
    )
    _event(conn, job_id, "ready", now, data)


def wake_due_jobs(conn: sqlite3.Connection, now: float) -> int:
    rows = conn.execute(
        "SELECT id, wait FROM dqflow_jobs INDEXED BY dqflow_jobs_wake"
        " WHERE status = 'waiting' AND wake_at IS NOT NULL AND wake_at <= ?",
        (now,),
    ).fetchall()
    for job_id, wait_text in rows:
        token_id = json.loads(wait_text).get("token_id") if wait_text else None
        if token_id is not None:
            conn.execute("UPDATE dqflow_tokens SET status = 'expired' WHERE id = ? AND status = 'pending'", (token_id,))
            _ready(conn, job_id, now, {"token_id": token_id, "reason": "token_timeout"})
        else:
            _ready(conn, job_id, now, {"reason": "sleep_ended"})
    return len(rows)


def settle_waits(conn: sqlite3.Connection, waits: Sequence[Wait], now: float) -> list[bool]:
    applied: list[bool] = []
    for item in waits:
        held = conn.execute(
            "SELECT 1 FROM dqflow_jobs WHERE id = ? AND lease_token = ? AND status = 'processing'",
            (item.job_id, item.lease_token),
        ).fetchone()
        if held is None:
            applied.append(False)
            continue
        wait_json = item.wait_json()
        conn.execute(
            "UPDATE dqflow_jobs SET status = 'waiting', wait = ?, wake_at = ?, attempts = max(attempts - 1, 0),"
            " locked_by = NULL, locked_at = NULL, lease_expires_at = NULL, lease_token = lease_token + 1,"
            " updated_at = ? WHERE id = ?",
            (wait_json, None if item.until is None else item.until.timestamp(), now, item.job_id),
        )
        _event(conn, item.job_id, "waiting", now, json.loads(wait_json))
        if item.token_id is not None:
            status = conn.execute("SELECT status FROM dqflow_tokens WHERE id = ?", (item.token_id,)).fetchone()
            if status is None or status[0] != "pending":
                reason = "token_missing" if status is None else f"token_{status[0]}"
                _ready(conn, item.job_id, now, {"token_id": item.token_id, "reason": reason})
        applied.append(True)
    return applied
