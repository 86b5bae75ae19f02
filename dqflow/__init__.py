"""dqflow: declared job types, validated payloads and outputs, on SQLite, PostgreSQL or Redis."""

from dqflow.declaration import Declaration, load_declaration
from dqflow.errors import (
    ConfigError,
    DqflowError,
    InvalidJobStateError,
    JobNotFoundError,
    NotMigratedError,
    OutputParseError,
    OutputValidationError,
    PayloadTooLargeError,
    PayloadValidationError,
    StorageError,
    StorageTooNewError,
    UnknownJobTypeError,
    ValidationFailed,
)
from dqflow.queue import JobSpec, Queue
from dqflow.record import EventType, FailureReason, JobEvent, JobRecord, JobStatus
from dqflow.storage import JobPage, TagMode
from dqflow.worker import JobContext, Worker, WorkerSettingError, run_worker

__all__ = [
    "ConfigError",
    "Declaration",
    "DqflowError",
    "EventType",
    "FailureReason",
    "InvalidJobStateError",
    "JobContext",
    "JobEvent",
    "JobNotFoundError",
    "JobPage",
    "JobRecord",
    "JobSpec",
    "JobStatus",
    "NotMigratedError",
    "OutputParseError",
    "OutputValidationError",
    "PayloadTooLargeError",
    "PayloadValidationError",
    "Queue",
    "StorageError",
    "StorageTooNewError",
    "TagMode",
    "UnknownJobTypeError",
    "ValidationFailed",
    "Worker",
    "WorkerSettingError",
    "load_declaration",
    "run_worker",
]
