"""LISTEN/NOTIFY wake-ups: a dedicated connection that idle workers block on.

Writers call ``pg_notify(channel, job_type)`` in the statement that makes work
ready (add, retry, release, a retrying failure, a reclaim), so the notification
is delivered when that transaction commits. Notifications that arrive while
nobody waits stay queued on the connection and end the next wait at once:
"new work may be ready" is never lost between a claim and the next wait.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import sql

from dqflow.errors import StorageError

# Longest single block on the socket: lets close() end a wait promptly.
_SLICE_SECONDS = 0.5


def channel_name(schema: str | None) -> str:
    """The NOTIFY channel of one dqflow schema (at most 63 bytes, as PostgreSQL requires)."""
    if not schema:
        return "dqflow_jobs"
    name = f"dqflow_jobs.{schema}"
    if len(name) <= 63:
        return name
    return "dqflow_jobs." + hashlib.sha1(schema.encode()).hexdigest()[:32]


class Notifier:
    """Owns the LISTEN connection; ``wait`` blocks on it (one waiter at a time)."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        channel: str,
        display: str,
        on_lost: Callable[[], None] = lambda: None,
    ) -> None:
        self._connect = connect
        self._on_lost = on_lost
        self._channel = channel
        self._display = display
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()
        self._closed = False

    def wait(self, timeout: float, job_types: Sequence[str] | None) -> None:
        """Return on a notification for one of ``job_types`` (any, if None) or after ``timeout``.

        Returns at once after (re)connecting: work added while nobody listened
        may be ready. A lost connection raises ``StorageError``; the next call
        reconnects (``on_lost`` lets the owner check its other connections).
        """
        deadline = time.monotonic() + max(0.0, timeout)
        wanted = None if job_types is None else frozenset(job_types)
        with self._lock:
            if self._closed:
                return
            if self._conn is None:
                self._conn = self._listen()
                return
            conn = self._conn
            try:
                while not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return
                    for note in conn.notifies(timeout=min(remaining, _SLICE_SECONDS), stop_after=1):
                        if wanted is None or not note.payload or note.payload in wanted:
                            return
            except psycopg.Error as exc:
                self._discard()
                if self._closed:
                    return
                self._on_lost()
                raise StorageError(
                    f"lost the LISTEN connection to PostgreSQL at {self._display}: {exc}".strip()
                ) from exc
            finally:
                if self._closed:
                    self._discard()

    def close(self) -> None:
        """Stop listening; a wait in progress returns within half a second. Safe to call twice."""
        self._closed = True
        if self._lock.acquire(blocking=False):
            try:
                self._discard()
            finally:
                self._lock.release()

    def _listen(self) -> psycopg.Connection[Any]:
        conn = self._connect()
        try:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        except psycopg.Error as exc:
            conn.close()
            raise StorageError(f"cannot LISTEN on PostgreSQL at {self._display}: {exc}".strip()) from exc
        return conn

    def _discard(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None
