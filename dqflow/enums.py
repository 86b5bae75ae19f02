"""The records' enumerations (job, workflow run and step statuses, failure reasons, event types) and ``TagMode``.

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
    INVALID_PAYLOAD = "invalid_payload"  # a workflow step's payload failed its schema when the step became ready
    WORKFLOW_FAILED = "workflow_failed"  # a step job cancelled because another step of its run failed
    WORKFLOW_CANCELLED = "workflow_cancelled"  # a step job cancelled with its run (cancel_workflow)


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
    READY = "ready"  # waiting → pending: the last of its dependencies completed


class WorkflowStatus(StrEnum):
    """Where a workflow run is in its life."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepStatus(StrEnum):
    """Where one step of a workflow run is."""

    WAITING = "waiting"  # a step it needs is not over yet
    RUNNING = "running"  # its jobs exist
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class TagMode(StrEnum):
    """How ``JobFilter.tags`` is matched against a job's tags."""

    ALL = "all"  # the job has every given tag
    ANY = "any"  # the job has at least one of them
    NONE = "none"  # the job has none of them
    EXACT = "exact"  # the job's tag set equals the given set
