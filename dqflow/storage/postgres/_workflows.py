"""PostgreSQL's half of workflow runs (storage/workflows.py): lock a run, write an ``Advance``.

Every change of a run happens in one transaction that first locks the run rows
(``SELECT ... ORDER BY id FOR UPDATE``, workflow_lock_runs.sql) and only then
touches their jobs. Two workers completing the two parents of a join at once
serialise on the run's row: the second reads the first's committed step state
and creates the join's job, exactly once. Locking runs before jobs, everywhere,
keeps these transactions free of deadlocks.

A process keeps the run states it wrote, once their transaction committed
(:class:`~dqflow.storage.run_states.WrittenRunStates`): the lock still locks every run,
but a run still at the version this process wrote answers no step state, and is
planned from the kept one. A worker that settles a run's step usually settles the
next one too: a linear chain reads and decodes the run's steps once, at its first
step. Every write of a run, by any process, bumps its ``version``, so a state moved on
elsewhere is read again. The lock answers the step state as JSON text: decoded, it gives
each step's text too (``state_from_fields``), so an advance, of a kept or a read state,
encodes only the steps it changes.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import pq
from psycopg.rows import dict_row, tuple_row

from dqflow.errors import WorkflowRunNotFoundError
from dqflow.storage.base import StepClaim
from dqflow.storage.run_states import WrittenRunStates
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


@dataclass(slots=True)
class Written:
    """What one transaction wrote to runs, acted on once it committed: ``notices`` for the
    advancer, ``states`` (with the size of their step state's JSON) to keep; ``claimed``, the
    cursor of the insert that claimed new jobs (``StepClaim``), read once its pipeline synced."""

    notices: list[RunNotice] = field(default_factory=list)
    states: list[tuple[RunState, int]] = field(default_factory=list)
    durable: bool = False
    claimed: psycopg.Cursor[dict[str, Any]] | None = None

    def claimed_rows(self) -> list[dict[str, Any]]:
        """The rows of the jobs claimed (whole, as claim_jobs.sql answers them), once the
        pipeline that sent their insert synced: no round trip of their own."""
        if self.claimed is None:
            return []
        with self.claimed as cur:
            return cur.fetchall()

    def committed(self, conn: Connection) -> None:
        """The transaction block that wrote them ended without error: the states may be kept
        if that was a commit, not the release of a savepoint inside a caller's transaction."""
        self.durable = conn.info.transaction_status == pq.TransactionStatus.IDLE


@contextlib.contextmanager
def pipelined_transaction(conn: Connection) -> Iterator[None]:
    """A pipeline whose statements form one transaction, committed by the Sync that ends it.

    On an autocommit connection outside a transaction the server runs every statement up to
    the pipeline's Sync in one transaction (results are fetched with flush requests, which
    keep it open): no BEGIN and COMMIT to send, parse and answer. A Python exception inside
    rolls it back (a ROLLBACK before that Sync; if even that cannot be sent, the connection
    is closed, so the Sync never commits; after a statement's error the server skips all
    up to the Sync and rolls back). Elsewhere (a caller's transaction, a connection
    not in autocommit): ``conn.transaction()`` as usual.
    """
    if not conn.autocommit or conn.info.transaction_status != pq.TransactionStatus.IDLE:
        with conn.pipeline(), conn.transaction():
            yield
        return
    with conn.pipeline():
        try:
            yield
        except BaseException:
            if conn.pgconn.pipeline_status != pq.PipelineStatus.ABORTED:  # (an aborted one rolls back)
                try:
                    conn.execute("ROLLBACK")  # in the implicit transaction: aborts it (with a notice)
                except BaseException:
                    conn.close()
            raise


_LOCK_COLUMNS = ("id", "version", "name", "status", "input", "tags", "steps")
"""workflow_lock_runs.sql's columns, in order."""


class LockedRuns:
    """Reads the answer of a lock statement (workflow_lock_runs.sql's columns): the runs'
    states and the job ids it drew."""

    __slots__ = ("_known", "drawn")

    def __init__(self, known: dict[int, RunState]) -> None:
        self._known = known
        #: the job ids drawn (``lock_params``'s ``draw``), once ``read`` has read the answer
        self.drawn: list[int] = []

    def read(self, rows: Sequence[tuple[Any, ...]]) -> dict[int, RunState]:
        """Each locked run's state: the kept one when the run is still at its version, else
        decoded from the row (unknown ids are left out)."""
        states: dict[int, RunState] = {}
        for row in rows:
            if row[1] is None:  # no version: a drawn job id
                self.drawn.append(int(row[0]))
                continue
            run_id = int(row[0])
            states[run_id] = (
                self._known[run_id] if row[6] is None else state_from_fields(dict(zip(_LOCK_COLUMNS, row, strict=True)))
            )
        return states


class PgWorkflows:
    """The workflow statements of one ``PostgresStorage``."""

    def __init__(self, storage: PostgresStorage) -> None:
        self._storage = storage
        #: running runs' states as this object last wrote them, once committed
        self.known = WrittenRunStates()

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

    def lock_params(self, run_ids: Sequence[int], draw: int = 0) -> tuple[dict[str, Any], LockedRuns]:
        """The parameters of the statements that lock the runs (id order), read the states not
        kept at their version (lock_runs.sql) and then draw ``draw`` job ids, and the
        ``LockedRuns`` that reads their answer."""
        ids = sorted(set(run_ids))
        known = {run_id: state for run_id in ids if (state := self.known.get(run_id)) is not None}
        versions = [state.version if (state := known.get(run_id)) is not None else None for run_id in ids]
        runs = json.dumps([{"id": run_id, "known": version} for run_id, version in zip(ids, versions, strict=True)])
        return {"runs": runs, "draw": draw}, LockedRuns(known)

    def lock(self, conn: Connection, run_ids: Sequence[int]) -> dict[int, RunState]:
        """Lock the runs (id order) and read their state; unknown ids are left out."""
        if not run_ids:
            return {}
        params, locked = self.lock_params(run_ids)
        with conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(self._storage._q.workflow_lock_runs, params)
            return locked.read(cur.fetchall())

    def keep(self, written: Written) -> None:
        """Keep the states of a committed transaction (``written.durable``)."""
        if written.durable:
            for state, size in written.states:
                self.known.keep(state, size)

    def create(
        self, conn: Connection, runs: Sequence[NewWorkflowRun], plan: RunChange, written: Written
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
                    written.notices.extend(
                        RunNotice(run_id, run.name, s, advance.failure_reason) for s in advance.notices
                    )
                    continue
                # its key is taken: by a stored run, a run of this batch, or a transaction that just committed
                cur.execute(storage._q.workflow_run_by_key, {"idempotency_key": run.idempotency_key})
                existing = cur.fetchone()
                if existing is None:
                    raise WorkflowRunNotFoundError(0)  # pragma: no cover - a run is never deleted
                results.append((int(existing[0]), False))
        return results

    def change(self, conn: Connection, run_id: int, change: RunChange, written: Written) -> None:
        """Lock the run, call ``change``, write the advance."""
        state = self.lock(conn, [run_id]).get(run_id)
        if state is None:
            raise WorkflowRunNotFoundError(run_id)
        self.write(conn, [(state, change(state))], written)

    def jobs_ended(
        self,
        conn: Connection,
        states: dict[int, RunState],
        ends: Sequence[tuple[int, JobEnd]],
        written: Written,
        drawn_ids: Sequence[int] = (),
        claim: StepClaim | None = None,
    ) -> None:
        """Move each locked run by the ends of its step jobs (``drawn_ids``, ``claim``: as ``write``)."""
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
        self.write(conn, moved, written, drawn_ids, claim)

    def write(
        self,
        conn: Connection,
        moved: Sequence[tuple[RunState, Advance]],
        written: Written,
        drawn_ids: Sequence[int] = (),
        claim: StepClaim | None = None,
    ) -> None:
        """Write the advances of several locked runs, whatever their number: their new jobs and
        new states in one statement, their cancellations and retries in one each, sent together
        (one round trip with the commit in a pipeline). The new jobs
        take the ids of ``drawn_ids`` (drawn from the jobs' sequence in an earlier round trip),
        more are drawn when those are too few; the ones left over are not used. With a
        ``claim``, the new jobs it picks are inserted claimed by that same statement
        (``workflow_add_claimed_jobs_update_runs``); its cursor goes to ``written.claimed``,
        to be read once the pipeline synced."""
        changed = [(state, advance) for state, advance in moved if advance.changed]
        if not changed:
            return
        storage = self._storage
        jobs = [job for state, advance in changed for job in jobs_of_run(advance.new_jobs, state.id)]
        new_ids = list(drawn_ids[: len(jobs)])
        # in the caller's pipeline if it has one (a nested one would sync on leaving)
        in_pipeline = conn.pgconn.pipeline_status != pq.PipelineStatus.OFF
        if len(new_ids) < len(jobs):
            with conn.cursor(row_factory=tuple_row) as cur:
                cur.execute(storage._q.workflow_draw_job_ids, {"count": len(jobs) - len(new_ids)})
                new_ids += [int(row[0]) for row in cur.fetchall()]
        with contextlib.nullcontext() if in_pipeline else conn.pipeline(), conn.cursor(row_factory=tuple_row) as cur:
            updates = self._run_updates(changed, new_ids, written)
            picked = [] if claim is None or not jobs else claim.pick(jobs, time.time())
            if picked:  # the same, some of the jobs inserted claimed (answered once synced)
                assert claim is not None
                params = {
                    "jobs": storage._jobs_json(jobs, ids=new_ids),
                    "channel": storage._channel,
                    "claimed": [new_ids[position] for position in picked],
                    "worker_id": claim.worker_id,
                    "lease_ms": claim.lease_ms,
                    **updates,
                }
                written.claimed = conn.cursor(row_factory=dict_row)
                written.claimed.execute(storage._q.workflow_add_claimed_jobs_update_runs, params)
            elif jobs:  # the new jobs and the runs' new states in one statement
                params = {"jobs": storage._jobs_json(jobs, ids=new_ids), "channel": storage._channel, **updates}
                cur.execute(storage._q.workflow_add_jobs_update_runs, params)
            else:
                cur.execute(storage._q.workflow_update_run, updates)
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
        for state, advance in changed:
            written.notices.extend(RunNotice(state.id, state.name, s, advance.failure_reason) for s in advance.notices)

    @staticmethod
    def _run_updates(
        changed: Sequence[tuple[RunState, Advance]], new_ids: Sequence[int], written: Written
    ) -> dict[str, Any]:
        """workflow_update_run.sql's parameters: one element per run, its new jobs named by
        ``new_ids`` (taken in order, as many as each run's ``new_jobs``); each run's new state
        into ``written``."""
        runs: list[dict[str, Any]] = []
        steps_texts: list[str] = []
        taken = 0
        for state, advance in changed:
            count = len(advance.new_jobs)
            steps = advance.steps_json(new_ids[taken : taken + count])
            taken += count
            runs.append(
                {
                    "run_id": state.id,
                    "status": advance.status.value,
                    "output": advance.output_json,
                    "failure_reason": advance.failure_reason,
                    "error": advance.error,
                }
            )
            steps_texts.append(steps)
            written.states.append((advance.written_state(state), len(steps)))
        return {"runs": json.dumps(runs), "steps": steps_texts}


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
