"""A lean pool of handler threads that hands results back to the event loop in batches.

``concurrent.futures`` costs a Future, a condition variable and a self-pipe
write per job. Here a job is a tuple on a ``SimpleQueue``; finished jobs are
collected in a deque and delivered to the loop by one ``call_soon_threadsafe``
per batch, however many finished meanwhile.

A thread that finishes a call asks ``pull`` for the next one before it waits on
the queue: the caller may hand it work straight away (the worker's next claimed
job), so a busy thread goes from one job to the next without a round trip
through the loop. The delivered result names the key it went on with.

A free thread can also block in a wait for new work (``submit_wait``) and run the
work the wait returns itself: a job that arrives at an idle worker starts on the
thread that received it, with no hand-off through the loop and another thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, Generic, TypeVar

K = TypeVar("K")

# (key, ok, result-or-exception, key of the call the thread went on with, if any)
ThreadResult = tuple[K, bool, Any, K | None]
Work = tuple[K, Callable[[], Any]]


class _Wait(Generic[K]):
    """A blocking wait for work; what it returns (if anything) runs on the same thread."""

    __slots__ = ("call",)

    def __init__(self, call: Callable[[], Work[K] | None]) -> None:
        self.call = call


class HandlerThreads(Generic[K]):
    """``size`` threads running ``call()`` for ``submit(key, call)``; ``deliver(results)`` on the loop.

    ``pull()``, called on a handler thread after each call, returns the next work
    for that thread to run at once, or None to wait for ``submit``.
    """

    def __init__(
        self,
        size: int,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[list[ThreadResult[K]]], None],
        pull: Callable[[], Work[K] | None] = lambda: None,
    ) -> None:
        self._loop = loop
        self._deliver = deliver
        self._pull = pull
        self._inbox: SimpleQueue[Work[K] | _Wait[K] | None] = SimpleQueue()
        self._done: deque[ThreadResult[K]] = deque()
        self._scheduled = False
        self._threads = [
            threading.Thread(target=self._work, name=f"dqflow-handler-{i}", daemon=True) for i in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, key: K, call: Callable[[], Any]) -> None:
        """Run ``call`` on a free thread; its result is delivered under ``key``."""
        self._inbox.put((key, call))

    def submit_wait(self, wait: Callable[[], Work[K] | None]) -> None:
        """Run ``wait()`` on a free thread; the work it returns (if any) runs on that thread
        next, its result delivered like a submitted call's. ``wait`` reports its own errors."""
        self._inbox.put(_Wait(wait))

    def shutdown(self) -> None:
        """Let idle threads exit (busy ones finish their call first; they are daemons)."""
        for _ in self._threads:
            self._inbox.put(None)

    def _work(self) -> None:
        while True:
            item: Work[K] | _Wait[K] | None = self._inbox.get()
            if item is None:
                return
            if isinstance(item, _Wait):
                try:
                    item = item.call()
                except BaseException:  # the wait reports its own errors; nothing to run
                    item = None
            while item is not None:
                key, call = item
                try:
                    ok, value = True, call()
                except BaseException as exc:
                    ok, value = False, exc
                try:
                    item = self._pull()
                except BaseException:  # never strand the result of the call that ran
                    item = None
                # append first, then check: no result is ever stranded
                self._done.append((key, ok, value, None if item is None else item[0]))
                if not self._scheduled:
                    self._scheduled = True
                    try:
                        self._loop.call_soon_threadsafe(self._flush)
                    except RuntimeError:  # the loop is closed: the worker is gone
                        return

    def _flush(self) -> None:
        self._scheduled = False
        batch: list[ThreadResult[K]] = []
        while self._done:
            batch.append(self._done.popleft())
        if batch:
            self._deliver(batch)
