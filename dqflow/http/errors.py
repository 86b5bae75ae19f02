"""Every error as ``{"error": "...", "details": [{"path", "message"}]}`` with a 4xx status.

Nothing here logs a request body, payload or output: messages go to the client
that sent the value, never to the server's log.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from dqflow.errors import (
    InvalidJobStateError,
    InvalidWorkflowStateError,
    JobNotFoundError,
    PayloadTooLargeError,
    StorageError,
    UnknownJobTypeError,
    ValidationFailed,
)
from dqflow.http.auth import Forbidden, Unauthorized

log = logging.getLogger("dqflow.http")

JOB_NOT_FOUND = "Job not found"  # dataqueue's exact message


class InvalidInput(Exception):
    """A query or body value the queue refused (422); the message says which and why."""


class NotFound(Exception):
    """Something the request names does not exist (404); the message says what."""


def error_response(
    status: int, error: str, details: list[dict[str, str]] | None = None, *, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The JSON error body every route answers with."""
    body: dict[str, Any] = {"error": error}
    if details:
        body["details"] = details
    return JSONResponse(body, status_code=status, headers=headers)


def _split(problem: str) -> dict[str, str]:
    """``"$.a[2]: 5 is not of type 'string'"`` → path and message."""
    path, sep, message = problem.partition(": ")
    if sep and path.startswith("$"):
        return {"path": path, "message": message}
    return {"path": "$", "message": problem}


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    return ".".join(parts) if parts else "request"


def install_error_handlers(app: FastAPI) -> None:
    """Map dqflow's typed errors and FastAPI's own to JSON errors."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = list(exc.errors())
        if any(p.get("type") == "json_invalid" for p in problems):
            detail = problems[0].get("ctx", {}).get("error", "")
            return error_response(400, f"malformed JSON in the request body: {detail}".rstrip(": "))
        # The offending input is left out: it may be large, and it is the caller's own anyway.
        details = [{"path": _location(tuple(p.get("loc", ()))), "message": str(p.get("msg", ""))} for p in problems]
        summary = "; ".join(f"{d['path']}: {d['message']}" for d in details)
        return error_response(422, f"invalid request: {summary}", details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        return error_response(exc.status_code, message, headers=exc.headers)

    @app.exception_handler(Unauthorized)
    async def unauthorized(request: Request, exc: Unauthorized) -> JSONResponse:
        return error_response(401, str(exc), headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> JSONResponse:
        return error_response(403, str(exc))

    @app.exception_handler(JobNotFoundError)
    async def not_found(request: Request, exc: JobNotFoundError) -> JSONResponse:
        return error_response(404, JOB_NOT_FOUND)

    @app.exception_handler(InvalidJobStateError)
    async def conflict(request: Request, exc: InvalidJobStateError) -> JSONResponse:
        return error_response(409, str(exc))

    @app.exception_handler(InvalidWorkflowStateError)
    async def run_conflict(request: Request, exc: InvalidWorkflowStateError) -> JSONResponse:
        return error_response(409, str(exc))

    @app.exception_handler(PayloadTooLargeError)
    async def too_large(request: Request, exc: PayloadTooLargeError) -> JSONResponse:
        return error_response(413, str(exc), [_split(p) for p in exc.errors])

    @app.exception_handler(UnknownJobTypeError)
    async def unknown_type(request: Request, exc: UnknownJobTypeError) -> JSONResponse:
        return error_response(422, exc.errors[0], [{"path": "body.jobType", "message": exc.errors[0]}])

    @app.exception_handler(ValidationFailed)
    async def invalid_payload(request: Request, exc: ValidationFailed) -> JSONResponse:
        return error_response(422, str(exc), [_split(p) for p in exc.errors])

    @app.exception_handler(NotFound)
    async def missing(request: Request, exc: NotFound) -> JSONResponse:
        return error_response(404, str(exc))

    @app.exception_handler(InvalidInput)
    async def invalid_input(request: Request, exc: InvalidInput) -> JSONResponse:
        return error_response(422, str(exc))

    @app.exception_handler(StorageError)
    async def storage_down(request: Request, exc: StorageError) -> JSONResponse:
        log.error("storage error on %s %s: %s", request.method, request.url.path, exc)
        return error_response(503, "the queue's storage is not reachable")
