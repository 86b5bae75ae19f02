"""``dqflow serve``: the HTTP API and dashboard over the same jobs.yaml and backend as the worker."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from dqflow.cli._app import command, open_queue, options, setup_logging
from dqflow.cli._output import console
from dqflow.errors import ConfigError
from dqflow.urls import redact_url

HTTP_MODULES = ("fastapi", "starlette", "uvicorn", "jinja2", "prometheus_client")
"""What the ``http`` extra installs."""


@command("serve")
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="Port to listen on.")] = 8000,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--cors-origin",
            metavar="ORIGIN",
            help="An origin allowed to call the API from a browser (repeat for more).",
            show_default=False,
        ),
    ] = None,
    max_body: Annotated[
        int | None,
        typer.Option(
            "--max-body", metavar="BYTES", min=1, help="Largest request body (default: payload limit + 64 KiB)."
        ),
    ] = None,
) -> None:
    """Serve the HTTP API (/api/...) and the dashboard (/).

    Tokens come from the environment, never the command line: $DQFLOW_API_TOKEN
    allows writes (and reads), $DQFLOW_API_READ_TOKEN (if set) is needed to read.
    """
    setup_logging(options().verbose, default_level=logging.INFO)
    try:
        import uvicorn

        from dqflow.http import create_app
    except ImportError as exc:
        if (exc.name or "").split(".")[0] in HTTP_MODULES:
            raise ConfigError("HTTP support is not installed: pip install 'dqflow[http]'", key="serve") from None
        raise
    with open_queue(import_handlers=False, need_declaration=False) as queue:
        app = create_app(queue, cors_origins=cors_origin or (), max_body_bytes=max_body)
        tokens = app.state.dqflow.tokens
        if not options().json:
            writes = "on (write token set)" if tokens.write_token else "off (set $DQFLOW_API_TOKEN to allow)"
            reads = "token needed" if tokens.read_token else "open"
            where = redact_url(queue.storage.url)
            console().print(f"dqflow serve on http://{host}:{port} over {where}; reads {reads}; writes {writes}")
        # Open event streams never end on their own: give them a few seconds on shutdown, then close them.
        level = "debug" if options().verbose else "info"
        uvicorn.run(app, host=host, port=port, log_level=level, access_log=True, timeout_graceful_shutdown=3)
