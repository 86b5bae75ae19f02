"""PostgreSQL's half of workflow runs (storage/workflows.py): lock a run, write an ``Advance``.

Every change of a run happens in one transaction that first locks the run rows
(``SELECT ... ORDER BY id FOR UPDATE``, workflow_lock_runs.sql) and only then
touches their jobs. Two workers completing the two parents of a join at once
serialise on the run's row: the second reads the first's committed step state
and creates the join's job, exactly once. Locking runs before jobs, everywhere,
keeps these transactions free of deadlocks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import dict_row, tuple_row

from dqflow.errors import WorkflowRunNotFoundError
from dqflow.storage.workflows import (
    Advance,
    JobEnd,
    NewWorkflowRun,
    RunChange,
    RunNotice,
    RunState,
    WorkflowFilter,
    run_from_fields,
    state_from_fields,
)
from dqflow.workflow_record import WorkflowPage, WorkflowRun

if TYPE_CHECKING:
    from dqflow.storage.postgres.backend import PostgresStorage

Connection = psycopg.Connection[Any]


def run_record(row: dict[str, Any]) -> WorkflowRun:
    """A ``WorkflowRun`` from a ``dqflow_workflow_runs`` row."""
    for name in ("created_at", "updated_at", "completed_at"):
        if row[name] is not None:
            row[name] = row[name].astimezone(UTC)
    return run_from_fields(row)


class PgWorkflows:
    """The workflow statements of one ``PostgresStorage``."""

    def __init__(self, storage: PostgresStorage) -> None:
        self._storage = storage

    # -- reading ---------------------------------------------------------------------

    def get(self, conn: Connection, run_id: int) -> WorkflowRun | None:
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(self._storage._q.workflow_get_run, {"run_id": run_id})
            row = cur.fetchone()
        return None if row is None else run_record(row)

    def page(self, conn: Connection, run_filter: WorkflowFilter) -> WorkflowPage:
        params = {
            "name": run_filter.name,
            "statuses": [status.value for status in run_filter.statuses] or None,
            "cursor": run_filter.cursor,
            "limit": run_filter.limit + 1,
        }
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(self._storage._q.workflow_list_runs, params)
            rows = cur.fetchall()
        runs = [run_record(row) for row in rows[: run_filter.limit]]
        return WorkflowPage(runs=runs, next_cursor=runs[-1].id if len(rows) > run_filter.limit and runs else None)

    # -- changing (the caller holds a transaction) ---------------------------------------

    def lock(self, conn: Connection, run_ids: Sequence[int]) -> dict[int, RunState]:
        """Lock the runs (id order) and read their state; unknown ids are left out."""
        if not run_ids:
            return {}
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(self._storage._q.workflow_lock_runs, {"ids": sorted(set(run_ids))})
            return {int(row["id"]): state_from_fields(row) for row in cur.fetchall()}

    def create(
        self, conn: Connection, run: NewWorkflowRun, plan: RunChange, notices: list[RunNotice]
    ) -> tuple[int, bool]:
        params = {
            "name": run.name,
            "input": run.input_json,
            "tags": json.dumps(list(run.tags)),
            "idempotency_key": run.idempotency_key,
            "steps": json.dumps(run.steps, separators=(",", ":")),
        }
        with conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(self._storage._q.workflow_create_run, params)
            row = cur.fetchone()
            if row is None:  # the key is taken (maybe by a transaction that just committed)
                cur.execute(self._storage._q.workflow_run_by_key, params)
                existing = cur.fetchone()
                if existing is None:
                    raise WorkflowRunNotFoundError(0)  # pragma: no cover - a run is never deleted
                return int(existing[0]), False
        run_id = int(row[0])
        self.change(conn, run_id, plan, notices)
        return run_id, True

    def change(self, conn: Connection, run_id: int, change: RunChange, notices: list[RunNotice]) -> None:
        """Lock the run, call ``change``, write the advance."""
        state = self.lock(conn, [run_id]).get(run_id)
        if state is None:
            raise WorkflowRunNotFoundError(run_id)
        self.write(conn, state, change(state), notices)

    def jobs_ended(
        self,
        conn: Connection,
        states: dict[int, RunState],
        ends: Sequence[tuple[int, JobEnd]],
        notices: list[RunNotice],
    ) -> None:
        """Move each locked run by the ends of its step jobs."""
        advancer = self._storage.workflow_advancer
        if advancer is None or not ends:
            return
        by_run: dict[int, list[JobEnd]] = {}
        for run_id, end in ends:
            by_run.setdefault(run_id, []).append(end)
        for run_id in sorted(by_run):
            state = states.get(run_id)
            if state is not None:
                self.write(conn, state, advancer.job_ended(state, by_run[run_id]), notices)

    def write(self, conn: Connection, state: RunState, advance: Advance, notices: list[RunNotice]) -> None:
        if not advance.changed:
            return
        storage = self._storage
        new_ids: list[int] = []
        if advance.new_jobs:
            jobs = [replace(job, workflow_run_id=state.id) for job in advance.new_jobs]
            params = {"jobs": storage._jobs_json(jobs), "channel": storage._channel}
            new_ids = [int(job_id or 0) for job_id, _ in storage._insert(conn, params, [None] * len(jobs))]
        with conn.cursor(row_factory=tuple_row) as cur:
            if advance.cancel_job_ids:
                cur.execute(
                    storage._q.workflow_cancel_jobs,
                    {"ids": advance.cancel_job_ids, "reason": advance.cancel_reason, "channel": storage._channel},
                )
            if advance.retry_job_ids:
                cur.execute(storage._q.workflow_retry_jobs, {"ids": advance.retry_job_ids, "channel": storage._channel})
            cur.execute(
                storage._q.workflow_update_run,
                {
                    "run_id": state.id,
                    "status": advance.status.value,
                    "output": advance.output_json,
                    "failure_reason": advance.failure_reason,
                    "error": advance.error,
                    "steps": advance.steps_json(new_ids),
                },
            )
        notices.extend(RunNotice(state.id, state.name, status, advance.failure_reason) for status in advance.notices)


def ends_of(rows: Sequence[tuple[Any, ...]], kind: str) -> list[tuple[int, JobEnd]]:
    """The step-job ends in a settle statement's answer (``complete`` or ``fail`` rows)."""
    ends: list[tuple[int, JobEnd]] = []
    for row in rows:
        if len(row) < 2 or row[1] is None:
            continue
        job_id, run_id, step, item = int(row[0]), int(row[1]), row[2], row[3]
        if kind == "complete":
            ends.append((run_id, JobEnd(job_id, step, item, "completed", row[4])))
        elif not row[4]:  # failed for good (will_retry false)
            ends.append((run_id, JobEnd(job_id, step, item, "failed", None, row[5], row[6])))
    return ends
