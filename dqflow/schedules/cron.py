"""Cron times in a time zone: when a schedule's ticks fall, DST included.

croniter reads the expression and walks wall-clock (naive) times; this module
turns each wall time into instants of the zone, so daylight saving time behaves
as documented (docs/SCHEDULES.md):

* a wall time that does not exist (the hour skipped in spring) runs once,
  shifted forward by the gap (02:30 becomes 03:30 when clocks jump 02:00 → 03:00);
  if that instant is a tick anyway it runs once;
* a wall time that occurs twice (the hour repeated in autumn) runs once, at its
  first occurrence, unless the hour field is a wildcard (``*``, ``*/2``, ...):
  then, like an interval, it runs at both.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import CroniterBadCronError, CroniterBadDateError, croniter  # type: ignore[import-untyped]

__all__ = ["ALIASES", "CronError", "CronTimes"]

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MARGIN = timedelta(hours=3)  # more than any UTC offset change (DST moves by 1 h, rarely 2)
_TINY = timedelta(microseconds=1)


class CronError(ValueError):
    """A cron expression that cannot work; the message says why."""


class CronTimes:
    """The ticks of one cron expression in one zone, as aware UTC datetimes."""

    __slots__ = ("_hour_repeats", "expression", "fields", "zone")

    def __init__(self, expression: str, zone: ZoneInfo) -> None:
        self.expression = expression
        self.zone = zone
        fields = ALIASES.get(expression.strip().lower(), expression).split()
        if len(fields) != 5:
            aliases = ", ".join(ALIASES)
            raise CronError(
                f"cron {expression!r} must have 5 fields (minute hour day-of-month month day-of-week) "
                f"or be one of {aliases}; it has {len(fields)}"
            )
        self.fields = " ".join(fields)
        try:
            croniter(self.fields, datetime(2000, 1, 1))
        except (CroniterBadCronError, ValueError, KeyError) as exc:
            raise CronError(f"cron {expression!r} is not a valid expression: {exc}") from None
        self._hour_repeats = fields[1].startswith("*")
        try:
            self.next_after(datetime(2000, 1, 1, tzinfo=UTC))
        except CroniterBadDateError:
            raise CronError(f"cron {expression!r} never matches a date") from None

    def _instants(self, wall: datetime) -> list[datetime]:
        """The instants (UTC) at which the wall time ``wall`` is a tick."""
        first = wall.replace(tzinfo=self.zone, fold=0)
        second = wall.replace(tzinfo=self.zone, fold=1)
        early, late = first.astimezone(UTC), second.astimezone(UTC)
        if early == late:
            return [early]
        if first.astimezone(self.zone).replace(tzinfo=None) != wall:
            # In the gap: fold=0 reads it with the offset before the change, i.e. shifted forward.
            return [early]
        return [early, late] if self._hour_repeats else [early]

    def _wall(self, instant: datetime) -> datetime:
        return instant.astimezone(self.zone).replace(tzinfo=None)

    def next_after(self, after: datetime) -> datetime:
        """The first tick strictly after ``after`` (aware)."""
        walk = croniter(self.fields, self._wall(after) - _MARGIN)
        best: datetime | None = None
        while True:
            wall: datetime = walk.get_next(datetime)
            if best is not None and wall - _MARGIN > self._wall(best):
                return best
            for instant in self._instants(wall):
                if instant > after and (best is None or instant < best):
                    best = instant

    def at_or_before(self, at: datetime) -> datetime:
        """The last tick at or before ``at`` (aware)."""
        walk = croniter(self.fields, self._wall(at) + _MARGIN)
        best: datetime | None = None
        while True:
            wall: datetime = walk.get_prev(datetime)
            if best is not None and wall + _MARGIN < self._wall(best):
                return best
            for instant in self._instants(wall):
                if instant <= at and (best is None or instant > best):
                    best = instant

    def between(self, after: datetime, until: datetime, *, newest: int) -> list[datetime]:
        """The ticks in ``(after, until]``, oldest first: at most the ``newest`` latest of them."""
        ticks: list[datetime] = []
        at = until
        while len(ticks) < newest:
            tick = self.at_or_before(at)
            if tick <= after:
                break
            ticks.append(tick)
            at = tick - _TINY
        ticks.reverse()
        return ticks
