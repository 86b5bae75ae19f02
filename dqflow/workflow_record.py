"""The typed workflow run record, the same from every backend.

``WorkflowRun`` is a SQLModel model like ``JobRecord``: its columns are the
contract the PostgreSQL migration, the SQLite schema and the Redis hash follow
(a test compares the migrated PostgreSQL table with ``WorkflowRunTable``). The
state of the steps is one JSON column (``steps``), in the workflow's
topological order, written in the same atomic step as the job changes that
move it (storage/workflows.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import JSON, BigInteger, Column, DateTime, Text
from sqlmodel import Field, SQLModel

from dqflow.enums import StepStatus, WorkflowStatus
from dqflow.errors import OutputParseError

__all__ = ["StepStatus", "WorkflowPage", "WorkflowRun", "WorkflowRunTable", "WorkflowStatus", "WorkflowStepRecord"]

ModelT = TypeVar("ModelT", bound=BaseModel)

_EXACT_JSON = JSON()  # PostgreSQL ``json``: values kept exactly as written (as job payloads and outputs)


def _ts(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable))


class WorkflowStepRecord(BaseModel):
    """One step of a run: its status, its jobs and what they returned.

    ``job_ids`` are in fan-out element order. ``output`` is a plain step's
    output; ``outputs`` the list of a ``for_each`` step's outputs in element
    order (None for a plain step). ``skipped_reason`` says why a skipped step
    did not run; ``error`` why a failed step failed.
    """

    name: str
    job: str
    status: StepStatus = StepStatus.WAITING
    job_ids: list[int] = []
    output: Any = None
    outputs: list[Any] | None = None
    skipped_reason: str | None = None
    error: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None

    @property
    def is_over(self) -> bool:
        """True once the step is completed or skipped (steps that need it may run)."""
        return self.status in (StepStatus.COMPLETED, StepStatus.SKIPPED)


class WorkflowRun(SQLModel):
    """One run of a declared workflow: its input, status, steps and output.

    ``failure_reason`` is the failed step's reason (``handler_error``,
    ``invalid_payload``, ...; ``invalid_output`` when ``returns`` did not fit the
    workflow's ``output`` schema); ``error`` says which step failed and why.
    """

    id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    name: str = Field(sa_column=Column(Text, nullable=False))
    status: WorkflowStatus = Field(default=WorkflowStatus.RUNNING, sa_column=Column(Text, nullable=False))
    input: Any = Field(default=None, sa_column=Column(_EXACT_JSON, nullable=False))
    output: Any = Field(default=None, sa_column=Column(_EXACT_JSON, nullable=True))
    tags: list[str] = Field(default_factory=list, sa_column=Column(_EXACT_JSON, nullable=False))
    idempotency_key: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    failure_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    steps: list[WorkflowStepRecord] = Field(default_factory=list, sa_column=Column(_EXACT_JSON, nullable=False))
    version: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    completed_at: datetime | None = _ts()

    @property
    def is_finished(self) -> bool:
        """True once the run is completed, failed or cancelled."""
        return self.status is not WorkflowStatus.RUNNING

    def step(self, name: str) -> WorkflowStepRecord:
        """The step called ``name``; ``KeyError`` naming the steps there are."""
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(f"workflow run {self.id} has no step {name!r} (steps: {', '.join(s.name for s in self.steps)})")

    def output_as(self, model: type[ModelT]) -> ModelT:
        """Parse the run's output into ``model``; ``OutputParseError`` if there is none or it does not fit."""
        if self.status is not WorkflowStatus.COMPLETED:
            raise OutputParseError(f"workflow run {self.id} has no output yet (status {self.status.value})")
        try:
            return model.model_validate(self.output)
        except ValidationError as exc:
            raise OutputParseError(f"output of workflow run {self.id} does not fit {model.__name__}: {exc}") from exc


class WorkflowRunTable(WorkflowRun, table=True):
    """The ``dqflow_workflow_runs`` table (the PostgreSQL migration must match it column for column)."""

    __tablename__ = "dqflow_workflow_runs"


class WorkflowPage(BaseModel):
    """One page of ``list_workflows``, newest first; pass ``next_cursor`` back for the next page."""

    runs: list[WorkflowRun] = []
    next_cursor: int | None = None
