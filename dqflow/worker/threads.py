"""A lean pool of handler threads that hands results back to the event loop in batches.

``concurrent.futures`` costs a Future, a condition variable and a self-pipe
write per job. Here a job is a tuple on a ``SimpleQueue``; finished jobs are
collected in a deque and delivered to the loop by one ``call_soon_threadsafe``
per batch, however many finished meanwhile.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, Generic, TypeVar

K = TypeVar("K")

# (key, ok, result-or-exception)
ThreadResult = tuple[K, bool, Any]


class HandlerThreads(Generic[K]):
    """``size`` threads running ``call()`` for ``submit(key, call)``; ``deliver(results)`` on the loop."""

    def __init__(
        self, size: int, loop: asyncio.AbstractEventLoop, deliver: Callable[[list[ThreadResult[K]]], None]
    ) -> None:
        self._loop = loop
        self._deliver = deliver
        self._inbox: SimpleQueue[tuple[K, Callable[[], Any]] | None] = SimpleQueue()
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

    def shutdown(self) -> None:
        """Let idle threads exit (busy ones finish their call first; they are daemons)."""
        for _ in self._threads:
            self._inbox.put(None)

    def _work(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                return
            key, call = item
            try:
                result: ThreadResult[K] = (key, True, call())
            except BaseException as exc:
                result = (key, False, exc)
            self._done.append(result)  # append first, then check: no result is ever stranded
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
