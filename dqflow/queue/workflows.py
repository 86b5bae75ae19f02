"""The queue's workflow API: start, read, list, cancel and retry workflow runs.

``WorkflowMethods`` is mixed into ``Queue``. Runs are moved by storage inside
the atomic step that ends their step jobs (``dqflow.storage.workflows``),
using the ``WorkflowRuntime`` this module gives the storage.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dqflow.enums import WorkflowStatus
from dqflow.errors import PayloadTooLargeError, PayloadValidationError, UnknownWorkflowError, WorkflowRunNotFoundError
from dqflow.queue.events import WORKFLOW_CANCELLED, WORKFLOW_COMPLETED, WORKFLOW_FAILED, WORKFLOW_STARTED, EventEmitter
from dqflow.storage.workflows import NewWorkflowRun, RunNotice, WorkflowFilter

if TYPE_CHECKING:
    from dqflow.declaration import Declaration
    from dqflow.storage import NewJob, Storage
    from dqflow.telemetry import Tracing
    from dqflow.workflow_record import WorkflowPage, WorkflowRun
    from dqflow.workflows.model import Workflow
    from dqflow.workflows.runtime import WorkflowRuntime

_EVENTS = {
    WorkflowStatus.RUNNING: WORKFLOW_STARTED,
    WorkflowStatus.COMPLETED: WORKFLOW_COMPLETED,
    WorkflowStatus.FAILED: WORKFLOW_FAILED,
    WorkflowStatus.CANCELLED: WORKFLOW_CANCELLED,
}


class WorkflowMethods:
    """``Queue``'s workflow methods (docs/WORKFLOWS.md, "Running workflows")."""

    declaration: Declaration
    events: EventEmitter
    storage: Storage
    tracing: Tracing | None
    _workflow_runtime: WorkflowRuntime | None = None

    def _new_job(self, job: Any) -> NewJob:  # pragma: no cover - Queue's
        raise NotImplementedError

    def _attach_workflows(self) -> None:
        """Give the storage what moves runs (only when the declaration has workflows)."""
        if not self.declaration.workflows:
            return
        from dqflow.queue.queue import JobSpec
        from dqflow.workflows.runtime import WorkflowRuntime

        def new_job(job_type: str, payload: Any, tags: tuple[str, ...], trace: Mapping[str, str] | None) -> NewJob:
            declared = self.declaration.job_types[job_type].tags
            merged = tuple(dict.fromkeys((*declared, *tags)))
            return self._new_job(JobSpec(job_type, payload, tags=merged, meta=trace))

        self._workflow_runtime = WorkflowRuntime(self.declaration.workflows, new_job, self._workflow_notices)
        self.storage.set_workflow_advancer(self._workflow_runtime)

    def _workflow_notices(self, notices: Sequence[RunNotice]) -> None:
        for notice in notices:
            event = _EVENTS[notice.status]
            if self.events.has_listeners(event):
                data: dict[str, Any] = {"run_id": notice.run_id, "workflow": notice.name}
                if notice.failure_reason is not None and notice.status is not WorkflowStatus.COMPLETED:
                    data["failure_reason"] = notice.failure_reason
                self.events.emit(event, data)

    def _workflow(self, name: str) -> tuple[Workflow, WorkflowRuntime]:
        if not isinstance(name, str) or name not in self.declaration.workflows or self._workflow_runtime is None:
            known = ", ".join(sorted(self.declaration.workflows)) or "none"
            raise UnknownWorkflowError(f"unknown workflow {name!r} (declared: {known})")
        return self.declaration.workflows[name], self._workflow_runtime

    def _runtime(self) -> WorkflowRuntime:
        if self._workflow_runtime is None:
            raise UnknownWorkflowError("this declaration declares no workflows")
        return self._workflow_runtime

    # -- starting --------------------------------------------------------------------

    def start_workflow(
        self,
        name: str,
        input: Any = None,
        *,
        idempotency_key: str | None = None,
        tags: Sequence[str] | None = None,
    ) -> int:
        """Validate ``input`` and start a run of workflow ``name``; return the run id.

        The run and its root steps' jobs are stored atomically. An input that
        fails the workflow's ``input`` schema raises ``PayloadValidationError``
        and nothing is stored; an undeclared name raises ``UnknownWorkflowError``.
        A repeated ``idempotency_key`` returns the existing run's id. ``tags`` go
        on the run and on every one of its step jobs.
        """
        return self._start_runs(name, [input], [idempotency_key], tags, batch=False)[0]

    def start_workflows(
        self,
        name: str,
        inputs: Sequence[Any],
        *,
        idempotency_keys: Sequence[str | None] | None = None,
        tags: Sequence[str] | None = None,
    ) -> list[int]:
        """Validate every input, then start one run of workflow ``name`` per input, all in
        one storage call (one transaction, statement or script); return the run ids in
        input order.

        All or nothing: an input that fails the ``input`` schema raises
        ``PayloadValidationError`` naming its index, and nothing is stored.
        ``idempotency_keys``: one per input (None: no key); a key that a run already
        has, or that an earlier input of the batch has, answers that run's id and
        starts nothing. ``tags`` go on every run and on every one of its step jobs.
        """
        if isinstance(inputs, (str, bytes, Mapping)) or not isinstance(inputs, Iterable):
            raise TypeError(f"inputs must be a list of inputs (one per run), not {type(inputs).__name__}")
        given = list(inputs)
        if idempotency_keys is None:
            keys: list[str | None] = [None] * len(given)
        elif isinstance(idempotency_keys, (str, bytes)) or not isinstance(idempotency_keys, Iterable):
            raise TypeError("idempotency_keys must be a list of keys (one per input, None for none)")
        else:
            keys = list(idempotency_keys)
            if len(keys) != len(given):
                raise ValueError(f"idempotency_keys: {len(keys)} keys for {len(given)} inputs (one per input)")
        return self._start_runs(name, given, keys, tags, batch=True)

    def _start_runs(
        self, name: str, inputs: list[Any], keys: list[str | None], tags: Sequence[str] | None, *, batch: bool
    ) -> list[int]:
        """Validate, then store the runs with one ``create_workflow_runs`` call (inside a
        ``dqflow.start_workflow`` span when tracing is on)."""
        from dqflow.queue.queue import _checked_json, _no_nul, _tags
        from dqflow.workflows.runtime import initial_steps, with_run_trace

        workflow, runtime = self._workflow(name)
        limit = self.declaration.limits.max_payload_bytes
        texts: list[str] = []
        for index, (value, key) in enumerate(zip(inputs, keys, strict=True)):
            label = f"input {index} of {name}" if batch else f"input of {name}"
            texts.append(
                _checked_json(value, workflow.input_schema, limit, PayloadValidationError, PayloadTooLargeError, label)
            )
            if key is not None:
                if not isinstance(key, str):
                    raise TypeError(f"idempotency_key{f' {index}' if batch else ''} must be a string")
                _no_nul(key, "idempotency_key")
        run_tags = _tags(tags or ())
        if not texts:
            return []
        if self.tracing is None:
            steps = initial_steps(workflow)
            runs = [NewWorkflowRun(name, text, steps, run_tags, key) for text, key in zip(texts, keys, strict=True)]
            return [run_id for run_id, _ in self.storage.create_workflow_runs(runs, runtime.start)]
        with self.tracing.starting_workflow(name, len(texts)) as starting:
            steps = with_run_trace(initial_steps(workflow), starting.carrier)
            runs = [NewWorkflowRun(name, text, steps, run_tags, key) for text, key in zip(texts, keys, strict=True)]
            run_ids = [run_id for run_id, _ in self.storage.create_workflow_runs(runs, runtime.start)]
            starting.started(run_ids)
            return run_ids

    # -- reading ---------------------------------------------------------------------

    def get_workflow(self, run_id: int) -> WorkflowRun | None:
        """The workflow run with ``run_id``, or None."""
        return self.storage.get_workflow_run(int(run_id))

    def require_workflow(self, run_id: int) -> WorkflowRun:
        """The workflow run with ``run_id``; ``WorkflowRunNotFoundError`` when there is none."""
        run = self.get_workflow(run_id)
        if run is None:
            raise WorkflowRunNotFoundError(int(run_id))
        return run

    def list_workflows(
        self,
        *,
        name: str | None = None,
        statuses: Sequence[WorkflowStatus | str] = (),
        limit: int = 100,
        cursor: int | None = None,
    ) -> WorkflowPage:
        """Workflow runs, newest first (of workflow ``name``, in ``statuses``); pass
        ``page.next_cursor`` back for the next page."""
        if isinstance(statuses, (str, WorkflowStatus)):
            statuses = (statuses,)
        wanted = []
        for status in statuses:
            try:
                wanted.append(WorkflowStatus(status))
            except ValueError:
                known = ", ".join(s.value for s in WorkflowStatus)
                raise ValueError(f"unknown workflow status {status!r} (statuses: {known})") from None
        if not 1 <= int(limit) <= 10_000:
            raise ValueError(f"limit must be between 1 and 10000, got {limit}")
        run_filter = WorkflowFilter(name, tuple(wanted), int(limit), None if cursor is None else int(cursor))
        return self.storage.list_workflow_runs(run_filter)

    # -- managing --------------------------------------------------------------------

    def cancel_workflow(self, run_id: int) -> WorkflowRun:
        """Cancel a running run: its unfinished steps and their jobs are cancelled (running
        handlers see ``ctx.cancelled``). ``InvalidWorkflowStateError`` if it is not running."""
        return self.storage.change_workflow_run(int(run_id), self._runtime().cancel)

    def retry_workflow(self, run_id: int) -> WorkflowRun:
        """Run a failed or cancelled run on: its failed and cancelled step jobs run again,
        steps that never started are planned again. ``InvalidWorkflowStateError`` otherwise."""
        return self.storage.change_workflow_run(int(run_id), self._runtime().retry)
