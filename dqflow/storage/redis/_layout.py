"""The Redis key layout version (``P:layout``) and the upgrades between layouts.

Layout 1: the keys as first numbered. ``P:finished``, the clean-up index of finished jobs,
came later within it (with SQL migration 0007's clean-up) and holds only the jobs that
finished since, so retention never deleted the older ones.
Layout 2: every finished job is in ``P:finished``; the upgrade backfills it with a ZSCAN
of the three finished-status indexes, a bounded batch per script call, idempotent (run
again after a crash, or by two processes at once, it adds nothing twice), and records 2
only once it is done.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dqflow.errors import StorageError, StorageTooNewError
from dqflow.storage.redis.codec import as_text

LAYOUT_VERSION = 2
"""The key and hash layout this code reads and writes (``docs/REDIS.md``), kept in ``P:layout``."""

BACKFILL_BATCH = 500
"""Job ids one backfill script call looks at."""

_FINISHED = ("completed", "failed", "cancelled")

RunScript = Callable[..., Any]
"""``run(script name, what, *args)``: the backend's script runner."""


def stored_layout(client: Any, prefix_key: str, url: str) -> int:
    """The layout recorded for this queue: absent means a fresh queue (the current layout), or
    layout 1 when it already holds jobs (written before layouts were numbered)."""
    key = f"{prefix_key}:layout"
    stored = as_text(client.get(key))
    if stored is None:
        return 1 if client.exists(f"{prefix_key}:jobs") else LAYOUT_VERSION
    if not str(stored).isdigit():
        raise StorageError(f"Redis at {url}: {key} holds {stored!r}, not a dqflow layout version")
    return int(stored)


def check_and_upgrade(client: Any, prefix_key: str, url: str, run: RunScript) -> int:
    """Refuse a newer layout; bring an older one up to ``LAYOUT_VERSION``; record it. Returns
    how many finished jobs the upgrade put in ``P:finished``."""
    layout = stored_layout(client, prefix_key, url)
    if layout > LAYOUT_VERSION:
        raise StorageTooNewError(
            f"Redis at {url} holds a dqflow queue written by a newer dqflow (layout {layout});"
            f" this dqflow knows layouts up to {LAYOUT_VERSION}: upgrade dqflow to use it"
        )
    added = backfill_finished(client, prefix_key, run) if layout < 2 else 0
    run("layout_raise", "record the key layout version", LAYOUT_VERSION)
    return added


def backfill_finished(client: Any, prefix_key: str, run: RunScript) -> int:
    """Index every finished job missing from ``P:finished`` (layout 1 → 2)."""
    added = 0
    for status in _FINISHED:
        batch: list[str] = []
        for member, _score in client.zscan_iter(f"{prefix_key}:status:{status}", count=BACKFILL_BATCH):
            batch.append(as_text(member))
            if len(batch) >= BACKFILL_BATCH:
                added += int(run("layout_finished", "index finished jobs", *batch))
                batch.clear()
        if batch:
            added += int(run("layout_finished", "index finished jobs", *batch))
    return added
