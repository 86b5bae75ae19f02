"""Handlers used by tests that run real worker processes (see tests/app/jobs.yaml)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from dqflow import JobContext


def _record(path: str, line: str) -> None:
    # O_APPEND writes of one short line are atomic across processes.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def echo(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Return the payload's number: the benchmark workload."""
    return {"n": payload["n"], "ok": True}


def record_run(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Append '<job id> <pid>' to the payload's log file, optionally sleep, return the number."""
    _record(payload["log"], f"{ctx.job.id} {os.getpid()}")
    seconds = float(payload.get("sleep", 0))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not ctx.cancelled:
        time.sleep(min(0.02, seconds))
    return {"n": payload["n"], "ok": True}


async def async_record_run(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """The async twin of record_run (cancelled as a task)."""
    _record(payload["log"], f"{ctx.job.id} {os.getpid()}")
    await asyncio.sleep(float(payload.get("sleep", 0)))
    return {"n": payload["n"], "ok": True}


def spin(payload: dict[str, Any], ctx: JobContext) -> None:
    """Never returns and ignores cancellation: only a process kill stops it."""
    _record(payload["log"], f"{ctx.job.id} {os.getpid()}")
    while True:
        pass
