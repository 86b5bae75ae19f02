"""Workflow commands: ``dqflow graph NAME`` and ``dqflow workflow start|show|list|cancel|retry``."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dqflow.cli._app import app, command, load, open_queue, options
from dqflow.cli._output import console, print_json
from dqflow.cli._parse import MAX_ID, WaitOpt, WaitTimeoutOpt, json_value, wait_timeout_seconds
from dqflow.enums import WorkflowStatus
from dqflow.errors import ConfigError

if TYPE_CHECKING:  # imported when the command runs: `dqflow --help` stays quick
    from dqflow.declaration import Declaration
    from dqflow.record import JobRecord
    from dqflow.workflow_record import WorkflowRun
    from dqflow.workflows import Workflow

workflow_app = typer.Typer(
    name="workflow",
    help="Start, show, list, cancel and retry workflow runs.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(workflow_app, name="workflow")

RunId = Annotated[int, typer.Argument(metavar="RUN", min=1, max=MAX_ID, help="The run's id.", show_default=False)]

MAX_JOBS_READ = 200
"""``workflow show`` reads at most this many step jobs (for their progress) per step."""


def find_workflow(declaration: Declaration, name: str) -> Workflow:
    """The workflow ``name``; a ConfigError naming the declared ones otherwise."""
    try:
        return declaration.workflows[name]
    except KeyError:
        known = ", ".join(sorted(declaration.workflows)) or "none"
        raise ConfigError(f"unknown workflow {name!r} (declared: {known})") from None


@command("graph")
def graph(name: Annotated[str, typer.Argument(help="The workflow to draw.", show_default=False)]) -> None:
    """Print a workflow's graph as Mermaid (paste it into a Markdown ```mermaid block)."""
    workflow = find_workflow(load(import_handlers=False), name)
    from dqflow.workflows.graph import graph_json, mermaid  # after the declaration, which loads workflows

    if options().json:
        print_json({**graph_json(workflow), "mermaid": mermaid(workflow)})
        return
    sys.stdout.write(mermaid(workflow))


def run_json(run: WorkflowRun) -> dict[str, Any]:
    """A run as JSON-ready data, its steps included, in field order.

    The user's JSON (input, outputs) is copied as stored: pydantic's serializer
    refuses values nested deeper than its own limit, which a payload may be.
    """
    dumped = run.model_dump(mode="json", exclude={"input", "output", "steps"})
    document: dict[str, Any] = {}
    for name in type(run).model_fields:
        if name == "steps":
            document[name] = [
                {
                    **step.model_dump(mode="json", exclude={"output", "outputs"}),
                    "output": step.output,
                    "outputs": step.outputs,
                }
                for step in run.steps
            ]
        else:
            document[name] = getattr(run, name) if name in ("input", "output") else dumped[name]
    return document


def _print_run(run: WorkflowRun, verb: str) -> None:
    if options().json:
        print_json(run_json(run))
    else:
        from rich.text import Text

        console().print(Text.assemble(f"run {run.id} {verb}: ", (str(run.status), "bold")))


@command("start", group=workflow_app)
def start(
    name: Annotated[str, typer.Argument(help="A workflow declared in jobs.yaml.", show_default=False)],
    input_: Annotated[
        str | None,
        typer.Option(
            "--input",
            "-i",
            metavar="JSON",
            help="The run's input as JSON, @file.json, or - for stdin.",
            show_default=False,
        ),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option("--idempotency-key", metavar="KEY", help="Starting the same key again returns the same run."),
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", "-t", help="A tag (repeat for more).", show_default=False)
    ] = None,
    wait_for_it: WaitOpt = False,
    wait_timeout: WaitTimeoutOpt = None,
) -> int:
    """Start a workflow run (its input is validated first) and print its id; with --wait, its output.

    --wait exits 1 when the run fails or is cancelled, or --wait-timeout passes first.
    """
    value: Any = {} if input_ is None else json_value(input_, "--input")
    give_up = wait_timeout_seconds(wait_timeout, wait_for_it)
    with open_queue() as queue:
        run_id = queue.start_workflow(name, value, idempotency_key=idempotency_key, tags=tag or None)
        if wait_for_it:
            return _print_result(queue.wait_workflow(run_id, timeout=give_up))
    if options().json:
        print_json({"id": run_id, "workflow": name})
    else:
        typer.echo(run_id)
    return 0


def _print_result(run: WorkflowRun) -> int:
    """``workflow start --wait``'s answer: the output (0), or the run's end on stderr (1)."""
    completed = run.status is WorkflowStatus.COMPLETED
    if options().json:
        print_json(run_json(run))
    elif completed:
        print_json(run.output)
    if completed:
        return 0
    why = f": {run.error}" if run.error else ""
    sys.stderr.write(f"error: workflow run {run.id} ({run.name}) {run.status.value}{why}\n")
    return 1


@command("show", group=workflow_app)
def show(run_id: RunId) -> None:
    """Show a run as a tree of steps: status, job ids, progress and output."""
    with open_queue(need_declaration=False) as queue:
        run = queue.require_workflow(run_id)
        jobs = _step_jobs(queue.get_job, run) if not options().json else {}
    if options().json:
        print_json(run_json(run))
        return
    from dqflow.cli._workflow_tree import run_tree

    console().print(run_tree(run, jobs))


def _step_jobs(get_job: Any, run: WorkflowRun) -> dict[int, JobRecord]:
    """The step jobs that exist (for their progress), at most ``MAX_JOBS_READ`` per step."""
    found: dict[int, JobRecord] = {}
    for step in run.steps:
        for job_id in step.job_ids[:MAX_JOBS_READ]:
            record = get_job(job_id)
            if record is not None:
                found[job_id] = record
    return found


@command("list", group=workflow_app)
def list_runs(
    name: Annotated[str | None, typer.Option("--name", help="Only runs of this workflow.")] = None,
    status: Annotated[
        list[WorkflowStatus] | None,
        typer.Option("--status", "-s", help="Only these statuses (repeat for more).", show_default=False),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000, help="At most this many.")] = 50,
    cursor: Annotated[
        int | None,
        typer.Option("--cursor", min=1, max=MAX_ID, help="Continue after this run (printed under the table)."),
    ] = None,
) -> None:
    """List workflow runs, newest first."""
    with open_queue(need_declaration=False) as queue:
        page = queue.list_workflows(name=name, statuses=tuple(status or ()), limit=limit, cursor=cursor)
    if options().json:
        print_json({"runs": [run_json(run) for run in page.runs], "next_cursor": page.next_cursor})
        return
    from dqflow.cli._workflow_tree import runs_table

    out = console()
    if not page.runs:
        out.print("no workflow runs match")
        return
    out.print(runs_table(page.runs))
    if page.next_cursor is not None:
        out.print(f"[dim]more: dqflow workflow list --cursor {page.next_cursor} (with the same filters)[/]")


@command("cancel", group=workflow_app)
def cancel(run_id: RunId) -> None:
    """Cancel a running workflow: steps not started are cancelled, running ones are asked to stop."""
    with open_queue(need_declaration=False) as queue:
        queue.require_workflow(run_id)
        run = queue.cancel_workflow(run_id)
    _print_run(run, "cancelled")


@command("retry", group=workflow_app)
def retry(run_id: RunId) -> None:
    """Run a failed or cancelled run on: its failed and cancelled steps run again, then the rest."""
    with open_queue() as queue:
        queue.require_workflow(run_id)
        run = queue.retry_workflow(run_id)
    _print_run(run, "running again")
