"""Handlers used by tests that run real worker processes (see tests/app/jobs.yaml)."""

from __future__ import annotations

import asyncio
import contextlib
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


# -- reliability tests (tests/reliability) -------------------------------------------


def _runs_of(path: str, job_id: int) -> int:
    try:
        with open(path) as f:
            return sum(1 for line in f if line.split(maxsplit=1)[:1] == [str(job_id)])
    except FileNotFoundError:
        return 0


def slow_first_run(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Sleep ``sleep`` seconds on the job's first execution only (then ``then``, default 0).

    Cancellation-aware. Records '<job id> <pid>' per execution; returns the pid that finished.
    """
    first = _runs_of(payload["log"], ctx.job.id) == 0
    _record(payload["log"], f"{ctx.job.id} {os.getpid()}")
    seconds = float(payload.get("sleep", 0) if first else payload.get("then", 0))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not ctx.cancelled:
        time.sleep(0.02)
    return {"n": payload["n"], "pid": os.getpid()}


def late_writer(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Sleep (ignoring cancellation), then write what ``writes`` asks for and return the pid.

    ``writes`` lists "progress" and/or "output"; progress written is ``pid % 101``.
    Used to show that a worker that lost its lease cannot write anything late.
    """
    _record(payload["log"], f"{ctx.job.id} {os.getpid()}")
    time.sleep(float(payload.get("sleep", 0)))
    writes = payload.get("writes", [])
    if "progress" in writes:
        ctx.set_progress(os.getpid() % 101)
    if "output" in writes:
        ctx.set_output({"n": payload["n"], "pid": os.getpid(), "via": "set_output"})
    return {"n": payload["n"], "pid": os.getpid(), "via": "return"}


def wait_for_cancel(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Block until ``ctx.cancelled`` (at most ``sleep`` seconds); log 'seen <id> <reason>' to ``seen``."""
    _record(payload["log"], f"{ctx.job.id} {os.getpid()}")
    if ctx.wait_cancelled(float(payload.get("sleep", 30))):
        _record(payload["seen"], f"seen {ctx.job.id} {ctx.cancel_reason}")
    return {"n": payload["n"], "pid": os.getpid()}


async def async_wait_for_cancel(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Sleep ``sleep`` seconds as a task; on task cancellation log 'seen <id> CancelledError' to ``seen``."""
    _record(payload["log"], f"{ctx.job.id} {os.getpid()}")
    try:
        await asyncio.sleep(float(payload.get("sleep", 30)))
    except asyncio.CancelledError:
        _record(payload["seen"], f"seen {ctx.job.id} CancelledError")
        raise
    return {"n": payload["n"], "pid": os.getpid()}


async def async_stubborn(payload: dict[str, Any], ctx: JobContext) -> None:
    """Log '<job id> <pid>', then sleep for ever, swallowing every cancellation of its task."""
    _record(payload["log"], f"{ctx.job.id} {os.getpid()}")
    while True:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)


def exit_process(payload: dict[str, Any], ctx: JobContext) -> None:
    """Log '<job id> <pid>', then end the worker's process at once (no clean-up, like a crash)."""
    _record(payload["log"], f"{ctx.job.id} {os.getpid()}")
    os._exit(3)


def fail_loudly(payload: dict[str, Any], ctx: JobContext) -> None:
    """Raise with a message of ``size`` characters."""
    raise ValueError("x" * int(payload.get("size", 1_000_000)))


def add_up(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """A workflow fan-in: the sum of ``ns``."""
    return {"n": sum(payload["ns"]), "ok": True}
