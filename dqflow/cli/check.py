"""``dqflow check``: load and validate the whole declaration without touching the backend."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from dqflow.cli._app import backend_url, command, declaration_path, options
from dqflow.cli._output import console, print_json, seconds_text
from dqflow.errors import ConfigError
from dqflow.urls import redact_url

if TYPE_CHECKING:  # imported when the command runs: `dqflow --help` stays quick
    from dqflow.declaration import Declaration, JobTypeSpec, SchemaValidator


def _schema_name(schema: SchemaValidator | None, base: Path | None) -> str:
    if schema is None:
        return "-"
    name = schema.name or "inline"
    if base is not None and Path(name).is_absolute():
        try:
            return str(Path(name).relative_to(base))
        except ValueError:
            return name
    return name


def _row(job_type: JobTypeSpec, base: Path | None) -> dict[str, Any]:
    return {
        "name": job_type.name,
        "handler": job_type.handler_ref,
        "payload_schema": _schema_name(job_type.payload_schema, base),
        "output_schema": _schema_name(job_type.output_schema, base),
        "max_attempts": job_type.max_attempts,
        "timeout_s": job_type.timeout,
        "retry": {
            "delay_s": job_type.retry.delay,
            "backoff": job_type.retry.backoff,
            "max_delay_s": job_type.retry.max_delay,
            "jitter": job_type.retry.jitter,
        },
        "priority": job_type.priority,
        "tags": list(job_type.tags),
    }


def _report(problems: list[ConfigError]) -> NoReturn:
    if options().json:
        print_json(
            {
                "ok": False,
                "problems": [{"file": p.file, "line": p.line, "key": p.key, "message": p.reason} for p in problems],
            }
        )
    for problem in problems:
        sys.stderr.write(f"error: {problem}\n")
    raise typer.Exit(1)


@command("check")
def check(
    generated: Annotated[
        list[Path] | None,
        typer.Option(
            "--generated",
            "-g",
            metavar="FILE",
            help="A module written by `dqflow codegen`: report it when out of date (repeat for more).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Check jobs.yaml: keys, durations, schemas, handler imports and workflow wiring. Runs nothing."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from dqflow.declaration import DeclarationError, load_declaration
    from dqflow.workflows.graph import graph_json, text_tree

    path = declaration_path()
    try:
        declaration = load_declaration(path, import_handlers=True)
    except DeclarationError as exc:  # several problems: list them all, one per line
        _report(exc.problems)
    except ConfigError as exc:
        _report([exc])
    if generated:
        from dqflow.codegen import staleness

        stale = [(module, staleness(declaration, module)) for module in generated]
        if any(problem for _, problem in stale):
            _report([ConfigError(problem, file=str(module)) for module, problem in stale if problem])
    from dqflow.declaration.handler_models import check_handler_models

    model_problems, model_warnings = check_handler_models(declaration, path)
    if model_problems:
        _report(model_problems)
    rows = [_row(job_type, declaration.base_dir) for job_type in declaration.job_types.values()]
    backend = redact_url(backend_url(declaration))
    if options().json:
        workflows = [graph_json(workflow) for workflow in declaration.workflows.values()]
        warnings = [{"file": w.file, "line": w.line, "key": w.key, "message": w.message} for w in model_warnings]
        print_json(
            {
                "ok": True,
                "config": str(path),
                "backend": backend,
                "job_types": rows,
                "workflows": workflows,
                "warnings": warnings,
                "schedules": _schedule_rows(declaration),
            }
        )
        return
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("job type", "handler", "payload schema", "output schema", "attempts", "timeout", "retry", "tags"):
        table.add_column(column, overflow="fold")
    for row in rows:
        retry = row["retry"]
        table.add_row(
            row["name"],
            row["handler"],
            row["payload_schema"],
            row["output_schema"],
            str(row["max_attempts"]),
            seconds_text(row["timeout_s"]),
            f"{retry['backoff']} {seconds_text(retry['delay_s'])}",
            ", ".join(row["tags"]),
        )
    out = console()
    out.print(f"[bold green]{path}: OK[/]")
    out.print(table)
    for warning in model_warnings:
        out.print(f"[yellow]warning:[/] {escape(str(warning))}", soft_wrap=True)
    for workflow in declaration.workflows.values():
        out.print(text_tree(workflow), markup=False, highlight=False)
        for warning in workflow.warnings:
            out.print(f"[yellow]warning:[/] {escape(str(warning))}", soft_wrap=True)  # one line each, for grep
        out.print()
    if declaration.schedules:
        _print_schedules(declaration)
    flows = len(declaration.workflows)
    flows_text = f"{flows} workflow{'s' if flows != 1 else ''}; " if flows else ""
    count = len(declaration.schedules)
    schedules_text = f"{count} schedule{'s' if count != 1 else ''}; " if count else ""
    types_text = f"{len(rows)} job type{'s' if len(rows) != 1 else ''}; "
    out.print(f"{types_text}{flows_text}{schedules_text}backend {backend} (not contacted)")


def _schedule_rows(declaration: Declaration) -> list[dict[str, Any]]:
    """The declared schedules with their next run (nothing read from storage)."""
    from datetime import UTC, datetime

    from dqflow.schedules.control import describe_schedule

    now = datetime.now(UTC)
    rows = []
    for schedule in declaration.schedules.values():
        row = describe_schedule(schedule, None, now)
        for stored in ("paused", "last_tick", "last_job_id"):
            del row[stored]
        rows.append(row)
    return rows


def _print_schedules(declaration: Declaration) -> None:
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD)
    for column in ("schedule", "runs", "cron", "overlap", "catch up", "next run (its zone)"):
        table.add_column(column, overflow="fold")
    for row in _schedule_rows(declaration):
        table.add_row(
            row["name"],
            row["target"],
            f"{row['cron']} {row['timezone']}",
            row["overlap"],
            row["catch_up"],
            row["next_run_local"],
        )
    console().print(table)
