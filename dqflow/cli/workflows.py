"""``dqflow graph NAME``: a declared workflow as Mermaid (``flowchart TD``), or JSON with ``--json``."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from dqflow.cli._app import command, load, options
from dqflow.cli._output import print_json
from dqflow.errors import ConfigError

if TYPE_CHECKING:  # imported when the command runs: `dqflow --help` stays quick
    from dqflow.declaration import Declaration
    from dqflow.workflows import Workflow


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
