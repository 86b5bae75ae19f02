"""Rich renderables for jobs: the record panel, the jobs table, the events table.

Every value that comes from a job is a ``Text``, never markup: a tag ``[bold]``
or an error ``cannot open [/data/in.csv]`` prints as written.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.json import JSON
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from dqflow.cli._output import seconds_text, when
from dqflow.enums import JobStatus
from dqflow.record import JobEvent, JobRecord

STATUS_STYLE = {
    JobStatus.PENDING: "yellow",
    JobStatus.PROCESSING: "cyan",
    JobStatus.WAITING: "magenta",
    JobStatus.COMPLETED: "green",
    JobStatus.FAILED: "red",
    JobStatus.CANCELLED: "dim",
}


def status_text(status: JobStatus | str) -> Text:
    """The status, coloured."""
    value = JobStatus(status)
    return Text(value.value, style=STATUS_STYLE[value])


def progress_text(progress: int | None, width: int = 10) -> Text:
    """A small bar with the percentage, or '' when no progress was stored."""
    if progress is None:
        return Text("")
    filled = round(progress / 100 * width)
    return Text.assemble(("█" * filled, "green"), ("░" * (width - filled), "dim"), f" {progress:3d}%")


def _json_block(value: Any) -> RenderableType:
    if value is None:
        return Text("null", style="dim")
    return JSON(json.dumps(value, ensure_ascii=False, default=str))


def _ms(value: int | None) -> str:
    return seconds_text(None if value is None else value / 1000)


def _wait_text(record: JobRecord) -> str | None:
    """A waiting durable job's wait: ``sleep until ...`` or ``token tok_... (times out ...)``."""
    wait = record.wait
    if wait is None or record.status is not JobStatus.WAITING:
        return None
    if wait.kind == "sleep":
        return f"sleep until {when(wait.until)}"
    timeout = f" (times out {when(wait.until)})" if wait.until is not None else " (no timeout)"
    return f"token {wait.token_id}{timeout}"


def _steps_table(record: JobRecord) -> Table:
    """A durable handler's completed steps, in the order they were stored, with their results."""
    steps = Table(box=box.SIMPLE_HEAD, title="steps", title_justify="left", title_style="bold")
    for column in ("step", "completed", "result"):
        steps.add_column(column, overflow="fold")
    for name, step in record.steps.items():
        result = json.dumps(step.result, ensure_ascii=False)
        steps.add_row(
            Text(name), Text(when(step.completed_at)), Text(result if len(result) <= 200 else result[:199] + "…")
        )
    return steps


def job_panel(record: JobRecord) -> RenderableType:
    """The whole record: fields, payload, output and error history.

    Every value from the job is a ``Text``, never markup: a tag ``[bold]`` or an
    error ``cannot open [/data/in.csv]`` prints as written.
    """
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold")
    fields.add_column()
    rows: list[tuple[str, Any]] = [
        ("status", status_text(record.status)),
        ("job type", record.job_type),
        ("priority", str(record.priority)),
        ("attempts", f"{record.attempts} of {record.max_attempts}"),
        ("progress", progress_text(record.progress) if record.progress is not None else Text("none", style="dim")),
        ("tags", ", ".join(record.tags) or "-"),
        ("idempotency key", record.idempotency_key),
        ("timeout", _ms(record.timeout_ms)),
        (
            "retry",
            f"{record.retry_backoff}, delay {_ms(record.retry_delay_ms)}, max {_ms(record.retry_max_delay_ms)}"
            + (", jitter" if record.retry_jitter else ""),
        ),
        ("failure reason", record.failure_reason),
        ("run at", when(record.run_at)),
        ("created", when(record.created_at)),
        ("updated", when(record.updated_at)),
        ("started", when(record.started_at)),
        ("completed", when(record.completed_at)),
        ("last failed", when(record.last_failed_at)),
        ("last retried", when(record.last_retried_at)),
        ("cancelled", when(record.cancelled_at)),
        ("locked by", record.locked_by),
        ("lease expires", when(record.lease_expires_at)),
        ("waits for", _wait_text(record)),
    ]
    for label, value in rows:
        if value is None or value == "":
            continue
        fields.add_row(label, value if isinstance(value, Text) else Text(value))
    parts: list[RenderableType] = [
        fields,
        Text("\npayload", style="bold"),
        _json_block(record.payload),
        Text("\noutput", style="bold"),
        _json_block(record.output),
    ]
    if record.error_history:
        errors = Table(box=box.SIMPLE_HEAD, title="error history", title_justify="left", title_style="bold")
        for column in ("attempt", "at", "reason", "error"):
            errors.add_column(column, overflow="fold")
        for entry in record.error_history:
            at = entry.get("at")
            errors.add_row(
                Text(str(entry.get("attempt", ""))),
                Text(when(datetime.fromisoformat(at)) if isinstance(at, str) else str(at or "")),
                Text(str(entry.get("reason", ""))),
                Text(str(entry.get("error", ""))),
            )
        parts += [Text(""), errors]
    if record.steps:
        parts += [Text(""), _steps_table(record)]
    return Panel(Group(*parts), title=f"job {record.id}", title_align="left", expand=False)


# Below this width the jobs table goes compact: shorter times, the percentage without its bar,
# and no "run at" column unless a listed job waits for a later time.
COMPACT_WIDTH = 120


def jobs_table(records: Sequence[JobRecord], width: int) -> Table:
    """One row per job, fitted to ``width`` columns.

    The job type and the status never wrap or shrink (they are what one scans a
    list for); tags fold, and at narrow widths times drop their year and seconds.
    "run at" is shown for pending jobs due later than now.
    """
    compact = width < COMPACT_WIDTH
    stamp = short_when if compact else when
    now = datetime.now(UTC)
    run_at = [stamp(r.run_at) if r.status is JobStatus.PENDING and r.run_at > now else "" for r in records]
    type_width = min(max((len(r.job_type) for r in records), default=8), 40)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0) if compact else (0, 1))
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("job type", no_wrap=True, min_width=type_width, overflow="ellipsis")
    table.add_column("status", no_wrap=True, min_width=len("processing"))
    table.add_column("prio", justify="right", no_wrap=True)
    table.add_column("tries" if compact else "attempts", justify="right", no_wrap=True)
    table.add_column("done" if compact else "progress", no_wrap=True)
    table.add_column("tags", overflow="fold", min_width=8)
    table.add_column("created", no_wrap=not compact)
    show_run_at = not compact or any(run_at)
    if show_run_at:
        table.add_column("run at", no_wrap=not compact)
    for record, due in zip(records, run_at, strict=True):
        progress = record.progress
        cells: list[RenderableType] = [
            str(record.id),
            Text(record.job_type),
            status_text(record.status),
            str(record.priority),
            f"{record.attempts}/{record.max_attempts}",
            Text("" if progress is None else f"{progress}%") if compact else progress_text(progress),
            Text(", ".join(record.tags)),
            stamp(record.created_at),
        ]
        if show_run_at:
            cells.append(due)
        table.add_row(*cells)
    return table


def short_when(value: datetime | None) -> str:
    """A timestamp, local time, without year and seconds (``01-31 09:00``); '' for none."""
    full = when(value)
    return full[5:16] if full else ""


def events_table(events: Sequence[JobEvent]) -> Table:
    """A job's history, oldest first."""
    table = Table(box=box.SIMPLE_HEAD, title="events", title_justify="left", title_style="bold")
    table.add_column("at")
    table.add_column("event")
    table.add_column("data", overflow="fold")
    for event in events:
        data = "" if not event.data else json.dumps(event.data, ensure_ascii=False, default=str)
        table.add_row(when(event.created_at), event.event_type.value, Text(data))
    return table
