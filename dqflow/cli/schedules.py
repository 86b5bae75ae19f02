"""``dqflow schedules``: the declared schedules with their next runs; ``pause NAME`` / ``resume NAME``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from dqflow.cli._app import command, open_queue, options
from dqflow.cli._output import console, print_json
from dqflow.errors import ConfigError

_ACTIONS = ("pause", "resume")


def _table(rows: list[dict[str, Any]]) -> None:
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD)
    for column in ("schedule", "runs", "cron", "next run (its zone)", "state", "last tick (UTC)", "last job"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row["name"],
            row["target"],
            f"{row['cron']} {row['timezone']}",
            row["next_run_local"],
            "paused" if row["paused"] else "active",
            row["last_tick"] or "-",
            "-" if row["last_job_id"] is None else str(row["last_job_id"]),
            style="dim" if row["paused"] else None,
        )
    console().print(table)


@command("schedules")
def schedules(
    action: Annotated[
        str | None, typer.Argument(help="pause or resume (leave out to list).", show_default=False)
    ] = None,
    name: Annotated[str | None, typer.Argument(help="The schedule to pause or resume.", show_default=False)] = None,
) -> None:
    """List the schedules with their next run times, or pause / resume one (kept in storage)."""
    from dqflow.schedules.control import schedule_rows, set_paused

    if action is not None and action not in _ACTIONS:
        raise ConfigError(
            f"unknown action {action!r}: use `dqflow schedules`, `schedules pause NAME` or `schedules resume NAME`"
        )
    if action is not None and name is None:
        raise ConfigError(f"`dqflow schedules {action}` needs the name of a schedule")
    with open_queue() as queue:
        if action is None:
            rows = schedule_rows(queue)
            if options().json:
                print_json(rows)
            elif not rows:
                console().print("no schedules declared")
            else:
                _table(rows)
            return
        assert name is not None
        row = set_paused(queue, name, action == "pause")
    if options().json:
        print_json(row)
    else:
        console().print(
            f"schedule {row['name']}: {'paused' if row['paused'] else 'resumed'}; next run {row['next_run_local']}",
            markup=False,
        )
