"""``POST /api/tokens/{id}/complete`` and ``GET /api/tokens/{id}``: wait tokens of durable handlers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse
from pydantic import ConfigDict

from dqflow.durable.model import TokenRecord
from dqflow.errors import TokenError, TokenNotFoundError
from dqflow.http.auth import require_read, require_write
from dqflow.http.errors import error_response
from dqflow.http.models import ApiModel, ErrorResponse
from dqflow.queue import Queue

TokenId = Annotated[str, Path(min_length=1, max_length=200, description="The token's id (tok_...).")]

router = APIRouter(
    prefix="/api/tokens",
    tags=["tokens"],
    responses={code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 413, 422)},
)


class CompleteTokenRequest(ApiModel):
    """The data that completes the token (checked against its schema)."""

    model_config = ConfigDict(extra="forbid")

    data: Any = None


class Token(ApiModel):
    """A wait token: its job, status, schema and data."""

    id: str
    job_id: int
    status: str
    signal: str | None
    data_schema: dict[str, Any] | None
    data: Any
    timeout_at: datetime | None
    created_at: datetime
    completed_at: datetime | None

    @classmethod
    def of(cls, token: TokenRecord) -> Token:
        return cls.model_construct(**{name: getattr(token, name) for name in cls.model_fields})


class TokenResponse(ApiModel):
    """A token, as it is now."""

    token: Token


def _queue(request: Request) -> Queue:
    queue: Queue = request.app.state.dqflow.queue
    return queue


@router.get("/{token_id}", response_model=TokenResponse, dependencies=[Depends(require_read)])
def get_token(request: Request, token_id: TokenId) -> TokenResponse | JSONResponse:
    """The token (404 when there is none)."""
    token = _queue(request).get_token(token_id)
    if token is None:
        return error_response(404, str(TokenNotFoundError(token_id)))
    return TokenResponse(token=Token.of(token))


@router.post("/{token_id}/complete", response_model=TokenResponse, dependencies=[Depends(require_write)])
def complete_token(request: Request, token_id: TokenId, body: CompleteTokenRequest) -> TokenResponse | JSONResponse:
    """Complete the token with ``data``: its waiting job resumes. 404 unknown token; 409 already
    completed, expired or its job finished; 422 data refused by the token's schema (nothing changes)."""
    try:
        token = _queue(request).complete_token(token_id, body.data)
    except TokenNotFoundError as exc:
        return error_response(404, str(exc))
    except TokenError as exc:
        return error_response(409, str(exc))
    return TokenResponse(token=Token.of(token))
