"""The scheduler: enqueues the due ticks of the declared schedules, once for all workers.

Every worker runs one (``worker/_maintenance.py`` wakes it at the next tick). A
pass reads the schedules' states, works out each schedule's due ticks and claims
them with ``Storage.claim_tick``, which decides each tick exactly once however many
workers ask (by the tick's time, never the asking worker's clock, so skewed clocks
cannot duplicate). The tick's job carries the idempotency key
``schedule:NAME:<tick, ISO UTC>`` and the meta ``{"schedule": NAME, "tick": ...}``.
A workflow schedule starts a run with that idempotency key (``Queue.start_workflow``),
then records the tick: the key keeps it to one run per tick.

Missed ticks (no worker ran): a tick is on time while it is at most
``MISFIRE_GRACE`` old; older ones are handled by ``catch_up``: ``none`` drops them,
``latest`` enqueues the newest, ``all`` enqueues each (the newest
``CATCH_UP_LIMIT``). A schedule seen for the first time starts with the ticks of
its grace window, and ticks that fall while it is paused are never caught up.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dqflow.declaration.schedules import CATCH_UP_LIMIT, Schedule
from dqflow.queue.queue import JobSpec, Queue
from dqflow.schedules.clock import Clock
from dqflow.storage.base import NewJob, ScheduleState, TickResult, TickVerdict

__all__ = ["MISFIRE_GRACE", "Scheduler", "Tick", "tick_key"]

log = logging.getLogger("dqflow.scheduler")

MISFIRE_GRACE = timedelta(seconds=60)
"""How late a tick may be seen and still count as on time (not missed)."""


def tick_text(tick: datetime) -> str:
    """A tick as ISO UTC text with a ``Z``, e.g. ``2030-01-01T00:00:00Z``."""
    return tick.astimezone(UTC).isoformat().replace("+00:00", "Z")


def tick_key(schedule: str, tick: datetime) -> str:
    """The idempotency key of a tick's job."""
    return f"schedule:{schedule}:{tick_text(tick)}"


@dataclass(frozen=True, slots=True)
class Tick:
    """One tick a pass claimed, and what storage made of it."""

    schedule: str
    tick: datetime
    result: TickResult


class Scheduler:
    """Claims the due ticks of ``queue``'s schedules; ``run_due`` is one pass (blocking)."""

    def __init__(self, queue: Queue, clock: Clock | None = None) -> None:
        self.queue = queue
        self.clock = clock or Clock()
        self.schedules: list[Schedule] = list(queue.declaration.schedules.values())

    def run_due(self, now: datetime | None = None) -> list[Tick]:
        """Claim every due tick (as of ``now``, default the clock's); the ticks claimed, oldest first per schedule."""
        if not self.schedules:
            return []
        at = self.clock.now() if now is None else now
        states = self.queue.storage.schedule_states()
        done: list[Tick] = []
        for schedule in self.schedules:
            done += self._run_one(schedule, states.get(schedule.name), at)
        return done

    def next_tick(self, now: datetime | None = None) -> datetime | None:
        """The earliest tick after ``now`` of any schedule (None without schedules)."""
        at = self.clock.now() if now is None else now
        return min((schedule.cron.next_after(at) for schedule in self.schedules), default=None)

    def _run_one(self, schedule: Schedule, state: ScheduleState | None, now: datetime) -> list[Tick]:
        last = None if state is None else state.last_tick
        lower = now - MISFIRE_GRACE if last is None else last
        due = schedule.cron.between(lower, now, newest=CATCH_UP_LIMIT)
        if not due:
            return []
        chosen: Sequence[datetime]
        if state is not None and state.paused:
            chosen = []
        elif schedule.catch_up == "all":
            chosen = due
        elif schedule.catch_up == "latest":
            chosen = due[-1:]
        else:
            chosen = [tick for tick in due if now - tick <= MISFIRE_GRACE]
        storage = self.queue.storage
        if not chosen:  # record the newest due tick as passed, so it is not considered again
            result = storage.claim_tick(schedule.name, due[-1], None)
            return [Tick(schedule.name, due[-1], result)]
        if schedule.workflow is not None:
            return [self._start_run(schedule, tick) for tick in chosen]
        ticks = []
        for tick in chosen:
            result = storage.claim_tick(
                schedule.name, tick, self._job(schedule, tick), skip_while_unfinished=schedule.overlap == "skip"
            )
            log.debug("schedule %s: tick %s %s", schedule.name, tick_text(tick), result.verdict.value)
            ticks.append(Tick(schedule.name, tick, result))
        return ticks

    def _start_run(self, schedule: Schedule, tick: datetime) -> Tick:
        """Start the tick's workflow run, then record the tick. The run's idempotency key
        makes the start once per tick however many workers (or retries after a crash
        between the two steps) ask; ``TAKEN`` when another worker recorded it first."""
        assert schedule.workflow is not None
        run_id = self.queue.start_workflow(
            schedule.workflow, schedule.input, idempotency_key=tick_key(schedule.name, tick)
        )
        recorded = self.queue.storage.claim_tick(schedule.name, tick, None)
        verdict = TickVerdict.ENQUEUED if recorded.verdict is TickVerdict.SKIPPED else TickVerdict.TAKEN
        log.debug("schedule %s: tick %s run %s %s", schedule.name, tick_text(tick), run_id, verdict.value)
        return Tick(schedule.name, tick, TickResult(verdict, run_id))

    def _job(self, schedule: Schedule, tick: datetime) -> NewJob:
        assert schedule.job is not None
        return self.queue.new_job(
            JobSpec(
                schedule.job,
                schedule.payload,
                priority=schedule.priority,
                tags=schedule.tags,
                idempotency_key=tick_key(schedule.name, tick),
                meta={"schedule": schedule.name, "tick": tick_text(tick)},
            )
        )
