"""Request and response shapes of the HTTP API: camelCase JSON, ISO-8601 times (dataqueue's)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from dqflow.enums import StepStatus, WorkflowStatus
from dqflow.record import JobEvent, JobRecord, JobStatus
from dqflow.workflow_record import WorkflowRun as WorkflowRunRecord
from dqflow.workflow_record import WorkflowStepRecord


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Job(ApiModel):
    """A job as the API shows it (every ``JobRecord`` field but the internal lease token)."""

    id: int
    job_type: str
    status: JobStatus
    payload: Any
    output: Any
    progress: int | None
    attempts: int
    max_attempts: int
    priority: int
    tags: list[str]
    failure_reason: str | None
    error_history: list[dict[str, Any]]
    idempotency_key: str | None
    timeout_ms: int | None
    retry_delay_ms: int
    retry_backoff: str
    retry_max_delay_ms: int | None
    retry_jitter: bool
    run_at: datetime
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    last_failed_at: datetime | None
    last_retried_at: datetime | None
    cancelled_at: datetime | None
    locked_by: str | None
    locked_at: datetime | None
    lease_expires_at: datetime | None
    workflow_run_id: int | None = None
    """The workflow run of a step job (``null`` for a plain job)."""
    workflow_step: str | None = None
    """The step of that run the job belongs to."""
    workflow_item: int | None = None
    """A ``for_each`` step job's index in the fanned-out array (``null`` otherwise)."""

    @classmethod
    def of(cls, record: JobRecord) -> Job:
        fields = {name: getattr(record, name) for name in cls.model_fields}
        return cls.model_construct(**fields)


class JobResponse(ApiModel):
    """``GET /api/jobs/{id}``."""

    job: Job


class JobListResponse(ApiModel):
    """``GET /api/jobs``: one page, newest first."""

    jobs: list[Job]
    has_more: bool
    next_cursor: int | None = Field(description="Pass as `cursor` for the next page (null on the last page).")


class Event(ApiModel):
    """One entry of a job's persisted history."""

    id: int
    job_id: int
    event_type: str
    created_at: datetime
    data: dict[str, Any] | None

    @classmethod
    def of(cls, event: JobEvent) -> Event:
        return cls.model_construct(
            id=event.id,
            job_id=event.job_id,
            event_type=str(event.event_type),
            created_at=event.created_at,
            data=event.data,
        )


class EventsResponse(ApiModel):
    """``GET /api/jobs/{id}/events``: oldest first."""

    events: list[Event]


class OkResponse(ApiModel):
    """A write that succeeded."""

    ok: bool = True


class GroupRequest(ApiModel):
    """dataqueue's ``group``: its ``id`` is the concurrency group (docs/FLOW_CONTROL.md)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=512)


class AddJobRequest(ApiModel):
    """``POST /api/jobs``: the payload is checked against the job type's schema."""

    model_config = ConfigDict(extra="forbid")

    job_type: str = Field(min_length=1, max_length=200)
    payload: Any = None
    priority: int | None = Field(default=None, ge=-(2**31), le=2**31 - 1)
    run_at: datetime | None = Field(default=None, description="When to run (ISO-8601; UTC if no zone).")
    delay: str | float | None = Field(default=None, description="Run after this long: seconds or `30s`, `5m`...")
    max_attempts: int | None = Field(default=None, ge=1, le=1000)
    timeout_ms: int | None = Field(default=None, ge=1)
    tags: list[str] | None = Field(default=None, max_length=100)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=1000)
    group: GroupRequest | None = Field(
        default=None, description="A concurrency group `{id}`: jobs of one group share its limit."
    )


class AddJobResponse(ApiModel):
    """The new (or, with a repeated idempotency key, the existing) job."""

    id: int
    job: Job


class ErrorDetail(ApiModel):
    """One problem: where (a JSON path like ``$.images[2]`` or ``body.jobType``) and what."""

    path: str
    message: str


class ErrorResponse(ApiModel):
    """Every 4xx and 5xx answer."""

    error: str
    details: list[ErrorDetail] | None = None


# -- workflows --------------------------------------------------------------------------


class WorkflowStep(ApiModel):
    """One step of a run: its status, its jobs (one, or one per element of a fan-out) and outputs."""

    name: str
    job: str = Field(description="The job type the step runs.")
    status: StepStatus
    job_ids: list[int] = Field(description="The step's jobs, in fan-out element order.")
    output: Any = Field(description="A one-job step's output (null for a fan-out step or before it completes).")
    outputs: list[Any] | None = Field(description="A fan-out step's outputs, in element order.")
    skipped_reason: str | None
    error: str | None = Field(description="Why a failed step failed.")
    started_at: datetime | None
    completed_at: datetime | None

    @classmethod
    def of(cls, step: WorkflowStepRecord) -> WorkflowStep:
        fields: dict[str, Any] = {name: getattr(step, name) for name in cls.model_fields}
        return cls.model_construct(**fields)


class WorkflowRun(ApiModel):
    """A workflow run: its input, status, steps and (once completed) its output."""

    id: int
    name: str
    status: WorkflowStatus
    input: Any
    output: Any = Field(description="What `returns` built, once the run completed.")
    tags: list[str]
    idempotency_key: str | None
    failure_reason: str | None
    error: str | None = Field(description="Which step failed and why.")
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    steps: list[WorkflowStep]

    @classmethod
    def of(cls, run: WorkflowRunRecord) -> WorkflowRun:
        fields: dict[str, Any] = {name: getattr(run, name) for name in cls.model_fields}
        fields["steps"] = [WorkflowStep.of(step) for step in run.steps]
        return cls.model_construct(**fields)


class WorkflowRunResponse(ApiModel):
    """``GET /api/workflows/runs/{id}`` (and the answer to cancel and retry)."""

    run: WorkflowRun


class WorkflowRunListResponse(ApiModel):
    """``GET /api/workflows/runs``: one page, newest first."""

    runs: list[WorkflowRun]
    has_more: bool
    next_cursor: int | None = Field(description="Pass as `cursor` for the next page (null on the last page).")


class StartWorkflowRequest(ApiModel):
    """``POST /api/workflows/{name}/runs``: the input is checked against the workflow's input schema."""

    model_config = ConfigDict(extra="forbid")

    input: Any = None
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=1000)
    tags: list[str] | None = Field(default=None, max_length=100)


class StartWorkflowResponse(ApiModel):
    """The new (or, with a repeated idempotency key, the existing) run."""

    id: int
    run: WorkflowRun
