"""The handler side of durable handlers: ``ctx.step``, ``ctx.sleep``, tokens.

A run of a durable handler replays its completed steps from the job (stored,
fenced by the lease) and stops at a wait by raising ``WaitRequested``, which the
worker turns into a ``Wait`` outcome. The same ``Durable`` logic serves a handler
on a thread, an ``async def`` handler (every call is then awaited) and a handler
in an isolated child process: only its ``DurableStore`` differs.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from dqflow.durable.model import SLEEP_STEP, TOKEN_STEP, NewToken, TokenRecord, TokenStatus, iso, step_json
from dqflow.durable.model import JobStep as JobStep  # re-exported for handlers' type hints
from dqflow.errors import StepError, TokenNotFoundError, TokenTimeout, ValidationFailed
from dqflow.json_values import dumps

MAX_STEP_NAME = 200
"""Longest step name, in characters."""


class WaitRequested(BaseException):
    """Raised by ``ctx.sleep`` / ``ctx.wait_for_token`` to stop the handler; the worker catches it
    and reports a ``Wait``. A ``BaseException``, so that ``except Exception`` in a handler lets it through."""

    def __init__(self, until: datetime | None, token_id: str | None = None) -> None:
        super().__init__(f"waiting until {until}" if token_id is None else f"waiting for token {token_id}")
        self.until = until
        self.token_id = token_id


class LeaseLost(BaseException):
    """Raised in a handler whose step could not be stored: this worker no longer holds the job."""


@dataclass(frozen=True, slots=True)
class WaitToken:
    """A token made by ``ctx.create_token``: give ``id`` to whoever completes it."""

    id: str
    timeout_at: datetime | None = None

    def __str__(self) -> str:
        return self.id


class DurableStore(Protocol):
    """How a running attempt reads and writes its durable state (fenced by its lease)."""

    def stored_steps(self) -> dict[str, Any]:
        """The results of the steps stored before this run, by name."""
        ...

    def save_step(self, name: str, entry_json: str) -> bool:
        """Store a step; False when the job is no longer held."""
        ...

    def create_token(self, name: str, entry_json: str, token: NewToken) -> bool:
        """Create a token and store its step; False when the job is no longer held."""
        ...

    def get_token(self, token_id: str) -> TokenRecord | None:
        """The token, or None."""
        ...

    def token_schema(self, schema: str | dict[str, Any] | None) -> tuple[str | None, str | None]:
        """``(signal, inline schema JSON)`` for ``create_token(schema=...)``; ``ValueError`` if unusable."""
        ...

    def step_limit(self) -> int:
        """Most bytes of a step's JSON result (the output limit)."""
        ...


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _now() -> datetime:
    return datetime.now(UTC)


class Durable:
    """``step`` / ``sleep`` / ``sleep_until`` / ``create_token`` / ``wait_for_token`` over a ``DurableStore``.

    In an ``async def`` handler (a running event loop) each method returns an awaitable.
    """

    def __init__(self, store: DurableStore) -> None:
        self._store = store
        self._steps: dict[str, Any] | None = None
        self._used: set[str] = set()
        self._counts = {SLEEP_STEP: 0, TOKEN_STEP: 0}
        self._lock = threading.Lock()

    # -- public ----------------------------------------------------------------------

    def step(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` once for this job and store its JSON result as step ``name``;
        when the handler runs again, return the stored result without calling ``fn``.

        ``StepError`` for a name used twice in one run or a result that is not JSON."""
        _check_name(name)
        self._claim(name)
        if _in_event_loop():
            return self._step_async(name, fn, args, kwargs)
        stored = self._stored()
        if name in stored:
            return stored[name]
        return self._save(name, fn(*args, **kwargs))

    def sleep(self, duration: float | timedelta) -> Any:
        """Stop here and run the handler again (from the top, steps replayed) after ``duration``
        (seconds or a ``timedelta``); no worker slot is held meanwhile."""
        seconds = duration.total_seconds() if isinstance(duration, timedelta) else duration
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise ValueError(f"sleep duration must be a number of seconds >= 0, got {duration!r}")
        return self._sleep(lambda: _now() + timedelta(seconds=seconds))

    def sleep_until(self, when: datetime) -> Any:
        """Like ``sleep``, until the aware datetime ``when`` (a time past goes on at once)."""
        if not isinstance(when, datetime) or when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(f"sleep_until needs a timezone-aware datetime, got {when!r}")
        return self._sleep(lambda: when)

    def create_token(self, timeout: float | timedelta | None = None, schema: str | dict[str, Any] | None = None) -> Any:
        """A token that someone outside completes with data (``queue.complete_token``).

        ``timeout``: seconds or a ``timedelta`` after which ``wait_for_token`` gives up;
        ``schema``: the name of a ``signals:`` schema of ``jobs.yaml``, or an inline JSON Schema,
        that the data must match. A re-run gets the same token back."""
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0):
            raise ValueError(f"token timeout must be a number of seconds > 0, got {timeout!r}")
        signal, schema_json = self._store.token_schema(schema)
        name = self._next(TOKEN_STEP)
        if _in_event_loop():
            return asyncio.to_thread(self._create_token, name, seconds, signal, schema_json)
        return self._create_token(name, seconds, signal, schema_json)

    def wait_for_token(self, token: WaitToken | str, default: Any = ...) -> Any:
        """The token's data once completed: returns it if it already is; else the handler stops
        here and runs again when it is (or times out). A timed-out token raises ``TokenTimeout``,
        or returns ``default`` when one is given."""
        token_id = token.id if isinstance(token, WaitToken) else token
        if not isinstance(token_id, str):
            raise TypeError(f"wait_for_token takes a token from ctx.create_token or its id, not {token!r}")
        if _in_event_loop():
            return asyncio.to_thread(self._wait_for_token, token_id, default)
        return self._wait_for_token(token_id, default)

    # -- the work --------------------------------------------------------------------

    def _stored(self) -> dict[str, Any]:
        with self._lock:
            if self._steps is None:
                self._steps = dict(self._store.stored_steps())
            return self._steps

    def _claim(self, name: str) -> None:
        with self._lock:
            if name in self._used:
                raise StepError(f"step name {name!r} is used twice in one run of the handler: give each step its own")
            self._used.add(name)

    def _next(self, prefix: str) -> str:
        with self._lock:
            self._counts[prefix] += 1
            name = f"{prefix}{self._counts[prefix]}"
            self._used.add(name)
            return name

    def _encode(self, name: str, result: Any) -> str:
        try:
            text = dumps(result, ValidationFailed, f"result of step {name!r}")
        except ValidationFailed as exc:
            raise StepError(str(exc)) from exc
        limit = self._store.step_limit()
        if len(text) * 4 > limit and len(text.encode()) > limit:
            raise StepError(f"result of step {name!r} is {len(text.encode())} bytes, over the limit of {limit} bytes")
        return text

    def _save(self, name: str, result: Any) -> Any:
        text = self._encode(name, result)
        if not self._store.save_step(name, step_json(text, _now())):
            raise LeaseLost(f"step {name!r} not stored: this worker no longer holds the job")
        value = json.loads(text)
        self._stored()[name] = value
        return value

    async def _step_async(
        self, name: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        stored = await asyncio.to_thread(self._stored)
        if name in stored:
            return stored[name]
        result = fn(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return await asyncio.to_thread(self._save, name, result)

    def _sleep(self, until: Callable[[], datetime]) -> Any:
        name = self._next(SLEEP_STEP)
        if _in_event_loop():
            return asyncio.to_thread(self._sleep_sync, name, until)
        return self._sleep_sync(name, until)

    def _sleep_sync(self, name: str, until: Callable[[], datetime]) -> None:
        stored = self._stored()
        if name in stored:
            wake = datetime.fromisoformat(stored[name]["until"])
        else:
            wake = until()
            if wake <= _now():
                return  # a time already past: go on at once (nothing to remember)
            self._save(name, {"until": iso(wake)})
        if wake > _now():
            raise WaitRequested(wake)

    def _create_token(self, name: str, seconds: float | None, signal: str | None, schema_json: str | None) -> WaitToken:
        stored = self._stored()
        if name in stored:
            entry = stored[name]
            timeout_at = None if entry.get("timeout_at") is None else datetime.fromisoformat(entry["timeout_at"])
            return WaitToken(entry["token_id"], timeout_at)
        token = NewToken(
            id=f"tok_{uuid.uuid4().hex}",
            timeout_at=None if seconds is None else _now() + timedelta(seconds=seconds),
            signal=signal,
            schema_json=schema_json,
        )
        result = {"token_id": token.id, "timeout_at": None if token.timeout_at is None else iso(token.timeout_at)}
        text = self._encode(name, result)
        if not self._store.create_token(name, step_json(text, _now()), token):
            raise LeaseLost("token not created: this worker no longer holds the job")
        stored[name] = result
        return WaitToken(token.id, token.timeout_at)

    def _wait_for_token(self, token_id: str, default: Any) -> Any:
        token = self._store.get_token(token_id)
        if token is None:
            raise TokenNotFoundError(token_id)
        if token.status is TokenStatus.COMPLETED:
            return token.data
        if token.status is TokenStatus.EXPIRED:
            if default is not ...:
                return default
            raise TokenTimeout(token_id)
        raise WaitRequested(token.timeout_at, token_id)


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name or len(name) > MAX_STEP_NAME:
        raise StepError(f"a step name must be a non-empty string of at most {MAX_STEP_NAME} characters, got {name!r}")
    if name.startswith("dqflow:"):
        raise StepError(f"step name {name!r}: names starting with 'dqflow:' are dqflow's own (sleeps, tokens)")
