"""The declaration's two shapes.

* ``Raw*`` pydantic models mirror ``jobs.yaml`` exactly (strict types, unknown
  keys forbidden). They only say what was written; defaults are merged later.
* The frozen dataclasses (:class:`JobTypeSpec`, :class:`RetryPolicy`,
  :class:`WorkerSettings`, :class:`Limits`) are the compiled parts every other
  layer uses: durations in seconds, defaults merged, schemas compiled, handlers
  imported. The whole, :class:`~dqflow.declaration.loader.Declaration`, lives
  with the loader that builds it.
"""

from __future__ import annotations

import random as _random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
)

from dqflow.bounds import (
    MAX_BATCH_SIZE,
    MAX_CONCURRENCY,
    MAX_SIZE_LIMIT_BYTES,
    check_max_attempts,
    check_priority,
)
from dqflow.declaration.flow import ConcurrencyLimit, GroupConcurrency, RateLimit, RawConcurrency, RawRateLimit
from dqflow.declaration.handlers import HANDLER_REF
from dqflow.declaration.models import is_model
from dqflow.declaration.schemas import SchemaValidator
from dqflow.declaration.unique import UniqueSpec
from dqflow.durations import bounded_duration, timeout_seconds
from dqflow.errors import kind_of

__all__ = [
    "JOB_TYPE_NAME",
    "Backoff",
    "Isolation",
    "JobTypeSpec",
    "Limits",
    "RawDeclaration",
    "RawDefaults",
    "RawJob",
    "RawLimits",
    "RawRetention",
    "RawRetry",
    "RawWorker",
    "Retention",
    "RetryPolicy",
    "WorkerSettings",
]

JOB_TYPE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]*$")
_BACKEND_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

Backoff = Literal["fixed", "exponential"]
Isolation = Literal["thread", "process"]

# --------------------------------------------------------------------------- compiled shapes


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to wait before the next attempt after a failure."""

    delay: float = 10.0
    backoff: Backoff = "exponential"
    max_delay: float | None = 600.0
    jitter: bool = True

    def delay_for(self, attempts: int, *, rand: Callable[[], float] = _random.random) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (1 = first failure).

        Exponential: ``delay * 2**(attempts-1)`` capped at ``max_delay``; fixed:
        ``delay``. Jitter keeps the wait between half of it and all of it.
        """
        wait = self.delay
        if self.backoff == "exponential":
            wait = self.delay * (2.0 ** min(max(attempts - 1, 0), 62))
        if self.max_delay is not None:
            wait = min(wait, self.max_delay)
        if self.jitter and wait > 0:
            wait = wait / 2 + rand() * wait / 2
        return wait


@dataclass(frozen=True, slots=True)
class Retention:
    """How long finished jobs are kept, in seconds per status (None: for ever). Workers delete older ones."""

    completed: float | None = None
    failed: float | None = None
    cancelled: float | None = None

    def windows(self) -> dict[str, float]:
        """The statuses with a window, and their windows."""
        return {
            status: seconds
            for status, seconds in (
                ("completed", self.completed),
                ("failed", self.failed),
                ("cancelled", self.cancelled),
            )
            if seconds is not None
        }


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """Worker settings; durations in seconds. ``batch_size`` 0 means "same as concurrency"."""

    concurrency: int = 8
    batch_size: int = 0
    lease: float = 20.0
    heartbeat: float = 1.0
    poll_interval: float = 1.0
    shutdown_grace: float = 30.0
    eager_steps: bool = True  # a settle claims the new step jobs it creates for its worker (StepClaim)

    def __post_init__(self) -> None:
        if self.batch_size <= 0:
            object.__setattr__(self, "batch_size", self.concurrency)


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits, in bytes of compact JSON."""

    max_payload_bytes: int = 1_048_576
    max_output_bytes: int = 1_048_576


@dataclass(frozen=True, slots=True)
class JobTypeSpec:
    """One declared job type, defaults merged in."""

    name: str
    handler_ref: str
    handler: Callable[..., Any] | None = None
    payload_schema: SchemaValidator | None = None
    output_schema: SchemaValidator | None = None
    max_attempts: int = 3
    timeout: float | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    priority: int = 0
    tags: tuple[str, ...] = ()
    isolation: Isolation = "thread"
    description: str | None = None
    concurrency: ConcurrencyLimit | None = None
    rate_limit: RateLimit | None = None
    group_concurrency: int | None = None  # the limit of a job added with group=..., else concurrency.limit
    dead_letter: str | None = None  # the job type a job failed for good is handed to
    retention: Retention = field(default_factory=Retention)
    unique: UniqueSpec | None = None

    def check_schemas(self) -> None:
        """Check both schemas now if loading deferred it (free once done); ConfigError naming the key."""
        for schema in (self.payload_schema, self.output_schema):
            if schema is not None and not schema.checked:
                schema.check()


# --------------------------------------------------------------------------- raw YAML shapes


def _optional_duration(value: Any) -> float | None:
    return None if value is None else bounded_duration(value)


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


def _positive_or_none(value: float | None) -> float | None:
    if value is not None and value <= 0:
        raise ValueError("must be greater than 0 (use null to keep jobs for ever)")
    return value


def _tag(value: str) -> str:
    if not value.strip():
        raise ValueError("a tag must be a non-empty string")
    return value


def _job_name(value: str) -> str:
    if not JOB_TYPE_NAME.match(value):
        raise ValueError(f"invalid job type name {value!r}: start with a letter or _, then letters, digits, _ . : -")
    return value


def _schema_source(value: Any) -> Any:
    if value is None or isinstance(value, (dict, SchemaValidator)) or is_model(value):
        return value
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("a schema path must not be empty")
        return value
    if isinstance(value, Path):
        return str(value)
    raise ValueError(
        "expected a schema file path or an inline schema mapping (or a module:Model reference;"
        f" in Declaration.build also a pydantic model class), got {kind_of(value)}"
    )


# Durations and numbers go through the same checks as the queue API's arguments (dqflow.bounds).
Duration = Annotated[float, BeforeValidator(bounded_duration)]
PositiveDuration = Annotated[float, BeforeValidator(bounded_duration), AfterValidator(_positive)]
OptionalDuration = Annotated[float | None, BeforeValidator(_optional_duration)]
Timeout = Annotated[float | None, BeforeValidator(timeout_seconds)]
Priority = Annotated[int, AfterValidator(check_priority)]
MaxAttempts = Annotated[int, AfterValidator(check_max_attempts)]
Tag = Annotated[str, AfterValidator(_tag)]
JobName = Annotated[str, AfterValidator(_job_name)]
SchemaSource = Annotated[Any, BeforeValidator(_schema_source)]
RetentionWindow = Annotated[float | None, BeforeValidator(_optional_duration), AfterValidator(_positive_or_none)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, arbitrary_types_allowed=True)


def _none_is_empty(value: Any) -> Any:
    return {} if value is None else value


class RawRetry(_Strict):
    delay: Duration = 10.0
    backoff: Backoff = "exponential"
    max_delay: OptionalDuration = 600.0
    jitter: bool = True


class RawRetention(_Strict):
    """``retention``: how long finished jobs are kept per status (a duration, or null: for ever)."""

    completed: RetentionWindow = None
    failed: RetentionWindow = None
    cancelled: RetentionWindow = None
    events: RetentionWindow = None  # defaults only: the history of every finished job


class RawPolicy(_Strict):
    """Keys shared by ``defaults`` and each job type (merged key by key)."""

    max_attempts: MaxAttempts = 3
    timeout: Timeout = None
    retry: RawRetry = Field(default_factory=RawRetry)
    priority: Priority = 0
    tags: list[Tag] = Field(default_factory=list)
    group_concurrency: GroupConcurrency | None = None
    dead_letter: JobName | None = None
    retention: RawRetention = Field(default_factory=RawRetention)

    _retry_none = field_validator("retry", "retention", mode="before")(_none_is_empty)


class RawDefaults(RawPolicy):
    pass


class RawJob(RawPolicy):
    handler: Any
    unique: Any = None  # checked by the loader (dqflow.declaration.unique), which locates its problems
    payload: SchemaSource = None
    output: SchemaSource = None
    description: str | None = None
    isolation: Isolation = "thread"
    concurrency: RawConcurrency | None = None
    rate_limit: RawRateLimit | None = None

    @field_validator("handler", mode="before")
    @classmethod
    def _check_handler(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not HANDLER_REF.match(value):
                raise ValueError(f"handler {value!r} must look like module:function (e.g. app.jobs:send_email)")
            return value
        if callable(value):
            return value
        raise ValueError(f"handler must be a 'module:function' string, got {kind_of(value)}")


class RawWorker(_Strict):
    concurrency: Annotated[int, Field(ge=1, le=MAX_CONCURRENCY)] = 8
    batch_size: Annotated[int | None, Field(ge=1, le=MAX_BATCH_SIZE)] = None
    lease: PositiveDuration = 20.0
    heartbeat: PositiveDuration = 1.0
    poll_interval: PositiveDuration = 1.0
    shutdown_grace: Duration = 30.0
    eager_steps: bool = True


class RawLimits(_Strict):
    max_payload_bytes: Annotated[int, Field(ge=1, le=MAX_SIZE_LIMIT_BYTES)] = 1_048_576
    max_output_bytes: Annotated[int, Field(ge=1, le=MAX_SIZE_LIMIT_BYTES)] = 1_048_576


SchemaDraft = Literal["2020-12", "2019-09", "draft-07", "draft-06", "draft-04"]


class RawDeclaration(_Strict):
    backend: str | None = None
    schema_draft: SchemaDraft = "2020-12"
    defaults: RawDefaults = Field(default_factory=RawDefaults)
    worker: RawWorker = Field(default_factory=RawWorker)
    limits: RawLimits = Field(default_factory=RawLimits)
    jobs: dict[JobName, RawJob]
    workflows: Any = None  # checked by dqflow.workflows.compile, which knows their shape
    schedules: Any = None  # checked by dqflow.declaration.schedules
    signals: dict[JobName, SchemaSource] = Field(default_factory=dict)  # token data schemas, by name

    _signals_none = field_validator("signals", mode="before")(_none_is_empty)

    _sections_none = field_validator("defaults", "worker", "limits", mode="before")(_none_is_empty)

    @field_validator("backend")
    @classmethod
    def _check_backend(cls, value: str | None) -> str | None:
        if value is not None and not _BACKEND_URL.match(value):
            raise ValueError(
                f"backend {value!r} is not a URL (e.g. sqlite:///.dqflow/queue.db, "
                "postgresql://host/db, redis://host:6379/0)"
            )
        return value

    @field_validator("jobs")
    @classmethod
    def _some_jobs(cls, value: dict[str, RawJob]) -> dict[str, RawJob]:
        if not value:
            raise ValueError("no job types declared: `jobs` must name at least one")
        return value
