"""The scheduler's clock: the real one, or one set by ``DQFLOW_SCHEDULER_CLOCK`` for tests and demos.

``DQFLOW_SCHEDULER_CLOCK="start=2030-01-01T00:00:00Z,anchor=1767225600.0,speed=60"``
makes the scheduler believe it is ``start`` at real time ``anchor`` (epoch
seconds; default: when the process read it), its time running ``speed`` times as
fast. Processes given the same value share one simulated time; a different
``start`` simulates a skewed clock. Only the scheduler reads it: leases, run
times and timestamps stay on the real clock.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

__all__ = ["CLOCK_ENV", "Clock", "ScaledClock", "clock_from_env"]

CLOCK_ENV = "DQFLOW_SCHEDULER_CLOCK"


class Clock:
    """The real clock."""

    def now(self) -> datetime:
        """The current time (aware, UTC)."""
        return datetime.now(UTC)

    def seconds_until(self, when: datetime) -> float:
        """Real seconds until this clock shows ``when`` (negative when past)."""
        return (when - self.now()).total_seconds()


class ScaledClock(Clock):
    """A clock that showed ``start`` at real time ``anchor`` and runs ``speed`` times as fast."""

    def __init__(self, start: datetime, *, anchor: float | None = None, speed: float = 1.0) -> None:
        if start.tzinfo is None:
            raise ValueError(f"{CLOCK_ENV}: start must have a time zone (e.g. 2030-01-01T00:00:00Z)")
        if not speed > 0:
            raise ValueError(f"{CLOCK_ENV}: speed must be greater than 0, got {speed}")
        self.start = start.astimezone(UTC)
        self.anchor = time.time() if anchor is None else anchor
        self.speed = speed

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.time() - self.anchor) * self.speed)

    def seconds_until(self, when: datetime) -> float:
        return (when - self.now()).total_seconds() / self.speed


def clock_from_env(environ: Mapping[str, str] | None = None) -> Clock:
    """The clock ``DQFLOW_SCHEDULER_CLOCK`` describes, else the real one; ``ValueError`` saying what is wrong."""
    text = (os.environ if environ is None else environ).get(CLOCK_ENV, "").strip()
    if not text:
        return Clock()
    parts: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or key.strip() not in ("start", "anchor", "speed"):
            raise ValueError(f"{CLOCK_ENV}: expected start=ISO-TIME[,anchor=EPOCH-SECONDS][,speed=N], got {text!r}")
        parts[key.strip()] = value.strip()
    if "start" not in parts:
        raise ValueError(f"{CLOCK_ENV}: start=ISO-TIME is required, got {text!r}")
    try:
        start = datetime.fromisoformat(parts["start"])
        anchor = float(parts["anchor"]) if "anchor" in parts else None
        speed = float(parts.get("speed", "1"))
    except ValueError as exc:
        raise ValueError(f"{CLOCK_ENV}: {exc} (in {text!r})") from None
    return ScaledClock(start, anchor=anchor, speed=speed)
