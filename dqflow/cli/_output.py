"""Printing: one JSON document with ``--json``, plain lines otherwise; rich is loaded only to print.

The tables and panels live in ``_tables`` (imported by the commands that draw them).
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from dqflow.record import JobEvent, JobRecord


def console() -> Console:
    """A console on the current stdout (made per call so test runners can capture it).

    Piped output is not cut to 80 columns: tables keep one line per row.
    """
    from rich.console import Console

    return Console(file=sys.stdout, width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200)


def seconds_text(value: float | None) -> str:
    """``300`` → ``5m``, ``0.5`` → ``500ms``, None → ``none``."""
    if value is None:
        return "none"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if value >= size and value % size == 0:
            return f"{int(value // size)}{unit}"
    return f"{value:g}s" if value >= 1 else f"{value * 1000:g}ms"


def print_json(document: Any) -> None:
    """Print one JSON document on stdout."""
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")


# Fields holding the user's JSON as it was stored: copied as they are, since pydantic's
# serializer refuses values nested deeper than its own limit, which a payload may be.
_RECORD_JSON_FIELDS = frozenset({"payload", "output", "error_history"})


def record_json(record: JobRecord) -> dict[str, Any]:
    """A record as JSON-ready data (``model_dump(mode="json")``, in field order)."""
    dumped = record.model_dump(mode="json", exclude=set(_RECORD_JSON_FIELDS))
    return {
        name: getattr(record, name) if name in _RECORD_JSON_FIELDS else dumped[name]
        for name in type(record).model_fields
    }


def event_json(event: JobEvent) -> dict[str, Any]:
    """An event as JSON-ready data (its ``data`` as stored, however deep)."""
    return {**event.model_dump(mode="json", exclude={"data"}), "data": event.data}


def when(value: datetime | None) -> str:
    """A timestamp, local time, to the second; '' for none."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
