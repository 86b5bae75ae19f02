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
    batch_steps_json,
    jobs_of_run,
    new_run_columns,
    planned_starts,
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
        self, conn: Connection, runs: Sequence[NewWorkflowRun], plan: RunChange, notices: list[RunNotice]
    ) -> list[tuple[int, bool]]:
        """Plan the runs' starts, then insert the runs and their first jobs in one statement (autocommit)."""
        advances = planned_starts(runs, plan)  # no I/O and no use of the ids: planned before they are drawn
        storage = self._storage
        jobs = [job for advance in advances for job in advance.new_jobs]
        places = [place for place, advance in enumerate(advances, 1) for _ in advance.new_jobs]
        rows = [
            [*new_run_columns(run, advance), steps]
            for run, advance, steps in zip(runs, advances, batch_steps_json(advances), strict=True)
        ]
        params = {
            "runs": json.dumps(rows),
            "jobs": storage._jobs_json(jobs, places),  # a job's run: its place in the batch (the SQL's comment)
            "channel": storage._channel,
        }
        with conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(storage._q.workflow_start_runs, params)
            started = {int(place): int(run_id) for place, run_id in cur.fetchall()}
            results: list[tuple[int, bool]] = []
            for place, (run, advance) in enumerate(zip(runs, advances, strict=True), 1):
                run_id = started.get(place)
                if run_id is not None:
                    results.append((run_id, True))
                    notices.extend(RunNotice(run_id, run.name, s, advance.failure_reason) for s in advance.notices)
                    continue
                # its key is taken: by a stored run, a run of this batch, or a transaction that just committed
                cur.execute(storage._q.workflow_run_by_key, {"idempotency_key": run.idempotency_key})
                existing = cur.fetchone()
                if existing is None:
                    raise WorkflowRunNotFoundError(0)  # pragma: no cover - a run is never deleted
                results.append((int(existing[0]), False))
        return results

    def change(self, conn: Connection, run_id: int, change: RunChange, notices: list[RunNotice]) -> None:
        """Lock the run, call ``change``, write the advance."""
        state = self.lock(conn, [run_id]).get(run_id)
        if state is None:
            raise WorkflowRunNotFoundError(run_id)
        self.write(conn, [(state, change(state))], notices)

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
        moved = [
            (states[run_id], advancer.job_ended(states[run_id], by_run[run_id]))
            for run_id in sorted(by_run)
            if run_id in states
        ]
        self.write(conn, moved, notices)

    def write(self, conn: Connection, moved: Sequence[tuple[RunState, Advance]], notices: list[RunNotice]) -> None:
        """Write the advances of several locked runs: one statement per kind of change, whatever their number."""
        changed = [(state, advance) for state, advance in moved if advance.changed]
        if not changed:
            return
        storage = self._storage
        jobs = [job for state, advance in changed for job in jobs_of_run(advance.new_jobs, state.id)]
        new_ids: list[int] = []
        if jobs:
            params = {"jobs": storage._jobs_json(jobs), "channel": storage._channel}
            new_ids = [int(job_id or 0) for job_id, _ in storage._insert(conn, params, [None] * len(jobs))]
        cancels: dict[str, list[int]] = {}
        for _, advance in changed:
            if advance.cancel_job_ids:
                cancels.setdefault(advance.cancel_reason, []).extend(advance.cancel_job_ids)
        retries = [job_id for _, advance in changed for job_id in advance.retry_job_ids]
        runs: list[str] = []
        taken = 0
        for state, advance in changed:
            count = len(advance.new_jobs)
            runs.append(_run_update(state.id, advance, advance.steps_json(new_ids[taken : taken + count])))
            taken += count
            notices.extend(RunNotice(state.id, state.name, s, advance.failure_reason) for s in advance.notices)
        with conn.cursor(row_factory=tuple_row) as cur:
            for reason, ids in cancels.items():
                cur.execute(
                    storage._q.workflow_cancel_jobs, {"ids": ids, "reason": reason, "channel": storage._channel}
                )
            if retries:
                cur.execute(storage._q.workflow_retry_jobs, {"ids": retries, "channel": storage._channel})
            ids = [state.id for state, _ in changed]
            cur.execute(storage._q.workflow_update_run, {"runs": "[" + ",".join(runs) + "]", "ids": ids})


def _run_update(run_id: int, advance: Advance, steps_json: str) -> str:
    """One run's element of workflow_update_run.sql's JSON array (the step state nested as it is)."""
    texts = [
        json.dumps(value)
        for value in (advance.status.value, advance.output_json, advance.failure_reason, advance.error)
    ]
    return (
        f'{{"run_id":{int(run_id)},"status":{texts[0]},"output":{texts[1]},'
        f'"failure_reason":{texts[2]},"error":{texts[3]},"steps":{steps_json}}}'
    )


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
