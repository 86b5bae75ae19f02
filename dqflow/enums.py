"""The job record's enumerations (statuses, failure reasons, event types) and ``TagMode``.

They live apart from ``dqflow.record`` so that code which only needs a status
(the CLI's options, a backend adding jobs) does not import SQLModel and
SQLAlchemy; ``dqflow.record`` re-exports them.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """Where a job is in its life."""

    PENDING = "pending"
    PROCESSING = "processing"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class FailureReason(StrEnum):
    """Why an attempt (or the job) failed."""

    HANDLER_ERROR = "handler_error"
    TIMEOUT = "timeout"
    INVALID_OUTPUT = "invalid_output"
    NO_HANDLER = "no_handler"
    LEASE_EXPIRED = "lease_expired"
    SHUTDOWN = "shutdown"
    DEPENDENCY_FAILED = "dependency_failed"  # a job it depends on failed for good or was cancelled


class EventType(StrEnum):
    """Kinds of entries in a job's persisted history."""

    ADDED = "added"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    RETRIED = "retried"
    CANCELLED = "cancelled"
    EDITED = "edited"
    RECLAIMED = "reclaimed"
    READY = "ready"  # waiting → pending: the last of its dependencies completed, a sleep ended, a token came
    WAITING = "waiting"  # a durable handler waits (ctx.sleep, ctx.wait_for_token): no worker holds it


class TagMode(StrEnum):
    """How ``JobFilter.tags`` is matched against a job's tags."""

    ALL = "all"  # the job has every given tag
    ANY = "any"  # the job has at least one of them
    NONE = "none"  # the job has none of them
    EXACT = "exact"  # the job's tag set equals the given set
