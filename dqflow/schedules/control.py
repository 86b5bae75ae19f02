"""Looking at and steering a queue's schedules: what ``dqflow schedules`` shows and does.

``schedule_rows`` joins the declared schedules with what storage keeps of them
(last tick, paused); ``set_paused`` pauses or resumes one (kept in storage, so
every worker sees it at its next pass).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dqflow.errors import ConfigError

if TYPE_CHECKING:
    from dqflow.declaration.schedules import Schedule
    from dqflow.queue.queue import Queue
    from dqflow.storage.base import ScheduleState

__all__ = ["describe_schedule", "schedule_rows", "set_paused"]


def _find(queue: Queue, name: str) -> Schedule:
    try:
        return queue.declaration.schedules[name]
    except KeyError:
        known = ", ".join(sorted(queue.declaration.schedules)) or "none"
        raise ConfigError(f"unknown schedule {name!r} (declared: {known})") from None


def describe_schedule(schedule: Schedule, state: ScheduleState | None, now: datetime) -> dict[str, Any]:
    """One schedule as a row: target, cron, zone, options, next run (UTC and in its zone), paused, last tick."""
    upcoming = schedule.cron.next_after(now)
    last = None if state is None else state.last_tick
    return {
        "name": schedule.name,
        "target": schedule.target,
        "cron": schedule.cron.expression,
        "timezone": schedule.timezone,
        "overlap": schedule.overlap,
        "catch_up": schedule.catch_up,
        "paused": bool(state is not None and state.paused),
        "next_run": upcoming.isoformat(),
        "next_run_local": upcoming.astimezone(schedule.cron.zone).isoformat(),
        "last_tick": None if last is None else last.isoformat(),
        "last_job_id": None if state is None else state.last_job_id,
    }


def schedule_rows(queue: Queue, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every declared schedule with its stored state, by name."""
    at = datetime.now(UTC) if now is None else now
    schedules = queue.declaration.schedules
    states = queue.storage.schedule_states() if schedules else {}
    return [describe_schedule(schedules[name], states.get(name), at) for name in sorted(schedules)]


def set_paused(queue: Queue, name: str, paused: bool) -> dict[str, Any]:
    """Pause (or resume) the declared schedule ``name``; its row afterwards. ConfigError for an unknown name."""
    schedule = _find(queue, name)
    state = queue.storage.set_schedule_paused(name, paused)
    return describe_schedule(schedule, state, datetime.now(UTC))
