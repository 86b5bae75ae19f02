"""What storage knows of workflows: run state in, an ``Advance`` out, written atomically.

Storage never imports the declaration layer. A run is a row (a Redis hash)
whose ``steps`` column holds the state of every step as JSON. Whatever moves a
run (a step job that completes or fails for good, a start, a cancel, a retry)
goes the same way, inside one transaction (SQLite, PostgreSQL) or one Lua
script guarded by the run's ``version`` (Redis):

1. lock the run and read it as a :class:`RunState`;
2. call pure Python (a :class:`WorkflowAdvancer`, given by the ``Queue``) that
   returns an :class:`Advance`: the new step state, jobs to insert (resolved,
   validated payloads), jobs to cancel or retry, the run's new status/output;
3. write all of it, the new jobs' ids filled into the step state
   (:meth:`Advance.steps_json`; SQLite writes only the steps that changed,
   :meth:`Advance.edited_steps_json`).

A step's stored state is a JSON object: ``name``, ``job``, ``status``,
``job_ids``, ``done`` (one flag per job: it completed), ``output``,
``outputs`` (``for_each`` steps), ``skipped_reason``, ``error``,
``started_at``, ``completed_at``; with tracing on, ``trace`` (the run's W3C
trace context, copied into its step jobs' ``meta``: dqflow/telemetry.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from dqflow.enums import WorkflowStatus

if TYPE_CHECKING:
    from dqflow.storage.base import NewJob
    from dqflow.workflow_record import WorkflowRun

__all__ = [
    "Advance",
    "JobEnd",
    "NewWorkflowRun",
    "RunNotice",
    "RunState",
    "WorkflowAdvancer",
    "WorkflowFilter",
    "batch_steps_json",
    "jobs_of_run",
    "planned_starts",
    "run_from_fields",
]

_encode_steps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
"""The step state as compact JSON text (one encoder for every write: ``json.dumps`` builds one per call)."""

_STATUSES = {status.value: status for status in WorkflowStatus}


@dataclass(slots=True)
class RunState:
    """A run as the advancer reads it (``steps``: the stored step objects, in topological order)."""

    id: int
    name: str
    status: WorkflowStatus
    input: Any
    tags: list[str]
    steps: list[dict[str, Any]]
    version: int


@dataclass(frozen=True, slots=True)
class JobEnd:
    """A step job reached an end: ``completed`` (with its output), ``failed`` for good or ``cancelled``."""

    job_id: int
    step: str
    item: int | None
    status: str
    output: Any = None
    reason: str | None = None
    error: str | None = None


@dataclass(slots=True)
class Advance:
    """What to write for one run, computed from its :class:`RunState`.

    ``steps`` holds the new step state; the ids of ``new_jobs`` are not known
    yet, so their steps list ``-1, -2, ...`` (position in ``new_jobs`` + 1) in
    ``job_ids``: :meth:`steps_json` fills in the real ids. ``cancel_job_ids``
    are cancelled (with ``cancel_reason``) if still pending, waiting or
    processing; ``retry_job_ids`` are put back to pending if failed or
    cancelled. ``changed=False``: nothing to write. ``edited``: the positions in
    ``steps`` of the steps whose state changed (None: any may have), for a
    backend that writes only those (:meth:`edited_steps_json`).
    """

    status: WorkflowStatus
    steps: list[dict[str, Any]]
    output_json: str | None = None
    failure_reason: str | None = None
    error: str | None = None
    new_jobs: list[NewJob] = field(default_factory=list)
    cancel_job_ids: list[int] = field(default_factory=list)
    cancel_reason: str = "workflow_failed"
    retry_job_ids: list[int] = field(default_factory=list)
    notices: list[WorkflowStatus] = field(default_factory=list)  # statuses the run went through (workflow:* events)
    changed: bool = True
    edited: tuple[int, ...] | None = None

    def steps_json(self, new_job_ids: Sequence[int]) -> str:
        """The step state as JSON text, placeholders replaced by ``new_job_ids`` (``new_jobs`` order)."""
        self.fill_job_ids(new_job_ids)
        return _encode_steps(self.steps)

    def edited_steps_json(self, new_job_ids: Sequence[int]) -> list[tuple[int, str]] | None:
        """``(position, JSON text)`` of each step whose state changed, placeholders replaced by
        ``new_job_ids``; None when that is every step or not known (write :meth:`steps_json`)."""
        if self.edited is None or len(self.edited) == len(self.steps):
            return None
        self.fill_job_ids(new_job_ids)
        return [(index, _encode_steps(self.steps[index])) for index in self.edited]

    def fill_job_ids(self, new_job_ids: Sequence[int]) -> None:
        """Replace the placeholders in ``steps`` by ``new_job_ids`` (``new_jobs`` order)."""
        if len(new_job_ids) != len(self.new_jobs):
            raise ValueError(f"{len(self.new_jobs)} new jobs, {len(new_job_ids)} ids")
        if new_job_ids:
            for step in self.steps:
                job_ids = step["job_ids"]
                if job_ids and min(job_ids) < 0:  # a step planned by this advance
                    step["job_ids"] = [new_job_ids[-i - 1] if i < 0 else i for i in job_ids]


@dataclass(frozen=True, slots=True)
class RunNotice:
    """A run's status changed (told to the advancer once the change is committed)."""

    run_id: int
    name: str
    status: WorkflowStatus
    failure_reason: str | None = None


@dataclass(frozen=True, slots=True)
class NewWorkflowRun:
    """A run to create: its state before anything ran (every step waiting)."""

    name: str
    input_json: str
    steps: list[dict[str, Any]]
    tags: tuple[str, ...] = ()
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class WorkflowFilter:
    """Filters of ``list_workflow_runs``. Results are newest first (id descending)."""

    name: str | None = None
    statuses: tuple[WorkflowStatus, ...] = ()
    limit: int = 100
    cursor: int | None = None  # only ids below this one


class WorkflowAdvancer(Protocol):
    """Pure Python that moves runs (the ``Queue`` gives one to its storage).

    Backends call ``job_ended`` inside the atomic step that ended the jobs, and
    ``committed`` after it committed (the ``Queue`` emits ``workflow:*`` events).
    """

    def job_ended(self, run: RunState, ends: Sequence[JobEnd]) -> Advance:
        """The advance after step jobs of ``run`` ended (completions first, then failures)."""
        ...

    def committed(self, notices: Sequence[RunNotice]) -> None:
        """Runs whose status changed, once the change is durable."""
        ...


RunChange = Callable[[RunState], Advance]
"""What ``create_workflow_runs`` and ``change_workflow_run`` call (the latter under the run's
lock). It may raise (e.g. ``InvalidWorkflowStateError``): nothing is written then."""


def planned_starts(runs: Sequence[NewWorkflowRun], plan: RunChange) -> list[Advance]:
    """What each new run starts with, ``plan`` called before anything is written (the run has
    no id yet: ``state.id`` is 0), so a backend stores a whole batch in one step."""
    advances: list[Advance] = []
    for run in runs:
        state = RunState(0, run.name, WorkflowStatus.RUNNING, json.loads(run.input_json), list(run.tags), run.steps, 0)
        advance = plan(state)
        if advance.cancel_job_ids or advance.retry_job_ids:
            raise ValueError("a new workflow run has no jobs to cancel or retry")
        advances.append(advance)
    return advances


def batch_steps_json(advances: Sequence[Advance]) -> list[str]:
    """Each run's step state as JSON text, its new jobs named by their place in the whole
    batch: ``-k`` is the k-th job of all the runs' ``new_jobs`` in order (for a statement or
    script that draws the batch's job ids itself)."""
    texts: list[str] = []
    taken = 0
    for advance in advances:
        count = len(advance.new_jobs)
        texts.append(advance.steps_json([-(taken + k) for k in range(1, count + 1)]))
        taken += count
    return texts


def new_run_columns(run: NewWorkflowRun, advance: Advance) -> tuple[Any, ...]:
    """A new run's stored columns, in this order: name, status, input, output, tags (JSON),
    idempotency key, failure reason, error (the backends add steps and times)."""
    return (
        run.name,
        advance.status.value,
        run.input_json,
        advance.output_json,
        json.dumps(list(run.tags)),
        run.idempotency_key,
        advance.failure_reason,
        advance.error,
    )


def run_from_fields(fields: dict[str, Any]) -> WorkflowRun:
    """A ``WorkflowRun`` from a backend's decoded columns (``steps`` may still be JSON text)."""
    from dqflow.workflow_record import WorkflowRun

    for name in ("steps", "input", "output", "tags"):
        value = fields.get(name)
        if isinstance(value, (str, bytes)):
            fields[name] = json.loads(value)
    return WorkflowRun.model_validate(fields)


def state_from_fields(fields: dict[str, Any]) -> RunState:
    """The :class:`RunState` of a run from its decoded columns."""
    steps = fields["steps"]
    status = fields["status"]
    return RunState(
        id=int(fields["id"]),
        name=fields["name"],
        status=_STATUSES.get(status) or WorkflowStatus(status),
        input=json.loads(fields["input"]) if isinstance(fields["input"], (str, bytes)) else fields["input"],
        tags=json.loads(fields["tags"]) if isinstance(fields["tags"], (str, bytes)) else list(fields["tags"]),
        steps=json.loads(steps) if isinstance(steps, (str, bytes)) else steps,
        version=int(fields["version"]),
    )


def jobs_of_run(jobs: Sequence[NewJob], run_id: int) -> list[NewJob]:
    """``jobs`` with ``workflow_run_id`` set to ``run_id`` (the runtime sets it already
    when it knew the id; a run whose id is drawn with its insert gets it here)."""
    from dataclasses import replace

    return [job if job.workflow_run_id == run_id else replace(job, workflow_run_id=run_id) for job in jobs]


def epoch_text(moment: datetime) -> str:
    """A timestamp as the step state stores it (ISO 8601, UTC)."""
    return moment.isoformat()
