"""dqflow: declared job types, validated payloads and outputs, on SQLite, PostgreSQL or Redis.

Names are imported on first use (PEP 562), so ``import dqflow`` and the CLI's
start pay only for what they touch: a producer never loads the worker, and
adding a job never loads SQLModel.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from dqflow.errors import (
    ConfigError,
    DependencyError,
    DqflowError,
    InvalidJobStateError,
    InvalidWorkflowStateError,
    JobFailedError,
    JobNotFoundError,
    NotMigratedError,
    OutputParseError,
    OutputTooLargeError,
    OutputValidationError,
    PayloadTooLargeError,
    PayloadValidationError,
    StepError,
    StorageError,
    StorageTooNewError,
    TokenAlreadyCompletedError,
    TokenError,
    TokenExpiredError,
    TokenNotFoundError,
    TokenTimeout,
    TooLargeError,
    UnknownJobTypeError,
    UnknownWorkflowError,
    ValidationFailed,
    WaitTimeoutError,
    WorkflowFailedError,
    WorkflowRunNotFoundError,
    WorkflowWaitTimeoutError,
)

if TYPE_CHECKING:
    from dqflow.declaration import Declaration, load_declaration
    from dqflow.durable.context import WaitToken
    from dqflow.durable.model import TokenRecord
    from dqflow.enums import EventType, FailureReason, JobStatus, StepStatus, TagMode, WorkflowStatus
    from dqflow.queue import JobSpec, Queue
    from dqflow.record import JobEvent, JobRecord
    from dqflow.storage import JobPage
    from dqflow.typed import JobRef, RunRef, TypedJob, TypedWorkflow
    from dqflow.worker import JobContext, Worker, WorkerSettingError, run_worker
    from dqflow.workflow_record import WorkflowPage, WorkflowRun, WorkflowStepRecord

    __version__: str

_LAZY = {
    "Declaration": "dqflow.declaration",
    "load_declaration": "dqflow.declaration",
    "EventType": "dqflow.enums",
    "FailureReason": "dqflow.enums",
    "JobStatus": "dqflow.enums",
    "JobSpec": "dqflow.queue",
    "Queue": "dqflow.queue",
    "JobEvent": "dqflow.record",
    "JobRecord": "dqflow.record",
    "JobPage": "dqflow.storage",
    "JobRef": "dqflow.typed",
    "RunRef": "dqflow.typed",
    "TypedWorkflow": "dqflow.typed",
    "TypedJob": "dqflow.typed",
    "TagMode": "dqflow.enums",
    "TokenRecord": "dqflow.durable.model",
    "WaitToken": "dqflow.durable.context",
    "StepStatus": "dqflow.enums",
    "WorkflowStatus": "dqflow.enums",
    "WorkflowPage": "dqflow.workflow_record",
    "WorkflowRun": "dqflow.workflow_record",
    "WorkflowStepRecord": "dqflow.workflow_record",
    "JobContext": "dqflow.worker",
    "Worker": "dqflow.worker",
    "run_worker": "dqflow.worker",
    "WorkerSettingError": "dqflow.worker",
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        value: Any = version("dqflow")
    elif name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'dqflow' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, "__version__"})


__all__ = [
    "ConfigError",
    "Declaration",
    "DependencyError",
    "DqflowError",
    "EventType",
    "FailureReason",
    "InvalidJobStateError",
    "InvalidWorkflowStateError",
    "JobContext",
    "JobEvent",
    "JobFailedError",
    "JobNotFoundError",
    "JobPage",
    "JobRecord",
    "JobRef",
    "JobSpec",
    "JobStatus",
    "NotMigratedError",
    "OutputParseError",
    "OutputTooLargeError",
    "OutputValidationError",
    "PayloadTooLargeError",
    "PayloadValidationError",
    "Queue",
    "RunRef",
    "StepError",
    "StepStatus",
    "StorageError",
    "StorageTooNewError",
    "TagMode",
    "TokenAlreadyCompletedError",
    "TokenError",
    "TokenExpiredError",
    "TokenNotFoundError",
    "TokenRecord",
    "TokenTimeout",
    "TooLargeError",
    "TypedJob",
    "TypedWorkflow",
    "UnknownJobTypeError",
    "UnknownWorkflowError",
    "ValidationFailed",
    "WaitTimeoutError",
    "WaitToken",
    "Worker",
    "WorkerSettingError",
    "WorkflowFailedError",
    "WorkflowPage",
    "WorkflowRun",
    "WorkflowRunNotFoundError",
    "WorkflowStatus",
    "WorkflowStepRecord",
    "WorkflowWaitTimeoutError",
    "__version__",
    "load_declaration",
    "run_worker",
]
