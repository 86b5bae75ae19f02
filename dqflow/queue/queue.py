"""The queue API: add, read, list, cancel, retry and edit jobs; listen to events."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar

from pydantic import BaseModel

from dqflow.bounds import RUN_AT_MAX, check_max_attempts, check_priority, check_run_at
from dqflow.declaration import Declaration, JobTypeSpec, SchemaValidator, load_declaration
from dqflow.declaration.flow import dead_letter_spec, flow_options
from dqflow.durable.tokens import token_data_json
from dqflow.durations import bounded_duration, parse_duration, timeout_seconds, to_ms
from dqflow.enums import JobStatus
from dqflow.errors import (
    JobNotFoundError,
    OutputTooLargeError,
    OutputValidationError,
    PayloadTooLargeError,
    PayloadValidationError,
    TokenNotFoundError,
    TooLargeError,
    UnknownJobTypeError,
    ValidationFailed,
)
from dqflow.json_values import dumps
from dqflow.queue.events import JOB_ADDED, JOB_CANCELLED, JOB_EDITED, JOB_RETRIED, EventEmitter, EventName, Listener
from dqflow.queue.unique import unique_rule
from dqflow.queue.waiting import WaitMethods
from dqflow.queue.workflows import WorkflowMethods
from dqflow.storage import DEFAULT_BACKEND, JobFilter, JobPage, NewJob, Storage, TagMode, UniqueRule, open_storage
from dqflow.telemetry import Tracing, tracing_from_env, with_trace

if TYPE_CHECKING:  # the records need SQLModel, which only reading jobs pays for
    from dqflow.durable.model import TokenRecord
    from dqflow.record import JobEvent, JobRecord

ModelT = TypeVar("ModelT", bound=BaseModel)


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
"""Marks an argument of ``Queue.edit`` that was not given."""

Duration = float | int | str | timedelta


def _seconds(value: Duration | None, what: str) -> float | None:
    """A duration argument (at most 365 days), read exactly as ``jobs.yaml`` reads it."""
    if value is None:
        return None
    try:
        return bounded_duration(value)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None


def _timeout(value: Duration | None) -> float | None:
    """A timeout argument: ``None`` for none, else more than 0 (as in ``jobs.yaml``)."""
    try:
        return timeout_seconds(value)
    except ValueError as exc:
        raise ValueError(f"timeout: {exc}") from None


def _aware(value: datetime | None, what: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise TypeError(f"{what} must be a datetime, got {type(value).__name__}")
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _run_at(value: datetime | None) -> datetime | None:
    aware = _aware(value, "run_at")
    return None if aware is None else check_run_at(aware)


def _run_after(delay: Duration) -> datetime:
    now = datetime.now(UTC)
    try:
        seconds = parse_duration(delay)
    except ValueError as exc:
        raise ValueError(f"delay: {exc}") from None
    if seconds > (RUN_AT_MAX - now).total_seconds():
        raise ValueError(f"delay: {seconds:g}s from now is after {RUN_AT_MAX.isoformat()}, the latest run_at")
    return now + timedelta(seconds=seconds)


@dataclass(slots=True)
class JobSpec:
    """One job for ``Queue.add_many`` (the keyword arguments of ``Queue.add``)."""

    job_type: str
    payload: Any = None
    priority: int | None = None
    run_at: datetime | None = None
    delay: Duration | None = None
    timeout: Duration | _Unset | None = UNSET
    max_attempts: int | None = None
    tags: Sequence[str] | None = None
    idempotency_key: str | None = None
    retry_delay: Duration | None = None
    retry_backoff: str | None = None
    retry_max_delay: Duration | _Unset | None = UNSET
    retry_jitter: bool | None = None
    meta: Mapping[str, Any] | None = None
    depends_on: Sequence[int] | None = None
    group: str | None = None
    unique: Any = None  # None: the job type's `unique`; False: none; a mapping as in jobs.yaml
    extra: dict[str, Any] = field(default_factory=dict)


class Queue(WorkflowMethods, WaitMethods):
    """A job queue: a declaration (job types, schemas, defaults) bound to a storage backend.

    ``Queue.from_yaml("jobs.yaml")`` is the usual way in; ``Queue(Declaration.build(...))``
    builds one in code. The backend is, in order: the ``backend`` argument, the
    ``DQFLOW_BACKEND`` environment variable, the declaration's ``backend``, or
    ``sqlite:///.dqflow/queue.db``. ``DQFLOW_OTEL=1`` turns on OpenTelemetry spans
    (``dqflow.telemetry``; ``tracing`` is None when off).
    """

    def __init__(self, declaration: Declaration, backend: str | Any | None = None, **backend_options: Any) -> None:
        self.declaration = declaration
        self.events = EventEmitter()
        self._dead_letter_specs: dict[str, str] = {}
        self.tracing: Tracing | None = tracing_from_env()
        self.storage: Storage = open_storage(resolve_backend(declaration, backend), **backend_options)
        try:
            self.storage.setup()
        except BaseException:
            self.storage.close()
            raise
        self._attach_workflows()

    @classmethod
    def from_yaml(
        cls,
        path: str | Path | None = None,
        backend: str | Any | None = None,
        *,
        import_handlers: bool = True,
        **backend_options: Any,
    ) -> Queue:
        """Load ``jobs.yaml`` (``path``, ``$DQFLOW_CONFIG`` or ``./jobs.yaml``) and open its backend."""
        from dqflow.declaration import find_config

        # Schemas are checked per job type on first use (a worker checks its own at start):
        # a declaration with thousands of job types opens fast.
        declaration = load_declaration(
            find_config(None if path is None else str(path)), import_handlers=import_handlers, check_schemas=False
        )
        return cls(declaration, backend, **backend_options)

    # -- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        """Stop following the change feed and close the backend's connections."""
        self._close_feed()
        self.storage.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- events ----------------------------------------------------------------------

    def on(self, event: EventName, listener: Listener) -> Listener:
        """Call ``listener(data)`` on every ``event`` (``job:added``, ``job:completed``, ...)."""
        return self.events.on(event, listener)

    def once(self, event: EventName, listener: Listener) -> Listener:
        """Call ``listener(data)`` on the next ``event`` only."""
        return self.events.once(event, listener)

    def off(self, event: EventName, listener: Listener | None = None) -> None:
        """Stop calling ``listener`` (or every listener) for ``event``."""
        self.events.off(event, listener)

    # -- validation ------------------------------------------------------------------

    def job_type(self, name: str) -> JobTypeSpec:
        """The declared job type ``name``; ``UnknownJobTypeError`` if it is not declared."""
        if not isinstance(name, str) or name not in self.declaration.job_types:
            known = ", ".join(sorted(self.declaration.job_types)) or "none"
            raise UnknownJobTypeError(f"unknown job type {name!r} (declared: {known})")
        declared = self.declaration.job_types[name]
        declared.check_schemas()  # a no-op unless loading deferred it
        return declared

    def validate_payload(self, job_type: str, payload: Any) -> str:
        """Check ``payload`` for ``job_type`` (JSON, size, schema); return its JSON text."""
        declared = self.job_type(job_type)
        limit = self.declaration.limits.max_payload_bytes
        return _checked_json(
            payload,
            declared.payload_schema,
            limit,
            PayloadValidationError,
            PayloadTooLargeError,
            f"payload of {job_type}",
        )

    def validate_output(self, job_type: str, output: Any) -> str:
        """Check an output for ``job_type`` (JSON, size, schema); return its JSON text."""
        declared = self.job_type(job_type)
        limit = self.declaration.limits.max_output_bytes
        return _checked_json(
            output, declared.output_schema, limit, OutputValidationError, OutputTooLargeError, f"output of {job_type}"
        )

    def new_job(self, job: JobSpec) -> NewJob:
        """``job`` checked and completed from its declaration, as ``add`` would store it (nothing stored)."""
        return self._new_job(job)

    def _new_job(self, job: JobSpec) -> NewJob:
        declared = self.job_type(job.job_type)
        payload_json = self.validate_payload(job.job_type, job.payload)
        run_at = _run_at(job.run_at)
        if job.delay is not None:
            if run_at is not None:
                raise ValueError("give run_at or delay, not both")
            run_at = _run_after(job.delay)
        max_attempts = declared.max_attempts if job.max_attempts is None else check_max_attempts(job.max_attempts)
        timeout = declared.timeout if isinstance(job.timeout, _Unset) else _timeout(job.timeout)
        retry = declared.retry
        backoff = retry.backoff if job.retry_backoff is None else job.retry_backoff
        if backoff not in ("fixed", "exponential"):
            raise ValueError(f"retry_backoff must be 'fixed' or 'exponential', got {backoff!r}")
        retry_delay = retry.delay if job.retry_delay is None else _seconds(job.retry_delay, "retry_delay")
        max_delay = (
            retry.max_delay
            if isinstance(job.retry_max_delay, _Unset)
            else _seconds(job.retry_max_delay, "retry_max_delay")
        )
        tags = declared.tags if job.tags is None else _tags(job.tags)
        if job.idempotency_key is not None:
            if not isinstance(job.idempotency_key, str):
                raise TypeError("idempotency_key must be a string")
            _no_nul(job.idempotency_key, "idempotency_key")
        meta_json = "{}"
        if job.meta is not None:
            if not isinstance(job.meta, Mapping):
                raise TypeError(f"meta must be a JSON object (a dict), got {type(job.meta).__name__}")
            if job.meta:
                limit = self.declaration.limits.max_payload_bytes
                meta_json = _checked_json(dict(job.meta), None, limit, ValidationFailed, PayloadTooLargeError, "meta")
        return NewJob(
            job_type=job.job_type,
            payload_json=payload_json,
            priority=declared.priority if job.priority is None else check_priority(job.priority),
            run_at=run_at,
            max_attempts=max_attempts,
            timeout_ms=to_ms(timeout),
            retry_delay_ms=to_ms(retry_delay) or 0,
            retry_backoff=backoff,
            retry_max_delay_ms=to_ms(max_delay),
            retry_jitter=retry.jitter if job.retry_jitter is None else bool(job.retry_jitter),
            tags=tags,
            idempotency_key=job.idempotency_key,
            meta_json=meta_json,
            depends_on=_job_ids(job.depends_on),
            dead_letter_json=self._dead_letter(declared),
            **flow_options(declared, payload_json, job.group),
        )

    def _dead_letter(self, declared: JobTypeSpec) -> str | None:
        """``NewJob.dead_letter_json`` of a job of ``declared`` (built once per type)."""
        if declared.dead_letter is None:
            return None
        spec = self._dead_letter_specs.get(declared.name)
        if spec is None:
            spec = self._dead_letter_specs[declared.name] = dead_letter_spec(self.job_type(declared.dead_letter))
        return spec

    # -- adding ----------------------------------------------------------------------

    def add(
        self,
        job_type: str,
        payload: Any = None,
        *,
        priority: int | None = None,
        run_at: datetime | None = None,
        delay: Duration | None = None,
        timeout: Duration | _Unset | None = UNSET,
        max_attempts: int | None = None,
        tags: Sequence[str] | None = None,
        idempotency_key: str | None = None,
        retry_delay: Duration | None = None,
        retry_backoff: str | None = None,
        retry_max_delay: Duration | _Unset | None = UNSET,
        retry_jitter: bool | None = None,
        meta: Mapping[str, Any] | None = None,
        depends_on: Sequence[int] | None = None,
        group: str | None = None,
        unique: Mapping[str, Any] | bool | None = None,
        connection: Any = None,
    ) -> int:
        """Validate and enqueue one job; return its id.

        Options left out come from the job type's declaration. A payload that
        fails its schema raises ``PayloadValidationError`` and nothing is stored.
        A repeated ``idempotency_key`` returns the existing job's id. ``meta`` is a
        JSON object kept with the job (``JobRecord.meta``, ``{}`` by default).
        ``depends_on`` holds the job ``waiting`` until all of those jobs complete; if
        one fails for good or is cancelled, this job is cancelled with reason
        ``dependency_failed``. An id that does not exist, or names a failed or
        cancelled job, raises ``DependencyError`` and nothing is stored.
        ``group`` puts the job in a concurrency group: at most the type's
        ``group_concurrency`` (else ``concurrency.limit``) jobs of that group run at once,
        whatever their types (docs/FLOW_CONTROL.md).
        ``unique`` (``{"key": ..., "for": ..., "while": [...]}``, as in jobs.yaml; False:
        none; default: the job type's) returns the id of a duplicate instead of adding
        (docs/SCHEDULES.md). ``connection`` (PostgreSQL) enqueues inside the caller's
        transaction (not with a uniqueness rule).
        """
        job = JobSpec(
            job_type,
            payload,
            priority=priority,
            run_at=run_at,
            delay=delay,
            timeout=timeout,
            max_attempts=max_attempts,
            tags=tags,
            idempotency_key=idempotency_key,
            retry_delay=retry_delay,
            retry_backoff=retry_backoff,
            retry_max_delay=retry_max_delay,
            retry_jitter=retry_jitter,
            meta=meta,
            depends_on=depends_on,
            group=group,
            unique=unique,
        )
        return self.add_many([job], connection=connection)[0]

    def add_many(self, jobs: Iterable[JobSpec | Mapping[str, Any]], *, connection: Any = None) -> list[int]:
        """Validate every job first, then enqueue them all in one round trip.

        Returns the ids in input order. If any job is invalid nothing is stored
        and the error names its index. A batch with unique jobs (a job type's
        ``unique``, or ``unique=`` given) is added job by job, each unique one
        checked and added in one step.
        """
        many = isinstance(jobs, (list, tuple)) and len(jobs) > 1
        specs = [given if isinstance(given, JobSpec) else JobSpec(**dict(given)) for given in jobs]
        if self.tracing is None:
            return self._add_specs(specs, many, connection)
        with self.tracing.adding([spec.job_type for spec in specs]) as adding:
            traced = [replace(spec, meta=with_trace(spec.meta, adding.carrier)) for spec in specs]
            ids = self._add_specs(traced, many, connection)
            adding.added(ids)
            return ids

    def _add_specs(self, specs: list[JobSpec], many: bool, connection: Any) -> list[int]:
        new_jobs: list[NewJob] = []
        rules: list[UniqueRule | None] = []
        for index, job in enumerate(specs):
            try:
                new_jobs.append(self._new_job(job))
            except ValidationFailed as exc:
                if index or many:
                    raise exc.located(f"job {index}") from None
                raise
            declared = self.declaration.job_types[job.job_type]  # known: _new_job checked it
            plain = job.unique is None and declared.unique is None
            rules.append(None if plain else unique_rule(declared, job.payload, job.unique))
        if not new_jobs:
            return []
        if any(rules):
            if connection is not None:
                raise ValueError("unique jobs cannot be added inside a caller's transaction (connection=)")
            results = [
                self.storage.add_jobs([new])[0] if rule is None else self.storage.add_unique(new, rule)
                for new, rule in zip(new_jobs, rules, strict=True)
            ]
        else:
            results = self.storage.add_jobs(new_jobs, connection=connection)
        if self.events.has_listeners(JOB_ADDED):
            for new, result in zip(new_jobs, results, strict=True):
                if result.created:
                    self.events.emit(JOB_ADDED, {"job_id": result.job_id, "job_type": new.job_type})
        return [result.job_id for result in results]

    async def add_async(
        self,
        job_type: str,
        payload: Any = None,
        *,
        priority: int | None = None,
        run_at: datetime | None = None,
        delay: Duration | None = None,
        timeout: Duration | _Unset | None = UNSET,
        max_attempts: int | None = None,
        tags: Sequence[str] | None = None,
        idempotency_key: str | None = None,
        retry_delay: Duration | None = None,
        retry_backoff: str | None = None,
        retry_max_delay: Duration | _Unset | None = UNSET,
        retry_jitter: bool | None = None,
        meta: Mapping[str, Any] | None = None,
        depends_on: Sequence[int] | None = None,
        group: str | None = None,
        unique: Mapping[str, Any] | bool | None = None,
    ) -> int:
        """``add`` for asyncio code: validation and the insert run on a thread, so the
        event loop never blocks. Same options, same errors."""
        job = JobSpec(
            job_type,
            payload,
            priority=priority,
            run_at=run_at,
            delay=delay,
            timeout=timeout,
            max_attempts=max_attempts,
            tags=tags,
            idempotency_key=idempotency_key,
            retry_delay=retry_delay,
            retry_backoff=retry_backoff,
            retry_max_delay=retry_max_delay,
            retry_jitter=retry_jitter,
            meta=meta,
            depends_on=depends_on,
            group=group,
            unique=unique,
        )
        return (await self.add_many_async([job]))[0]

    async def add_many_async(self, jobs: Iterable[JobSpec | Mapping[str, Any]]) -> list[int]:
        """``add_many`` for asyncio code (on a thread, like ``add_async``)."""
        return await asyncio.to_thread(self.add_many, list(jobs))

    # -- reading ---------------------------------------------------------------------

    def get_job(self, job_id: int) -> JobRecord | None:
        """The job with ``job_id``, or None."""
        return self.storage.get_job(int(job_id))

    def require_job(self, job_id: int) -> JobRecord:
        """The job with ``job_id``; ``JobNotFoundError`` when there is none."""
        record = self.get_job(job_id)
        if record is None:
            raise JobNotFoundError(job_id)
        return record

    def get_output(self, job_id: int, model: type[ModelT]) -> ModelT:
        """The job's stored output parsed into ``model`` (``OutputParseError`` if it does not fit)."""
        return self.require_job(job_id).output_as(model)

    def list_jobs(
        self,
        *,
        status: JobStatus | str | Sequence[JobStatus | str] | None = None,
        job_type: str | None = None,
        tags: Sequence[str] | None = None,
        tag_mode: TagMode | str = TagMode.ALL,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 100,
        cursor: int | None = None,
    ) -> JobPage:
        """Jobs matching every filter, newest first; pass ``page.next_cursor`` for more."""
        if status is None:
            statuses: tuple[JobStatus, ...] = ()
        elif isinstance(status, (str, JobStatus)):
            statuses = (_status(status),)
        else:
            statuses = tuple(_status(s) for s in status)
        try:
            mode = TagMode(tag_mode)
        except ValueError:
            raise ValueError(f"tag_mode must be one of all, any, none, exact; got {tag_mode!r}") from None
        if job_type is not None:
            _no_nul(job_type, "job_type")
        if not 1 <= int(limit) <= 10_000:
            raise ValueError(f"limit must be between 1 and 10000, got {limit}")
        return self.storage.list_jobs(
            JobFilter(
                statuses=statuses,
                job_type=job_type,
                tags=_tags(tags or ()),
                tag_mode=mode,
                created_after=_aware(created_after, "created_after"),
                created_before=_aware(created_before, "created_before"),
                limit=int(limit),
                cursor=None if cursor is None else int(cursor),
            )
        )

    def get_events(self, job_id: int) -> list[JobEvent]:
        """The job's persisted history, oldest first."""
        return self.storage.get_events(int(job_id))

    def count_jobs(self) -> dict[tuple[str, JobStatus], int]:
        """How many jobs there are per (job type, status); pairs with none are left out."""
        return self.storage.count_jobs()

    # -- managing --------------------------------------------------------------------

    def cancel(self, job_id: int) -> JobRecord:
        """Cancel a pending, waiting or running job (a running handler sees ``ctx.cancelled``)."""
        record = self.storage.cancel_job(int(job_id))
        self.events.emit(JOB_CANCELLED, {"job_id": record.id, "job_type": record.job_type})
        return record

    def retry(self, job_id: int, *, reset_steps: bool = False) -> JobRecord:
        """Run a failed or cancelled job again (attempts reset). A durable handler's completed
        steps are kept (replayed, not run again) unless ``reset_steps``."""
        record = self.storage.retry_job(int(job_id), reset_steps=reset_steps)
        self.events.emit(JOB_RETRIED, {"job_id": record.id, "job_type": record.job_type})
        return record

    # -- wait tokens (docs/DURABLE.md) ------------------------------------------------------

    def get_token(self, token_id: str) -> TokenRecord | None:
        """The wait token (its job, status, schema, data), or None."""
        return self.storage.get_token(str(token_id))

    def complete_token(self, token_id: str, data: Any = None) -> TokenRecord:
        """Complete a wait token with ``data``: its waiting handler resumes with it.

        ``data`` must match the token's schema (``PayloadValidationError``, nothing changes).
        ``TokenNotFoundError``; ``TokenAlreadyCompletedError`` the second time;
        ``TokenExpiredError`` after its timeout or once its job is finished (cancelled)."""
        token = self.storage.get_token(str(token_id))
        if token is None:
            raise TokenNotFoundError(str(token_id))
        text = token_data_json(self.declaration, token, data)
        return self.storage.complete_token(token.id, text)

    def edit(
        self,
        job_id: int,
        *,
        payload: Any = UNSET,
        priority: int | _Unset = UNSET,
        run_at: datetime | _Unset | None = UNSET,
        max_attempts: int | _Unset = UNSET,
        timeout: Duration | _Unset | None = UNSET,
        tags: Sequence[str] | _Unset = UNSET,
        retry_delay: Duration | _Unset = UNSET,
        retry_backoff: str | _Unset = UNSET,
        retry_max_delay: Duration | _Unset | None = UNSET,
        retry_jitter: bool | _Unset = UNSET,
    ) -> JobRecord:
        """Change a pending job. Only the given fields change; the payload is validated."""
        record = self.require_job(job_id)
        changes: dict[str, Any] = {}
        if not isinstance(payload, _Unset):
            changes["payload_json"] = self.validate_payload(record.job_type, payload)
        if not isinstance(priority, _Unset):
            changes["priority"] = check_priority(priority)
        if not isinstance(run_at, _Unset):
            changes["run_at"] = _run_at(run_at)
        if not isinstance(max_attempts, _Unset):
            changes["max_attempts"] = check_max_attempts(max_attempts)
        if not isinstance(timeout, _Unset):
            changes["timeout_ms"] = to_ms(_timeout(timeout))
        if not isinstance(tags, _Unset):
            changes["tags"] = _tags(tags)
        if not isinstance(retry_delay, _Unset):
            changes["retry_delay_ms"] = to_ms(_seconds(retry_delay, "retry_delay")) or 0
        if not isinstance(retry_backoff, _Unset):
            if retry_backoff not in ("fixed", "exponential"):
                raise ValueError(f"retry_backoff must be 'fixed' or 'exponential', got {retry_backoff!r}")
            changes["retry_backoff"] = retry_backoff
        if not isinstance(retry_max_delay, _Unset):
            changes["retry_max_delay_ms"] = to_ms(_seconds(retry_max_delay, "retry_max_delay"))
        if not isinstance(retry_jitter, _Unset):
            changes["retry_jitter"] = bool(retry_jitter)
        updated = self.storage.edit_job(record.id, changes)
        self.events.emit(JOB_EDITED, {"job_id": updated.id, "job_type": updated.job_type, "fields": sorted(changes)})
        return updated


def _checked_json(
    value: Any,
    schema: SchemaValidator | None,
    limit: int,
    error: type[ValidationFailed],
    too_large: type[TooLargeError],
    label: str,
) -> str:
    """Strict JSON text of ``value`` within ``limit`` bytes and valid against ``schema``, or ``error``."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    text = dumps(value, error, label)
    if len(text) * 4 > limit:  # only then can the UTF-8 size be over the limit
        size = len(text.encode())
        if size > limit:
            raise too_large(label, [f"{size} bytes is over the limit of {limit} bytes"])
    if schema is not None:
        schema.validate(value, error, label)
    return text


def resolve_backend(declaration: Declaration, backend: str | Any | None = None) -> str | Any:
    """The backend to use: ``backend`` if given, else ``$DQFLOW_BACKEND``, else the
    declaration's ``backend`` (a relative SQLite path is taken from the YAML's
    folder), else ``sqlite:///.dqflow/queue.db``."""
    if backend is not None:
        return backend
    env = os.environ.get("DQFLOW_BACKEND", "").strip()
    if env:
        return env
    url = declaration.backend or DEFAULT_BACKEND
    base = declaration.base_dir
    relative_sqlite = url.startswith("sqlite:///") and not url.startswith("sqlite:////")
    if relative_sqlite and base is not None:
        return "sqlite:///" + str((base / url[len("sqlite:///") :]).resolve())
    return url


def _status(value: JobStatus | str) -> JobStatus:
    try:
        return JobStatus(value)
    except ValueError:
        known = ", ".join(s.value for s in JobStatus)
        raise ValueError(f"unknown status {value!r} (statuses: {known})") from None


def _tags(tags: Sequence[str]) -> tuple[str, ...]:
    if isinstance(tags, str):
        raise TypeError("tags must be a list of strings, not one string")
    result = tuple(tags)
    for tag in result:
        if not isinstance(tag, str) or not tag:
            raise ValueError(f"every tag must be a non-empty string, got {tag!r}")
        _no_nul(tag, "a tag")
    return result


def _no_nul(text: str, what: str) -> None:
    if "\x00" in text:
        raise ValueError(f"{what} must not contain NUL characters (\\u0000): {text!r}")


def _job_ids(ids: Sequence[int] | None) -> tuple[int, ...]:
    """``depends_on`` as a tuple of distinct job ids, in the order given."""
    if ids is None:
        return ()
    if isinstance(ids, (str, bytes, int)):
        raise TypeError(f"depends_on must be a list of job ids, got {type(ids).__name__}")
    result: dict[int, None] = {}
    for job_id in ids:
        if type(job_id) is not int or job_id < 1:
            raise ValueError(f"depends_on must hold job ids (positive integers), got {job_id!r}")
        result[job_id] = None
    return tuple(result)
