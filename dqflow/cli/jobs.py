"""Commands on jobs: add, show, list, events, cancel, retry, edit."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dqflow.cli._app import command, open_queue, options
from dqflow.cli._output import console, event_json, print_json, record_json
from dqflow.cli._parse import (
    INT32_MAX,
    INT32_MIN,
    MAX_ID,
    WaitOpt,
    WaitTimeoutOpt,
    duration,
    json_value,
    timestamp,
    wait_timeout_seconds,
)
from dqflow.enums import JobStatus, TagMode

if TYPE_CHECKING:
    from dqflow.record import JobRecord

JobId = Annotated[int, typer.Argument(metavar="ID", min=1, max=MAX_ID, help="The job's id.", show_default=False)]
PayloadOpt = Annotated[
    str | None,
    typer.Option(
        "--payload", "-p", metavar="JSON", help="The payload as JSON, @file.json, or - for stdin.", show_default=False
    ),
]
PriorityOpt = Annotated[
    int | None,
    typer.Option("--priority", min=INT32_MIN, max=INT32_MAX, help="Higher runs first.", show_default=False),
]
RunAtOpt = Annotated[
    str | None, typer.Option("--run-at", metavar="ISO", help="Not before this time (ISO 8601).", show_default=False)
]
TagOpt = Annotated[list[str] | None, typer.Option("--tag", "-t", help="A tag (repeat for more).", show_default=False)]
MaxAttemptsOpt = Annotated[
    int | None,
    typer.Option("--max-attempts", min=1, max=INT32_MAX, help="Attempts before the job fails.", show_default=False),
]
TimeoutOpt = Annotated[
    str | None,
    typer.Option("--timeout", metavar="DURATION", help="Per attempt, e.g. 30s or 5m.", show_default=False),
]


def _done(record: JobRecord, verb: str) -> None:
    if options().json:
        print_json(record_json(record))
    else:
        console().print(f"job {record.id} {verb}: [bold]{record.status.value}[/]")


@command("add")
def add(
    job_type: Annotated[str, typer.Argument(metavar="JOB_TYPE", help="A job type declared in jobs.yaml.")],
    payload: PayloadOpt = None,
    priority: PriorityOpt = None,
    run_at: RunAtOpt = None,
    delay: Annotated[
        str | None,
        typer.Option("--delay", metavar="DURATION", help="Run after this long, e.g. 5m.", show_default=False),
    ] = None,
    tag: TagOpt = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option("--idempotency-key", metavar="KEY", help="Adding the same key again returns the same job."),
    ] = None,
    max_attempts: MaxAttemptsOpt = None,
    timeout: TimeoutOpt = None,
    depends_on: Annotated[
        list[int] | None,
        typer.Option(
            "--depends-on",
            metavar="ID",
            min=1,
            max=MAX_ID,
            help="Wait until this job completes (repeat for more); cancelled if it fails for good.",
            show_default=False,
        ),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(
            "--group",
            metavar="GROUP",
            help="A concurrency group: jobs of one group share its limit.",
            show_default=False,
        ),
    ] = None,
    wait_for_it: WaitOpt = False,
    wait_timeout: WaitTimeoutOpt = None,
) -> int:
    """Add a job (its payload is validated first) and print its id; with --wait, its output.

    --wait exits 1 when the job fails or is cancelled, or --wait-timeout passes first.
    """
    value: Any = {} if payload is None else json_value(payload)
    kwargs: dict[str, Any] = {}
    if timeout is not None:
        kwargs["timeout"] = duration(timeout, "--timeout")
    when = timestamp(run_at, "--run-at")
    wait = duration(delay, "--delay")
    if when is not None and wait is not None:
        raise typer.BadParameter("give --run-at or --delay, not both", param_hint="--delay")
    give_up = wait_timeout_seconds(wait_timeout, wait_for_it)
    with open_queue() as queue:
        job_id = queue.add(
            job_type,
            value,
            priority=priority,
            run_at=when,
            delay=wait,
            tags=tag or None,
            idempotency_key=idempotency_key,
            max_attempts=max_attempts,
            depends_on=depends_on or None,
            group=group,
            **kwargs,
        )
        if wait_for_it:
            return _print_result(queue.wait(job_id, timeout=give_up))
    if options().json:
        print_json({"id": job_id, "job_type": job_type})
    else:
        typer.echo(job_id)
    return 0


def _print_result(record: JobRecord) -> int:
    """``add --wait``'s answer: the output (0), or the job's end on stderr (1)."""
    completed = record.status is JobStatus.COMPLETED
    if options().json:
        print_json(
            {"id": record.id, "job_type": record.job_type, "status": record.status.value, "output": record.output}
        )
    elif completed:
        print_json(record.output)
    if completed:
        return 0
    last = record.error_history[-1]["error"] if record.error_history else record.failure_reason
    why = f": {last}" if last else ""
    sys.stderr.write(f"error: job {record.id} {record.status.value}{why}\n")
    return 1


@command("show")
def show(
    job_id: JobId,
    events: Annotated[bool, typer.Option("--events", "-e", help="Add the job's event history.")] = False,
) -> None:
    """Show a job: status, progress, payload, output and error history."""
    with open_queue(need_declaration=False) as queue:
        record = queue.require_job(job_id)
        history = queue.get_events(job_id) if events else None
    if options().json:
        document = record_json(record)
        if history is not None:
            document["events"] = [event_json(e) for e in history]
        print_json(document)
        return
    from dqflow.cli._tables import events_table, job_panel

    out = console()
    out.print(job_panel(record))
    if history is not None:
        out.print(events_table(history))


@command("list")
def list_jobs(
    status: Annotated[
        list[JobStatus] | None,
        typer.Option("--status", "-s", help="Only these statuses (repeat for more).", show_default=False),
    ] = None,
    job_type: Annotated[str | None, typer.Option("--job-type", "-j", help="Only this job type.")] = None,
    tag: TagOpt = None,
    tag_mode: Annotated[
        TagMode, typer.Option("--tag-mode", help="How --tag matches: all, any, none or exact.")
    ] = TagMode.ALL,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000, help="At most this many.")] = 50,
    cursor: Annotated[
        int | None,
        typer.Option("--cursor", min=1, max=MAX_ID, help="Continue after this id (printed under the table)."),
    ] = None,
) -> None:
    """List jobs, newest first, with filters and keyset paging."""
    with open_queue(need_declaration=False) as queue:
        page = queue.list_jobs(
            status=status or None, job_type=job_type, tags=tag or None, tag_mode=tag_mode, limit=limit, cursor=cursor
        )
    if options().json:
        print_json({"jobs": [record_json(r) for r in page.jobs], "next_cursor": page.next_cursor})
        return
    from dqflow.cli._tables import jobs_table

    out = console()
    if not page.jobs:
        out.print("no jobs match")
        return
    out.print(jobs_table(page.jobs, out.width))
    if page.next_cursor is not None:
        out.print(f"[dim]more: dqflow list --cursor {page.next_cursor} (with the same filters)[/]")


@command("events")
def events(job_id: JobId) -> None:
    """Show a job's history of events, oldest first."""
    with open_queue(need_declaration=False) as queue:
        queue.require_job(job_id)
        history = queue.get_events(job_id)
    if options().json:
        print_json([event_json(e) for e in history])
    else:
        from dqflow.cli._tables import events_table

        console().print(events_table(history))


@command("cancel")
def cancel(job_id: JobId) -> None:
    """Cancel a pending or waiting job, or ask a running one to stop."""
    with open_queue(need_declaration=False) as queue:
        queue.require_job(job_id)
        record = queue.cancel(job_id)
    _done(record, "cancelled")


@command("retry")
def retry(
    job_id: JobId,
    reset_steps: Annotated[
        bool, typer.Option("--reset-steps", help="Also forget a durable handler's completed steps (run them again).")
    ] = False,
) -> None:
    """Run a failed or cancelled job again (attempts start over; completed durable steps are kept)."""
    with open_queue(need_declaration=False) as queue:
        queue.require_job(job_id)
        record = queue.retry(job_id, reset_steps=reset_steps)
    _done(record, "queued again")


@command("edit")
def edit(
    job_id: JobId,
    payload: PayloadOpt = None,
    priority: PriorityOpt = None,
    run_at: RunAtOpt = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", "-t", help="Replace the tags (repeat for more).", show_default=False)
    ] = None,
    max_attempts: MaxAttemptsOpt = None,
    timeout: TimeoutOpt = None,
) -> None:
    """Change a pending job; only the options given change (the payload is validated)."""
    changes: dict[str, Any] = {}
    if payload is not None:
        changes["payload"] = json_value(payload)
    if priority is not None:
        changes["priority"] = priority
    if run_at is not None:
        changes["run_at"] = timestamp(run_at, "--run-at")
    if tag:
        changes["tags"] = tag
    if max_attempts is not None:
        changes["max_attempts"] = max_attempts
    if timeout is not None:
        changes["timeout"] = duration(timeout, "--timeout")
    if not changes:
        raise typer.BadParameter(
            "nothing to change: give --payload, --priority, --run-at, --tag, --max-attempts or --timeout"
        )
    with open_queue() as queue:
        record = queue.edit(job_id, **changes)
    _done(record, "edited")
