"""Turning option text into values; a bad value is a usage error (exit 2) naming the option."""

from __future__ import annotations

import json
import math
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from dqflow.durations import parse_duration

# What every backend stores: ids are 64-bit, priority and attempts 32-bit integers.
MAX_ID = 2**63 - 1
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
# Longer than any sensible delay or timeout, short enough for every backend's dates.
MAX_DURATION_S = 10 * 365 * 86400


WaitOpt = Annotated[bool, typer.Option("--wait", "-w", help="Wait until it finishes and print its output.")]
WaitTimeoutOpt = Annotated[
    str | None,
    typer.Option(
        "--wait-timeout", metavar="DURATION", help="With --wait: give up after this long.", show_default=False
    ),
]


def wait_timeout_seconds(text: str | None, waiting: bool) -> float | None:
    """``--wait-timeout`` in seconds; a usage error without ``--wait``."""
    seconds = duration(text, "--wait-timeout")
    if seconds is not None and not waiting:
        raise typer.BadParameter("--wait-timeout needs --wait", param_hint="--wait-timeout")
    return seconds


def json_value(text: str, option: str = "--payload") -> Any:
    """Parse JSON given inline, as ``@file.json``, or as ``-`` (stdin)."""
    source = "stdin" if text == "-" else text[1:] if text.startswith("@") else None
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {text[1:]}: {exc.strerror}", param_hint=option) from None
    where = f" ({source})" if source else ""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (json.JSONDecodeError, ValueError) as exc:
        raise typer.BadParameter(f"not valid JSON{where}: {exc}", param_hint=option) from None
    except RecursionError:
        raise typer.BadParameter(f"JSON nested too deeply{where}", param_hint=option) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def duration(text: str | None, option: str) -> float | None:
    """``500ms``, ``30s``, ``5m``, ``2h``, ``1d`` or plain seconds → seconds (at most 10 years)."""
    if text is None:
        return None
    try:
        seconds = parse_duration(float(text) if _is_number(text) else text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None
    if not math.isfinite(seconds) or seconds > MAX_DURATION_S:
        raise typer.BadParameter(
            f"invalid duration {text!r}: must be a finite number of at most {MAX_DURATION_S // 86400}d",
            param_hint=option,
        )
    return seconds


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def timestamp(text: str | None, option: str) -> datetime | None:
    """An ISO 8601 time (``2025-01-31T09:00:00+01:00``; without a zone: UTC)."""
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not an ISO 8601 time (e.g. 2025-01-31T09:00:00Z)", param_hint=option
        ) from None
