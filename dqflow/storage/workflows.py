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
   (:meth:`Advance.steps_json`; where the text of a step left alone is not known,
   SQLite writes only the steps that changed, :meth:`Advance.edited_steps_json`).

Each step's JSON text is encoded once: a run state decoded from its stored text
(:func:`state_from_fields`) or kept from the advance that wrote it
(:meth:`Advance.written_state`) carries the text of each step, and an advance
writes the steps it left alone as that text, encoding only the steps it changed.

A step's stored state is a JSON object: ``name``, ``job``, ``status``,
``job_ids``, ``done`` (one flag per job: it completed), ``output``,
``outputs`` (``for_each`` steps), ``skipped_reason``, ``error``,
``started_at``, ``completed_at``; with tracing on, ``trace`` (the run's W3C
trace context, copied into its step jobs' ``meta``: dqflow/telemetry.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, cast

from dqflow.enums import WorkflowStatus
from dqflow.json_values import compact_encoder

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
    "decode_steps",
    "encode_step",
    "jobs_of_run",
    "planned_starts",
    "run_from_fields",
]

_encode_steps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
"""The step state as compact JSON text (one encoder for every write: ``json.dumps`` builds one per call)."""

encode_step: Callable[[Any], str] = compact_encoder(allow_nan=True)
"""One step's state (or any JSON value) as the compact text ``_encode_steps`` gives (its C
encoder made once; NaN and Infinity pass, as the step state always let them)."""

_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]

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
    step_texts: list[str | None] | None = None
    """Each step's JSON text, as stored, where known (None: encode it): what an advance of
    this state writes for the steps it does not change. Nothing may change ``steps`` in place."""


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
    backend that writes only those (:meth:`edited_steps_json`). ``step_texts``: the JSON
    text of each step in ``steps`` where known (from the run state, for the steps left
    alone); the others are encoded when written, and kept for :meth:`written_state`.
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
    step_texts: list[str | None] | None = None

    def steps_json(self, new_job_ids: Sequence[int]) -> str:
        """The step state as JSON text, placeholders replaced by ``new_job_ids`` (``new_jobs`` order)."""
        self.fill_job_ids(new_job_ids)
        return f"[{','.join(self._texts(range(len(self.steps))))}]"

    def edited_steps_json(self, new_job_ids: Sequence[int]) -> list[tuple[int, str]] | None:
        """``(position, JSON text)`` of each step whose state changed, placeholders replaced by
        ``new_job_ids``; None when that is every step or not known (write :meth:`steps_json`)."""
        edited = self.edited
        if edited is None or len(edited) == len(self.steps):
            return None
        self.fill_job_ids(new_job_ids)
        texts = self._texts(edited)
        return [(index, texts[index]) for index in edited]

    def _texts(self, positions: Iterable[int]) -> list[str]:
        """``step_texts``, the steps at ``positions`` encoded where their text is not known."""
        steps = self.steps
        texts = self.step_texts
        if texts is None or len(texts) != len(steps):
            texts = self.step_texts = [None] * len(steps)
        for index in positions:
            if texts[index] is None:
                texts[index] = encode_step(steps[index])
        return cast("list[str]", texts)

    def fill_job_ids(self, new_job_ids: Sequence[int]) -> None:
        """Replace the placeholders in ``steps`` by ``new_job_ids`` (``new_jobs`` order)."""
        if len(new_job_ids) != len(self.new_jobs):
            raise ValueError(f"{len(self.new_jobs)} new jobs, {len(new_job_ids)} ids")
        if not new_job_ids:
            return
        steps = self.steps
        texts = self.step_texts
        for index in range(len(steps)) if self.edited is None else self.edited:  # a planned step is edited
            step = steps[index]
            job_ids = step["job_ids"]
            if job_ids and min(job_ids) < 0:  # a step planned by this advance
                filled = [new_job_ids[-i - 1] if i < 0 else i for i in job_ids]
                if filled != job_ids:
                    step["job_ids"] = filled
                    if texts is not None and len(texts) == len(steps):
                        texts[index] = None

    def written_state(self, state: RunState, new_job_ids: Sequence[int] | None = None) -> RunState:
        """``state`` once this advance is written (its next version), placeholders replaced by
        ``new_job_ids`` when given; the step texts known so far are kept for its next advance."""
        if new_job_ids is not None:
            self.fill_job_ids(new_job_ids)
        texts = self.step_texts
        return RunState(
            state.id,
            state.name,
            self.status,
            state.input,
            state.tags,
            self.steps,
            state.version + 1,
            None if texts is None or len(texts) != len(self.steps) else list(texts),
        )


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
    no id yet: ``state.id`` is 0), so a backend stores a whole batch in one step. The steps
    the runs share (``runs`` alive throughout: their ids stay theirs) are encoded once."""
    advances: list[Advance] = []
    texts_of: dict[int, list[str | None]] = {}  # by step state: the runs of a batch usually share one
    for run in runs:
        texts = texts_of.get(id(run.steps))
        if texts is None:
            texts = texts_of[id(run.steps)] = [encode_step(step) for step in run.steps]
        state = RunState(
            0, run.name, WorkflowStatus.RUNNING, json.loads(run.input_json), list(run.tags), run.steps, 0, list(texts)
        )
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
    """The :class:`RunState` of a run from its decoded columns (with each step's text when
    ``steps`` is JSON text)."""
    steps = fields["steps"]
    status = fields["status"]
    texts = None
    if isinstance(steps, str):
        steps, texts = decode_steps(steps)
    elif isinstance(steps, bytes):
        steps = json.loads(steps)
    tags = fields["tags"]
    input_value = fields["input"]
    return RunState(
        int(fields["id"]),
        fields["name"],
        _STATUSES.get(status) or WorkflowStatus(status),
        json.loads(input_value) if isinstance(input_value, (str, bytes)) else input_value,
        ([] if tags == "[]" else json.loads(tags)) if isinstance(tags, (str, bytes)) else list(tags),
        steps,
        int(fields["version"]),
        texts,
    )


def decode_steps(text: str) -> tuple[Any, list[str | None] | None]:
    """A stored step state read (``json.loads``), with the text of each step when the array is
    written without spaces between its elements (as dqflow writes it), else None."""
    if text.startswith("[{"):
        steps: list[Any] = []
        texts: list[str | None] = []
        start = 1
        try:
            while True:
                step, end = _scan(text, start)
                steps.append(step)
                texts.append(text[start:end])
                following = text[end : end + 1]
                if following != ",":
                    if following == "]" and end + 1 == len(text):
                        return steps, texts
                    break
                start = end + 1
        except StopIteration:
            pass
    return json.loads(text), None


def jobs_of_run(jobs: Sequence[NewJob], run_id: int) -> list[NewJob]:
    """``jobs`` with ``workflow_run_id`` set to ``run_id`` (the runtime sets it already
    when it knew the id; a run whose id is drawn with its insert gets it here)."""
    return [job if job.workflow_run_id == run_id else replace(job, workflow_run_id=run_id) for job in jobs]


def epoch_text(moment: datetime) -> str:
    """A timestamp as the step state stores it (ISO 8601, UTC)."""
    return moment.isoformat()
