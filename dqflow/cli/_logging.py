"""The CLI's logging: bounded records, formatted and written to stderr off the caller's thread.

A worker logs on its event loop's thread. Writing there would let a slow
stderr (a pipe nobody reads fast, a huge message) stall heartbeats, so the
loop only puts a bounded copy of each record on a queue and one listener thread
(``QueueListener``) formats and writes it. The thread starts with the first
record: a command that logs nothing (``dqflow add``) starts none, nor imports
``logging.handlers``. Messages are cut to ``MAX_MESSAGE`` characters and tracebacks
to ``MAX_TRACEBACK_LINES`` lines of at most ``MAX_LINE`` characters each, whatever
a handler raised.
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from logging.handlers import QueueListener

MAX_MESSAGE = 2000
MAX_LINE = 1000
MAX_TRACEBACK_LINES = 60


class LogFormat(StrEnum):
    """How log records are written: ``text`` for people, ``json`` (one object a line) for collectors."""

    TEXT = "text"
    JSON = "json"


def cut(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else its start and how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


def cut_traceback(text: str) -> str:
    """A traceback with long lines cut and, past ``MAX_TRACEBACK_LINES``, only its first and last lines."""
    lines = [cut(line, MAX_LINE) for line in text.splitlines()]
    if len(lines) > MAX_TRACEBACK_LINES:
        head, tail = MAX_TRACEBACK_LINES // 4, MAX_TRACEBACK_LINES - MAX_TRACEBACK_LINES // 4
        lines = [*lines[:head], f"… ({len(lines) - head - tail} lines left out)", *lines[-tail:]]
    return "\n".join(lines)


class _BoundedQueueHandler(logging.Handler):
    """Puts a bounded, already-merged copy of each record on the queue (cheap on the caller's thread),
    then calls ``queued`` (which starts the writer thread if it is not running)."""

    def __init__(self, records: queue.SimpleQueue[logging.LogRecord], queued: Callable[[], None]) -> None:
        super().__init__()
        self.queue = records
        self._queued = queued

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(self.prepare(record))
            self._queued()
        except Exception:
            self.handleError(record)

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        message = cut(record.getMessage(), MAX_MESSAGE)
        exc_text = record.exc_text
        if record.exc_info and not exc_text:
            exc_text = logging.Formatter().formatException(record.exc_info)
        prepared = logging.makeLogRecord(record.__dict__)
        prepared.msg, prepared.args, prepared.exc_info = message, None, None
        prepared.exc_text = cut_traceback(exc_text) if exc_text else None
        prepared.stack_info = cut_traceback(record.stack_info) if record.stack_info else None
        return prepared


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (test runners swap it)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, and exc when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            document["exc"] = record.exc_text
        if record.stack_info:
            document["stack"] = record.stack_info
        return json.dumps(document, ensure_ascii=False, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class CliLogging:
    """Root logging for one CLI process: set up per command, stopped (and flushed) after it."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self._writer = _StderrHandler()
        self._enqueue = _BoundedQueueHandler(self._queue, self._write_queued)
        self._listener: QueueListener | None = None
        self._started = False  # between start and stop
        self._lock = threading.Lock()

    def start(self, *, verbose: bool, default_level: int, log_format: LogFormat = LogFormat.TEXT) -> None:
        """Log dqflow's records at ``default_level`` (DEBUG with ``verbose``), in ``log_format``, to stderr."""
        logging.getLogger("dqflow").setLevel(logging.DEBUG if verbose else default_level)
        # The connection pool retries on its own and logs every try; its final error reaches us anyway.
        logging.getLogger("psycopg.pool").setLevel(logging.DEBUG if verbose else logging.CRITICAL)
        self._writer.setFormatter(JsonFormatter() if log_format is LogFormat.JSON else logging.Formatter(TEXT_FORMAT))
        root = logging.getLogger()
        if verbose:
            root.setLevel(logging.INFO)
        if self._enqueue not in root.handlers:
            root.addHandler(self._enqueue)
        with self._lock:
            self._started = True
        if not self._queue.empty():  # records left from before the last stop
            self._write_queued()

    def _write_queued(self) -> None:
        """Start the listener thread, which writes the queued records, unless it runs or logging is stopped."""
        if self._listener is not None:
            return
        with self._lock:
            if self._listener is None and self._started:
                from logging.handlers import QueueListener

                self._listener = QueueListener(self._queue, self._writer, respect_handler_level=True)
                self._listener.start()

    def stop(self) -> None:
        """Write every queued record, then stop the listener thread (records go nowhere until the next start)."""
        logging.getLogger().removeHandler(self._enqueue)
        with self._lock:
            self._started = False
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()


cli_logging = CliLogging()
