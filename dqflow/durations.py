"""Durations written as ``500ms``, ``30s``, ``5m``, ``2h`` or ``1d`` (or seconds, or a ``timedelta``).

``jobs.yaml`` and the queue API read durations with the same functions, so a
value one of them refuses the other refuses too, with the same message.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta

from dqflow.bounds import MAX_DURATION_SECONDS

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_FORMS = "use a number with a unit like 500ms, 30s, 5m, 2h, 1d"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def parse_duration(value: object, *, maximum: float | None = None) -> float:
    """Return the duration in seconds; a plain number is taken as seconds.

    Refuses (``ValueError``, with the accepted forms) anything else, a negative
    or non-finite value, and more than ``maximum`` seconds when one is given.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}: {_FORMS}")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError(f"invalid duration {_shown(value)}: {_FORMS}")
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(f"invalid duration {_shown(value)}: must not be negative")
    if not math.isfinite(seconds):
        raise ValueError(f"invalid duration {_shown(value)}: must be finite")
    if maximum is not None and seconds > maximum:
        raise ValueError(f"duration {_shown(value)} is too long: at most {maximum / 86400:g} days")
    return seconds


def bounded_duration(value: object) -> float:
    """A duration of at most 365 days (timeouts, retry delays, worker settings)."""
    return parse_duration(value, maximum=MAX_DURATION_SECONDS)


def timeout_seconds(value: object) -> float | None:
    """A job timeout: ``None`` for none, else more than 0 and at most 365 days."""
    if value is None:
        return None
    seconds = bounded_duration(value)
    if seconds <= 0:
        raise ValueError("must be greater than 0 (use null for none)")
    if seconds < 0.001:
        raise ValueError(f"{_shown(value)} is shorter than the smallest timeout, 1ms")
    return seconds


def to_ms(seconds: float | None) -> int | None:
    """Seconds to whole milliseconds (``None`` stays ``None``)."""
    return None if seconds is None else round(seconds * 1000)
