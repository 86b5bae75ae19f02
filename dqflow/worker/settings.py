"""A worker's settings (given, else the declaration's ``worker`` section) and job types; checked once.

A value that cannot work is refused with a ``WorkerSettingError`` naming it, never
silently replaced: ``concurrency=0``, a lease of 0, or a heartbeat that is not
well under the lease (a job would be reclaimed from a healthy worker and run twice).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from dqflow.declaration import Declaration, WorkerSettings
from dqflow.errors import UnknownJobTypeError

MAX_CONCURRENCY = 1000  # each slot may be a handler thread, started up front
MAX_BATCH_SIZE = 1000  # jobs claimed per round trip at most


class WorkerSettingError(ValueError):
    """A worker setting that cannot work; the message names it and says what is allowed."""


@dataclass(frozen=True, slots=True)
class ResolvedSettings:
    """Every setting of one worker; durations in seconds."""

    concurrency: int
    batch_size: int
    lease: float
    heartbeat: float
    poll_interval: float
    shutdown_grace: float
    reclaim_interval: float
    eager_steps: bool


def resolve_settings(
    declared: WorkerSettings,
    *,
    concurrency: int | None = None,
    batch_size: int | None = None,
    lease: float | None = None,
    heartbeat: float | None = None,
    poll_interval: float | None = None,
    shutdown_grace: float | None = None,
    reclaim_interval: float | None = None,
    eager_steps: bool | None = None,
) -> ResolvedSettings:
    """Merge the given settings (None: left out) over the declared ones and check them."""
    slots = _count("concurrency", declared.concurrency if concurrency is None else concurrency, MAX_CONCURRENCY)
    if batch_size is None:
        # a concurrency given here but no batch size: claim as many as there are slots
        batch_size = declared.batch_size if concurrency is None else slots
    batch = _count("batch_size", batch_size, MAX_BATCH_SIZE)
    lease_s = _seconds("lease", declared.lease if lease is None else lease)
    if heartbeat is None:
        # the declared heartbeat, shortened when a short lease was given here
        heartbeat_s = min(_seconds("heartbeat", declared.heartbeat), lease_s / 3)
    else:
        heartbeat_s = _seconds("heartbeat", heartbeat)
        if heartbeat_s > lease_s / 2:
            raise WorkerSettingError(
                f"heartbeat must be at most half the lease (a renewal may fail once and the job is still held):"
                f" heartbeat {heartbeat_s:g}s, lease {lease_s:g}s"
            )
    if reclaim_interval is None:
        reclaim_s = max(0.5, min(5.0, lease_s / 5))
    else:
        reclaim_s = _seconds("reclaim_interval", reclaim_interval)
    return ResolvedSettings(
        concurrency=slots,
        batch_size=batch,
        lease=lease_s,
        heartbeat=heartbeat_s,
        poll_interval=_seconds("poll_interval", declared.poll_interval if poll_interval is None else poll_interval),
        shutdown_grace=_seconds(
            "shutdown_grace", declared.shutdown_grace if shutdown_grace is None else shutdown_grace, zero_ok=True
        ),
        reclaim_interval=reclaim_s,
        eager_steps=declared.eager_steps if eager_steps is None else bool(eager_steps),
    )


def _count(name: str, value: object, most: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise WorkerSettingError(f"{name} must be a whole number, got {value!r}")
    if not 1 <= value <= most:
        raise WorkerSettingError(f"{name} must be from 1 to {most}, got {value}")
    return value


def _seconds(name: str, value: object, *, zero_ok: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise WorkerSettingError(f"{name} must be a finite number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not zero_ok):
        least = "0 or more" if zero_ok else "more than 0"
        raise WorkerSettingError(f"{name} must be {least} seconds, got {value!r}")
    return float(value)


def runnable_types(declaration: Declaration, job_types: Sequence[str] | None) -> list[str]:
    """The job types this worker claims: those asked for, or every declared type with a handler.

    A worker never claims a type it cannot run: a job of a type only a newer
    declaration knows (a rolling deploy, a queue shared by two services) waits
    for a worker that has its handler instead of failing here.
    """
    declared = declaration.job_types
    if not job_types:
        names = [name for name, spec in declared.items() if spec.handler is not None]
        if not names:
            raise ValueError(
                "no declared job type has an imported handler: nothing to run"
                " (declare job types, and load the declaration with its handlers)"
            )
        return names
    names = list(dict.fromkeys(job_types))
    for name in names:
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise UnknownJobTypeError(f"unknown job type {name!r} (declared: {known})")
        if declared[name].handler is None:
            raise ValueError(f"job type {name!r} has no imported handler: this worker cannot run it")
    return names
