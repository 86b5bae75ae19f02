"""The typed job record and event, the same from every backend.

``JobRecord`` is a SQLModel table model: its columns are the contract that the
PostgreSQL migrations, the SQLite schema and the Redis hash layout all follow
(a test compares the migrated PostgreSQL table with it column by column).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import JSON, BigInteger, Boolean, Column, DateTime, Integer, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from dqflow.durable.model import JobStep, JobWait, durable_fields
from dqflow.enums import EventType, FailureReason, JobStatus
from dqflow.errors import OutputParseError

__all__ = ["TIMESTAMP_FIELDS", "EventType", "FailureReason", "JobEvent", "JobRecord", "JobStatus"]

ModelT = TypeVar("ModelT", bound=BaseModel)

_JSON = JSON().with_variant(JSONB(), "postgresql")
# Payload and output keep their JSON text exactly (PostgreSQL ``json``, not ``jsonb``,
# which would turn 1e16 into an integer and -0.0 into 0).
_EXACT_JSON = JSON()


def _ts(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable))


class JobRecord(SQLModel):
    """One job: what to run, its state, progress, output and lease.

    The column definitions are the storage contract; ``JobTable`` maps them.
    """

    id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    job_type: str = Field(sa_column=Column(Text, nullable=False))
    payload: Any = Field(default=None, sa_column=Column(_EXACT_JSON, nullable=False))
    status: JobStatus = Field(default=JobStatus.PENDING, sa_column=Column(Text, nullable=False))
    priority: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    run_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    max_attempts: int = Field(default=3, sa_column=Column(Integer, nullable=False))
    timeout_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    retry_delay_ms: int = Field(default=10_000, sa_column=Column(BigInteger, nullable=False))
    retry_backoff: str = Field(default="exponential", sa_column=Column(Text, nullable=False))
    retry_max_delay_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    retry_jitter: bool = Field(default=True, sa_column=Column(Boolean, nullable=False))
    progress: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    output: Any = Field(default=None, sa_column=Column(_EXACT_JSON, nullable=True))
    error_history: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(_JSON, nullable=False))
    failure_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    tags: list[str] = Field(default_factory=list, sa_column=Column(_JSON, nullable=False))
    idempotency_key: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    started_at: datetime | None = _ts()
    completed_at: datetime | None = _ts()
    last_failed_at: datetime | None = _ts()
    last_retried_at: datetime | None = _ts()
    cancelled_at: datetime | None = _ts()
    locked_by: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    locked_at: datetime | None = _ts()
    lease_expires_at: datetime | None = _ts()
    lease_token: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    # added by migration 0002 (columns added later go last, as ALTER TABLE puts them)
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column(_JSON, nullable=False))
    # added by migration 0005: the workflow run, step and fan-out index of a step job (else None)
    workflow_run_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    workflow_step: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    workflow_item: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    # added by migration 0006 (durable handlers): completed ctx.step results by name, the
    # current wait of a waiting durable job, and when it wakes (indexed; None: not sleeping)
    steps: dict[str, JobStep] = Field(default_factory=dict, sa_column=Column(_EXACT_JSON, nullable=False))
    wait: JobWait | None = Field(default=None, sa_column=Column(_JSON, nullable=True))
    wake_at: datetime | None = _ts()
    # added by migration 0008 (flow control): at most concurrency_limit jobs with the same
    # concurrency_key are processing at once (both null: no limit)
    concurrency_key: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    concurrency_limit: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    # at most rate_limit starts per fixed window of rate_window_ms (aligned to the epoch) per rate_key
    rate_key: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    rate_limit: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    rate_window_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    # the job added (in the same atomic step) when this one fails for good: its job_type and
    # options ({"job_type", "priority", "max_attempts", "timeout_ms", "retry_*"}), or null
    dead_letter: dict[str, Any] | None = Field(default=None, sa_column=Column(_JSON, nullable=True))

    @classmethod
    def from_storage(cls, fields: dict[str, Any]) -> JobRecord:
        """Build a record from trusted backend fields (no validation: the hot path).

        With every field present this sets the instance dict directly, five times
        faster than ``model_construct`` (which fills in defaults for the rest).
        """
        fields["status"] = _STATUSES[fields["status"]]  # a dict look-up: a tenth of JobStatus(value)
        if fields.get("steps") or fields.get("wait") is not None:
            durable_fields(fields)
        if fields.keys() != _JOB_FIELDS:
            return cls.model_construct(**fields)
        record = object.__new__(cls)
        object.__setattr__(record, "__dict__", fields)
        object.__setattr__(record, "__pydantic_fields_set__", set(_JOB_FIELDS))
        object.__setattr__(record, "__pydantic_extra__", None)
        object.__setattr__(record, "__pydantic_private__", None)
        return record

    @property
    def is_finished(self) -> bool:
        """True once the job is completed, failed or cancelled."""
        return self.status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)

    def output_as(self, model: type[ModelT]) -> ModelT:
        """Parse the stored output into ``model``; ``OutputParseError`` if it does not fit."""
        if self.output is None:
            raise OutputParseError(f"job {self.id} has no output yet (status {self.status.value})")
        try:
            return model.model_validate(self.output)
        except ValidationError as exc:
            raise OutputParseError(f"output of job {self.id} does not fit {model.__name__}: {exc}") from exc


_JOB_FIELDS = frozenset(JobRecord.model_fields)
_STATUSES: dict[str, JobStatus] = {status.value: status for status in JobStatus}


class JobEvent(SQLModel):
    """One entry of a job's persisted history."""

    id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    job_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    event_type: EventType = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    data: dict[str, Any] | None = Field(default=None, sa_column=Column(_JSON, nullable=True))

    @classmethod
    def from_storage(cls, fields: dict[str, Any]) -> JobEvent:
        """Build an event from trusted backend fields (no validation)."""
        fields["event_type"] = EventType(fields["event_type"])
        return cls.model_construct(**fields)


class JobTable(JobRecord, table=True):
    """The ``dqflow_jobs`` table (PostgreSQL migrations must match it column for column)."""

    __tablename__ = "dqflow_jobs"


class JobEventTable(JobEvent, table=True):
    """The ``dqflow_job_events`` table."""

    __tablename__ = "dqflow_job_events"


# Field lists by column type, read off the table model (never re-listed by hand).
_COLUMNS = JobTable.__table__.columns  # type: ignore[attr-defined]

TIMESTAMP_FIELDS: tuple[str, ...] = tuple(c.name for c in _COLUMNS if isinstance(c.type, DateTime))
"""The ``JobRecord`` fields that hold a timestamp (backends that store numbers convert them)."""

JSON_FIELDS: tuple[str, ...] = tuple(c.name for c in _COLUMNS if isinstance(c.type, JSON))
"""The ``JobRecord`` fields that hold JSON (backends that store text parse them)."""

BOOLEAN_FIELDS: tuple[str, ...] = tuple(c.name for c in _COLUMNS if isinstance(c.type, Boolean))
"""The ``JobRecord`` fields that hold a boolean (backends that store integers convert them)."""
