"""The ranges every job value must fall in: one set, the same on every backend.

Each bound is the narrowest of what SQLite, PostgreSQL and Redis can store
exactly (PostgreSQL ``integer`` columns, Redis scores kept exact in Lua
doubles), or a sane ceiling where the storage would allow more than makes
sense. The queue checks every value against them before anything is stored,
and the declaration (``jobs.yaml``, ``dqflow check``) refuses the same values
at load, naming the line.
"""

from __future__ import annotations

import operator
from datetime import UTC, datetime
from typing import Any

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

PRIORITY_MIN = INT32_MIN
"""Lowest priority (a signed 32-bit integer)."""
PRIORITY_MAX = INT32_MAX
"""Highest priority (a signed 32-bit integer)."""

MAX_ATTEMPTS_MAX = INT32_MAX
"""``max_attempts`` is 1 to 2,147,483,647 (a signed 32-bit integer)."""

RUN_AT_MIN = datetime(1970, 1, 1, tzinfo=UTC)
"""Earliest ``run_at``: the Unix epoch."""
RUN_AT_MAX = datetime(2200, 1, 1, tzinfo=UTC)
"""Latest ``run_at``: 2200-01-01T00:00:00Z (Redis keeps times exact up to 2223)."""

MAX_DURATION_SECONDS = 365 * 86_400.0
"""Longest timeout, retry delay or worker duration: 365 days."""

MAX_CONCURRENCY = 1000
"""Most jobs one worker runs at once (each sync handler holds a thread)."""
MAX_BATCH_SIZE = 1000
"""Most jobs one worker claims in one round trip."""

MAX_SIZE_LIMIT_BYTES = 64 * 1024 * 1024
"""Largest ``limits.max_payload_bytes`` / ``max_output_bytes``: 64 MiB."""

MAX_JSON_DEPTH = 100
"""Deepest nesting of arrays and objects in a payload or output (``[[1]]`` is 2 deep).

Every serializer on the way handles it with room to spare: pydantic stops at
about 250 levels (``show --json``, the HTTP API), Lua's cjson at 1,000.
"""


def check_int(value: Any, what: str, low: int, high: int) -> int:
    """``value`` as an int within ``low..high``; ``ValueError``/``TypeError`` saying what is wrong."""
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an integer, not a boolean")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an integer, not {type(value).__name__}") from None
    if not low <= number <= high:
        raise ValueError(f"{what} must be between {low:,} and {high:,}, got {number:,}"[:300])
    return number


def check_priority(value: Any) -> int:
    """A priority: a signed 32-bit integer (higher runs first)."""
    return check_int(value, "priority", PRIORITY_MIN, PRIORITY_MAX)


def check_max_attempts(value: Any) -> int:
    """``max_attempts``: 1 to 2,147,483,647."""
    return check_int(value, "max_attempts", 1, MAX_ATTEMPTS_MAX)


def check_run_at(value: datetime, what: str = "run_at") -> datetime:
    """An aware datetime between :data:`RUN_AT_MIN` and :data:`RUN_AT_MAX`."""
    if not RUN_AT_MIN <= value <= RUN_AT_MAX:
        raise ValueError(
            f"{what} {value.isoformat()} is outside the range every backend stores "
            f"({RUN_AT_MIN.isoformat()} to {RUN_AT_MAX.isoformat()})"
        )
    return value
