"""``JobContext``: what a running handler gets besides its payload."""

from __future__ import annotations

import json
import logging
import threading
from typing import TYPE_CHECKING, Any

from dqflow.durable.context import Durable, WaitToken
from dqflow.errors import ValidationFailed
from dqflow.queue.events import ERROR, JOB_OUTPUT, JOB_PROGRESS
from dqflow.record import JobRecord

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from dqflow.queue import Queue
    from dqflow.worker._durable import QueueDurableStore

log = logging.getLogger("dqflow.worker")


_EVENT_LOCK = threading.Lock()


class JobContext:
    """Progress, output and cancellation for one running attempt of a job.

    Writes are fenced by the attempt's lease token and best effort: a storage
    error is logged (and reported to ``error`` listeners) and the handler goes on.
    """

    def __init__(self, queue: Queue, job: JobRecord, stats: WriteStats | None = None) -> None:
        self.job = job
        self._queue = queue
        self._stats = stats
        self._cancelled = False
        self._cancel_event: threading.Event | None = None  # made only if a handler waits on it
        self.cancel_reason: str | None = None
        self._output_json: str | None = None
        self._durable: Durable | None = None  # made on a handler's first durable call

    # -- cancellation ----------------------------------------------------------------

    @property
    def cancelled(self) -> bool:
        """True once the job was cancelled, timed out, or this worker lost it."""
        return self._cancelled

    def wait_cancelled(self, timeout: float | None = None) -> bool:
        """Block up to ``timeout`` seconds for cancellation; True if cancelled."""
        with _EVENT_LOCK:
            if self._cancel_event is None:
                self._cancel_event = threading.Event()
                if self._cancelled:
                    self._cancel_event.set()
        return self._cancel_event.wait(timeout)

    def cancel(self, reason: str) -> None:
        """Signal the handler to stop (used by the worker)."""
        with _EVENT_LOCK:
            if self._cancelled:
                return
            self.cancel_reason = reason
            self._cancelled = True
            if self._cancel_event is not None:
                self._cancel_event.set()

    # -- durable handlers (docs/DURABLE.md; in async handlers, await each call) -----------

    @property
    def durable(self) -> Durable:
        """The job's durable state for this run (steps replayed, waits, tokens)."""
        if self._durable is None:
            self._durable = Durable(self.durable_store)
        return self._durable

    @property
    def durable_store(self) -> QueueDurableStore:
        """Where this attempt's steps and tokens are read and written (fenced by its lease)."""
        from dqflow.worker._durable import QueueDurableStore

        return QueueDurableStore(self._queue, self.job, self)

    def step(self, name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` once and store its JSON result; a re-run returns it without calling ``fn``."""
        return self.durable.step(name, fn, *args, **kwargs)

    def sleep(self, duration: float | timedelta) -> Any:
        """Stop the handler; it runs again from the top after ``duration`` (no worker slot held meanwhile)."""
        return self.durable.sleep(duration)

    def sleep_until(self, when: datetime) -> Any:
        """Stop the handler until ``when`` (aware datetime); a time already past goes on at once."""
        return self.durable.sleep_until(when)

    def create_token(self, timeout: float | timedelta | None = None, schema: str | dict[str, Any] | None = None) -> Any:
        """A token to be completed from outside (``queue.complete_token``); a re-run gets the same one."""
        return self.durable.create_token(timeout, schema)

    def wait_for_token(self, token: WaitToken | str, default: Any = ...) -> Any:
        """The token's data; waits (the handler stops) until it is completed or times out."""
        return self.durable.wait_for_token(token, default)

    # -- progress and output ---------------------------------------------------------

    def set_progress(self, progress: int | float) -> None:
        """Store progress (0..100). Raises ``ValueError`` outside that range."""
        if isinstance(progress, bool) or not isinstance(progress, (int, float)) or not 0 <= progress <= 100:
            raise ValueError(f"progress must be a number from 0 to 100, got {progress!r}")
        value = round(progress)
        self._write(
            "progress",
            value,
            lambda: self._queue.storage.set_progress(self.job.id, self.job.lease_token, value),
        )

    def set_output(self, output: Any) -> None:
        """Store ``output`` now (last write wins; it takes precedence over the return value).

        Raises ``OutputValidationError`` (nothing stored) when it is not JSON or
        does not match the job type's output schema.
        """
        text = self._queue.validate_output(self.job.job_type, output)
        self._output_json = text
        self._write("output", text, lambda: self._queue.storage.set_output(self.job.id, self.job.lease_token, text))

    @property
    def output_was_set(self) -> bool:
        """True once ``set_output`` stored (or tried to store) a valid value."""
        return self._output_json is not None

    @property
    def output(self) -> Any:
        """A copy of the last valid ``set_output`` value, as stored (None if never set)."""
        return None if self._output_json is None else json.loads(self._output_json)

    @property
    def output_json(self) -> str | None:
        """JSON text of the last valid ``set_output`` value."""
        return self._output_json

    def _write(self, what: str, value: Any, write: Any) -> None:
        if self.cancelled:
            return
        try:
            applied = write()
        except ValidationFailed:
            raise
        except Exception as exc:
            log.warning("job %s: could not save %s (handler continues): %s", self.job.id, what, exc)
            self._queue.events.emit(ERROR, {"error": exc, "job_id": self.job.id, "where": f"saving {what}"})
            return
        if not applied:
            if self._stats is not None:
                self._stats.rejected_writes += 1
            log.warning(
                "job %s: %s write rejected: this worker no longer holds the job (lease token %s)",
                self.job.id,
                what,
                self.job.lease_token,
            )
            self.cancel("lost")
            return
        event = JOB_PROGRESS if what == "progress" else JOB_OUTPUT
        if self._queue.events.has_listeners(event):
            data = value if what == "progress" else json.loads(value)  # a snapshot of what was stored
            self._queue.events.emit(event, {"job_id": self.job.id, "job_type": self.job.job_type, what: data})


class WriteStats:
    """Counters a worker keeps about its writes."""

    def __init__(self) -> None:
        self.rejected_writes = 0
        self.completed = 0
        self.failed = 0
        self.waited = 0  # durable handlers that stopped to wait (ctx.sleep, ctx.wait_for_token)
