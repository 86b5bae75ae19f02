"""SQLite's half of workflow runs (storage/workflows.py): read a run, write an ``Advance``.

Everything here runs inside the caller's ``BEGIN IMMEDIATE`` transaction: the
file's one writer lock is the run's lock, so two workers completing the two
parents of a join at once are serialised, and the second one sees the first's
step state and creates the join's job, once.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dqflow.enums import WorkflowStatus
from dqflow.errors import WorkflowRunNotFoundError
from dqflow.storage.base import NewJob
from dqflow.storage.run_states import WrittenRunStates
from dqflow.storage.workflows import (
    Advance,
    JobEnd,
    NewWorkflowRun,
    RunChange,
    RunNotice,
    RunState,
    WorkflowAdvancer,
    WorkflowFilter,
    jobs_of_run,
    new_run_columns,
    run_from_fields,
    state_from_fields,
)

if TYPE_CHECKING:  # a SQLModel model: imported where a page is built (``dqflow add`` never loads it)
    from dqflow.workflow_record import WorkflowPage, WorkflowRun

InsertJobs = Callable[[sqlite3.Connection, Sequence[NewJob], float], list[int]]


class RunStates:
    """The run states this storage wrote (:class:`WrittenRunStates`), kept only once the
    transaction that wrote them committed: a run read again at the version it was written
    at is not decoded again. Used under the storage's write lock only."""

    def __init__(self, written: WrittenRunStates | None = None) -> None:
        self.written = written if written is not None else WrittenRunStates()
        self._read: dict[int, int] = {}  # size of the step state of runs read (not kept) in this transaction
        self._staged: list[tuple[RunState, int]] = []
        self._ended: list[int] = []  # runs the current transaction finishes (dropped if it commits)

    def get(self, run_id: int, version: int | None = None) -> RunState | None:
        """The kept state of ``run_id`` (only if it is the one stored at ``version``, when given)."""
        return self.written.get(run_id, version)

    def read(self, run_id: int, size: int) -> None:
        """The run's step state was read (``size`` characters of JSON)."""
        self._read[run_id] = size

    def stage(self, state: RunState, written: int, whole: bool) -> None:
        """A state the current transaction writes (kept if it commits): ``written`` characters
        of step state, the whole of it or changed steps on top of what was read."""
        if not whole:
            kept = self.written.size_of(state.id)
            written += kept if kept is not None else self._read.get(state.id, 0)
        self._staged.append((state, written))

    def end(self, run_id: int) -> None:
        """The current transaction finishes the run: nothing of it is kept once it commits."""
        self._ended.append(run_id)

    def begin(self) -> None:
        """A transaction starts: what a failed one staged is dropped."""
        self._staged.clear()
        self._ended.clear()
        self._read.clear()

    def publish(self) -> None:
        """The current transaction committed: keep what it staged, drop the runs it finished."""
        for state, size in self._staged:
            self.written.keep(state, size)
        for run_id in self._ended:
            self.written.forget(run_id)
        self._staged.clear()
        self._ended.clear()
        self._read.clear()


_TIMES = ("created_at", "updated_at", "completed_at")


def _fields(row: sqlite3.Row) -> dict[str, Any]:
    fields = dict(zip(row.keys(), row, strict=True))
    for name in _TIMES:
        if fields[name] is not None:
            fields[name] = datetime.fromtimestamp(fields[name], UTC)
    return fields


def read_run(conn: sqlite3.Connection, run_id: int) -> WorkflowRun | None:
    """The run, or None."""
    row = conn.execute("SELECT * FROM dqflow_workflow_runs WHERE id = ?", (run_id,)).fetchone()
    return None if row is None else run_from_fields(_fields(row))


def list_runs(conn: sqlite3.Connection, run_filter: WorkflowFilter) -> WorkflowPage:
    """Runs newest first, keyset paged on the id."""
    from dqflow.workflow_record import WorkflowPage

    where: list[str] = []
    params: list[Any] = []
    if run_filter.name is not None:
        where.append("name = ?")
        params.append(run_filter.name)
    if run_filter.statuses:
        where.append(f"status IN ({','.join('?' * len(run_filter.statuses))})")
        params.extend(status.value for status in run_filter.statuses)
    if run_filter.cursor is not None:
        where.append("id < ?")
        params.append(run_filter.cursor)
    sql = "SELECT * FROM dqflow_workflow_runs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*params, run_filter.limit + 1)).fetchall()
    runs = [run_from_fields(_fields(row)) for row in rows[: run_filter.limit]]
    return WorkflowPage(runs=runs, next_cursor=runs[-1].id if len(rows) > run_filter.limit and runs else None)


def create_runs(
    conn: sqlite3.Connection,
    runs: Sequence[NewWorkflowRun],
    advances: Sequence[Advance],
    insert_jobs: InsertJobs,
    now: float,
    notices: list[RunNotice],
) -> list[tuple[int, bool]]:
    """Insert each run in its planned state (or find it by its idempotency key), then every
    new run's first jobs in one go, then the job ids into the runs' step state."""
    results: list[tuple[int, bool]] = []
    created: list[tuple[int, NewWorkflowRun, Advance]] = []
    for run, advance in zip(runs, advances, strict=True):
        if run.idempotency_key is not None:  # also finds a run inserted earlier in this batch
            row = conn.execute(
                "SELECT id FROM dqflow_workflow_runs WHERE idempotency_key = ?", (run.idempotency_key,)
            ).fetchone()
            if row is not None:
                results.append((int(row[0]), False))
                continue
        finished = advance.status is not WorkflowStatus.RUNNING
        cursor = conn.execute(
            "INSERT INTO dqflow_workflow_runs (name, status, input, output, tags, idempotency_key, failure_reason,"
            " error, steps, version, created_at, updated_at, completed_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, '[]', 1, ?, ?, ?)",
            (
                *new_run_columns(run, advance),
                now,
                now,
                now if finished else None,
            ),
        )
        run_id = int(cursor.lastrowid or 0)
        results.append((run_id, True))
        created.append((run_id, run, advance))
    jobs = [job for run_id, _, advance in created for job in jobs_of_run(advance.new_jobs, run_id)]
    new_ids = insert_jobs(conn, jobs, now)
    steps: list[tuple[str, int]] = []
    for run_id, run, advance in created:
        count = len(advance.new_jobs)
        steps.append((advance.steps_json(new_ids[:count]), run_id))
        new_ids = new_ids[count:]
        notices.extend(RunNotice(run_id, run.name, status, advance.failure_reason) for status in advance.notices)
    conn.executemany("UPDATE dqflow_workflow_runs SET steps = ? WHERE id = ?", steps)
    return results


def change_run(
    conn: sqlite3.Connection,
    run_id: int,
    change: RunChange,
    insert_jobs: InsertJobs,
    now: float,
    notices: list[RunNotice],
    kept: RunStates,
) -> None:
    """Read the run, call ``change``, write the advance (the write lock is held)."""
    state = _read_states(conn, [run_id], kept).get(run_id)
    if state is None:
        raise WorkflowRunNotFoundError(run_id)
    _write(conn, [(state, change(state))], insert_jobs, now, notices, kept)


def jobs_ended(
    conn: sqlite3.Connection,
    advancer: WorkflowAdvancer | None,
    ends: Sequence[tuple[int, JobEnd]],
    insert_jobs: InsertJobs,
    now: float,
    notices: list[RunNotice],
    kept: RunStates,
) -> None:
    """Move the runs of step jobs that ended (``(run id, end)`` pairs): the runs read in one
    statement, their new jobs inserted and their states written in one each (a deleted run's
    jobs stay as they are)."""
    if advancer is None or not ends:
        return
    by_run: dict[int, list[JobEnd]] = {}
    for run_id, end in ends:
        by_run.setdefault(run_id, []).append(end)
    states = _read_states(conn, sorted(by_run), kept)
    moved = [(states[run_id], advancer.job_ended(states[run_id], by_run[run_id])) for run_id in sorted(states)]
    _write(conn, moved, insert_jobs, now, notices, kept)


_READ_CHUNK = 500  # run ids per SELECT (SQLite's host parameter limit is 32766 or 999 on old builds)


_STATE_COLUMNS = ("id", "name", "status", "input", "tags", "steps", "version")
_READ_STATES = f"SELECT {', '.join(_STATE_COLUMNS)} FROM dqflow_workflow_runs WHERE id IN "
_READ_VERSIONS = "SELECT id, version FROM dqflow_workflow_runs WHERE id IN "


def _read_states(conn: sqlite3.Connection, run_ids: Sequence[int], kept: RunStates) -> dict[int, RunState]:
    """The runs' states: as kept when their version is the one kept (only the version read),
    else read and decoded."""
    states: dict[int, RunState] = {}
    known = [run_id for run_id in run_ids if kept.get(run_id) is not None]
    for start in range(0, len(known), _READ_CHUNK):
        chunk = known[start : start + _READ_CHUNK]
        for run_id, version in conn.execute(f"{_READ_VERSIONS}({','.join('?' * len(chunk))})", chunk):
            state = kept.get(run_id, version)
            if state is not None:
                states[run_id] = state
    unknown: Sequence[int] = [run_id for run_id in run_ids if run_id not in states] if states else run_ids
    for start in range(0, len(unknown), _READ_CHUNK):
        rest = unknown[start : start + _READ_CHUNK]
        for row in conn.execute(f"{_READ_STATES}({','.join('?' * len(rest))})", rest):
            state = state_from_fields(dict(zip(_STATE_COLUMNS, row, strict=True)))
            kept.read(state.id, len(row[5]))
            states[state.id] = state
    return states


def _write(
    conn: sqlite3.Connection,
    moved: Sequence[tuple[RunState, Advance]],
    insert_jobs: InsertJobs,
    now: float,
    notices: list[RunNotice],
    kept: RunStates,
) -> None:
    """Write the advances of several runs: their new jobs in one insert, their states in one
    update per shape (a run whose advance changed some steps only gets just those written)."""
    changed = [(state, advance) for state, advance in moved if advance.changed]
    if not changed:
        return
    jobs = [job for state, advance in changed for job in jobs_of_run(advance.new_jobs, state.id)]
    new_ids = insert_jobs(conn, jobs, now) if jobs else []
    # by how many steps they write (None: all) and whether the status is written: a run whose
    # status stays leaves it out, so its row's status index entry is not rewritten
    updates: dict[tuple[int | None, bool], list[tuple[Any, ...]]] = {}
    taken = 0
    for state, advance in changed:
        if advance.cancel_job_ids:
            _cancel(conn, advance.cancel_job_ids, advance.cancel_reason, now)
        if advance.retry_job_ids:
            _retry(conn, advance.retry_job_ids, now)
        count = len(advance.new_jobs)
        ids = new_ids[taken : taken + count]
        taken += count
        # the steps left alone are written as the text they were read or written as, when it is
        # known: joining texts costs less than json_set's parse and render of the stored state
        texts = advance.step_texts
        edited = None if texts is not None and len(texts) == len(advance.steps) else advance.edited_steps_json(ids)
        if edited is None:
            steps: tuple[Any, ...] = (advance.steps_json(ids),)
            written = len(steps[0])
        else:
            steps = tuple(v for i, text in edited for v in (f"$[{i}]", text))
            written = sum(len(text) for _, text in edited)
        run_status = advance.status
        new_status = run_status is not state.status
        row = (
            advance.output_json,
            advance.failure_reason,
            advance.error,
            *steps,
            now,
            None if run_status is WorkflowStatus.RUNNING else now,
            state.id,
        )
        updates.setdefault((None if edited is None else len(edited), new_status), []).append(
            (run_status.value, *row) if new_status else row
        )
        if advance.notices:
            reason = advance.failure_reason
            notices.extend(RunNotice(state.id, state.name, status, reason) for status in advance.notices)
        if run_status is WorkflowStatus.RUNNING:
            kept.stage(advance.written_state(state), written, whole=edited is None)
        else:  # no more of its steps will end: nothing to keep
            kept.end(state.id)
    for (edited_count, new_status), rows in updates.items():
        conn.executemany(
            f"UPDATE dqflow_workflow_runs SET {'status = ?, ' if new_status else ''}output = ?, failure_reason = ?,"
            f" error = ?, steps = {_steps_written(edited_count)}, version = version + 1, updated_at = ?,"
            " completed_at = ? WHERE id = ?",
            rows,
        )


def _steps_written(edited_count: int | None) -> str:
    """The new ``steps`` of an update: the whole state (None), or ``edited_count`` steps set in place."""
    if edited_count is None:
        return "?"
    if not edited_count:
        return "steps"
    return f"json_set(steps{', ?, json(?)' * edited_count})"


def _cancel(conn: sqlite3.Connection, job_ids: Sequence[int], reason: str, now: float) -> None:
    marks = ",".join("?" * len(job_ids))
    rows = conn.execute(
        f"SELECT id, status FROM dqflow_jobs WHERE id IN ({marks}) AND status IN ('pending', 'waiting', 'processing')",
        job_ids,
    ).fetchall()
    if not rows:
        return
    conn.execute(
        "UPDATE dqflow_jobs SET status = 'cancelled', failure_reason = ?, cancelled_at = ?, updated_at = ?,"
        f" lease_expires_at = NULL, lease_token = lease_token + 1 WHERE id IN ({','.join('?' * len(rows))})",
        (reason, now, now, *(row[0] for row in rows)),
    )
    conn.executemany(
        "INSERT INTO dqflow_job_events (job_id, event_type, created_at, data) VALUES (?, 'cancelled', ?, ?)",
        [(row[0], now, json.dumps({"previous_status": row[1], "reason": reason})) for row in rows],
    )


def _retry(conn: sqlite3.Connection, job_ids: Sequence[int], now: float) -> None:
    marks = ",".join("?" * len(job_ids))
    rows = conn.execute(
        "UPDATE dqflow_jobs SET status = 'pending', attempts = 0, run_at = ?, failure_reason = NULL,"
        " progress = NULL, output = NULL, completed_at = NULL, cancelled_at = NULL, started_at = NULL,"
        " locked_by = NULL, locked_at = NULL, lease_expires_at = NULL, lease_token = lease_token + 1,"
        f" last_retried_at = ?, updated_at = ? WHERE id IN ({marks}) AND status IN ('failed', 'cancelled')"
        " RETURNING id",
        (now, now, now, *job_ids),
    ).fetchall()
    conn.executemany(
        "INSERT INTO dqflow_job_events (job_id, event_type, created_at, data) VALUES (?, 'retried', ?, ?)",
        [(row[0], now, json.dumps({"reason": "workflow_retried"})) for row in rows],
    )
