"""PostgreSQL storage: psycopg 3 and one SQL statement per operation.

Many workers on many machines share one database. A claim is one
``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING``
over the partial index of ready jobs; completions, failures and releases are
batched through ``unnest`` arrays and fenced on the lease token; each
statement writes its history events itself, so change and event commit
together. Our own pool runs in autocommit mode: one statement, one round trip,
one commit. Idle workers block on LISTEN (see ``_notifier``).
"""

from __future__ import annotations

import contextlib
import json
import operator
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import ConnectionPool, PoolTimeout

from dqflow.durable.model import NewToken, TokenRecord, shown_token_status
from dqflow.errors import (
    DqflowError,
    InvalidJobStateError,
    JobNotFoundError,
    NotMigratedError,
    StorageError,
    TokenAlreadyCompletedError,
    TokenExpiredError,
    TokenJobFinishedError,
    TokenNotFoundError,
)
from dqflow.json_values import loads
from dqflow.record import TIMESTAMP_FIELDS, JobEvent, JobRecord, JobStatus
from dqflow.storage.base import (
    EDITABLE_FIELDS,
    JOB_OPTIONS,
    WORKER_FORGET_AFTER_S,
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
    finished_statuses,
    outcomes_by_kind,
    unfinished_dependencies,
)
from dqflow.storage.changes import Change
from dqflow.storage.postgres import _schedules, changes
from dqflow.storage.postgres._connect import Settings, check_schema, parse_url, settings_from_connection
from dqflow.storage.postgres._notifier import Notifier, channel_name
from dqflow.storage.postgres._queries import Queries
from dqflow.storage.postgres._workflows import PgWorkflows, Written, ends_of, pipelined_transaction
from dqflow.storage.postgres.migrations import require_migrated
from dqflow.storage.workflows import (
    JobEnd,
    NewWorkflowRun,
    RunChange,
    WorkflowFilter,
)
from dqflow.workflow_record import WorkflowPage, WorkflowRun

__all__ = ["PostgresStorage"]

_RECLAIM_BATCH = 1000
CHANGES_RECHECK_SECONDS = 0.25
"""Longest ``wait_for_changes`` block: a change can become readable without a new NOTIFY."""
_PLANNER_DEFAULTS = (
    "SET LOCAL enable_bitmapscan = on; SET LOCAL enable_seqscan = on;"
    " SET LOCAL enable_hashjoin = on; SET LOCAL enable_mergejoin = on"
)
# What PostgreSQL answers when the dqflow tables (or their schema) do not exist.
_MISSING_SCHEMA = (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName)
_OPTIONS = {option.name: option for option in JOB_OPTIONS}
_OPTION_VALUES = operator.attrgetter(*_OPTIONS)  # a NewJob's options as a tuple, in JOB_OPTIONS order
_TIME_POSITIONS = [i for i, option in enumerate(JOB_OPTIONS) if option.kind is OptionKind.TIME]
_RUN_ID_POSITION = next(i for i, option in enumerate(JOB_OPTIONS) if option.name == "workflow_run_id")


def _utc(value: datetime | None) -> datetime | None:
    """Aware UTC (naive values are taken as UTC)."""
    if value is None or value.tzinfo is UTC:
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _iso(value: datetime | None) -> str | None:
    utc = _utc(value)
    return None if utc is None else utc.isoformat()


def _record(row: dict[str, Any]) -> JobRecord:
    for name in TIMESTAMP_FIELDS:
        value = row[name]
        if value is not None and value.tzinfo is not UTC:
            row[name] = value.astimezone(UTC)
    return JobRecord.from_storage(row)


def _token(row: dict[str, Any]) -> TokenRecord:
    for name in ("timeout_at", "created_at", "completed_at"):
        row[name] = _utc(row[name])
    if "job_status" in row:  # get_token.sql: read with its job's status
        row["status"] = shown_token_status(row["status"], row.pop("job_status"))
    return TokenRecord.from_storage(row)


def check_completable(token_id: str, found: dict[str, Any] | None) -> None:
    """Raise the ``TokenError`` that says why the locked token (``lock_token.sql``) cannot be completed."""
    if found is None:
        raise TokenNotFoundError(token_id)
    if found["status"] == "completed":
        raise TokenAlreadyCompletedError(f"token {token_id} was already completed: its data is kept")
    if found["status"] == "expired" or found["timed_out"]:
        raise TokenExpiredError(
            f"token {token_id} expired (its timeout passed): job {found['job_id']} went on without it"
        )
    if found["job_status"] not in ("pending", "processing", "waiting"):
        raise TokenJobFinishedError(token_id, found["job_id"], found["job_status"])


def _event(row: dict[str, Any]) -> JobEvent:
    created = row["created_at"]
    if created.tzinfo is not UTC:
        row["created_at"] = created.astimezone(UTC)
    return JobEvent.from_storage(row)


class PostgresStorage(Storage):
    """Jobs in PostgreSQL.

    ``target`` is a ``postgresql://`` / ``postgres://`` URL (``?schema=NAME``
    puts the tables in that schema), or the caller's own psycopg ``Connection``
    or ``ConnectionPool`` (then pass ``schema=`` if the tables are not on its
    search path). With a URL, dqflow owns a pool of ``pool_min_size`` to
    ``pool_max_size`` connections; ``pool_timeout`` bounds the wait for one.
    """

    def __init__(
        self,
        target: str | psycopg.Connection[Any] | ConnectionPool[Any],
        *,
        schema: str | None = None,
        pool_min_size: int = 1,
        pool_max_size: int = 10,
        pool_timeout: float = 10.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self._own_pool = False
        self._conn: psycopg.Connection[Any] | None = None
        self._conn_lock = threading.Lock()
        if isinstance(target, str):
            settings = parse_url(target, schema=schema, connect_timeout=connect_timeout)
            self._pool: ConnectionPool[Any] | None = ConnectionPool(
                settings.conninfo(hot_path=True),
                kwargs={"autocommit": True},
                min_size=pool_min_size,
                max_size=max(pool_min_size, pool_max_size),
                timeout=pool_timeout,
                open=False,
                name="dqflow",
            )
            self._own_pool = True
        elif isinstance(target, ConnectionPool):
            self._pool = target
            with target.connection() as conn:
                settings = settings_from_connection(conn, check_schema(schema))
        elif isinstance(target, psycopg.Connection):
            self._pool = None
            self._conn = target
            settings = settings_from_connection(target, check_schema(schema))
        else:
            raise TypeError(f"PostgresStorage needs a URL, a psycopg Connection or a ConnectionPool, not {target!r}")
        self._settings: Settings = settings
        # a pool runs two batches' transactions side by side (a single connection takes turns)
        self.concurrent_settles = 1 if self._pool is None else 2
        self.schema = settings.schema
        self.url = settings.display
        self._q = Queries.load(self.schema)
        self._channel = channel_name(self.schema)
        self._notifier = Notifier(self._listen_connection, self._channel, self.url, self._lost_connection)
        self._changes_notifier: Notifier | None = None
        self._workflows = PgWorkflows(self)
        self._open_lock = threading.Lock()
        self._opened = not self._own_pool
        self._closed = False

    # -- connections -----------------------------------------------------------------

    def _listen_connection(self) -> psycopg.Connection[Any]:
        return self._settings.connect(autocommit=True)

    def _ensure_open(self) -> ConnectionPool[Any] | None:
        if not self._opened:
            with self._open_lock:
                if self._closed:
                    raise StorageError(f"PostgreSQL storage {self.url} is closed")
                if not self._opened:
                    assert self._pool is not None
                    self._settings.probe()
                    self._pool.open(wait=False)
                    self._opened = True
        return self._pool

    @contextmanager
    def _connection(self, action: str) -> Iterator[psycopg.Connection[Any]]:
        """A connection for one operation; psycopg and pool errors become ``StorageError``.

        With a pool, a broken connection is discarded when it goes back (and the
        idle ones are checked), so the next call gets a working one.
        """
        try:
            pool = self._ensure_open()
            if pool is not None:
                with pool.connection() as conn:
                    yield conn
            else:
                assert self._conn is not None
                with self._conn_lock, self._conn.transaction():
                    yield self._conn
        except DqflowError:
            raise
        except PoolTimeout as exc:
            raise StorageError(
                f"PostgreSQL at {self.url} did not answer in time ({action}): no connection"
                f" could be made within {self._pool.timeout if self._pool else 0:g}s: {exc}"
            ) from exc
        except _MISSING_SCHEMA as exc:
            raise NotMigratedError(
                f"PostgreSQL {self.url} has no dqflow tables ({exc.diag.message_primary}): run `dqflow migrate` first"
            ) from exc
        except psycopg.OperationalError as exc:
            self._lost_connection()
            raise StorageError(
                f"lost the connection to PostgreSQL at {self.url} ({action}): {exc}".strip()
                + " (the database may be restarting; retry)"
            ) from exc
        except psycopg.Error as exc:
            raise StorageError(f"PostgreSQL {action} failed on {self.url}: {exc}".strip()) from exc

    def _lost_connection(self) -> None:
        """After a connection error: drop the pool's other dead connections too."""
        if self._pool is not None and self._opened and not self._closed:
            # Best effort: the pool also replaces broken connections on its own.
            with contextlib.suppress(Exception):
                self._pool.check()

    def _rows(
        self, action: str, query: str, params: Mapping[str, Any], *, prepare: bool | None = None
    ) -> list[dict[str, Any]]:
        with self._connection(action) as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(query, params, prepare=prepare)
            return cur.fetchall()

    def _ids(self, action: str, query: str, params: Mapping[str, Any]) -> set[int]:
        with self._connection(action) as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(query, params)
            return {int(row[0]) for row in cur.fetchall()}

    def _rowcount(self, action: str, query: str, params: Mapping[str, Any]) -> int:
        with self._connection(action) as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(query, params)
            return cur.rowcount

    # -- lifecycle -------------------------------------------------------------------

    def setup(self) -> None:
        with self._connection("checking migrations") as conn:
            require_migrated(conn, self.schema, self.url)

    def close(self) -> None:
        self._closed = True
        self._notifier.close()
        if self._changes_notifier is not None:
            self._changes_notifier.close()
        if self._own_pool and self._pool is not None and self._opened:
            self._pool.close()

    # -- producing -------------------------------------------------------------------

    def add_jobs(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[AddResult]:
        if not jobs:
            return []
        # Repeated idempotency keys within the batch: only the first is sent.
        first_of_key: dict[str, int] = {}
        sent: list[NewJob] = []
        slot: list[int] = []
        for job in jobs:
            key = job.idempotency_key
            if key is not None and key in first_of_key:
                slot.append(-1 - first_of_key[key])
                continue
            if key is not None:
                first_of_key[key] = len(sent)
            slot.append(len(sent))
            sent.append(job)
        params = {"jobs": self._jobs_json(sent), "channel": self._channel}
        if connection is not None:
            rows = self._add_on(connection, params, sent)
        else:
            with self._connection("adding jobs") as conn:
                rows = self._add_on(conn, params, sent)
        results = [AddResult(int(job_id or 0), created) for job_id, created in rows]
        return [results[i] if i >= 0 else AddResult(results[-1 - i].job_id, False) for i in slot]

    def add_unique(self, job: NewJob, rule: UniqueRule) -> AddResult:
        with self._connection("adding a unique job") as conn, conn.transaction():
            return _schedules.add_unique(conn, self._q, self.add_jobs, job, rule)

    @staticmethod
    def _jobs_json(
        jobs: Sequence[NewJob], workflow_run_ids: Sequence[int] | None = None, ids: Sequence[int] | None = None
    ) -> str:
        """The ``jobs`` parameter of add_jobs.sql: one JSON array of option values per job
        (``workflow_run_ids``: one per job, in place of the jobs' own; ``ids``: the drawn ids
        of add_jobs_drawn, one per job, after its values)."""
        values: list[list[Any]] = []
        for job in jobs:
            row = list(_OPTION_VALUES(job))  # tuples (tags) become JSON arrays
            for position in _TIME_POSITIONS:
                row[position] = _iso(row[position])
            values.append(row)
        if workflow_run_ids is not None:
            for row, run_id in zip(values, workflow_run_ids, strict=True):
                row[_RUN_ID_POSITION] = run_id
        if ids is not None:
            for row, job_id in zip(values, ids, strict=True):
                row.append(job_id)
        return json.dumps(values)

    def _add_on(
        self, conn: psycopg.Connection[Any], params: dict[str, Any], jobs: list[NewJob]
    ) -> list[tuple[int | None, bool]]:
        """Run the insert on ``conn`` (the caller's transaction, if it has one: no commit here)."""
        if not isinstance(conn, psycopg.Connection):
            raise TypeError(f"connection= must be a psycopg Connection, not {type(conn).__name__}")
        if not any(job.depends_on for job in jobs):
            return self._insert(conn, params, [job.idempotency_key for job in jobs])
        try:
            with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
                wanted = sorted({dependency for job in jobs for dependency in job.depends_on})
                cur.execute(self._q.lock_dependencies, {"ids": wanted})
                statuses: dict[int, str] = {int(job_id): status for job_id, status in cur.fetchall()}
                unfinished = [
                    unfinished_dependencies(index, job.depends_on, statuses) for index, job in enumerate(jobs)
                ]
                rows = self._insert(conn, params, [job.idempotency_key for job in jobs])
                hold: dict[str, list[int]] = {"depends_on_id": [], "job_id": [], "waiting_id": [], "unfinished": []}
                for (job_id, created), waits_for in zip(rows, unfinished, strict=True):
                    if created and waits_for and job_id is not None:
                        hold["depends_on_id"] += waits_for
                        hold["job_id"] += [job_id] * len(waits_for)
                        hold["waiting_id"].append(job_id)
                        hold["unfinished"].append(len(waits_for))
                if hold["waiting_id"]:
                    cur.execute(self._q.hold_dependents, hold)
                return rows
        except DqflowError:
            raise
        except psycopg.Error as exc:
            raise StorageError(f"PostgreSQL insert of jobs failed: {exc}".strip()) from exc

    def _insert(
        self, conn: psycopg.Connection[Any], params: dict[str, Any], keys: list[str | None]
    ) -> list[tuple[int | None, bool]]:
        try:
            with conn.cursor(row_factory=tuple_row) as cur:
                if all(key is None for key in keys):
                    cur.execute(self._q.add_jobs_unkeyed, params)
                    return [(int(row[0]), True) for row in cur.fetchall()]
                cur.execute(self._q.add_jobs, params)
                inserted: set[int] = set()
                drawn: list[tuple[int, int | None]] = []
                for part, _ord, job_id, existing_id in cur.fetchall():
                    if part:
                        inserted.add(job_id)
                    else:
                        drawn.append((job_id, existing_id))
                rows: list[tuple[int | None, bool]] = [
                    (new_id, True) if new_id in inserted else (existing_id, False) for new_id, existing_id in drawn
                ]
                missing = [key for (job_id, _), key in zip(rows, keys, strict=True) if job_id is None]
                if missing:
                    # A concurrent transaction committed the same key after our snapshot.
                    cur.execute(self._q.find_idempotency_keys, {"keys": missing})
                    found: dict[str, int] = {str(key): int(job_id) for key, job_id in cur.fetchall()}
                    rows = [
                        (found.get(key or ""), False) if job_id is None else (job_id, created)
                        for (job_id, created), key in zip(rows, keys, strict=True)
                    ]
                    if any(job_id is None for job_id, _ in rows):
                        raise StorageError("an idempotency key was taken by a concurrent insert; retry the add")
                return rows
        except DqflowError:
            raise
        except _MISSING_SCHEMA as exc:
            raise NotMigratedError(
                f"PostgreSQL has no dqflow tables ({exc.diag.message_primary}): run `dqflow migrate` first"
            ) from exc
        except psycopg.Error as exc:
            raise StorageError(f"PostgreSQL insert of jobs failed: {exc}".strip()) from exc

    # -- reading ---------------------------------------------------------------------

    def get_job(self, job_id: int) -> JobRecord | None:
        rows = self._rows("reading a job", self._q.get_job, {"job_id": job_id})
        return _record(rows[0]) if rows else None

    def list_jobs(self, job_filter: JobFilter) -> JobPage:
        tags = sorted(set(job_filter.tags))
        limit = max(0, job_filter.limit)
        params = {
            "statuses": [JobStatus(s).value for s in job_filter.statuses] or None,
            "job_type": job_filter.job_type,
            "created_after": _utc(job_filter.created_after),
            "created_before": _utc(job_filter.created_before),
            "cursor": job_filter.cursor,
            "tag_mode": TagMode(job_filter.tag_mode).value if tags else None,
            "tags": tags,
            "tags_json": json.dumps(tags),
            "limit": limit + 1,
        }
        # Unprepared: planned with the actual values, so the chosen filters use their
        # indexes; bitmap scans (GIN on tags, combined filters) allowed for this one.
        with self._connection("listing jobs") as conn, conn.transaction():
            conn.execute(_PLANNER_DEFAULTS)
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute(self._q.list_jobs, params, prepare=False)
                rows = cur.fetchall()
        jobs = [_record(row) for row in rows[:limit]]
        next_cursor = jobs[-1].id if len(rows) > limit and jobs else None
        return JobPage(jobs, next_cursor)

    def get_events(self, job_id: int) -> list[JobEvent]:
        rows = self._rows("reading job events", self._q.get_events, {"job_id": job_id})
        return [_event(row) for row in rows]

    def count_jobs(self) -> dict[tuple[str, JobStatus], int]:
        rows = self._rows("counting jobs", self._q.count_jobs, {})
        return {(row["job_type"], JobStatus(row["status"])): int(row["count"]) for row in rows}

    def oldest_pending(self) -> JobRecord | None:
        rows = self._rows("reading the oldest pending job", self._q.oldest_pending, {})
        return _record(rows[0]) if rows else None

    # -- workers ---------------------------------------------------------------------

    def beat_worker(self, worker: WorkerInfo) -> None:
        params = {
            "worker_id": worker.worker_id,
            "host": worker.host,
            "pid": worker.pid,
            "started_at": worker.started_at,
            "concurrency": worker.concurrency,
            "job_types": json.dumps(list(worker.job_types)),
            "forget_after_s": WORKER_FORGET_AFTER_S,
        }
        self._rowcount("recording a worker's beat", self._q.beat_worker, params)

    def remove_worker(self, worker_id: str) -> None:
        self._rowcount("removing a worker", self._q.remove_worker, {"worker_id": worker_id})

    def list_workers(self) -> list[WorkerInfo]:
        return [
            WorkerInfo(
                worker_id=row["worker_id"],
                host=row["host"],
                pid=row["pid"],
                started_at=row["started_at"].astimezone(UTC),
                last_seen=row["last_seen"].astimezone(UTC),
                concurrency=row["concurrency"],
                job_types=tuple(row["job_types"]),
            )
            for row in self._rows("listing workers", self._q.list_workers, {})
        ]

    # -- managing --------------------------------------------------------------------

    def _change(self, action: str, query: str, params: dict[str, Any], allowed: str) -> JobRecord:
        """Run a single-job state change answering (previous_status, job.*)."""
        return self._changed(action, params["job_id"], self._rows(action, query, params), allowed)

    @staticmethod
    def _changed(action: str, job_id: int, rows: list[dict[str, Any]], allowed: str) -> JobRecord:
        """The record a single-job state change answered, or its error."""
        if not rows:
            raise JobNotFoundError(job_id)
        row = rows[0]
        previous = row.pop("previous_status")
        if row["id"] is None:
            raise InvalidJobStateError(f"job {job_id} is {previous}: only {allowed} jobs can be {action}")
        return _record(row)

    def cancel_job(self, job_id: int) -> JobRecord:
        allowed = "pending, waiting or processing"
        params = {"job_id": job_id, "channel": self._channel}
        if self.workflow_advancer is None:
            return self._change("cancelled", self._q.cancel_job, params, allowed)
        written = Written()
        with self._connection("cancelling a job") as conn:
            with conn.transaction():
                with conn.cursor(row_factory=tuple_row) as cur:
                    cur.execute(self._q.workflow_job_run, {"job_id": job_id})
                    found = cur.fetchone()
                run_id = None if found is None or found[0] is None else int(found[0])
                states = self._workflows.lock(conn, [run_id] if run_id is not None else [])  # the run before its job
                with conn.cursor(row_factory=dict_row) as cur:
                    cur.execute(self._q.cancel_job, params)
                    record = self._changed("cancelled", job_id, cur.fetchall(), allowed)
                if run_id is not None:
                    end = JobEnd(
                        job_id, record.workflow_step or "", record.workflow_item, "cancelled", reason="cancelled"
                    )
                    self._workflows.jobs_ended(conn, states, [(run_id, end)], written)
            written.committed(conn)
        self._committed(written)
        return record

    def retry_job(self, job_id: int, *, reset_steps: bool = False) -> JobRecord:
        with self._connection("retrying a job") as conn, conn.transaction():
            with conn.cursor(row_factory=tuple_row) as cur:
                cur.execute(self._q.lock_own_dependencies, {"job_id": job_id})
                statuses: dict[int, str] = {int(dependency): status for dependency, status in cur.fetchall()}
            waits = unfinished_dependencies(None, list(statuses), statuses, job_id=job_id)
            params = {
                "job_id": job_id,
                "channel": self._channel,
                "unfinished": len(waits),
                "reset_steps": reset_steps,
            }
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute(self._q.retry_job, params)
                rows = cur.fetchall()
        return self._changed("retried", job_id, rows, "failed or cancelled")

    def edit_job(self, job_id: int, changes: Mapping[str, Any]) -> JobRecord:
        unknown = set(changes) - EDITABLE_FIELDS
        if unknown:
            raise InvalidJobStateError(
                f"cannot edit {', '.join(sorted(unknown))}: editable fields are {', '.join(sorted(EDITABLE_FIELDS))}"
            )
        params: dict[str, Any] = {"job_id": job_id, "channel": self._channel}
        for option in JOB_OPTIONS:
            if not option.editable:
                continue
            value = changes.get(option.name)
            if option.kind is OptionKind.STRINGS and value is not None:
                value = json.dumps(list(value))
            elif option.kind is OptionKind.TIME:
                value = _utc(value)
            params[f"set_{option.column}"] = option.name in changes
            params[option.column] = value
        params["fields"] = json.dumps(sorted(_OPTIONS[name].column for name in changes))
        return self._change("edited", self._q.edit_job, params, "pending")

    # -- working ---------------------------------------------------------------------

    def claim_jobs(self, worker_id: str, job_types: Sequence[str] | None, limit: int, lease_ms: int) -> list[JobRecord]:
        if limit <= 0:
            return []
        params = {
            "worker_id": worker_id,
            "job_types": None if job_types is None else list(job_types),
            "limit": limit,
            "lease_ms": lease_ms,
        }
        return [_record(row) for row in self._rows("claiming jobs", self._q.claim_jobs, params)]

    def renew_leases(self, worker_id: str, leases: Sequence[Lease], lease_ms: int) -> set[int]:
        if not leases:
            return set()
        params = {
            "job_id": [lease.job_id for lease in leases],
            "lease_token": [lease.lease_token for lease in leases],
            "lease_ms": lease_ms,
        }
        return self._ids("renewing leases", self._q.renew_leases, params)

    def settle_jobs(self, outcomes: Sequence[Outcome]) -> list[bool]:
        return self._settle(outcomes, None)[0]

    def settle_and_claim(self, outcomes: Sequence[Outcome], claim: StepClaim) -> tuple[list[bool], list[JobRecord]]:
        return self._settle(outcomes, claim)

    def _settle(self, outcomes: Sequence[Outcome], claim: StepClaim | None) -> tuple[list[bool], list[JobRecord]]:
        """settle_jobs; with a ``claim``, the new step jobs it picks are inserted claimed by the
        advance's insert (``PgWorkflows.write``), in the same transaction and round trip."""
        applied = [False] * len(outcomes)
        groups = outcomes_by_kind(outcomes)
        if not groups:
            return applied, []
        statements = [
            (kind, positions, *self._settle_statement(kind, [outcomes[i] for i in positions]))
            for kind, positions in groups.items()
        ]
        # Step jobs: their runs are locked first, in the same transaction (plain jobs skip all this).
        run_ids = sorted(
            {
                o.workflow_run_id
                for o in outcomes
                if isinstance(o, (Completion, Failure)) and o.workflow_run_id is not None
            }
        )
        if run_ids:
            return self._settle_steps(outcomes, statements, run_ids, claim)
        written = Written()
        with self._connection("settling jobs") as conn:
            with contextlib.ExitStack() as stack:
                # One kind: one autocommit statement (atomic by itself, one round trip);
                # several kinds, or waits (two statements): all in one transaction.
                if len(statements) > 1 or Wait in groups:
                    stack.enter_context(conn.transaction())
                cur = stack.enter_context(conn.cursor(row_factory=tuple_row))
                ends: list[tuple[int, JobEnd]] = []
                for kind, positions, query, params in statements:
                    cur.execute(query, params)
                    ends += self._settled(conn, outcomes, applied, kind, positions, cur.fetchall())
                if ends and self.workflow_advancer is not None:
                    # in settle's transaction; a step job settled without its run id (autocommitted
                    # already) moves its run in a transaction of its own
                    in_transaction = len(statements) > 1 or Wait in groups
                    with contextlib.nullcontext() if in_transaction else conn.transaction():
                        states = self._workflows.lock(conn, sorted({run_id for run_id, _ in ends}))
                        self._workflows.jobs_ended(conn, states, ends, written, claim=claim)
            written.committed(conn)
            taken = [_record(row) for row in written.claimed_rows()]
        self._committed(written)
        return applied, taken

    def _settled(
        self,
        conn: psycopg.Connection[Any],
        outcomes: Sequence[Outcome],
        applied: list[bool],
        kind: type[Outcome],
        positions: list[int],
        rows: list[tuple[Any, ...]],
    ) -> list[tuple[int, JobEnd]]:
        """Read one settle statement's answer: flag the outcomes it applied; after token
        waits, make ready the jobs whose token was completed meanwhile; return the step
        jobs that ended (their runs move)."""
        done = {int(row[0]) for row in rows}
        for position in positions:
            applied[position] = outcomes[position].job_id in done
        if kind is Wait:
            if any(getattr(outcomes[p], "token_id", None) for p in positions):
                # its own statement, so it sees a token completed while the first one waited
                conn.execute(self._q.wait_ready, {"job_id": sorted(done), "channel": self._channel})
            return []
        if kind is Release:
            return []
        return ends_of(rows, "complete" if kind is Completion else "fail")

    def _settle_steps(
        self,
        outcomes: Sequence[Outcome],
        statements: list[tuple[Any, ...]],
        run_ids: list[int],
        claim: StepClaim | None,
    ) -> tuple[list[bool], list[JobRecord]]:
        """Settle a batch with step jobs in one transaction, pipelined (``pipelined_transaction``:
        no BEGIN or COMMIT on a pool's connection). The runs are locked before any job: by the
        batch's completion statement, sent first (``workflow_lock_complete_jobs``), else by a
        statement of their own; the lock also draws ids for the jobs the advance may add (one
        per step completion: enough for chains and joins). The settle statements go in one
        round trip; the advance's writes and the commit in a second one (a third draws more
        ids first when a fan-out needs them). A ``claim``'s jobs come with the second round trip's
        answer, read once it synced."""
        applied = [False] * len(outcomes)
        written = Written()
        completions = sum(1 for o in outcomes if isinstance(o, Completion) and o.workflow_run_id is not None)
        statements = sorted(statements, key=lambda statement: statement[0] is not Completion)
        lock_params, locked = self._workflows.lock_params(run_ids, completions)
        with self._connection("settling step jobs") as conn:
            with pipelined_transaction(conn), contextlib.ExitStack() as stack:
                lock = None
                if statements[0][0] is not Completion:
                    lock = stack.enter_context(conn.cursor(row_factory=tuple_row))
                    lock.execute(self._q.workflow_lock_runs, lock_params)  # the runs before their jobs
                sent = []
                for kind, positions, query, params in statements:
                    cur = stack.enter_context(conn.cursor(row_factory=tuple_row))
                    if kind is Completion:  # the runs before their jobs
                        query, params = self._q.workflow_lock_complete_jobs, params | lock_params
                    cur.execute(query, params)
                    sent.append((kind, positions, cur))
                states = {} if lock is None else locked.read(lock.fetchall())
                ends: list[tuple[int, JobEnd]] = []
                for kind, positions, cur in sent:
                    rows = cur.fetchall()
                    if kind is Completion:  # part 0: the runs and drawn ids; part 1: as complete_jobs
                        states = locked.read([row[1:3] + row[4:] for row in rows if row[0] == 0])
                        rows = [(row[1], row[2], row[4], row[3], loads(row[5])) for row in rows if row[0] == 1]
                    ends += self._settled(conn, outcomes, applied, kind, positions, rows)
                if ends:
                    missing = sorted({run_id for run_id, _ in ends} - states.keys())
                    states.update(self._workflows.lock(conn, missing))
                    self._workflows.jobs_ended(conn, states, ends, written, locked.drawn, claim)
            written.committed(conn)
            taken = [_record(row) for row in written.claimed_rows()]
        self._committed(written)
        return applied, taken

    def _settle_statement(self, kind: type[Outcome], items: list[Any]) -> tuple[str, dict[str, Any]]:
        """The batched statement (arrays, one element per job) writing ``items`` of one kind."""
        ids = [item.job_id for item in items]
        tokens = [item.lease_token for item in items]
        if kind is Completion:
            return self._q.complete_jobs, {
                "job_id": ids,
                "lease_token": tokens,
                "output": [c.output_json for c in items],
                "channel": self._channel,
            }
        if kind is Failure:
            return self._q.fail_jobs, {
                "job_id": ids,
                "lease_token": tokens,
                "error": [f.error for f in items],
                "reason": [f.reason for f in items],
                "retry_at": [_utc(f.retry_at) for f in items],
                "traceback": [f.traceback for f in items],
                "channel": self._channel,
            }
        if kind is Wait:
            return self._q.wait_jobs, {
                "job_id": ids,
                "lease_token": tokens,
                "wait": [w.wait_json() for w in items],
                "wake_at": [_utc(w.until) for w in items],
                "channel": self._channel,
            }
        return self._q.release_jobs, {
            "job_id": ids,
            "lease_token": tokens,
            "started": [r.started for r in items],
            "channel": self._channel,
        }

    def set_progress(self, job_id: int, lease_token: int, progress: int) -> bool:
        if not 0 <= progress <= 100:
            raise ValueError(f"progress must be between 0 and 100, got {progress}")
        params = {"job_id": job_id, "lease_token": lease_token, "progress": progress}
        return self._rowcount("saving progress", self._q.set_progress, params) == 1

    def set_output(self, job_id: int, lease_token: int, output_json: str) -> bool:
        params = {"job_id": job_id, "lease_token": lease_token, "output": output_json}
        return self._rowcount("saving output", self._q.set_output, params) == 1

    def reclaim_expired(self) -> list[ReclaimedJob]:
        reclaimed: list[ReclaimedJob] = []
        while True:
            params = {"limit": _RECLAIM_BATCH, "channel": self._channel}
            written = Written()
            with self._connection("reclaiming expired leases") as conn:
                with contextlib.ExitStack() as stack:
                    states = {}
                    if self.workflow_advancer is not None:  # runs of step jobs about to fail are locked first
                        stack.enter_context(conn.transaction())
                        with conn.cursor(row_factory=tuple_row) as cur:
                            cur.execute(self._q.workflow_expired_runs, {})
                            states = self._workflows.lock(conn, [int(row[0]) for row in cur.fetchall()])
                    with conn.cursor(row_factory=tuple_row) as cur:
                        cur.execute(self._q.reclaim_expired, params)
                        rows = cur.fetchall()
                    batch = [ReclaimedJob(int(row[0]), JobStatus(row[1])) for row in rows]
                    ends = [
                        (int(run_id), JobEnd(int(job_id), step, item, "failed", None, "lease_expired", error))
                        for job_id, status, run_id, step, item, error in rows
                        if status == "failed" and run_id is not None and int(run_id) in states
                    ]
                    self._workflows.jobs_ended(conn, states, ends, written)
                written.committed(conn)
            self._committed(written)
            reclaimed.extend(batch)
            if len(batch) < _RECLAIM_BATCH:
                return reclaimed

    def next_due_in(self, job_types: Sequence[str] | None) -> float | None:
        params = {"job_types": None if job_types is None else list(job_types)}
        with self._connection("reading the next due time") as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(self._q.next_due_in, params)
            row = cur.fetchone()
        if row is None or row[0] is None:
            return None
        return max(0.0, float(row[0]))

    # -- durable handlers ----------------------------------------------------------------

    def save_step(self, job_id: int, lease_token: int, name: str, step_json: str) -> bool:
        params = {"job_id": job_id, "lease_token": lease_token, "member": f"{json.dumps(name)}:{step_json}"}
        return bool(self._ids("saving a step", self._q.save_step, params))

    def create_token(self, job_id: int, lease_token: int, name: str, step_json: str, token: NewToken) -> bool:
        params = {
            "job_id": job_id,
            "lease_token": lease_token,
            "member": f"{json.dumps(name)}:{step_json}",
            "token_id": token.id,
            "signal": token.signal,
            "schema": token.schema_json,
            "timeout_at": _utc(token.timeout_at),
        }
        return bool(self._ids("creating a token", self._q.create_token, params))

    def get_token(self, token_id: str) -> TokenRecord | None:
        rows = self._rows("reading a token", self._q.get_token, {"token_id": token_id})
        return _token(rows[0]) if rows else None

    def complete_token(self, token_id: str, data_json: str) -> TokenRecord:
        params = {"token_id": token_id, "data": data_json, "channel": self._channel}
        with (
            self._connection("completing a token") as conn,
            conn.transaction(),
            conn.cursor(row_factory=dict_row) as cur,
        ):
            cur.execute(self._q.lock_token_job, params)
            cur.execute(self._q.lock_token, params)
            check_completable(token_id, cur.fetchone())
            cur.execute(self._q.complete_token, params)
            row = cur.fetchone()
        assert row is not None
        return _token(row)

    def wake_due_jobs(self) -> int:
        woken = 0
        while True:
            params = {"limit": _RECLAIM_BATCH, "channel": self._channel}
            batch = len(self._ids("waking due jobs", self._q.wake_due_jobs, params))
            woken += batch
            if batch < _RECLAIM_BATCH:
                return woken

    def wait_for_jobs(self, timeout: float, job_types: Sequence[str] | None) -> None:
        if self._closed:
            return
        self._notifier.wait(timeout, job_types)

    # -- schedules (postgres/_schedules.py) ----------------------------------------------

    def claim_tick(
        self, schedule: str, tick: datetime, job: NewJob | None, *, skip_while_unfinished: bool = False
    ) -> TickResult:
        with self._connection("claiming a schedule tick") as conn, conn.transaction():
            return _schedules.claim_tick(conn, self._q, self.add_jobs, schedule, tick, job, skip_while_unfinished)

    def schedule_states(self) -> dict[str, ScheduleState]:
        return _schedules.schedule_states(self._rows("reading schedules", self._q.schedule_states, {}))

    def set_schedule_paused(self, schedule: str, paused: bool) -> ScheduleState:
        rows = self._rows("pausing a schedule", self._q.set_schedule_paused, {"name": schedule, "paused": paused})
        return _schedules.state_of(rows[0])

    # -- clean-up --------------------------------------------------------------------------

    def delete_finished_jobs(
        self, statuses: Sequence[JobStatus], before: datetime, *, job_type: str | None = None, limit: int = 500
    ) -> int:
        params = self._cleanup_params(statuses, before, job_type)
        if limit <= 0 or not params["statuses"]:
            return 0
        return self._rowcount("deleting finished jobs", self._q.delete_finished_jobs, {**params, "limit": limit})

    def delete_old_events(self, before: datetime, *, limit: int = 500) -> int:
        if limit <= 0:
            return 0
        rows = self._rows("deleting old job events", self._q.delete_old_events, {"before": before, "limit": limit})
        return int(rows[0]["count"])

    def prune_flow_control(self, *, limit: int = 500) -> int:
        if limit <= 0:
            return 0
        params = {"limit": limit}
        slots = self._rowcount("pruning idle concurrency slots", self._q.prune_idle_slots, params)
        if not self._rows("looking for ended rate windows", self._q.any_ended_window, {})[0]["found"]:
            return slots
        with self._connection("pruning ended rate windows") as conn:
            try:
                with conn.transaction(), conn.cursor() as cur:
                    cur.execute("SET LOCAL lock_timeout = '100ms'")
                    cur.execute(self._q.lock_rate_windows)
                    cur.execute(self._q.prune_ended_windows, params)
                    windows = cur.rowcount
            except psycopg.errors.LockNotAvailable:
                windows = 0  # claims kept the table busy for 100 ms: the next pass tries again
        return slots + windows

    def count_flow_control(self) -> FlowControlCounts:
        row = self._rows("counting flow-control rows", self._q.count_flow_control, {})[0]
        return FlowControlCounts(int(row["slot_keys"]), int(row["rate_windows"]))

    def count_finished_jobs(
        self, statuses: Sequence[JobStatus], before: datetime, *, job_type: str | None = None
    ) -> int:
        params = self._cleanup_params(statuses, before, job_type)
        rows = self._rows("counting finished jobs", self._q.count_finished_jobs, params)
        return int(rows[0]["count"])

    @staticmethod
    def _cleanup_params(statuses: Sequence[JobStatus], before: datetime, job_type: str | None) -> dict[str, Any]:
        return {
            "statuses": [status.value for status in finished_statuses(statuses)],
            "before": before,
            "job_type": job_type,
        }

    # -- workflows (postgres/_workflows.py) -------------------------------------------------

    def _committed(self, written: Written) -> None:
        """After the transaction that moved runs: keep the states it wrote (if it committed on
        its own), tell the advancer what changed."""
        self._workflows.keep(written)
        if written.notices and self.workflow_advancer is not None:
            self.workflow_advancer.committed(written.notices)

    def create_workflow_runs(self, runs: Sequence[NewWorkflowRun], plan: RunChange) -> list[tuple[int, bool]]:
        if not runs:
            return []
        written = Written()  # notices only: the runs' first states are not kept (their job ids are drawn in SQL)
        with self._connection("starting workflow runs") as conn:  # one statement: atomic by itself
            results = self._workflows.create(conn, runs, plan, written)
        self._committed(written)
        return results

    def change_workflow_run(self, run_id: int, change: RunChange) -> WorkflowRun:
        written = Written()
        with self._connection("changing a workflow run") as conn:
            with conn.transaction():
                self._workflows.change(conn, run_id, change, written)
            written.committed(conn)
            run = self._workflows.get(conn, run_id)
        self._committed(written)
        assert run is not None
        return run

    def get_workflow_run(self, run_id: int) -> WorkflowRun | None:
        with self._connection("reading a workflow run") as conn:
            return self._workflows.get(conn, run_id)

    def list_workflow_runs(self, run_filter: WorkflowFilter) -> WorkflowPage:
        with self._connection("listing workflow runs") as conn:
            return self._workflows.page(conn, run_filter)

    # -- change feed (postgres/changes.py) ----------------------------------------------

    def change_cursor(self) -> str:
        return changes.change_cursor(self)

    def read_changes(self, after: str, limit: int = 500) -> list[Change]:
        return changes.read_changes(self, after, limit)

    def wait_for_changes(self, after: str, timeout: float) -> None:
        if self._closed:
            return
        if self._changes_notifier is None:
            self._changes_notifier = Notifier(
                self._listen_connection, changes.channel(self), self.url, self._lost_connection
            )
        self._changes_notifier.wait(0, None)  # (re)connects and LISTENs first, so nothing slips between
        if changes.read_changes(self, after, 1):
            return
        # A row may also become readable without a new notification (once the older transactions
        # around it end): never block longer than this, the caller reads again.
        self._changes_notifier.wait(min(timeout, CHANGES_RECHECK_SECONDS), None)
