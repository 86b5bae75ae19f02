"""``create_app``: the dqflow HTTP API (and dashboard) as one ASGI app over a ``Queue``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from dqflow.http.auth import Authorize, TokenAuth, require_read
from dqflow.http.errors import install_error_handlers
from dqflow.http.limits import BodySizeLimit
from dqflow.http.live import ChangeHub
from dqflow.queue import Queue

BODY_OVERHEAD_BYTES = 64 * 1024
"""Room for the rest of a request around the largest payload the declaration allows."""


@dataclass
class ApiSettings:
    """What the routes need, kept on ``app.state.dqflow``."""

    queue: Queue
    tokens: TokenAuth
    authorize: Authorize | None
    max_body_bytes: int
    hub: ChangeHub | None = None


def create_app(
    queue: Queue,
    *,
    write_token: str | None = None,
    read_token: str | None = None,
    authorize: Authorize | None = None,
    tokens_from_env: bool = True,
    cors_origins: Sequence[str] = (),
    max_body_bytes: int | None = None,
    dashboard: bool = True,
    title: str = "dqflow",
) -> FastAPI:
    """The HTTP API (``/api/...``) and dashboard (``/``) over ``queue``.

    Mount it anywhere in your own app: ``main.mount("/jobs", create_app(queue))``.

    * ``write_token`` / ``read_token``: bearer tokens; unset ones come from
      ``$DQFLOW_API_TOKEN`` / ``$DQFLOW_API_READ_TOKEN`` unless ``tokens_from_env=False``.
      Writes always need the write token (none configured: writes are refused);
      reads need a token only when a read token is configured.
    * ``authorize(request, access)``: your own check instead of tokens
      (``access`` is ``"read"`` or ``"write"``; may be async).
    * ``cors_origins``: origins allowed to call the API from a browser (none by default).
    * ``max_body_bytes``: largest request body (default: the declaration's payload
      limit plus 64 KiB).
    * ``dashboard``: serve the dashboard at ``/`` (and its assets at ``/static``).
    """
    env = TokenAuth.from_env() if tokens_from_env else TokenAuth()
    tokens = TokenAuth(write_token or env.write_token, read_token or env.read_token)
    limit = max_body_bytes or queue.declaration.limits.max_payload_bytes + BODY_OVERHEAD_BYTES

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        hub = app.state.dqflow.hub
        if hub is not None:
            await asyncio.to_thread(hub.close)

    app = FastAPI(
        lifespan=lifespan,
        title=title,
        summary="Jobs declared in jobs.yaml: add, read, cancel and retry them; watch them live.",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.dqflow = ApiSettings(queue=queue, tokens=tokens, authorize=authorize, max_body_bytes=limit)
    install_error_handlers(app)

    from dqflow.http import events, jobs, metrics, workflows

    app.include_router(jobs.router)
    app.include_router(workflows.router)
    app.include_router(events.router)
    app.include_router(metrics.router)

    @app.get("/api/health", dependencies=[Depends(require_read)], tags=["server"])
    def health() -> dict[str, Any]:
        """The server answers."""
        return {"ok": True}

    if dashboard:
        from fastapi.staticfiles import StaticFiles

        from dqflow.http import dashboard as pages
        from dqflow.http import workflow_pages

        app.include_router(pages.router)
        app.include_router(workflow_pages.router)
        app.mount("/static", StaticFiles(directory=pages.STATIC_DIR), name="static")

    app.add_middleware(BodySizeLimit, max_bytes=limit)
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
            max_age=600,
        )
    return app
