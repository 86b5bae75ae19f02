"""PostgreSQL's half of workflow runs (storage/workflows.py): lock a run, write an ``Advance``.

Every change of a run happens in one transaction that first locks the run rows
(``SELECT ... ORDER BY id FOR UPDATE``, workflow_lock_runs.sql) and only then
touches their jobs. Two workers completing the two parents of a join at once
serialise on the run's row: the second reads the first's committed step state
and creates the join's job, exactly once. Locking runs before jobs, everywhere,
keeps these transactions free of deadlocks.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from datetime import UTC
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import pq
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
            drawn, inserted = cur.fetchall()[0]
            started = set(inserted)
            results: list[tuple[int, bool]] = []
            for run_id, run, advance in zip(drawn, runs, advances, strict=True):
                if run_id in started:
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
        drawn_ids: Sequence[int] = (),
    ) -> None:
        """Move each locked run by the ends of its step jobs (``drawn_ids``: as ``write``)."""
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
        self.write(conn, moved, notices, drawn_ids)

    def draw_job_ids(self, cur: psycopg.Cursor[Any], count: int) -> None:
        """Send the statement that draws ``count`` job ids (``cur.fetchall()`` answers them)."""
        cur.execute(self._storage._q.workflow_draw_job_ids, {"count": count})

    def write(
        self,
        conn: Connection,
        moved: Sequence[tuple[RunState, Advance]],
        notices: list[RunNotice],
        drawn_ids: Sequence[int] = (),
    ) -> None:
        """Write the advances of several locked runs: one statement per kind of change, whatever
        their number, sent together (one round trip with the commit in a pipeline). The new jobs
        take the ids of ``drawn_ids`` (drawn from the jobs' sequence in an earlier round trip),
        more are drawn when those are too few; the ones left over are not used."""
        changed = [(state, advance) for state, advance in moved if advance.changed]
        if not changed:
            return
        storage = self._storage
        jobs = [job for state, advance in changed for job in jobs_of_run(advance.new_jobs, state.id)]
        new_ids = list(drawn_ids[: len(jobs)])
        # in the caller's pipeline if it has one (a nested one would sync on leaving)
        in_pipeline = conn.pgconn.pipeline_status != pq.PipelineStatus.OFF
        with conn.cursor(row_factory=tuple_row) as cur:
            if len(new_ids) < len(jobs):
                self.draw_job_ids(cur, len(jobs) - len(new_ids))
                new_ids += [int(row[0]) for row in cur.fetchall()]
        with contextlib.nullcontext() if in_pipeline else conn.pipeline(), conn.cursor(row_factory=tuple_row) as cur:
            if jobs:
                params = {"jobs": storage._jobs_json(jobs), "ids": new_ids, "channel": storage._channel}
                cur.execute(storage._q.add_jobs_drawn, params)
            cancels: dict[str, list[int]] = {}
            for _, advance in changed:
                if advance.cancel_job_ids:
                    cancels.setdefault(advance.cancel_reason, []).extend(advance.cancel_job_ids)
            for reason, ids in cancels.items():
                cur.execute(
                    storage._q.workflow_cancel_jobs, {"ids": ids, "reason": reason, "channel": storage._channel}
                )
            retries = [job_id for _, advance in changed for job_id in advance.retry_job_ids]
            if retries:
                cur.execute(storage._q.workflow_retry_jobs, {"ids": retries, "channel": storage._channel})
            cur.execute(storage._q.workflow_update_run, _run_updates(changed, new_ids))
        for state, advance in changed:
            notices.extend(RunNotice(state.id, state.name, s, advance.failure_reason) for s in advance.notices)


def _run_updates(changed: Sequence[tuple[RunState, Advance]], new_ids: Sequence[int]) -> dict[str, list[Any]]:
    """workflow_update_run.sql's arrays: one element per run, its new jobs named by ``new_ids``
    (taken in order, as many as each run's ``new_jobs``)."""
    columns: dict[str, list[Any]] = {
        name: [] for name in ("ids", "status", "output", "failure_reason", "error", "steps")
    }
    taken = 0
    for state, advance in changed:
        count = len(advance.new_jobs)
        columns["ids"].append(state.id)
        columns["status"].append(advance.status.value)
        columns["output"].append(advance.output_json)
        columns["failure_reason"].append(advance.failure_reason)
        columns["error"].append(advance.error)
        columns["steps"].append(advance.steps_json(new_ids[taken : taken + count]))
        taken += count
    return columns


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
