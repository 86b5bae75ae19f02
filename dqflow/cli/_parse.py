"""Turning option text into values; a bad value is a usage error (exit 2) naming the option."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import typer

from dqflow.durations import parse_duration


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
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (json.JSONDecodeError, ValueError) as exc:
        where = f" ({source})" if source else ""
        raise typer.BadParameter(f"not valid JSON{where}: {exc}", param_hint=option) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def duration(text: str | None, option: str) -> float | None:
    """``500ms``, ``30s``, ``5m``, ``2h``, ``1d`` or plain seconds → seconds."""
    if text is None:
        return None
    try:
        return parse_duration(float(text) if _is_number(text) else text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


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
