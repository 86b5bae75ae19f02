"""Redis's half of workflow runs (storage/workflows.py): optimistic, version-guarded advances.

Lua cannot run the Python that plans a run, so each change is read, computed,
then applied by ``lua/workflow.lua`` only if nothing it read has moved: the
run's ``version`` and each step job's status and lease token. Otherwise the
script writes nothing and answers ``conflict``; the change is read and computed
again (at most ``MAX_ATTEMPTS`` times). Ids of the jobs an advance inserts are
drawn beforehand (``INCRBY``), so the stored step state can name them; a
retried attempt simply leaves gaps in the ids. New runs need no guard: a batch
of them is one script call that draws the runs' and their first jobs' ids itself.

Keys (all under the queue's ``{prefix}``): ``P:wfrun:<id>`` (hash: the
``WorkflowRun`` columns, timestamps in µs), ``P:wfrun_id`` (counter),
``P:wfruns`` and ``P:wfruns:name:<name>`` / ``P:wfruns:status:<status>``
(sorted sets of run ids, score = id), ``P:wfrun_idempotency`` (hash: key → id).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from dqflow.errors import StorageError, WorkflowRunNotFoundError
from dqflow.storage.base import Completion, Failure, NewJob
from dqflow.storage.redis.codec import as_text, encode_option, from_us, tag_set, tags_json
from dqflow.storage.workflows import (
    Advance,
    JobEnd,
    NewWorkflowRun,
    RunChange,
    RunNotice,
    RunState,
    WorkflowFilter,
    batch_steps_json,
    planned_starts,
    run_from_fields,
    state_from_fields,
)
from dqflow.workflow_record import WorkflowPage, WorkflowRun

if TYPE_CHECKING:
    from dqflow.storage.redis.backend import RedisStorage

MAX_ATTEMPTS = 200
"""How often a change is computed again after a conflict before it gives up (each conflict
means another change of the run went through: the runs always make progress)."""

_PLACED = frozenset({"job_type", "payload_json", "priority", "run_at", "tags", "idempotency_key"})


def _job_entry(job: NewJob, job_id: int | None) -> dict[str, Any]:
    """A step job as ``workflow.lua`` inserts it: hash fields as text, its tag index keys
    (``job_id`` None: the script draws it)."""
    from dqflow.storage.base import JOB_OPTIONS

    fields: list[str] = []
    for option in JOB_OPTIONS:
        if option.name in _PLACED:
            continue
        value = encode_option(option, getattr(job, option.name))
        if value is not None:
            fields += (option.column, str(value))
    tag_keys: list[str] = []
    if job.tags:
        unique, signature = tag_set(job.tags)
        fields += ("tags", tags_json(job.tags), "tagset", signature)
        tag_keys = [f":tagset:{signature}", *(f":tag:{tag}" for tag in unique)]
    return {
        "id": None if job_id is None else str(job_id),
        "job_type": job.job_type,
        "priority": str(job.priority),
        "payload": job.payload_json,
        "fields": fields,
        "tag_keys": tag_keys,
    }


class RedisWorkflows:
    """The workflow half of one ``RedisStorage``."""

    def __init__(self, storage: RedisStorage) -> None:
        self._storage = storage
        self._key = storage._key
        #: how many computed changes were refused as stale and computed again (diagnostics)
        self.conflicts = 0

    # -- reading ---------------------------------------------------------------------

    def _hashes(self, run_ids: Sequence[int]) -> list[dict[str, str]]:
        client = self._storage._client

        def read() -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for run_id in run_ids:
                pipe.hgetall(f"{self._key}:wfrun:{run_id}")
            return list(pipe.execute())

        return [as_text(h) for h in self._storage._guard("read workflow runs", read)] if run_ids else []

    @staticmethod
    def _record(fields: dict[str, str]) -> WorkflowRun:
        decoded: dict[str, Any] = dict(fields)
        for name in ("created_at", "updated_at", "completed_at"):
            decoded[name] = from_us(fields[name]) if fields.get(name) else None
        return run_from_fields(decoded)

    def get(self, run_id: int) -> WorkflowRun | None:
        found = self._hashes([run_id])[0]
        return self._record(found) if found else None

    def page(self, run_filter: WorkflowFilter) -> WorkflowPage:
        """Newest first from the name index (or one status's, or every run's), the rest filtered as they come."""
        client = self._storage._client
        wanted = {status.value for status in run_filter.statuses}
        if run_filter.name is not None:
            index = f"{self._key}:wfruns:name:{run_filter.name}"
        elif len(wanted) == 1:
            index = f"{self._key}:wfruns:status:{next(iter(wanted))}"
        else:
            index = f"{self._key}:wfruns"
        top = "+inf" if run_filter.cursor is None else f"({run_filter.cursor}"
        runs: list[WorkflowRun] = []
        more = False
        while True:

            def step(high: str = top) -> Any:
                return client.zrevrangebyscore(index, high, "-inf", start=0, num=200)

            ids = as_text(self._storage._guard("list workflow runs", step))
            if not ids:
                break
            for fields in self._hashes([int(i) for i in ids]):
                if fields and (not wanted or fields["status"] in wanted):
                    if len(runs) == run_filter.limit:
                        more = True
                        break
                    runs.append(self._record(fields))
            if more or len(ids) < 200:
                break
            top = f"({ids[-1]}"
        return WorkflowPage(runs=runs, next_cursor=runs[-1].id if more and runs else None)

    def _states(self, run_ids: Sequence[int]) -> dict[int, RunState]:
        ids = sorted(set(run_ids))
        return {run_id: state_from_fields(h) for run_id, h in zip(ids, self._hashes(ids), strict=True) if h}

    # -- applying ----------------------------------------------------------------------

    def _draw_ids(self, count: int) -> list[int]:
        if count == 0:
            return []
        last = int(self._storage._guard("draw job ids", lambda: self._storage._client.incrby(f"{self._key}:id", count)))
        return list(range(last - count + 1, last + 1))

    def _run_entry(self, state: RunState, advance: Advance, ids: list[int] | None = None) -> dict[str, Any]:
        """The plan of one run; ``ids``: its new jobs' ids, drawn already (else drawn here)."""
        ids = self._draw_ids(len(advance.new_jobs)) if ids is None else ids
        jobs = [replace(job, workflow_run_id=state.id) for job in advance.new_jobs]
        return {
            "id": str(state.id),
            "status": advance.status.value,
            "output": advance.output_json,
            "failure_reason": advance.failure_reason,
            "error": advance.error,
            "steps": advance.steps_json(ids),
            "jobs": [_job_entry(job, job_id) for job, job_id in zip(jobs, ids, strict=True)],
            "cancel": [str(i) for i in advance.cancel_job_ids],
            "cancel_reason": advance.cancel_reason,
            "retry": [str(i) for i in advance.retry_job_ids],
        }

    def _apply(self, plan: dict[str, Any]) -> list[Any]:
        return list(self._storage._run("workflow", "move workflow runs", json.dumps(plan)))

    def _until_applied(self, attempt: Callable[[], list[Any] | None], what: str) -> list[Any]:
        for tries in range(MAX_ATTEMPTS):
            reply = attempt()
            if reply is not None and reply[0] != "conflict":
                return reply
            self.conflicts += 1
            if tries >= 2:  # many writers on one run: step aside a little, at random
                time.sleep(random.uniform(0, min(0.02, 0.001 * tries)))
        raise StorageError(f"Redis at {self._storage.url}: {what} kept conflicting with other changes; try again")

    # -- the contract's operations ----------------------------------------------------------

    def create(
        self, runs: Sequence[NewWorkflowRun], plan: RunChange, notices: list[RunNotice]
    ) -> list[tuple[int, bool]]:
        """Plan the runs' starts, then store them in one script call that draws their ids itself."""
        advances = planned_starts(runs, plan)
        if not runs:
            return []
        creates: list[dict[str, Any]] = []
        slot = 0
        for run, advance, steps in zip(runs, advances, batch_steps_json(advances), strict=True):
            jobs = []
            for job in advance.new_jobs:
                slot += 1
                jobs.append({**_job_entry(job, None), "slot": slot})
            entry = {
                "status": advance.status.value,
                "output": advance.output_json,
                "failure_reason": advance.failure_reason,
                "error": advance.error,
                "steps": steps,
                "jobs": jobs,
                "cancel": [],
                "retry": [],
            }
            creates.append(
                {
                    "name": run.name,
                    "input": run.input_json,
                    "tags": json.dumps(list(run.tags)),
                    "idempotency_key": run.idempotency_key,
                    "run": entry,
                }
            )
        reply = self._apply({"guards": {}, "ops": [], "runs": [], "creates": creates, "create_jobs": slot})
        results: list[tuple[int, bool]] = []
        for index, (run, advance) in enumerate(zip(runs, advances, strict=True)):
            run_id, created = int(reply[2 * index + 1]), reply[2 * index + 2] == "1"
            results.append((run_id, created))
            if created:
                notices.extend(RunNotice(run_id, run.name, s, advance.failure_reason) for s in advance.notices)
        return results

    def change(self, run_id: int, change: RunChange, notices: list[RunNotice]) -> None:
        found: list[RunNotice] = []

        def attempt() -> list[Any]:
            state = self._states([run_id]).get(run_id)
            if state is None:
                raise WorkflowRunNotFoundError(run_id)
            advance = change(state)
            found[:] = [RunNotice(run_id, state.name, s, advance.failure_reason) for s in advance.notices]
            runs = [self._run_entry(state, advance)] if advance.changed else []
            guards = {"runs": [[str(run_id), str(state.version)]]}
            return self._apply({"guards": guards, "ops": [], "runs": runs})

        self._until_applied(attempt, f"changing workflow run {run_id}")
        notices.extend(found)

    def jobs_ended(
        self,
        ops: Callable[[dict[int, dict[str, str]]], list[tuple[list[Any], int, JobEnd] | None]],
        job_ids: Sequence[int],
        notices: list[RunNotice],
        what: str,
        run_ids: Sequence[int] = (),
    ) -> list[bool]:
        """End step jobs and move their runs in one script, retried on a conflict.

        ``run_ids``: the runs the jobs are expected to belong to (read with the jobs).

        ``ops`` gets each job's hash fields (by id) and answers per job the script op,
        the run id and the ``JobEnd``, or None for a job it leaves alone (not held).
        """
        advancer = self._storage.workflow_advancer
        flags: list[bool] = []
        found: list[RunNotice] = []
        fields = ("status", "lease_token", "workflow_run_id", "workflow_step", "workflow_item", "output")
        client = self._storage._client

        known = sorted(set(run_ids))

        def attempt() -> list[Any]:
            def read() -> list[Any]:  # the jobs and the runs they are expected to belong to: one round trip
                pipe = client.pipeline(transaction=False)
                for job_id in job_ids:
                    pipe.hmget(f"{self._key}:job:{job_id}", *fields)
                for run_id in known:
                    pipe.hgetall(f"{self._key}:wfrun:{run_id}")
                return list(pipe.execute())

            replies = as_text(self._storage._guard("read step jobs", read))
            rows, hashes = replies[: len(job_ids)], replies[len(job_ids) :]
            jobs = {job_id: dict(zip(fields, row, strict=True)) for job_id, row in zip(job_ids, rows, strict=True)}
            states = {run_id: state_from_fields(h) for run_id, h in zip(known, hashes, strict=True) if h}
            planned = ops(jobs)
            flags[:] = [item is not None for item in planned]
            chosen = [item for item in planned if item is not None]
            if not chosen:
                return ["ok"]
            states = {run_id: states[run_id] for _, run_id, _ in chosen if run_id in states}
            states.update(self._states([run_id for _, run_id, _ in chosen if run_id not in states]))
            by_run: dict[int, list[JobEnd]] = {}
            for _, run_id, end in chosen:
                by_run.setdefault(run_id, []).append(end)
            moved = [
                (states[run_id], advancer.job_ended(states[run_id], ends))
                for run_id, ends in sorted(by_run.items())
                if run_id in states and advancer is not None
            ]
            moved = [(state, advance) for state, advance in moved if advance.changed]
            ids = self._draw_ids(sum(len(advance.new_jobs) for _, advance in moved))  # one INCRBY for the batch
            runs = []
            found.clear()
            for state, advance in moved:
                count = len(advance.new_jobs)
                runs.append(self._run_entry(state, advance, ids[:count]))
                ids = ids[count:]
                found.extend(RunNotice(state.id, state.name, s, advance.failure_reason) for s in advance.notices)
            guards = {
                "runs": [[str(run_id), str(state.version)] for run_id, state in states.items()],
                "jobs": [
                    [str(end.job_id), jobs[end.job_id]["status"], jobs[end.job_id]["lease_token"] or "0"]
                    for _, _, end in chosen
                ],
            }
            return self._apply({"guards": guards, "ops": [op for op, _, _ in chosen], "runs": runs})

        self._until_applied(attempt, what)
        notices.extend(found)
        return flags


def settle_ops(items: Sequence[Completion | Failure]) -> Callable[[dict[int, dict[str, str]]], list[Any]]:
    """The ``jobs_ended`` planner of a batch of step-job completions and failures for good."""

    def plan(jobs: dict[int, dict[str, str]]) -> list[tuple[list[Any], int, JobEnd] | None]:
        planned: list[tuple[list[Any], int, JobEnd] | None] = []
        for item in items:
            job = jobs[item.job_id]
            held = job["status"] == "processing" and (job["lease_token"] or "0") == str(item.lease_token)
            if not held or job["workflow_run_id"] is None:
                planned.append(None)
                continue
            run_id, step = int(job["workflow_run_id"]), job["workflow_step"] or ""
            index = None if job["workflow_item"] is None else int(job["workflow_item"])
            if isinstance(item, Completion):
                text = item.output_json if item.output_json is not None else job["output"]
                output = None if text is None else json.loads(text)
                has = "0" if item.output_json is None else "1"
                op: list[Any] = ["c", str(item.job_id), has, item.output_json or ""]
                planned.append((op, run_id, JobEnd(item.job_id, step, index, "completed", output)))
            else:
                traceback = "" if item.traceback is None else "=" + item.traceback
                op = ["f", str(item.job_id), item.error, item.reason, traceback]
                end = JobEnd(item.job_id, step, index, "failed", None, item.reason, item.error)
                planned.append((op, run_id, end))
        return planned

    return plan
