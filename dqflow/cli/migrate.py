"""``dqflow migrate``: apply, list or print the PostgreSQL migrations."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from dqflow.cli._app import BACKEND_ENV, backend_url, command, load, options
from dqflow.cli._output import console, print_json, when
from dqflow.urls import redact_url


def _url() -> str:
    """The backend URL; the YAML is read (handlers not imported) only when nothing else names one."""
    if options().backend or os.environ.get(BACKEND_ENV, "").strip():
        return backend_url(None)
    return backend_url(load(import_handlers=False))


@command("migrate")
def migrate(
    status: Annotated[bool, typer.Option("--status", help="List the migrations and when each was applied.")] = False,
    sql: Annotated[bool, typer.Option("--sql", help="Print the SQL that would run; apply nothing.")] = False,
) -> None:
    """Bring the PostgreSQL schema up to date (SQLite and Redis need no migrations)."""
    if status and sql:
        raise typer.BadParameter("give --status or --sql, not both", param_hint="--sql")
    from dqflow.queue import backend_migrations

    url = _url()
    shown = redact_url(url)
    migrations = backend_migrations(url)
    if migrations is None:
        scheme = url.split(":", 1)[0].lower()
        kind = "SQLite" if scheme == "sqlite" else "Redis" if scheme.startswith("redis") else scheme
        if options().json:
            print_json({"backend": shown, "needed": False, "applied": []})
        else:
            console().print(f"{kind} needs no migrations: dqflow sets it up on first use ({shown})", markup=False)
        return
    if sql:
        text = migrations.pending_sql()
        if options().json:
            print_json({"backend": shown, "sql": text})
        else:
            typer.echo(text if text else "-- up to date: nothing to apply")
        return
    if status:
        rows = migrations.status()
        if options().json:
            print_json(
                {
                    "backend": shown,
                    "migrations": [
                        {"name": name, "applied_at": None if at is None else at.isoformat()} for name, at in rows
                    ],
                }
            )
            return
        from rich import box
        from rich.table import Table
        from rich.text import Text

        table = Table(box=box.SIMPLE_HEAD)
        table.add_column("migration")
        table.add_column("applied")
        for name, at in rows:
            table.add_row(Text(name), when(at) if at else Text("pending", style="yellow"))
        console().print(table)
        return
    applied = migrations.apply()
    if options().json:
        print_json({"backend": shown, "needed": True, "applied": applied})
    elif applied:
        console().print(f"applied {len(applied)} migration(s): {', '.join(applied)}", markup=False)
    else:
        console().print("up to date: no migration to apply")
