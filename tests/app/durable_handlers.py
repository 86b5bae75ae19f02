"""Durable handlers for tests (tests/conformance/test_durable.py): each step appends a line to the
payload's ``log`` file, so a test can count how often a step's function really ran."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from dqflow import JobContext, TokenTimeout


def count(log: str, job_id: int, name: str) -> int:
    """Append '<job id> <name>' to ``log``; return how many such lines there are now."""
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{job_id} {name}\n".encode())
    finally:
        os.close(fd)
    return runs(log, job_id, name)


def runs(log: str, job_id: int, name: str) -> int:
    """How often step ``name`` of job ``job_id`` really ran."""
    path = Path(log)
    if not path.exists():
        return 0
    return path.read_text().splitlines().count(f"{job_id} {name}")


def step_sleep_step(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """A step, a sleep, a step: each step's function runs once however often the handler runs."""
    log, job = payload["log"], ctx.job.id
    first = ctx.step("call_api", count, log, job, "call_api")
    ctx.sleep(payload.get("sleep", 0.2))
    second = ctx.step("send_mail", count, log, job, "send_mail")
    return {"first": first, "second": second}


async def async_step_sleep_step(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """``step_sleep_step`` as an async handler (one step async, one sync)."""
    log, job = payload["log"], ctx.job.id

    async def call_api() -> int:
        return count(log, job, "call_api")

    first = await ctx.step("call_api", call_api)
    await ctx.sleep(payload.get("sleep", 0.2))
    second = await ctx.step("send_mail", count, log, job, "send_mail")
    return {"first": first, "second": second}


def step_then_fail(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """A step, then a failure on the first ``fail_runs`` runs (counted in the log)."""
    log, job = payload["log"], ctx.job.id
    first = ctx.step("call_api", count, log, job, "call_api")
    if count(log, job, "run") <= payload.get("fail_runs", 1):
        raise RuntimeError("the mail server is down")
    return {"first": first}


def step_then_hang(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """A step, then (first run only) hang until the worker is killed."""
    log, job = payload["log"], ctx.job.id
    first = ctx.step("call_api", count, log, job, "call_api")
    if count(log, job, "run") == 1:
        time.sleep(120)
    return {"first": first}


def sleep_once(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Sleep ``sleep`` seconds (or until ``until``, ISO), then return."""
    if "until" in payload:
        from datetime import datetime

        ctx.sleep_until(datetime.fromisoformat(payload["until"]))
    else:
        ctx.sleep(payload.get("sleep", 1.0))
    return {"woke": True}


def quick(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Return at once."""
    return {"n": payload.get("n", 0)}


def await_token(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Create a token (payload: timeout, schema), optionally wait for a gate file, then wait for the token."""
    token = ctx.create_token(timeout=payload.get("timeout"), schema=payload.get("schema"))
    gate = payload.get("gate")
    while gate is not None and not Path(gate).exists():
        time.sleep(0.01)
    try:
        if "default" in payload:
            data = ctx.wait_for_token(token, default=payload["default"])
        else:
            data = ctx.wait_for_token(token)
    except TokenTimeout as exc:
        if payload.get("catch"):
            return {"timed_out": str(exc)}
        raise
    return {"data": data, "token": token.id}
