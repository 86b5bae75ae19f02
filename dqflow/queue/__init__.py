"""The queue API layer: ``Queue`` and its in-process events."""

from dqflow.queue.events import EVENT_NAMES, EventEmitter
from dqflow.queue.migrations import BackendMigrations, backend_migrations
from dqflow.queue.queue import UNSET, JobSpec, Queue, resolve_backend
from dqflow.storage import JobPage, TagMode

__all__ = [
    "EVENT_NAMES",
    "UNSET",
    "BackendMigrations",
    "EventEmitter",
    "JobPage",
    "JobSpec",
    "Queue",
    "TagMode",
    "backend_migrations",
    "resolve_backend",
]
