"""Moving workflow runs: start, a step job's end, cancel and retry, as ``Advance`` values.

The backends call this (through the ``WorkflowAdvancer`` protocol of
``dqflow.storage.workflows``) while they hold a run's lock; it reads the run's
state and returns what to write. It uses the pure resolver for which steps are
ready, their payloads, skips and ``returns``, and a job factory (the Queue's)
that validates each payload like ``Queue.add``. It does no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from dqflow.enums import FailureReason, StepStatus, WorkflowStatus
from dqflow.errors import InvalidWorkflowStateError, OutputValidationError, UnknownWorkflowError, ValidationFailed
from dqflow.json_values import dumps
from dqflow.storage.base import NewJob
from dqflow.storage.workflows import Advance, JobEnd, RunNotice, RunState
from dqflow.workflows.model import Workflow
from dqflow.workflows.resolver import SKIPPED, ResolutionError, WorkflowPlanner, planner

__all__ = ["JobFactory", "WorkflowRuntime", "initial_steps", "with_run_trace"]

JobFactory = Callable[[str, Any, tuple[str, ...], Mapping[str, str] | None, int | None, str, int | None], NewJob]
"""(job type, payload, run tags, the run's trace context or None, run id or None (not drawn yet),
step, fan-out index or None) → a validated step ``NewJob`` (raises ``ValidationFailed``); the
trace context goes into the job's ``meta`` (dqflow/queue/step_jobs.py)."""

# the stored step statuses as text (read and written once per step job that ends)
_WAITING = StepStatus.WAITING.value
_RUNNING = StepStatus.RUNNING.value
_COMPLETED = StepStatus.COMPLETED.value
_SKIPPED = StepStatus.SKIPPED.value
_FAILED = StepStatus.FAILED.value
_CANCELLED = StepStatus.CANCELLED.value
_OVER = (_COMPLETED, _SKIPPED)
_WORKFLOW_FAILED = FailureReason.WORKFLOW_FAILED.value
_UNFINISHED = (_WAITING, _RUNNING)


def initial_steps(workflow: Workflow) -> list[dict[str, Any]]:
    """The stored state of a run's steps before anything ran: every step waiting."""
    return [
        {
            "name": name,
            "job": step.job,
            "status": _WAITING,
            "job_ids": [],
            "done": [],
            "output": None,
            "outputs": None,
            "skipped_reason": None,
            "error": None,
            "started_at": None,
            "completed_at": None,
        }
        for name, step in workflow.steps.items()
    ]


def with_run_trace(steps: list[dict[str, Any]], carrier: Mapping[str, str]) -> list[dict[str, Any]]:
    """``steps`` with the run's W3C trace context kept in each (key ``trace``): every step job
    planned for the run, now or after a retry, carries it in its ``meta`` (docs/OBSERVABILITY.md)."""
    if not carrier:
        return steps
    return [{**step, "trace": dict(carrier)} for step in steps]


def _copied(step: dict[str, Any]) -> dict[str, Any]:
    """A step's state to change: the lists changed in place are copied, values are shared."""
    copied = {**step, "done": list(step["done"])}
    if step["outputs"] is not None:
        copied["outputs"] = list(step["outputs"])
    return copied


_second: tuple[int, str] = (-1, "")
"""The last second :func:`utc_text` wrote: seconds since the epoch, ISO 8601 text (no offset)."""


def utc_text(nanoseconds: int) -> str:
    """``datetime.fromtimestamp(nanoseconds / 1e9, UTC).isoformat()`` (microseconds cut, not rounded,
    as ``datetime.now`` does), the date and time of each second made once."""
    global _second
    seconds, rest = divmod(nanoseconds, 1_000_000_000)
    second, text = _second
    if seconds != second:
        text = datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None).isoformat()
        _second = (seconds, text)
    micro = rest // 1000
    return f"{text}.{micro:06d}+00:00" if micro else f"{text}+00:00"


_NOT_OVER = object()
"""What ``_Work.plan`` returns for a step that is not over once planned."""


def _failure_last(end: JobEnd) -> bool:
    """Sort key: completions first (the step state records them before a failure stops the run)."""
    return end.status != "completed"


class WorkflowRuntime:
    """The ``WorkflowAdvancer`` of a declaration (one per ``Queue``).

    ``notify`` is called with the runs whose status changed once a backend
    committed them (the Queue emits ``workflow:*`` events from it).
    """

    def __init__(
        self,
        workflows: dict[str, Workflow],
        new_job: JobFactory,
        notify: Callable[[Sequence[RunNotice]], None] | None = None,
    ) -> None:
        self._workflows = workflows
        self._new_job = new_job
        self._notify = notify

    def workflow(self, name: str) -> Workflow:
        """The declared workflow ``name``; ``UnknownWorkflowError`` naming the declared ones."""
        try:
            return self._workflows[name]
        except KeyError:
            known = ", ".join(sorted(self._workflows)) or "none"
            raise UnknownWorkflowError(f"workflow {name!r} is not declared (declared: {known})") from None

    # -- WorkflowAdvancer ----------------------------------------------------------------

    def job_ended(self, run: RunState, ends: Sequence[JobEnd]) -> Advance:
        """Record the ends of step jobs; a step over readies its dependents, a failure fails the run."""
        workflow = self._workflows.get(run.name)
        if workflow is None:  # no longer declared: the run waits (a job's settle must not fail)
            return Advance(status=run.status, steps=run.steps, changed=False)
        work = _Work(workflow, run, self._new_job)
        ordered = ends if len(ends) == 1 else sorted(ends, key=_failure_last)
        for end in ordered:
            work.job_ended(end)
        if work.status is WorkflowStatus.RUNNING:
            work.cascade()
        return work.advance()

    def committed(self, notices: Sequence[RunNotice]) -> None:
        """Pass committed status changes on to ``notify``."""
        if self._notify is not None and notices:
            self._notify(notices)

    # -- what the Queue asks -------------------------------------------------------------

    def start(self, run: RunState) -> Advance:
        """A new run: plan its root steps (and whatever follows at once: skips, empty fan-outs)."""
        work = _Work(self.workflow(run.name), run, self._new_job)
        work.notices.append(WorkflowStatus.RUNNING)
        work.cascade()
        return work.advance()

    def cancel(self, run: RunState) -> Advance:
        """Cancel a running run: unfinished steps cancelled, their unfinished jobs cancelled."""
        if run.status is not WorkflowStatus.RUNNING:
            raise InvalidWorkflowStateError(
                f"workflow run {run.id} is {run.status.value}: only a running run can be cancelled"
            )
        work = _Work(self._workflows.get(run.name), run, self._new_job)  # no longer declared: cancelled all the same
        work.stop(WorkflowStatus.CANCELLED, "cancelled", "cancelled by a user", FailureReason.WORKFLOW_CANCELLED)
        return work.advance()

    def retry(self, run: RunState) -> Advance:
        """Re-run a failed or cancelled run's unfinished steps (their jobs retried, unstarted ones planned)."""
        if run.status not in (WorkflowStatus.FAILED, WorkflowStatus.CANCELLED):
            raise InvalidWorkflowStateError(
                f"workflow run {run.id} is {run.status.value}: only a failed or cancelled run can be retried"
            )
        work = _Work(self.workflow(run.name), run, self._new_job)
        work.reopen()
        work.cascade()
        return work.advance()


class _Work:
    """One run's state being changed; the caller's RunState is left alone (a step is copied
    before its first change, and the advance names the steps changed).

    Payloads and the run's output are made of the run's input and step outputs, shared with
    the RunState (a backend may keep it between step ends): they are validated and encoded
    (which never changes a value) and dropped, never changed.
    """

    __slots__ = (
        "_now",
        "_planner",
        "_workflow",
        "cancel_ids",
        "cancel_reason",
        "changed",
        "edited",
        "error",
        "failure_reason",
        "new_job",
        "new_jobs",
        "notices",
        "output_json",
        "retry_ids",
        "run",
        "status",
        "steps",
    )

    def __init__(self, workflow: Workflow | None, run: RunState, new_job: JobFactory) -> None:
        self._workflow = workflow
        self._planner = None if workflow is None else planner(workflow, copy_constants=False)
        self._now: str | None = None
        self.run = run
        self.new_job = new_job
        self.steps: dict[str, dict[str, Any]] = {step["name"]: step for step in run.steps}
        self.edited: set[str] = set()  # the steps copied to change
        self.status = run.status
        self.output_json: str | None = None
        self.failure_reason: str | None = None
        self.error: str | None = None
        self.new_jobs: list[NewJob] = []
        self.cancel_ids: list[int] = []
        self.cancel_reason: str = _WORKFLOW_FAILED
        self.retry_ids: list[int] = []
        self.notices: list[WorkflowStatus] = []
        self.changed = False

    @property
    def now(self) -> str:
        """The time of this change, as step states store it (read when a step starts or ends)."""
        now = self._now
        if now is None:
            now = self._now = utc_text(time.time_ns())
        return now

    @property
    def workflow(self) -> Workflow:
        """The run's declared workflow (only ``stop`` works without one)."""
        if self._workflow is None:
            raise UnknownWorkflowError(f"workflow {self.run.name!r} of run {self.run.id} is not declared")
        return self._workflow

    @property
    def planner(self) -> WorkflowPlanner:
        """The workflow's compiled mappings (payloads are never changed: constants shared)."""
        if self._planner is None:
            raise UnknownWorkflowError(f"workflow {self.run.name!r} of run {self.run.id} is not declared")
        return self._planner

    def edit(self, name: str) -> dict[str, Any]:
        """The state of step ``name``, to change (copied the first time)."""
        if name in self.edited:
            return self.steps[name]
        self.edited.add(name)
        step = self.steps[name] = _copied(self.steps[name])
        return step

    def advance(self) -> Advance:
        steps = list(self.steps.values())
        edited = self.edited
        positions = tuple([index for index, name in enumerate(self.steps) if name in edited])
        texts = self.run.step_texts
        if texts is not None:
            if len(texts) == len(steps):  # the steps left alone keep their text
                texts = list(texts)
                for index in positions:
                    texts[index] = None
            else:
                texts = None
        return Advance(
            status=self.status,
            steps=steps,
            edited=positions,
            step_texts=texts,
            output_json=self.output_json,
            failure_reason=self.failure_reason,
            error=self.error,
            new_jobs=self.new_jobs,
            cancel_job_ids=self.cancel_ids,
            cancel_reason=self.cancel_reason,
            retry_job_ids=self.retry_ids,
            notices=self.notices,
            changed=self.changed or bool(self.notices),
        )

    # -- a job's end ---------------------------------------------------------------------

    def job_ended(self, end: JobEnd) -> None:
        step = self.steps.get(end.step)
        if step is None or end.job_id not in step["job_ids"]:
            return
        index = step["job_ids"].index(end.job_id)
        if end.status == "completed":
            # recorded even when the run stopped meanwhile, so a retry does not run it again
            if step["done"][index] or step["status"] == _COMPLETED:
                return
            step = self.edit(end.step)
            step["done"][index] = True
            if step["outputs"] is not None:
                step["outputs"][index] = end.output
            else:
                step["output"] = end.output
            self.changed = True
            if all(step["done"]) and step["status"] in (_RUNNING, _CANCELLED):
                step["status"] = _COMPLETED
                step["completed_at"] = self.now
            return
        if self.status is not WorkflowStatus.RUNNING or step["status"] != _RUNNING:
            return
        reason = end.reason or end.status
        detail = f": {end.error}" if end.error else ""
        self.fail_step(end.step, reason, f"job {end.job_id} {end.status} ({reason}){detail}")

    # -- planning ------------------------------------------------------------------------

    def results(self) -> dict[str, Any]:
        """The steps over: name → output (a fan-out step: its outputs), or ``SKIPPED``."""
        results: dict[str, Any] = {}
        for name, step in self.steps.items():
            status = step["status"]
            if status == _SKIPPED:
                results[name] = SKIPPED
            elif status == _COMPLETED:
                results[name] = step["outputs"] if step["outputs"] is not None else step["output"]
        return results

    def cascade(self) -> None:
        """Plan every ready step until none is; then finish the run if every step is over.

        Each round plans the steps ready after the previous one: in the first, any waiting
        step whose needs are over; later, only the dependents of the steps the previous
        round skipped or completed at once (no other step can have become ready).
        """
        planner = self.planner
        results = self.results()
        candidates: Iterable[str] | None = None  # every step
        while self.status is WorkflowStatus.RUNNING:
            steps = self.steps
            ready = [name for name in planner.ready(results, candidates) if steps[name]["status"] == _WAITING]
            if not ready:
                break
            over: list[str] = []
            for name in ready:
                result = self.plan(name, results)
                if self.status is not WorkflowStatus.RUNNING:
                    return
                if result is not _NOT_OVER:
                    over.append(name)
                    results[name] = result
            if not over:
                break  # every step planned now runs: none can make another one ready yet
            candidates = [dependent for name in over for dependent in planner.dependents[name]]
        if self.status is WorkflowStatus.RUNNING and len(results) == len(self.steps):
            self.finish(results)

    def plan(self, name: str, results: dict[str, Any]) -> Any:
        """Plan step ``name``: its result when it is over at once (skipped, or a ``for_each``
        over an empty array), else ``_NOT_OVER`` (its jobs run, or it failed the run)."""
        self.changed = True
        planner = self.planner
        run = self.run
        try:
            payloads, skip_reason = planner.resolve(name, run.input, results)
        except ResolutionError as exc:
            self.fail_step(name, FailureReason.INVALID_PAYLOAD.value, str(exc))
            return _NOT_OVER
        if skip_reason is not None:
            self.edit(name).update(status=_SKIPPED, skipped_reason=skip_reason, completed_at=self.now)
            return SKIPPED
        declared = planner.workflow.steps[name]
        fans_out = declared.fans_out
        step = self.steps[name]
        job_type, tags, trace, run_id = declared.job, tuple(run.tags), step.get("trace"), run.id or None
        new_job = self.new_job
        jobs: list[NewJob] = []
        for index, payload in enumerate(payloads):
            try:
                job = new_job(job_type, payload, tags, trace, run_id, name, index if fans_out else None)
            except ValidationFailed as exc:
                where = f"element {index}: " if fans_out else ""
                self.fail_step(name, FailureReason.INVALID_PAYLOAD.value, f"{where}{exc}")
                return _NOT_OVER
            jobs.append(job)
        first = len(self.new_jobs)
        count = len(jobs)
        self.new_jobs.extend(jobs)
        outputs = [None] * count if fans_out else None
        planned = self.steps[name] = {  # a new state: nothing of the old one is changed in place
            **step,
            "started_at": self.now,
            "job_ids": list(range(-first - 1, -first - count - 1, -1)),
            "done": [False] * count,
            "outputs": outputs,
            "output": None,
            "error": None,
            "skipped_reason": None,
            "status": _RUNNING if jobs else _COMPLETED,  # no job: a for_each over an empty array
        }
        self.edited.add(name)
        if jobs:
            return _NOT_OVER
        planned["completed_at"] = self.now
        return outputs

    def finish(self, results: dict[str, Any]) -> None:
        """Every step is over: evaluate ``returns``, check it, and complete the run."""
        try:
            output = self.planner.returns(self.run.input, results)
            text = dumps(output, OutputValidationError, f"output of workflow {self.workflow.name}")
            if self.workflow.output_schema is not None:
                self.workflow.output_schema.validate(
                    output, OutputValidationError, f"output of workflow {self.workflow.name}"
                )
        except ValidationFailed as exc:
            self.stop(WorkflowStatus.FAILED, FailureReason.INVALID_OUTPUT.value, f"returns: {exc}")
            return
        self.status = WorkflowStatus.COMPLETED
        self.output_json = text
        self.notices.append(WorkflowStatus.COMPLETED)
        self.changed = True

    # -- stopping and reopening ----------------------------------------------------------

    def fail_step(self, name: str, reason: str, error: str) -> None:
        step = self.edit(name)
        step.update(status=_FAILED, error=error, completed_at=self.now)
        self.stop(WorkflowStatus.FAILED, reason, f"step {name!r} failed: {error}")

    def stop(self, status: WorkflowStatus, reason: str, error: str, cancel_reason: str | None = None) -> None:
        """End the run: unfinished steps cancelled, their unfinished jobs cancelled."""
        self.status = status
        self.failure_reason = reason
        self.error = error
        self.notices.append(status)
        self.changed = True
        if cancel_reason is not None:
            self.cancel_reason = cancel_reason
        for name, step in list(self.steps.items()):
            if step["status"] in _UNFINISHED:
                step = self.edit(name)
                if step["status"] == _RUNNING:
                    self.cancel_ids.extend(
                        job_id for job_id, done in zip(step["job_ids"], step["done"], strict=True) if not done
                    )
                step.update(status=_CANCELLED, completed_at=self.now)
        self.cancel_ids = [job_id for job_id in self.cancel_ids if job_id > 0]

    def reopen(self) -> None:
        """Failed and cancelled steps run again: started ones retry their unfinished jobs."""
        self.status = WorkflowStatus.RUNNING
        self.changed = True
        for name, step in list(self.steps.items()):
            if step["status"] not in (_FAILED, _CANCELLED):
                continue
            step = self.edit(name)
            unfinished = [job_id for job_id, done in zip(step["job_ids"], step["done"], strict=True) if not done]
            if step["job_ids"] and (unfinished or step["status"] == _CANCELLED):
                self.retry_ids.extend(unfinished)
                step.update(error=None, completed_at=None)
                step["status"] = _RUNNING if unfinished else _COMPLETED
            else:  # never started (or its payload was refused): planned again
                step.update(status=_WAITING, error=None, started_at=None, completed_at=None)
                step.update(job_ids=[], done=[], output=None, outputs=None)
