"""Durations written as ``500ms``, ``30s``, ``5m``, ``2h`` or ``1d``."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """Return the duration in seconds; a plain number is taken as seconds.

    Raises ``ValueError`` with the accepted forms for anything else.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}: use a number with a unit like 500ms, 30s, 5m, 2h, 1d")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"invalid duration {value!r}: must not be negative")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise ValueError(f"invalid duration {value!r}: use a number with a unit like 500ms, 30s, 5m, 2h, 1d")


def to_ms(seconds: float | None) -> int | None:
    """Seconds to whole milliseconds (``None`` stays ``None``)."""
    return None if seconds is None else round(seconds * 1000)
