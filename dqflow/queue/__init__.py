"""The queue API layer: ``Queue`` and its in-process events."""

from dqflow.queue.events import EVENT_NAMES, EventEmitter
from dqflow.queue.queue import UNSET, JobSpec, Queue, resolve_backend

__all__ = ["EVENT_NAMES", "UNSET", "EventEmitter", "JobSpec", "Queue", "resolve_backend"]
