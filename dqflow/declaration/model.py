"""The declaration's two shapes.

* ``Raw*`` pydantic models mirror ``jobs.yaml`` exactly (strict types, unknown
  keys forbidden). They only say what was written; defaults are merged later.
* The frozen dataclasses (:class:`Declaration`, :class:`JobTypeSpec`,
  :class:`RetryPolicy`, :class:`WorkerSettings`, :class:`Limits`) are the
  compiled result every other layer uses: durations in seconds, defaults merged,
  schemas compiled, handlers imported.
"""

from __future__ import annotations

import math
import random as _random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
)

from dqflow.declaration.handlers import HANDLER_REF
from dqflow.declaration.schemas import SchemaValidator
from dqflow.durations import parse_duration
from dqflow.errors import UnknownJobTypeError

if TYPE_CHECKING:
    from dqflow.workflows.model import Workflow

__all__ = [
    "JOB_TYPE_NAME",
    "Backoff",
    "Declaration",
    "Isolation",
    "JobTypeSpec",
    "Limits",
    "RawDeclaration",
    "RawDefaults",
    "RawJob",
    "RawLimits",
    "RawRetry",
    "RawWorker",
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
class WorkerSettings:
    """Worker settings; durations in seconds. ``batch_size`` 0 means "same as concurrency"."""

    concurrency: int = 8
    batch_size: int = 0
    lease: float = 20.0
    heartbeat: float = 1.0
    poll_interval: float = 1.0
    shutdown_grace: float = 30.0

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


@dataclass(frozen=True)
class Declaration:
    """A whole declaration: job types, workflows, worker settings, limits, backend URL."""

    path: Path | None = None
    backend: str | None = None
    job_types: dict[str, JobTypeSpec] = field(default_factory=dict)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    limits: Limits = field(default_factory=Limits)
    workflows: dict[str, Workflow] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path | None:
        """The folder of the YAML file (schema paths and handlers are relative to it)."""
        return None if self.path is None else self.path.parent

    def job_type(self, name: str) -> JobTypeSpec:
        """The spec of ``name``; :class:`UnknownJobTypeError` when it is not declared."""
        try:
            return self.job_types[name]
        except KeyError:
            known = ", ".join(sorted(self.job_types)) or "none"
            raise UnknownJobTypeError(f"unknown job type {name!r} (declared: {known})") from None

    @classmethod
    def build(
        cls,
        jobs: Mapping[str, Mapping[str, Any]],
        *,
        defaults: Mapping[str, Any] | None = None,
        worker: Mapping[str, Any] | None = None,
        limits: Mapping[str, Any] | None = None,
        backend: str | None = None,
        base_dir: str | Path | None = None,
        import_handlers: bool = True,
        workflows: Mapping[str, Any] | None = None,
    ) -> Declaration:
        """Build a declaration from Python dicts, validated exactly like ``jobs.yaml``.

        A job's ``handler`` may be a callable as well as ``"module:function"``;
        ``payload``/``output`` may be a schema dict, a path (relative to
        ``base_dir``, else the current directory) or a :class:`SchemaValidator`.
        Errors raise :class:`~dqflow.errors.ConfigError` naming the key.
        """
        from dqflow.declaration.loader import build_declaration

        return build_declaration(
            jobs,
            defaults=defaults,
            worker=worker,
            limits=limits,
            backend=backend,
            base_dir=base_dir,
            import_handlers=import_handlers,
            workflows=workflows,
        )


# --------------------------------------------------------------------------- raw YAML shapes


def _duration(value: Any) -> float:
    seconds = parse_duration(value)
    if not math.isfinite(seconds):
        raise ValueError(f"invalid duration {value!r}: must be finite")
    return seconds


def _optional_duration(value: Any) -> float | None:
    return None if value is None else _duration(value)


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


def _positive_or_none(value: float | None) -> float | None:
    if value is not None and value <= 0:
        raise ValueError("must be greater than 0 (use null for none)")
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
    if value is None or isinstance(value, (dict, SchemaValidator)):
        return value
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("a schema path must not be empty")
        return value
    if isinstance(value, Path):
        return str(value)
    raise ValueError(f"expected a schema file path or an inline schema mapping, got {_kind(value)}")


def _kind(value: Any) -> str:
    names = {str: "a string", bool: "a boolean", int: "an integer", float: "a number", list: "a list"}
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    return names.get(type(value), type(value).__name__)


Duration = Annotated[float, BeforeValidator(_duration)]
PositiveDuration = Annotated[float, BeforeValidator(_duration), AfterValidator(_positive)]
OptionalDuration = Annotated[float | None, BeforeValidator(_optional_duration)]
Timeout = Annotated[float | None, BeforeValidator(_optional_duration), AfterValidator(_positive_or_none)]
Tag = Annotated[str, AfterValidator(_tag)]
JobName = Annotated[str, AfterValidator(_job_name)]
SchemaSource = Annotated[Any, BeforeValidator(_schema_source)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, arbitrary_types_allowed=True)


def _none_is_empty(value: Any) -> Any:
    return {} if value is None else value


class RawRetry(_Strict):
    delay: Duration = 10.0
    backoff: Backoff = "exponential"
    max_delay: OptionalDuration = 600.0
    jitter: bool = True


class RawPolicy(_Strict):
    """Keys shared by ``defaults`` and each job type (merged key by key)."""

    max_attempts: Annotated[int, Field(ge=1)] = 3
    timeout: Timeout = None
    retry: RawRetry = Field(default_factory=RawRetry)
    priority: int = 0
    tags: list[Tag] = Field(default_factory=list)

    _retry_none = field_validator("retry", mode="before")(_none_is_empty)


class RawDefaults(RawPolicy):
    pass


class RawJob(RawPolicy):
    handler: Any
    payload: SchemaSource = None
    output: SchemaSource = None
    description: str | None = None
    isolation: Isolation = "thread"

    @field_validator("handler", mode="before")
    @classmethod
    def _check_handler(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not HANDLER_REF.match(value):
                raise ValueError(f"handler {value!r} must look like module:function (e.g. app.jobs:send_email)")
            return value
        if callable(value):
            return value
        raise ValueError(f"handler must be a 'module:function' string, got {_kind(value)}")


class RawWorker(_Strict):
    concurrency: Annotated[int, Field(ge=1)] = 8
    batch_size: Annotated[int | None, Field(ge=1)] = None
    lease: PositiveDuration = 20.0
    heartbeat: PositiveDuration = 1.0
    poll_interval: PositiveDuration = 1.0
    shutdown_grace: Duration = 30.0


class RawLimits(_Strict):
    max_payload_bytes: Annotated[int, Field(ge=1)] = 1_048_576
    max_output_bytes: Annotated[int, Field(ge=1)] = 1_048_576


class RawDeclaration(_Strict):
    backend: str | None = None
    defaults: RawDefaults = Field(default_factory=RawDefaults)
    worker: RawWorker = Field(default_factory=RawWorker)
    limits: RawLimits = Field(default_factory=RawLimits)
    jobs: dict[JobName, RawJob]
    workflows: Any = None  # checked by dqflow.workflows.compile, which knows their shape

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
