"""``sqlite:///:memory:``: a private, throwaway database for one ``SqliteStorage``.

SQLite's own ``:memory:`` database belongs to one connection, and dqflow opens one
per thread (the worker's parts run on several). So the database is a file in a
fresh directory, on the RAM disk (``/dev/shm``) where there is one, removed when
the storage is closed or garbage-collected. Nothing else can open it: it is for
tests and one-process scripts, never for separate worker processes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path

MEMORY_PATH = ":memory:"
_RAM_DISK = Path("/dev/shm")


def _ram_disk() -> str | None:
    return str(_RAM_DISK) if _RAM_DISK.is_dir() and os.access(_RAM_DISK, os.W_OK) else None


def throwaway_database(owner: object) -> tuple[str, Callable[[], object]]:
    """A new database path, and the finalizer that deletes it: call it on close (else it runs
    when ``owner`` is garbage-collected, or at exit)."""
    folder = tempfile.mkdtemp(prefix="dqflow-memory-", dir=_ram_disk())
    return os.path.join(folder, "queue.db"), weakref.finalize(owner, shutil.rmtree, folder, True)
