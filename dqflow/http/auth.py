"""Who may read and who may write: bearer tokens compared in constant time, or the app's own check.

Reads are open unless a read token is configured; the write token also reads.
Every write needs the write token: with none configured, writes are refused.
A ``dqflow_token`` cookie (set by the dashboard's sign-in form) grants reads only,
so a page on another site can never make a signed-in browser write.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from fastapi import Request

WRITE_TOKEN_ENV = "DQFLOW_API_TOKEN"
READ_TOKEN_ENV = "DQFLOW_API_READ_TOKEN"
READ_COOKIE = "dqflow_token"


class Access(StrEnum):
    """What a request wants to do."""

    READ = "read"
    WRITE = "write"


Authorize = Callable[[Request, Access], bool | Awaitable[bool]]
"""An embedding app's own check: ``authorize(request, access)`` → allowed (may be async)."""


class Unauthorized(Exception):
    """No usable credentials (401)."""


class Forbidden(Exception):
    """Credentials that do not allow this (403)."""


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header, if any."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


@dataclass(frozen=True, slots=True)
class TokenAuth:
    """Read and write tokens (``None``: not configured)."""

    write_token: str | None = None
    read_token: str | None = None

    @classmethod
    def from_env(cls) -> TokenAuth:
        """``$DQFLOW_API_TOKEN`` (write, also reads) and ``$DQFLOW_API_READ_TOKEN``."""
        return cls(os.environ.get(WRITE_TOKEN_ENV) or None, os.environ.get(READ_TOKEN_ENV) or None)

    @property
    def reads_open(self) -> bool:
        return self.read_token is None

    def check(self, request: Request, access: Access) -> None:
        """Raise ``Unauthorized`` / ``Forbidden`` unless the request may do ``access``."""
        token = bearer_token(request)
        if access is Access.WRITE:
            if self.write_token is None:
                raise Forbidden(f"writes are disabled: start the server with ${WRITE_TOKEN_ENV} set")
            if token is None:
                raise Unauthorized("this needs the write token (Authorization: Bearer <token>)")
            if not _same(token, self.write_token):
                raise Forbidden("this token may not write")
            return
        if self.read_token is None:
            return
        if token is None:
            token = request.cookies.get(READ_COOKIE)
        if token is None:
            raise Unauthorized("this needs the read token (Authorization: Bearer <token>)")
        # Both comparisons always run, so the time taken does not tell which token was close.
        is_read = _same(token, self.read_token)
        is_write = self.write_token is not None and _same(token, self.write_token)
        if not (is_read or is_write):
            raise Unauthorized("unknown token")

    def accepts_for_read(self, token: str) -> bool:
        """True when ``token`` may read (the dashboard's sign-in form)."""
        is_read = self.read_token is None or _same(token, self.read_token)
        is_write = self.write_token is not None and _same(token, self.write_token)
        return is_read or is_write


async def check_access(request: Request, access: Access) -> None:
    """Apply the app's ``authorize`` callable, or its tokens."""
    settings = request.app.state.dqflow
    if settings.authorize is not None:
        allowed = settings.authorize(request, access)
        if not isinstance(allowed, bool):
            allowed = await allowed
        if not allowed:
            raise Forbidden(f"not allowed to {access.value}")
        return
    settings.tokens.check(request, access)


async def require_read(request: Request) -> None:
    """Dependency of every read route."""
    await check_access(request, Access.READ)


async def require_write(request: Request) -> None:
    """Dependency of every write route."""
    await check_access(request, Access.WRITE)
