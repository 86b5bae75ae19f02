"""``dqflow cleanup --older-than 7d``: delete old finished jobs (with their events), or count them."""

from __future__ import annotations

from typing import Annotated

import typer

from dqflow.cli._app import command, open_queue, options
from dqflow.cli._output import console, print_json
from dqflow.cli._parse import duration


@command("cleanup")
def cleanup_command(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Finished longer ago than this (e.g. 7d, 12h).", show_default=False)
    ],
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status", "-s", help="completed, failed or cancelled (repeat; default all three).", show_default=False
        ),
    ] = None,
    job_type: Annotated[str | None, typer.Option("--type", help="Only jobs of this type.", show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")] = False,
) -> None:
    """Delete finished jobs older than --older-than, with their history, and unused flow-control
    entries; print how many per status."""
    from dqflow.queue.cleanup import cleanup, prune_flow_control

    seconds = duration(older_than, "--older-than")
    assert seconds is not None
    try:
        with open_queue(need_declaration=False) as queue:
            counts = cleanup(queue, seconds, statuses=status or (), job_type=job_type, dry_run=dry_run)
            flow_rows = None if dry_run else prune_flow_control(queue)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--status") from None
    if options().json:
        print_json(
            {
                "dry_run": dry_run,
                "older_than_s": seconds,
                "job_type": job_type,
                "counts": counts,
                "flow_control_rows": flow_rows,
            }
        )
        return
    verb = "would delete" if dry_run else "deleted"
    what = ", ".join(f"{count} {name}" for name, count in counts.items())
    console().print(f"{verb} {sum(counts.values())} jobs ({what}) finished more than {older_than} ago", markup=False)
    if flow_rows:
        console().print(
            f"removed {flow_rows} unused flow-control entries (idle concurrency slots, ended rate windows)",
            markup=False,
        )
