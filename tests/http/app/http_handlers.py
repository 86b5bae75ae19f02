"""Handlers for the HTTP API and dashboard tests (tests/http/app/jobs.yaml)."""

from __future__ import annotations

from typing import Any

from dqflow import JobContext


def echo(payload: dict[str, Any]) -> dict[str, Any]:
    """Return the payload's number."""
    return {"n": payload["n"], "ok": True}


def steps(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Count to ``steps``, pausing ``pause`` seconds per step; progress and output on each step."""
    total = payload["steps"]
    for step in range(1, total + 1):
        if ctx.wait_cancelled(float(payload.get("pause", 0))):
            return {"done": step - 1, "cancelled": True}
        ctx.set_progress(round(step / total * 100))
        ctx.set_output({"done": step})
    return {"done": total}


def boom(payload: dict[str, Any]) -> None:
    """Always fails."""
    raise RuntimeError("boom: " + str(payload.get("why", "no reason")))


# -- the workflow tests (tests/http/app/workflows.yaml) ---------------------------------------


def split(payload: dict[str, Any]) -> dict[str, Any]:
    """The words of ``text``."""
    return {"words": payload["text"].split()}


def count(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """One word's length, after ``pause`` seconds (cancellable)."""
    ctx.wait_cancelled(float(payload.get("pause", 0)))
    return {"word": payload["word"], "n": len(payload["word"])}


def total(payload: dict[str, Any]) -> dict[str, Any]:
    """The fan-in: the sum of every word's length."""
    return {"total": sum(payload["ns"])}
