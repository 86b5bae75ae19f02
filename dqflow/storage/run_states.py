"""Run states as one storage object last wrote them, for its next step settles to plan from.

A worker that settles a run's step usually settles the run's next step too. Keeping
the state it wrote spares reading (Redis) or decoding (SQLite, PostgreSQL) the run again.
Every write of a run, by any process, bumps its ``version``, and a kept state is used only
at the version it was written at: each backend checks that against the stored run (SQLite
compares the row's version; PostgreSQL's run lock answers the steps only when the version
moved on; Redis's ``workflow.lua`` guards its writes on it), so a
state another process moved on is never planned from unchecked. A state kept from the
advance that wrote it (``Advance.written_state``) carries the JSON text of its steps, so
its next advance encodes only the steps it changes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from dqflow.enums import WorkflowStatus
from dqflow.storage.workflows import RunState

__all__ = ["WrittenRunStates"]


class WrittenRunStates:
    """Running runs' states as written, by run id, the least recently written first.

    Bounded by their number (``max_runs``) and by the size of their step state's JSON
    text (``max_bytes`` in all; a run over a sixteenth of that is not kept; the step texts
    a state carries take at most that size again). A finished
    run is dropped: no more of its steps will end. Safe to share between threads.
    """

    def __init__(self, max_runs: int = 4096, max_bytes: int = 16 << 20) -> None:
        self._max_runs = max_runs
        self._max_bytes = max_bytes
        self._bytes = 0
        self._states: OrderedDict[int, tuple[RunState, int]] = OrderedDict()  # with its step state's size
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._states)

    def get(self, run_id: int, version: int | None = None) -> RunState | None:
        """The kept state of ``run_id`` (only if it is the one written at ``version``, when given)."""
        kept = self._states.get(run_id)
        if kept is None or (version is not None and kept[0].version != version):
            return None
        return kept[0]

    def size_of(self, run_id: int) -> int | None:
        """The size of the kept state's step state (characters of JSON), or None when none is kept."""
        kept = self._states.get(run_id)
        return None if kept is None else kept[1]

    def keep(self, state: RunState, size: int) -> None:
        """``state`` was written (``size`` characters of step state JSON): keep it in place of
        what was kept for the run, while the run is running and the state is not too big."""
        with self._lock:
            replaced = self._states.pop(state.id, None)
            if replaced is not None:
                self._bytes -= replaced[1]
            if state.status is not WorkflowStatus.RUNNING or size > self._max_bytes // 16:
                return
            self._states[state.id] = (state, size)
            self._bytes += size
            while len(self._states) > self._max_runs or self._bytes > self._max_bytes:
                self._bytes -= self._states.popitem(last=False)[1][1]

    def forget(self, run_id: int) -> None:
        """Drop what is kept for ``run_id`` (it was found moved on by someone else)."""
        with self._lock:
            replaced = self._states.pop(run_id, None)
            if replaced is not None:
                self._bytes -= replaced[1]
