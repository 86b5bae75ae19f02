"""Blocking pops that end on time, for short waits.

Redis ends a blocked ``BLPOP`` at its timeout only on a server tick (``hz``: every
100 ms by default), so a wait of 5 ms can last 100. An idle worker that waits for a
due time (a delayed job, a durable job's wake-up) needs it to the millisecond: for
a short wait the pop also watches a key of its own, and a local timer pushes to
that key at the due time.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from typing import Any

PRECISE_BELOW = 1.0
"""Waits shorter than this (seconds) end by the local timer; longer ones by BLPOP's own timeout."""
_SLACK = 0.5  # BLPOP's own timeout, past the timer's: only if the alarm push is lost


class Alarm:
    """Rings a wait's own list key ``{prefix}:alarm:<random>`` (the slot of the wake-up keys)."""

    def __init__(self, prefix_key: str) -> None:
        self._prefix_key = prefix_key

    def blpop(self, blocking: Any, client: Any, keys: Sequence[str], timeout: float) -> Any:
        """``BLPOP keys`` for ``timeout`` seconds, precise for short waits; None when it timed out."""
        seconds = max(round(timeout, 3), 0.001)  # BLPOP's timeout 0 means forever
        if timeout >= PRECISE_BELOW:
            return blocking.blpop(list(keys), timeout=seconds)
        key = f"{self._prefix_key}:alarm:{uuid.uuid4().hex}"  # one per wait: safe from any thread
        fired = threading.Event()

        def ring() -> None:
            fired.set()
            pipe = client.pipeline(transaction=False)
            pipe.lpush(key, "1")
            pipe.pexpire(key, 10_000)
            pipe.execute()

        timer = threading.Timer(timeout, ring)
        timer.daemon = True
        timer.start()
        try:
            popped = blocking.blpop([*keys, key], timeout=seconds + _SLACK)
        finally:
            timer.cancel()
            if fired.is_set():
                timer.join()
                client.delete(key)  # rung after a real wake-up: no key left behind
        if popped is not None and popped[0] in (key, key.encode()):
            return None
        return popped
