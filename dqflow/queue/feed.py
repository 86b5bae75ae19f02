"""One follower of the storage's change feed per ``Queue``, shared by whoever wants changes.

The feed (``dqflow.storage.changes``) is read by a single daemon thread, started
with the first subscriber and stopped by ``Queue.close``: it blocks in
``Storage.wait_for_changes`` (PostgreSQL LISTEN/NOTIFY, a Redis stream read, a
SQLite ``data_version`` check) and hands every batch to each subscriber. However
many waits and live streams a process has, the database sees one reader.

``Queue.wait`` watches one job (``Watch``); the HTTP layer's live streams
subscribe a callback. A subscriber only hears changes committed after it
subscribed (the follower holds a cursor before ``subscribe`` returns), so "read
the record, then wait for a change" never misses one in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from dqflow.errors import StorageError

if TYPE_CHECKING:
    from dqflow.storage import Storage
    from dqflow.storage.changes import Change

log = logging.getLogger("dqflow.queue")

FEED_WAIT_SECONDS = 1.0
"""Longest single block in ``wait_for_changes``; the follower checks for ``close`` this often."""
READ_BATCH = 500
RETRY_SECONDS = 1.0
"""Pause after the storage failed (the follower keeps trying; watchers fall back to re-reading)."""
START_TIMEOUT_SECONDS = 10.0

Listener = Callable[[list["Change"]], None]


class ChangeFeed:
    """Follows the storage's change feed on one thread and fans each batch out to listeners."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._listeners: set[Listener] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._started = threading.Event()

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` (on the follower's thread) with every later batch of changes.

        Returns once the follower holds its cursor: every change committed from
        now on reaches the listener. A listener must be quick and never raise."""
        with self._lock:
            if self._stopping.is_set():
                return
            self._listeners.add(listener)
            if self._thread is None:
                self._thread = threading.Thread(target=self._follow, name="dqflow-change-feed", daemon=True)
                self._thread.start()
        self._started.wait(START_TIMEOUT_SECONDS)

    def unsubscribe(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.discard(listener)

    def watch(self, wanted: Callable[[Change], bool]) -> Watch:
        """A ``Watch`` woken by each batch holding a change ``wanted`` accepts (close it after use)."""
        watch = Watch(self, wanted)
        self.subscribe(watch.hear)
        return watch

    @property
    def following(self) -> bool:
        """Whether the follower runs (and so wakes watchers); false once closed."""
        return self._thread is not None and not self._stopping.is_set()

    def close(self) -> None:
        """Stop following; listeners hear nothing more. Returns at once: a wait in progress
        ends when the storage closes (every backend's ``close`` ends it safely)."""
        with self._lock:
            self._stopping.set()
            self._listeners.clear()

    def _follow(self) -> None:
        cursor: str | None = None
        while not self._stopping.is_set():
            try:
                if cursor is None:
                    cursor = self.storage.change_cursor()
                    self._started.set()
                self.storage.wait_for_changes(cursor, FEED_WAIT_SECONDS)
                if self._stopping.is_set():
                    break
                changes = self.storage.read_changes(cursor, READ_BATCH)
                if not changes:
                    continue
                cursor = changes[-1].cursor
                self._publish(changes)
            except StorageError as exc:
                if self._stopping.is_set():
                    break
                log.warning("change feed: %s (retrying)", exc)
                self._failed()
            except Exception:
                if self._stopping.is_set():
                    break  # the storage was closed under a read in progress
                log.exception("change feed failed (retrying)")
                self._failed()
        self._started.set()

    def _failed(self) -> None:
        # Subscribers waiting for a cursor go on without one (a watcher still re-reads on its
        # own); changes from before the next cursor are not heard.
        self._started.set()
        self._stopping.wait(RETRY_SECONDS)

    def _publish(self, changes: list[Change]) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(changes)
            except Exception:
                log.exception("change feed listener failed")


class Watch:
    """Wakes a waiting thread or coroutine when a wanted change arrives.

    ``wait``/``wait_async`` return True when woken, False when the time ran out;
    a wake-up that came while nobody waited is kept for the next call."""

    def __init__(self, feed: ChangeFeed, wanted: Callable[[Change], bool]) -> None:
        self._feed = feed
        self._wanted = wanted
        self._woken = threading.Event()
        self._lock = threading.Lock()
        self._loop_event: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None

    def hear(self, changes: list[Change]) -> None:
        if not any(self._wanted(change) for change in changes):
            return
        self._woken.set()
        with self._lock:
            waiting = self._loop_event
        if waiting is not None:
            loop, event = waiting
            if not loop.is_closed():
                loop.call_soon_threadsafe(event.set)

    def wait(self, timeout: float) -> bool:
        woken = self._woken.wait(timeout)
        self._woken.clear()
        return woken

    async def wait_async(self, timeout: float) -> bool:
        with self._lock:
            if self._loop_event is None:
                self._loop_event = (asyncio.get_running_loop(), asyncio.Event())
            event = self._loop_event[1]
        if not self._woken.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)
        event.clear()
        woken = self._woken.is_set()
        self._woken.clear()
        return woken

    def close(self) -> None:
        self._feed.unsubscribe(self.hear)

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
