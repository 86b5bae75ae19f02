"""In-process event listeners: ``on``, ``once``, ``off`` and ``emit``.

A listener that raises never breaks the queue or the worker: the exception is
logged and reported to ``error`` listeners instead.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Final, Literal, get_args

log = logging.getLogger("dqflow.events")

Listener = Callable[[dict[str, Any]], Any]

EventName = Literal[
    "job:added",
    "job:processing",
    "job:completed",
    "job:failed",
    "job:cancelled",
    "job:retried",
    "job:edited",
    "job:waiting",
    "job:progress",
    "job:output",
    "workflow:started",
    "workflow:completed",
    "workflow:failed",
    "workflow:cancelled",
    "error",
]
"""Every event a listener can subscribe to: a misspelt name is a type error (and a ``ValueError``)."""

JOB_ADDED: Final = "job:added"
JOB_PROCESSING: Final = "job:processing"
JOB_COMPLETED: Final = "job:completed"
JOB_FAILED: Final = "job:failed"
JOB_CANCELLED: Final = "job:cancelled"
JOB_RETRIED: Final = "job:retried"
JOB_EDITED: Final = "job:edited"
JOB_WAITING: Final = "job:waiting"
JOB_PROGRESS: Final = "job:progress"
JOB_OUTPUT: Final = "job:output"
WORKFLOW_STARTED: Final = "workflow:started"
WORKFLOW_COMPLETED: Final = "workflow:completed"
WORKFLOW_FAILED: Final = "workflow:failed"
WORKFLOW_CANCELLED: Final = "workflow:cancelled"
ERROR: Final = "error"

EVENT_NAMES: Final[frozenset[str]] = frozenset(get_args(EventName))


class EventEmitter:
    """Thread-safe registry of listeners keyed by event name."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[tuple[Listener, bool]]] = {}
        self._lock = threading.Lock()

    def on(self, event: EventName, listener: Listener) -> Listener:
        """Call ``listener(data)`` on every ``event``. Returns the listener (usable as a decorator)."""
        self._add(event, listener, once=False)
        return listener

    def once(self, event: EventName, listener: Listener) -> Listener:
        """Call ``listener(data)`` on the next ``event`` only."""
        self._add(event, listener, once=True)
        return listener

    def off(self, event: EventName, listener: Listener | None = None) -> None:
        """Remove one listener, or every listener of ``event`` when none is given."""
        with self._lock:
            if listener is None:
                self._listeners.pop(event, None)
            else:
                self._listeners[event] = [(fn, o) for fn, o in self._listeners.get(event, []) if fn != listener]

    def has_listeners(self, event: str) -> bool:
        """True when someone listens to ``event`` (lets hot paths skip building data)."""
        return bool(self._listeners.get(event))

    def emit(self, event: str, data: dict[str, Any]) -> None:
        """Call the listeners of ``event`` with ``data``."""
        entries = self._listeners.get(event)
        if not entries:
            return
        with self._lock:
            entries = list(self._listeners.get(event, []))
            if any(once for _, once in entries):
                self._listeners[event] = [(fn, o) for fn, o in entries if not o]
        for listener, _ in entries:
            try:
                listener(data)
            except Exception as exc:
                log.exception("listener %r for %s raised", listener, event)
                if event != ERROR:
                    self.emit(ERROR, {"error": exc, "where": f"listener for {event}"})

    def _add(self, event: str, listener: Listener, *, once: bool) -> None:
        if event not in EVENT_NAMES:
            raise ValueError(f"unknown event {event!r}; known events: {', '.join(sorted(EVENT_NAMES))}")
        if not callable(listener):
            raise TypeError(f"listener for {event} must be callable, got {type(listener).__name__}")
        with self._lock:
            self._listeners.setdefault(event, []).append((listener, once))
