"""Redis side of schedules: arguments and replies of ``lua/claim_tick.lua`` and ``lua/set_paused.lua``.

States live in one hash, ``P:schedules`` (name → JSON), so listing them needs no scan.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from dqflow.storage.base import NewJob, ScheduleState, TickResult, TickVerdict
from dqflow.storage.redis.codec import EPOCH, to_us

_MICROSECOND = timedelta(microseconds=1)


def claim_args(
    schedule: str, tick: datetime, job: NewJob | None, skip_while_unfinished: bool, add_args: list[Any]
) -> list[Any]:
    """ARGV of ``claim_tick.lua``: the tick, then ``add_many``'s arguments for the job (if any)."""
    return [schedule, to_us(tick, "tick"), int(skip_while_unfinished), int(job is not None), *add_args]


def tick_result(reply: list[Any]) -> TickResult:
    """``claim_tick.lua``'s reply as a ``TickResult``."""
    verdict, job_id = str(reply[0]), str(reply[1])
    return TickResult(TickVerdict(verdict), int(job_id) if job_id else None)


def state_of(name: str, text: str) -> ScheduleState:
    """One ``P:schedules`` entry as a ``ScheduleState``."""
    data = json.loads(text)
    last = data.get("last_tick")
    job_id = data.get("last_job_id")
    return ScheduleState(
        name=name,
        last_tick=None if last is None else EPOCH + int(last) * _MICROSECOND,
        last_job_id=None if job_id in (None, "") else int(job_id),
        paused=bool(data.get("paused", False)),
    )


def states(entries: Mapping[str, str]) -> dict[str, ScheduleState]:
    """Every ``P:schedules`` entry by name."""
    return {name: state_of(name, text) for name, text in entries.items()}
