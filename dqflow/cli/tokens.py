"""``dqflow token complete ID --data JSON`` and ``dqflow token show ID``: wait tokens of durable handlers."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from dqflow.cli._app import app, command, open_queue, options
from dqflow.cli._output import console, print_json, when
from dqflow.cli._parse import json_value

token_app = typer.Typer(
    name="token",
    help="Wait tokens of durable handlers: complete one (its handler resumes with the data), or show it.",
    no_args_is_help=True,
)
app.add_typer(token_app)

TokenId = Annotated[str, typer.Argument(metavar="ID", help="The token id (tok_...), as ctx.create_token made it.")]


def _token_json(token: Any) -> dict[str, Any]:
    document: dict[str, Any] = token.model_dump(mode="json", exclude={"data", "data_schema"})
    return {**document, "schema": token.data_schema, "data": token.data}


@command("complete", group=token_app)
def complete(
    token_id: TokenId,
    data: Annotated[
        str,
        typer.Option("--data", "-d", metavar="JSON", help="The data as JSON, @file.json, or - for stdin."),
    ] = "null",
) -> None:
    """Complete a token with data (checked against its schema); its waiting job resumes."""
    value = json_value(data, "--data")
    with open_queue(need_declaration=False) as queue:
        token = queue.complete_token(token_id, value)
    if options().json:
        print_json(_token_json(token))
    else:
        console().print(f"token {token.id} completed: job {token.job_id} resumes")


@command("show", group=token_app)
def show(token_id: TokenId) -> None:
    """Show a token: its job, status, timeout, schema and data."""
    from dqflow.errors import TokenNotFoundError

    with open_queue(need_declaration=False) as queue:
        token = queue.get_token(token_id)
    if token is None:
        raise TokenNotFoundError(token_id)
    if options().json:
        print_json(_token_json(token))
        return
    out = console()
    out.print(f"token {token.id}: [bold]{token.status.value}[/] (job {token.job_id})")
    for label, value in (
        ("created", when(token.created_at)),
        ("times out", when(token.timeout_at)),
        ("completed", when(token.completed_at)),
        ("signal", token.signal or ""),
    ):
        if value:
            out.print(f"  {label}: {value}", markup=False)
    if token.data is not None:
        print_json(token.data)
