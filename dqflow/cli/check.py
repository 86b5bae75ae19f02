"""``dqflow check``: load and validate the whole declaration without touching the backend."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich import box
from rich.table import Table

from dqflow.cli._app import backend_url, command, declaration_path, options
from dqflow.cli._output import console, print_json, seconds_text
from dqflow.declaration import DeclarationError, JobTypeSpec, SchemaValidator, load_declaration
from dqflow.errors import ConfigError
from dqflow.urls import redact_url


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


def _row(spec: JobTypeSpec, base: Path | None) -> dict[str, Any]:
    return {
        "name": spec.name,
        "handler": spec.handler_ref,
        "payload_schema": _schema_name(spec.payload_schema, base),
        "output_schema": _schema_name(spec.output_schema, base),
        "max_attempts": spec.max_attempts,
        "timeout_s": spec.timeout,
        "retry": {
            "delay_s": spec.retry.delay,
            "backoff": spec.retry.backoff,
            "max_delay_s": spec.retry.max_delay,
            "jitter": spec.retry.jitter,
        },
        "priority": spec.priority,
        "tags": list(spec.tags),
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
def check() -> None:
    """Check jobs.yaml: keys, durations, schemas and handler imports. Runs nothing."""
    path = declaration_path()
    try:
        declaration = load_declaration(path, import_handlers=True)
    except DeclarationError as exc:  # several problems: list them all, one per line
        _report(exc.problems)
    except ConfigError as exc:
        _report([exc])
    rows = [_row(spec, declaration.base_dir) for spec in declaration.job_types.values()]
    backend = redact_url(backend_url(declaration))
    if options().json:
        print_json({"ok": True, "config": str(path), "backend": backend, "job_types": rows})
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
    out.print(f"{len(rows)} job type{'s' if len(rows) != 1 else ''}; backend {backend} (not contacted)")
