"""The embedded default: one SQLite file in WAL mode, shared by worker processes.

Each thread gets its own connection. Writes take the file's write lock up front
(``BEGIN IMMEDIATE``), so claims from several processes never hand out the same
job; a claim is one ``UPDATE ... WHERE id IN (SELECT ... LIMIT n) RETURNING``.
Idle workers watch ``PRAGMA data_version``, which changes whenever another
connection commits, so they wake within milliseconds without taking a lock.
"""

from __future__ import annotations

import functools
import json
import operator
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote

from dqflow.durable.model import NewToken, TokenRecord
from dqflow.enums import EventType, JobStatus
from dqflow.errors import InvalidJobStateError, JobNotFoundError, StorageError
from dqflow.storage.base import (
    DEAD_LETTER_FIELDS,
    EDITABLE_FIELDS,
    JOB_OPTIONS,
    AddResult,
    Completion,
    Failure,
    FlowControlCounts,
    JobFilter,
    JobPage,
    Lease,
    NewJob,
    OptionKind,
    Outcome,
    ReclaimedJob,
    Release,
    ScheduleState,
    StepClaim,
    Storage,
    TagMode,
    TickResult,
    UniqueRule,
    Wait,
    WorkerInfo,
    dependency_cancel_data,
    finished_statuses,
    outcomes_by_kind,
    unfinished_dependencies,
)
from dqflow.storage.changes import Change
from dqflow.storage.sqlite import _cleanup, _durable, _schedules, _unique, _workers, _workflows, changes, flow
from dqflow.storage.sqlite._memory import MEMORY_PATH, throwaway_database
from dqflow.storage.sqlite.migrations import migrate
from dqflow.storage.workflows import JobEnd, NewWorkflowRun, RunChange, RunNotice, WorkflowFilter, planned_starts

if TYPE_CHECKING:  # SQLModel models: loaded only when a record is built (``dqflow add`` never does)
    from dqflow.record import JobEvent, JobRecord
    from dqflow.workflow_record import WorkflowPage, WorkflowRun

_loads = json.JSONDecoder().decode


def _as_is(value: Any, now: float) -> Any:
    return value


# How each kind of job option is written (``now`` stands in for a missing run_at).
_ENCODERS: dict[OptionKind, Callable[[Any, float], Any]] = {
    **dict.fromkeys(OptionKind, _as_is),
    OptionKind.TIME: lambda value, now: now if value is None else value.timestamp(),
    OptionKind.BOOL: lambda value, now: int(value),
    OptionKind.STRINGS: lambda value, now: json.dumps(list(value)) if value else "[]",
}
_OPTIONS = {option.name: option for option in JOB_OPTIONS}
_OPTION_VALUES = operator.attrgetter(*(option.name for option in JOB_OPTIONS))
_ENCODED_OPTIONS = [  # (position, encoder) of the options not stored as they are
    (index, _ENCODERS[option.kind]) for index, option in enumerate(JOB_OPTIONS) if _ENCODERS[option.kind] is not _as_is
]
_INSERT_JOB = (
    f"INSERT INTO dqflow_jobs ({', '.join(option.column for option in JOB_OPTIONS)}, created_at, updated_at)"
    f" VALUES ({', '.join('?' * (len(JOB_OPTIONS) + 2))})"
)
_INSERT_JOB_INTO = _INSERT_JOB.split(" VALUES ")[0]


@functools.lru_cache(maxsize=32)
def _insert_rows(count: int) -> str:
    """``_INSERT_JOB`` for ``count`` rows, its text made once per count (SQLite's statement cache finds it at once)."""
    row_marks = f"({', '.join('?' * (len(JOB_OPTIONS) + 2))})"
    return f"{_INSERT_JOB_INTO} VALUES {', '.join([row_marks] * count)}"


_WAIT_POLL_SECONDS = 0.004
CLOSE_WAIT_SECONDS = 5.0
"""Longest ``close`` waits for change-feed calls on other threads (a wait ends within a poll)."""


def _job_values(job: NewJob, now: float) -> list[Any]:
    """A new job's ``_INSERT_JOB`` parameters: its options as stored, then created_at and updated_at."""
    values = [*_OPTION_VALUES(job), now, now]
    for index, encode in _ENCODED_OPTIONS:
        values[index] = encode(values[index], now)
    return values


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _datetime(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _json_text(raw: str) -> Any:
    return [] if raw == "[]" else {} if raw == "{}" else _loads(raw)


_record_module: ModuleType | None = None
# How a stored column is read back (columns not listed here are read as they are); set on first use.
_decoders: dict[str, Callable[[Any], Any]] = {}


def _record_types() -> ModuleType:
    """``dqflow.record``, imported on the first read: SQLModel loads only once a record is
    built (``dqflow add`` never does)."""
    global _record_module
    if _record_module is None:
        import dqflow.record as records

        _decoders.update(
            {
                **dict.fromkeys(records.TIMESTAMP_FIELDS, functools.partial(datetime.fromtimestamp, tz=UTC)),
                **dict.fromkeys(records.JSON_FIELDS, _json_text),
                **dict.fromkeys(records.BOOLEAN_FIELDS, bool),
            }
        )
        _record_module = records
    return _record_module


def _record(names: Sequence[str], row: Sequence[Any], decoders: list[tuple[str, Callable[[Any], Any]]]) -> JobRecord:
    fields = dict(zip(names, row, strict=True))
    for name, decode in decoders:
        value = fields[name]
        if value is not None:
            fields[name] = decode(value)
    record: JobRecord = (_record_module or _record_types()).JobRecord.from_storage(fields)
    return record


def _records(cursor: sqlite3.Cursor) -> list[JobRecord]:
    """The job rows of ``cursor`` as records (the column names are looked up once, not per row)."""
    _record_module or _record_types()
    names = [column[0] for column in cursor.description or ()]
    decoders = [(name, _decoders[name]) for name in names if name in _decoders]
    return [_record(names, row, decoders) for row in cursor.fetchall()]


def _row_to_record(row: sqlite3.Row) -> JobRecord:
    _record_module or _record_types()
    names = row.keys()
    return _record(names, row, [(name, _decoders[name]) for name in names if name in _decoders])


_CLAIM = (
    "UPDATE dqflow_jobs SET status = 'processing', attempts = attempts + 1, lease_token = lease_token + 1,"
    " output = NULL, progress = NULL, locked_by = ?, locked_at = ?, lease_expires_at = ?, started_at = ?,"
    " updated_at = ?"
)
"""A claim's update of the jobs it takes (its WHERE clause follows)."""


def _processing_events(conn: sqlite3.Connection, records: Sequence[JobRecord], worker_id: str, now: float) -> None:
    """The ``processing`` events of claimed jobs."""
    if records:
        worker = json.dumps(worker_id)
        conn.executemany(
            "INSERT INTO dqflow_job_events (job_id, event_type, created_at, data) VALUES (?, 'processing', ?, ?)",
            [(r.id, now, f'{{"worker_id":{worker},"attempt":{r.attempts}}}') for r in records],
        )


def path_from_url(url: str) -> str:
    """``sqlite:///relative.db`` → ``relative.db``; ``sqlite:////abs/q.db`` → ``/abs/q.db``."""
    if not url.startswith("sqlite:///"):
        raise StorageError(f"not a SQLite URL: {url!r} (use sqlite:///relative/path.db or sqlite:////abs/path.db)")
    path = unquote(url[len("sqlite:///") :].split("?", 1)[0])
    if not path:
        raise StorageError(f"SQLite needs a file (sqlite:///path/to/queue.db) or {MEMORY_URL}, got {url!r}")
    return path


MEMORY_URL = f"sqlite:///{MEMORY_PATH}"


class SqliteStorage(Storage):
    """Jobs in one SQLite file. URL: ``sqlite:///relative/path.db`` or ``sqlite:////abs/path.db``;
    ``sqlite:///:memory:`` is a private database of this object, gone when it is closed
    (for tests: see ``dqflow.testing``)."""

    def __init__(self, url: str, *, busy_timeout_ms: int = 30_000) -> None:
        self.url = url
        self.path = path_from_url(url)
        self._throwaway: Callable[[], object] | None = None
        if self.path == MEMORY_PATH:
            self.path, self._throwaway = throwaway_database(self)
        self._busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # One writer at a time in this process: threads queue here, woken the moment the
        # lock frees, instead of in SQLite's busy handler, which sleeps 1 ms and more.
        self._write_lock = threading.RLock()
        self._run_states = _workflows.RunStates()  # run states this object wrote (under the write lock)
        self._ready = False
        # Change-feed reads in progress on other threads (a Queue's follower): ``close`` sets
        # ``_closing``, which ends their waits, and lets them finish before closing connections
        # (closing a connection under a running statement crashes the process).
        self._closing = threading.Event()
        self._feed_calls = 0
        self._feed_idle = threading.Condition()

    # -- connections -----------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            try:
                conn = sqlite3.connect(
                    self.path,
                    isolation_level=None,
                    check_same_thread=False,
                    timeout=self._busy_timeout_ms / 1000,
                )
            except sqlite3.Error as exc:
                raise StorageError(f"cannot open SQLite file {self.path}: {exc}") from exc
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            self._use_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Switch the file to WAL. On a fresh file that other processes open at the same
        moment, SQLite answers ``database is locked`` at once instead of calling its busy
        handler (the switch needs the file to itself): try again until the busy timeout."""
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.005)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        with self._write_lock:
            self._run_states.begin()
            yield from self._transaction(conn)
            self._run_states.publish()  # committed

    def _transaction(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StorageError(f"SQLite {self.path}: cannot start a write: {exc}") from exc
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise StorageError(f"SQLite {self.path}: commit failed: {exc}") from exc

    def setup(self) -> None:
        """Apply the pending numbered migrations (``migrations/``) under the write lock."""
        self._closing.clear()  # set up again after a close: the change feed reads again
        if self._ready:
            return
        try:
            with self._write() as conn:
                migrate(conn, self.path)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot create or upgrade the dqflow schema in {self.path}: {exc}") from exc
        self._ready = True

    def close(self) -> None:
        self._closing.set()
        with self._feed_idle:
            self._feed_idle.wait_for(lambda: self._feed_calls == 0, timeout=CLOSE_WAIT_SECONDS)
        with self._lock:
            for conn in self._connections:
                with suppress(sqlite3.Error):
                    conn.close()
            self._connections.clear()
        self._local = threading.local()
        if self._throwaway is not None:  # a :memory: database ends with its storage
            self._throwaway()
            self._ready = False

    @contextmanager
    def _feed_call(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection for one change-feed call that ``close`` waits out."""
        with self._feed_idle:
            if self._closing.is_set():
                raise StorageError(f"the SQLite storage {self.path} is closed")
            self._feed_calls += 1
        try:
            yield self._conn()
        finally:
            with self._feed_idle:
                self._feed_calls -= 1
                self._feed_idle.notify_all()

    # -- helpers ---------------------------------------------------------------------

    @staticmethod
    def _event(
        conn: sqlite3.Connection, job_id: int, kind: EventType, now: float, data: dict[str, Any] | None = None
    ) -> None:
        conn.execute(
            "INSERT INTO dqflow_job_events (job_id, event_type, created_at, data) VALUES (?, ?, ?, ?)",
            (job_id, kind.value, now, None if data is None else json.dumps(data)),
        )

    def _fetch(self, conn: sqlite3.Connection, job_id: int) -> JobRecord | None:
        records = _records(conn.execute("SELECT * FROM dqflow_jobs WHERE id = ?", (job_id,)))
        return records[0] if records else None

    def _require(self, conn: sqlite3.Connection, job_id: int) -> JobRecord:
        record = self._fetch(conn, job_id)
        if record is None:
            raise JobNotFoundError(job_id)
        return record

    # -- producing -------------------------------------------------------------------

    def add_jobs(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[AddResult]:
        if connection is not None:
            raise StorageError("connection= is only supported by the PostgreSQL backend")
        now = round(time.time(), 6)  # whole microseconds: a created_at read back filters exactly
        with self._write() as conn:
            return self._insert_jobs(conn, jobs, now)

    def add_unique(self, job: NewJob, rule: UniqueRule) -> AddResult:
        now = round(time.time(), 6)
        with self._write() as conn:
            return _unique.add_unique(conn, self._insert_jobs, now, job, rule)

    def _insert_jobs(self, conn: sqlite3.Connection, jobs: Sequence[NewJob], now: float) -> list[AddResult]:
        """``add_jobs`` inside the caller's write transaction."""
        results: list[AddResult] = []
        for index, job in enumerate(jobs):
            if job.idempotency_key is not None:
                row = conn.execute(
                    "SELECT id FROM dqflow_jobs WHERE idempotency_key = ?", (job.idempotency_key,)
                ).fetchone()
                if row is not None:
                    results.append(AddResult(row[0], False))
                    continue
            unfinished = self._unfinished_dependencies(conn, index, job.depends_on) if job.depends_on else []
            cursor = conn.execute(_INSERT_JOB, _job_values(job, now))
            job_id = int(cursor.lastrowid or 0)
            if unfinished:
                conn.execute("UPDATE dqflow_jobs SET status = 'waiting' WHERE id = ?", (job_id,))
                conn.executemany(
                    "INSERT INTO dqflow_job_dependencies (depends_on_id, job_id) VALUES (?, ?)",
                    [(dependency, job_id) for dependency in unfinished],
                )
            self._event(conn, job_id, EventType.ADDED, now)
            results.append(AddResult(job_id, True))
        return results

    def _add_dead_letter(self, conn: sqlite3.Connection, job_id: int, spec_json: str, now: float) -> None:
        """Add the dead-letter job of ``job_id`` (just failed for good), with its ``added`` event."""
        job_type, payload, history, reason, attempts = conn.execute(
            "SELECT job_type, payload, error_history, failure_reason, attempts FROM dqflow_jobs WHERE id = ?",
            (job_id,),
        ).fetchone()
        spec = json.loads(spec_json)
        body = flow.envelope(job_id, job_type, payload, history, reason, _iso(now), attempts)
        job = NewJob(payload_json=body, **{name: spec[name] for name in DEAD_LETTER_FIELDS if name in spec})
        cursor = conn.execute(_INSERT_JOB, _job_values(job, now))
        self._event(conn, int(cursor.lastrowid or 0), EventType.ADDED, now)

    @staticmethod
    def _unfinished_dependencies(conn: sqlite3.Connection, index: int, depends_on: Sequence[int]) -> list[int]:
        """The dependencies not completed yet; ``DependencyError`` for one that is unknown or can never complete."""
        rows = conn.execute(
            f"SELECT id, status FROM dqflow_jobs WHERE id IN ({','.join('?' * len(depends_on))})", depends_on
        ).fetchall()
        return unfinished_dependencies(index, depends_on, {row[0]: row[1] for row in rows})

    @staticmethod
    def _ready_dependents(conn: sqlite3.Connection, completed: Sequence[int], now: float) -> None:
        """Make pending the waiting dependents of ``completed`` whose dependencies have all completed."""
        # the plain job's whole cost: one primary-key probe that finds no dependents
        dependents = [
            row[0]
            for row in conn.execute(
                "SELECT DISTINCT job_id FROM dqflow_job_dependencies"
                f" WHERE depends_on_id IN ({','.join('?' * len(completed))})",
                completed,
            )
        ]
        if not dependents:
            return
        rows = conn.execute(
            "UPDATE dqflow_jobs SET status = 'pending', run_at = ?, updated_at = ?"
            f" WHERE status = 'waiting' AND id IN ({','.join('?' * len(dependents))})"
            " AND NOT EXISTS (SELECT 1 FROM dqflow_job_dependencies AS d JOIN dqflow_jobs AS j"
            " ON j.id = d.depends_on_id WHERE d.job_id = dqflow_jobs.id AND j.status <> 'completed')"
            " RETURNING id",
            (now, now, *dependents),
        ).fetchall()
        if rows:
            conn.executemany(
                "INSERT INTO dqflow_job_events (job_id, event_type, created_at) VALUES (?, 'ready', ?)",
                [(row[0], now) for row in rows],
            )

    def _cancel_dependents(self, conn: sqlite3.Connection, finished: Sequence[int], now: float) -> None:
        """Cancel the waiting dependents of jobs that failed for good or were cancelled, and theirs in turn."""
        frontier = list(finished)
        while frontier:
            dependency = frontier.pop()
            rows = conn.execute(
                "UPDATE dqflow_jobs SET status = 'cancelled', failure_reason = 'dependency_failed',"
                " cancelled_at = ?, updated_at = ?, lease_token = lease_token + 1"
                " WHERE status = 'waiting' AND id IN"
                " (SELECT job_id FROM dqflow_job_dependencies WHERE depends_on_id = ?) RETURNING id",
                (now, now, dependency),
            ).fetchall()
            for (job_id,) in rows:
                self._event(conn, job_id, EventType.CANCELLED, now, dependency_cancel_data(dependency))
                frontier.append(job_id)

    # -- reading ---------------------------------------------------------------------

    def get_job(self, job_id: int) -> JobRecord | None:
        return self._fetch(self._conn(), job_id)

    def list_jobs(self, job_filter: JobFilter) -> JobPage:
        where: list[str] = []
        params: list[Any] = []
        if job_filter.statuses:
            where.append(f"status IN ({','.join('?' * len(job_filter.statuses))})")
            params.extend(s.value for s in job_filter.statuses)
        if job_filter.job_type is not None:
            where.append("job_type = ?")
            params.append(job_filter.job_type)
        if job_filter.created_after is not None:
            where.append("created_at >= ?")
            params.append(job_filter.created_after.timestamp())
        if job_filter.created_before is not None:
            where.append("created_at < ?")
            params.append(job_filter.created_before.timestamp())
        if job_filter.cursor is not None:
            where.append("id < ?")
            params.append(job_filter.cursor)
        tags = sorted(set(job_filter.tags))
        if tags:
            marks = ",".join("?" * len(tags))
            matching = f"(SELECT count(DISTINCT value) FROM json_each(dqflow_jobs.tags) WHERE value IN ({marks}))"
            if job_filter.tag_mode is TagMode.ALL:
                where.append(f"{matching} >= ?")
                params.extend([*tags, len(tags)])
            elif job_filter.tag_mode is TagMode.ANY:
                where.append(f"{matching} > 0")
                params.extend(tags)
            elif job_filter.tag_mode is TagMode.NONE:
                where.append(f"{matching} = 0")
                params.extend(tags)
            else:
                where.append(f"{matching} = ? AND (SELECT count(DISTINCT value) FROM json_each(dqflow_jobs.tags)) = ?")
                params.extend([*tags, len(tags), len(tags)])
        sql = "SELECT * FROM dqflow_jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(job_filter.limit + 1)
        found = _records(self._conn().execute(sql, params))
        jobs = found[: job_filter.limit]
        next_cursor = jobs[-1].id if len(found) > job_filter.limit and jobs else None
        return JobPage(jobs, next_cursor)

    def get_events(self, job_id: int) -> list[JobEvent]:
        from dqflow.record import JobEvent

        rows = self._conn().execute(
            "SELECT id, job_id, event_type, created_at, data FROM dqflow_job_events WHERE job_id = ? ORDER BY id",
            (job_id,),
        )
        return [
            JobEvent.from_storage(
                {
                    "id": row[0],
                    "job_id": row[1],
                    "event_type": row[2],
                    "created_at": _datetime(row[3]),
                    "data": None if row[4] is None else json.loads(row[4]),
                }
            )
            for row in rows
        ]

    # -- managing --------------------------------------------------------------------

    def count_jobs(self) -> dict[tuple[str, JobStatus], int]:
        rows = self._conn().execute("SELECT job_type, status, count(*) FROM dqflow_jobs GROUP BY job_type, status")
        return {(job_type, JobStatus(status)): int(count) for job_type, status, count in rows}

    def oldest_pending(self) -> JobRecord | None:
        row = self._conn().execute("SELECT * FROM dqflow_jobs WHERE status = 'pending' ORDER BY id LIMIT 1").fetchone()
        return None if row is None else _row_to_record(row)

    # -- workers ---------------------------------------------------------------------

    def beat_worker(self, worker: WorkerInfo) -> None:
        with self._write() as conn:
            _workers.beat(conn, worker)

    def remove_worker(self, worker_id: str) -> None:
        with self._write() as conn:
            _workers.remove(conn, worker_id)

    def list_workers(self) -> list[WorkerInfo]:
        return _workers.listed(self._conn())

    # -- managing --------------------------------------------------------------------

    def cancel_job(self, job_id: int) -> JobRecord:
        now = time.time()
        notices: list[RunNotice] = []
        with self._write() as conn:
            record = self._require(conn, job_id)
            if record.status not in (JobStatus.PENDING, JobStatus.WAITING, JobStatus.PROCESSING):
                raise InvalidJobStateError(
                    f"job {job_id} is {record.status.value}: only pending, waiting or processing jobs can be cancelled"
                )
            conn.execute(
                "UPDATE dqflow_jobs SET status = 'cancelled', cancelled_at = ?, updated_at = ?,"
                " lease_expires_at = NULL, lease_token = lease_token + 1, wait = NULL, wake_at = NULL WHERE id = ?",
                (now, now, job_id),
            )
            self._event(conn, job_id, EventType.CANCELLED, now, {"previous_status": record.status.value})
            self._cancel_dependents(conn, [job_id], now)
            if record.workflow_run_id is not None:
                end = JobEnd(job_id, record.workflow_step or "", record.workflow_item, "cancelled", reason="cancelled")
                ends = [(record.workflow_run_id, end)]
                _workflows.jobs_ended(
                    conn, self.workflow_advancer, ends, self._insert_step_jobs, now, notices, self._run_states
                )
            cancelled = self._require(conn, job_id)
        self._committed(notices)
        return cancelled

    def retry_job(self, job_id: int, *, reset_steps: bool = False) -> JobRecord:
        now = time.time()
        with self._write() as conn:
            record = self._require(conn, job_id)
            if record.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
                raise InvalidJobStateError(
                    f"job {job_id} is {record.status.value}: only failed or cancelled jobs can be retried"
                )
            rows = conn.execute(
                "SELECT d.depends_on_id, j.status FROM dqflow_job_dependencies AS d"
                " LEFT JOIN dqflow_jobs AS j ON j.id = d.depends_on_id WHERE d.job_id = ?",
                (job_id,),
            ).fetchall()
            statuses = {row[0]: row[1] for row in rows if row[1] is not None}
            waits = unfinished_dependencies(None, [row[0] for row in rows], statuses, job_id=job_id)
            conn.execute(
                "UPDATE dqflow_jobs SET status = ?, attempts = 0, run_at = ?, failure_reason = NULL,"
                " progress = NULL, output = NULL, completed_at = NULL, cancelled_at = NULL, started_at = NULL,"
                " locked_by = NULL, locked_at = NULL, lease_expires_at = NULL, lease_token = lease_token + 1,"
                " wait = NULL, wake_at = NULL, steps = CASE WHEN ? THEN '{}' ELSE steps END,"
                " last_retried_at = ?, updated_at = ? WHERE id = ?",
                ("waiting" if waits else "pending", now, reset_steps, now, now, job_id),
            )
            self._event(conn, job_id, EventType.RETRIED, now, {"previous_status": record.status.value})
            return self._require(conn, job_id)

    def edit_job(self, job_id: int, changes: Mapping[str, Any]) -> JobRecord:
        unknown = set(changes) - EDITABLE_FIELDS
        if unknown:
            raise InvalidJobStateError(f"cannot edit {', '.join(sorted(unknown))}")
        now = time.time()
        columns = [f"{_OPTIONS[name].column} = ?" for name in changes]
        values = [_ENCODERS[_OPTIONS[name].kind](value, now) for name, value in changes.items()]
        with self._write() as conn:
            record = self._require(conn, job_id)
            if record.status is not JobStatus.PENDING:
                raise InvalidJobStateError(f"job {job_id} is {record.status.value}: only pending jobs can be edited")
            if columns:
                conn.execute(
                    f"UPDATE dqflow_jobs SET {', '.join(columns)}, updated_at = ? WHERE id = ?",
                    (*values, now, job_id),
                )
            fields = sorted(_OPTIONS[name].column for name in changes)
            self._event(conn, job_id, EventType.EDITED, now, {"fields": fields})
            return self._require(conn, job_id)

    # -- working ---------------------------------------------------------------------

    def claim_jobs(self, worker_id: str, job_types: Sequence[str] | None, limit: int, lease_ms: int) -> list[JobRecord]:
        type_clause = "" if not job_types else f" AND job_type IN ({','.join('?' * len(job_types))})"
        sql = (
            f"{_CLAIM} WHERE id IN (SELECT id FROM dqflow_jobs INDEXED BY dqflow_jobs_ready"
            f" WHERE status = 'pending' AND run_at <= ?{type_clause}"
            " ORDER BY priority DESC, run_at, id LIMIT ?) RETURNING *"
        )
        with self._write() as conn:
            # the clock is read under the write lock: a rate window prune_flow_control found
            # ended (under the same lock) is ended for every later claim too
            now = time.time()
            params: list[Any] = [worker_id, now, now + lease_ms / 1000, now, now, now, *(job_types or ()), limit]
            if conn.execute(flow.ANY_LIMITED_PENDING).fetchone() is None:
                records = _records(conn.execute(sql, params))
            else:
                ids = flow.pick_limited(conn, now, type_clause, params[6:-1], limit)
                records = _records(
                    conn.execute(
                        f"{_CLAIM} WHERE id IN (SELECT value FROM json_each(?)) RETURNING *",
                        [*params[:5], json.dumps(ids)],
                    )
                )
            _processing_events(conn, records, worker_id, now)
        records.sort(key=lambda r: (-r.priority, r.run_at, r.id))
        return records

    def renew_leases(self, worker_id: str, leases: Sequence[Lease], lease_ms: int) -> set[int]:
        if not leases:
            return set()
        now = time.time()
        held: set[int] = set()
        with self._write() as conn:
            for lease in leases:
                cursor = conn.execute(
                    "UPDATE dqflow_jobs SET lease_expires_at = ? WHERE id = ? AND lease_token = ?"
                    " AND status = 'processing'",
                    (now + lease_ms / 1000, lease.job_id, lease.lease_token),
                )
                if cursor.rowcount:
                    held.add(lease.job_id)
        return held

    def settle_jobs(self, outcomes: Sequence[Outcome]) -> list[bool]:
        return self._settle(outcomes, None)[0]

    def settle_and_claim(self, outcomes: Sequence[Outcome], claim: StepClaim) -> tuple[list[bool], list[JobRecord]]:
        return self._settle(outcomes, claim)

    def _settle(self, outcomes: Sequence[Outcome], claim: StepClaim | None) -> tuple[list[bool], list[JobRecord]]:
        applied = [False] * len(outcomes)
        taken: list[JobRecord] = []
        groups = outcomes_by_kind(outcomes)
        if not groups:
            return applied, taken
        now = time.time()
        ends: list[tuple[int, JobEnd]] = []
        notices: list[RunNotice] = []
        insert_jobs: _workflows.InsertJobs = self._insert_step_jobs
        if claim is not None:

            def insert_jobs(conn: sqlite3.Connection, jobs: Sequence[NewJob], now: float) -> list[int]:
                return self._insert_and_claim(conn, jobs, now, claim, taken)

        with self._write() as conn:
            for kind, positions in groups.items():
                items = [outcomes[i] for i in positions]
                if kind is Completion:
                    flags = self._complete(conn, cast("list[Completion]", items), now, ends)
                elif kind is Failure:
                    flags = self._fail(conn, cast("list[Failure]", items), now, ends)
                elif kind is Wait:
                    flags = _durable.settle_waits(conn, cast("list[Wait]", items), now)
                else:
                    flags = self._release(conn, cast("list[Release]", items), now)
                for position, flag in zip(positions, flags, strict=True):
                    applied[position] = flag
            if ends:
                _workflows.jobs_ended(conn, self.workflow_advancer, ends, insert_jobs, now, notices, self._run_states)
        self._committed(notices)
        return applied, taken

    @staticmethod
    def _complete(
        conn: sqlite3.Connection, completions: list[Completion], now: float, ends: list[tuple[int, JobEnd]]
    ) -> list[bool]:
        values = ",".join("(?,?,?)" for _ in completions)
        params: list[Any] = []
        for item in completions:
            params += (item.job_id, item.lease_token, item.output_json)
        rows = conn.execute(
            f"WITH done(id, token, output) AS (VALUES {values})"
            " UPDATE dqflow_jobs SET status = 'completed', output = COALESCE(done.output, dqflow_jobs.output),"
            " failure_reason = NULL, completed_at = ?, updated_at = ?, lease_expires_at = NULL FROM done"
            " WHERE dqflow_jobs.id = done.id AND dqflow_jobs.lease_token = done.token"
            " AND dqflow_jobs.status = 'processing' RETURNING dqflow_jobs.id, dqflow_jobs.workflow_run_id,"
            " dqflow_jobs.workflow_step, dqflow_jobs.workflow_item, dqflow_jobs.output",
            (*params, now, now),
        ).fetchall()
        applied = {row[0] for row in rows}
        ends.extend(
            (row[1], JobEnd(row[0], row[2], row[3], "completed", None if row[4] is None else _loads(row[4])))
            for row in rows
            if row[1] is not None
        )
        if applied:
            conn.executemany(
                "INSERT INTO dqflow_job_events (job_id, event_type, created_at) VALUES (?, 'completed', ?)",
                [(job_id, now) for job_id in applied],
            )
            SqliteStorage._ready_dependents(conn, sorted(applied), now)
        return [item.job_id in applied for item in completions]

    def _fail(
        self, conn: sqlite3.Connection, failures: list[Failure], now: float, ends: list[tuple[int, JobEnd]]
    ) -> list[bool]:
        applied: list[bool] = []
        for item in failures:
            row = conn.execute(
                "SELECT attempts, output, progress, dead_letter, workflow_run_id, workflow_step, workflow_item"
                " FROM dqflow_jobs"
                " WHERE id = ? AND lease_token = ? AND status = 'processing'",
                (item.job_id, item.lease_token),
            ).fetchone()
            if row is None:
                applied.append(False)
                continue
            attempt, output, progress, dead_letter, run_id, step, index = row
            entry = _error_entry(attempt, item.error, item.reason, now, item.traceback, output, progress)
            retry = item.retry_at is not None
            # a retried job starts its next attempt clean; a job failed for good keeps what it stored
            conn.execute(
                "UPDATE dqflow_jobs SET status = ?, run_at = COALESCE(?, run_at), failure_reason = ?,"
                " error_history = json_insert(error_history, '$[#]', json(?)), last_failed_at = ?,"
                " output = CASE WHEN ? THEN NULL ELSE output END, progress = CASE WHEN ? THEN NULL ELSE progress END,"
                " updated_at = ?, lease_expires_at = NULL WHERE id = ?",
                (
                    "pending" if retry else "failed",
                    _epoch(item.retry_at),
                    item.reason,
                    entry,
                    now,
                    retry,
                    retry,
                    now,
                    item.job_id,
                ),
            )
            self._event(
                conn,
                item.job_id,
                EventType.FAILED,
                now,
                {"attempt": attempt, "error": item.error, "reason": item.reason, "will_retry": retry},
            )
            if not retry:
                self._cancel_dependents(conn, [item.job_id], now)
                if dead_letter is not None:
                    self._add_dead_letter(conn, item.job_id, dead_letter, now)
                if run_id is not None:
                    ends.append((run_id, JobEnd(item.job_id, step, index, "failed", None, item.reason, item.error)))
            applied.append(True)
        return applied

    @staticmethod
    def _release(conn: sqlite3.Connection, releases: list[Release], now: float) -> list[bool]:
        applied: list[bool] = []
        for item in releases:
            cursor = conn.execute(
                "UPDATE dqflow_jobs SET status = 'pending', run_at = CASE WHEN ? THEN ? ELSE run_at END,"
                " attempts = attempts - ?, lease_expires_at = NULL, locked_by = NULL, locked_at = NULL,"
                " lease_token = lease_token + 1, updated_at = ?"
                " WHERE id = ? AND lease_token = ? AND status = 'processing'",
                (item.started, now, 0 if item.started else 1, now, item.job_id, item.lease_token),
            )
            applied.append(cursor.rowcount == 1)
        return applied

    def set_progress(self, job_id: int, lease_token: int, progress: int) -> bool:
        if not 0 <= progress <= 100:
            raise ValueError(f"progress must be between 0 and 100, not {progress}")
        return self._fenced_set("progress", job_id, lease_token, progress)

    def set_output(self, job_id: int, lease_token: int, output_json: str) -> bool:
        return self._fenced_set("output", job_id, lease_token, output_json)

    def _fenced_set(self, column: str, job_id: int, lease_token: int, value: Any) -> bool:
        now = time.time()
        with self._write() as conn:
            cursor = conn.execute(
                f"UPDATE dqflow_jobs SET {column} = ?, updated_at = ?"
                " WHERE id = ? AND lease_token = ? AND status = 'processing'",
                (value, now, job_id, lease_token),
            )
            return cursor.rowcount == 1

    def reclaim_expired(self) -> list[ReclaimedJob]:
        now = time.time()
        reclaimed: list[ReclaimedJob] = []
        ends: list[tuple[int, JobEnd]] = []
        notices: list[RunNotice] = []
        with self._write() as conn:
            rows = conn.execute(
                "SELECT id, attempts, max_attempts, locked_by, output, progress, dead_letter, workflow_run_id,"
                " workflow_step, workflow_item FROM dqflow_jobs WHERE status = 'processing' AND lease_expires_at < ?",
                (now,),
            ).fetchall()
            for job_id, attempts, max_attempts, locked_by, output, progress, dead_letter, run_id, step, index in rows:
                if attempts >= max_attempts:
                    error = (
                        f"worker {locked_by} stopped renewing its lease and the job has used all"
                        f" {max_attempts} attempts"
                    )
                    entry = _error_entry(attempts, error, "lease_expired", now, None, output, progress)
                    conn.execute(
                        "UPDATE dqflow_jobs SET status = 'failed', failure_reason = 'lease_expired',"
                        " error_history = json_insert(error_history, '$[#]', json(?)), last_failed_at = ?,"
                        " updated_at = ?, lease_expires_at = NULL, lease_token = lease_token + 1 WHERE id = ?",
                        (entry, now, now, job_id),
                    )
                    self._event(
                        conn,
                        job_id,
                        EventType.FAILED,
                        now,
                        {"attempt": attempts, "error": error, "reason": "lease_expired", "will_retry": False},
                    )
                    self._cancel_dependents(conn, [job_id], now)
                    if dead_letter is not None:
                        self._add_dead_letter(conn, job_id, dead_letter, now)
                    if run_id is not None:
                        ends.append((run_id, JobEnd(job_id, step, index, "failed", None, "lease_expired", error)))
                    reclaimed.append(ReclaimedJob(job_id, JobStatus.FAILED))
                else:
                    conn.execute(
                        "UPDATE dqflow_jobs SET status = 'pending', run_at = ?, lease_expires_at = NULL,"
                        " locked_by = NULL, locked_at = NULL, lease_token = lease_token + 1, updated_at = ?"
                        " WHERE id = ?",
                        (now, now, job_id),
                    )
                    self._event(
                        conn,
                        job_id,
                        EventType.RECLAIMED,
                        now,
                        {"attempt": attempts, "previous_worker": locked_by},
                    )
                    reclaimed.append(ReclaimedJob(job_id, JobStatus.PENDING))
            _workflows.jobs_ended(
                conn, self.workflow_advancer, ends, self._insert_step_jobs, now, notices, self._run_states
            )
        self._committed(notices)
        return reclaimed

    def next_due_in(self, job_types: Sequence[str] | None) -> float | None:
        sql = flow.NEXT_DUE
        wake_sql = (
            "SELECT min(wake_at) FROM dqflow_jobs INDEXED BY dqflow_jobs_wake"
            " WHERE status = 'waiting' AND wake_at IS NOT NULL"  # a sleeping durable job's wake-up
        )
        params: list[Any] = [time.time()]
        if job_types:
            marks = ",".join("?" * len(job_types))
            sql += f" AND c.job_type IN ({marks})"
            wake_sql += f" AND job_type IN ({marks})"
            params.extend(job_types)
        conn = self._conn()
        rows = (conn.execute(sql, params).fetchone(), conn.execute(wake_sql, params[1:]).fetchone())
        found = [row[0] for row in rows if row is not None and row[0] is not None]
        if not found:
            return None
        return max(0.0, float(min(found)) - time.time())

    # -- durable handlers (sqlite/_durable.py) --------------------------------------------

    def save_step(self, job_id: int, lease_token: int, name: str, step_json: str) -> bool:
        with self._write() as conn:
            return _durable.save_step(conn, job_id, lease_token, _durable.step_member(name, step_json), time.time())

    def create_token(self, job_id: int, lease_token: int, name: str, step_json: str, token: NewToken) -> bool:
        member = _durable.step_member(name, step_json)
        with self._write() as conn:
            return _durable.create_token(conn, job_id, lease_token, member, token, time.time())

    def get_token(self, token_id: str) -> TokenRecord | None:
        return _durable.get_token(self._conn(), token_id)

    def complete_token(self, token_id: str, data_json: str) -> TokenRecord:
        with self._write() as conn:
            return _durable.complete_token(conn, token_id, data_json, time.time())

    def wake_due_jobs(self) -> int:
        with self._write() as conn:
            return _durable.wake_due_jobs(conn, time.time())

    def wait_for_jobs(self, timeout: float, job_types: Sequence[str] | None) -> None:
        conn = self._conn()
        deadline = time.monotonic() + timeout
        first = conn.execute("PRAGMA data_version").fetchone()[0]
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(_WAIT_POLL_SECONDS, remaining))
            if conn.execute("PRAGMA data_version").fetchone()[0] != first:
                return

    # -- schedules -------------------------------------------------------------------

    def claim_tick(
        self, schedule: str, tick: datetime, job: NewJob | None, *, skip_while_unfinished: bool = False
    ) -> TickResult:
        with self._write() as conn:
            now = round(time.time(), 6)
            return _schedules.claim_tick(conn, self._insert_jobs, now, schedule, tick, job, skip_while_unfinished)

    def schedule_states(self) -> dict[str, ScheduleState]:
        return _schedules.schedule_states(self._conn())

    def set_schedule_paused(self, schedule: str, paused: bool) -> ScheduleState:
        with self._write() as conn:
            return _schedules.set_paused(conn, time.time(), schedule, paused)

    # -- clean-up (sqlite/_cleanup.py) ---------------------------------------------------

    def delete_finished_jobs(
        self, statuses: Sequence[JobStatus], before: datetime, *, job_type: str | None = None, limit: int = 500
    ) -> int:
        checked = finished_statuses(statuses)
        with self._write() as conn:
            return _cleanup.delete_finished(conn, checked, before, job_type, limit)

    def delete_old_events(self, before: datetime, *, limit: int = 500) -> int:
        with self._write() as conn:
            return _cleanup.delete_old_events(conn, before, limit)

    def count_flow_control(self) -> FlowControlCounts:
        windows = self._conn().execute("SELECT count(*) FROM dqflow_rate_windows").fetchone()[0]
        return FlowControlCounts(0, int(windows))  # slots are counted from the jobs: none stored

    def prune_flow_control(self, *, limit: int = 500) -> int:
        # SQLite counts concurrency slots from the jobs themselves: only rate windows are kept
        with self._write() as conn:
            return flow.prune_windows(conn, time.time(), limit)

    def count_finished_jobs(
        self, statuses: Sequence[JobStatus], before: datetime, *, job_type: str | None = None
    ) -> int:
        return _cleanup.count_finished(self._conn(), finished_statuses(statuses), before, job_type)

    # -- workflows (sqlite/_workflows.py) ---------------------------------------------------

    @staticmethod
    def _insert_step_jobs(conn: sqlite3.Connection, jobs: Sequence[NewJob], now: float) -> list[int]:
        """Insert runs' new step jobs (no idempotency keys, no dependencies), 500 per statement,
        then their ``added`` events in one; their ids in order."""
        ids: list[int] = []
        for start in range(0, len(jobs), 500):
            chunk = jobs[start : start + 500]
            params: list[Any] = []
            for job in chunk:
                params += _job_values(job, now)
            last = conn.execute(_insert_rows(len(chunk)), params).lastrowid
            # AUTOINCREMENT gives the rows of one INSERT consecutive ids in VALUES order under
            # the write lock (no trigger inserts jobs): the last one's id names them all
            assert last is not None
            ids.extend(range(last - len(chunk) + 1, last + 1))
        if ids:
            conn.execute(
                "INSERT INTO dqflow_job_events (job_id, event_type, created_at)"
                " SELECT id, 'added', ? FROM dqflow_jobs WHERE id BETWEEN ? AND ? ORDER BY id",
                (now, ids[0], ids[-1]),
            )
        return ids

    @staticmethod
    def _insert_and_claim(
        conn: sqlite3.Connection, jobs: Sequence[NewJob], now: float, claim: StepClaim, taken: list[JobRecord]
    ) -> list[int]:
        """``_insert_step_jobs``, then the claim of those ``claim`` picks (up to what is left of
        its limit), as ``claim_jobs`` claims: their records join ``taken``."""
        ids = SqliteStorage._insert_step_jobs(conn, jobs, now)
        picked = claim.pick(jobs, now)[: claim.limit - len(taken)]
        if picked:
            expires = now + claim.lease_ms / 1000
            records = _records(
                conn.execute(
                    f"{_CLAIM} WHERE id IN (SELECT value FROM json_each(?)) RETURNING *",
                    (claim.worker_id, now, expires, now, now, json.dumps([ids[i] for i in picked])),
                )
            )
            _processing_events(conn, records, claim.worker_id, now)
            taken.extend(sorted(records, key=lambda record: record.id))
        return ids

    def _committed(self, notices: list[RunNotice]) -> None:
        if notices and self.workflow_advancer is not None:
            self.workflow_advancer.committed(notices)

    def create_workflow_runs(self, runs: Sequence[NewWorkflowRun], plan: RunChange) -> list[tuple[int, bool]]:
        advances = planned_starts(runs, plan)
        if not runs:
            return []
        now = round(time.time(), 6)
        notices: list[RunNotice] = []
        with self._write() as conn:
            results = _workflows.create_runs(conn, runs, advances, self._insert_step_jobs, now, notices)
        self._committed(notices)
        return results

    def change_workflow_run(self, run_id: int, change: RunChange) -> WorkflowRun:
        now = time.time()
        notices: list[RunNotice] = []
        with self._write() as conn:
            _workflows.change_run(conn, run_id, change, self._insert_step_jobs, now, notices, self._run_states)
            run = _workflows.read_run(conn, run_id)
        self._committed(notices)
        assert run is not None
        return run

    def get_workflow_run(self, run_id: int) -> WorkflowRun | None:
        return _workflows.read_run(self._conn(), run_id)

    def list_workflow_runs(self, run_filter: WorkflowFilter) -> WorkflowPage:
        return _workflows.list_runs(self._conn(), run_filter)

    # -- change feed (sqlite/changes.py) ------------------------------------------------

    def change_cursor(self) -> str:
        with self._feed_call() as conn:
            return changes.change_cursor(conn)

    def read_changes(self, after: str, limit: int = 500) -> list[Change]:
        with self._feed_call() as conn:
            return changes.read_changes(conn, after, limit)

    def wait_for_changes(self, after: str, timeout: float) -> None:
        with self._feed_call() as conn:
            changes.wait_for_changes(conn, after, timeout, _WAIT_POLL_SECONDS, self._closing)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _error_entry(
    attempt: int, error: str, reason: str, now: float, traceback: str | None, output: str | None, progress: int | None
) -> str:
    """An ``error_history`` entry as JSON text (the attempt's output kept as stored)."""
    head = json.dumps({"attempt": attempt, "error": error, "reason": reason, "at": _iso(now), "traceback": traceback})
    return f'{head[:-1]}, "output": {"null" if output is None else output}, "progress": {json.dumps(progress)}}}'
