"""The child side of ``isolation: process``: ``python -m dqflow.worker.child FD``.

Receives ``(handler_ref, sys.path, job)`` on the socket ``FD``, runs the handler
and sends back ``("result", value)`` or ``("raised", (message, traceback))``. ``ctx`` calls
are forwarded to the parent and answered (see ``dqflow.worker.isolation``).
"""

from __future__ import annotations

import asyncio
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from typing import Any

# Imported up front, while the child waits for a job, not after it arrives.
from dqflow.declaration.handlers import import_handler
from dqflow.durable.context import Durable, WaitRequested
from dqflow.durable.model import NewToken, TokenRecord
from dqflow.errors import OutputValidationError
from dqflow.record import JobRecord
from dqflow.worker._errors import error_message, traceback_text
from dqflow.worker.handlers import handler_arguments, inspect_handler


class _ChildContext:
    """The ``ctx`` a handler gets in the child process (same methods as ``JobContext``)."""

    def __init__(self, job: JobRecord, conn: multiprocessing.connection.Connection) -> None:
        self.job = job
        self._conn = conn
        self._lock = threading.Lock()  # an async handler's steps may ask at once
        self.cancelled = False  # the parent kills the child instead of signalling it
        self._durable: Durable | None = None

    def _call(self, kind: str, value: Any) -> Any:
        with self._lock:
            self._conn.send((kind, value))
            status, detail = self._conn.recv()
        if status == "invalid":
            what, errors = detail
            raise OutputValidationError(what, errors)
        if status == "error":
            raise ValueError(detail)
        return detail

    @property
    def durable(self) -> Durable:
        if self._durable is None:
            self._durable = Durable(_PipeStore(self))
        return self._durable

    def step(self, name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return self.durable.step(name, fn, *args, **kwargs)

    def sleep(self, duration: Any) -> Any:
        return self.durable.sleep(duration)

    def sleep_until(self, when: Any) -> Any:
        return self.durable.sleep_until(when)

    def create_token(self, timeout: Any = None, schema: Any = None) -> Any:
        return self.durable.create_token(timeout, schema)

    def wait_for_token(self, token: Any, default: Any = ...) -> Any:
        return self.durable.wait_for_token(token, default)

    def set_progress(self, progress: int | float) -> None:
        self._call("progress", progress)

    def set_output(self, output: Any) -> None:
        self._call("output", output)

    def wait_cancelled(self, timeout: float | None = None) -> bool:
        if timeout:
            time.sleep(timeout)
        return False


class _PipeStore:
    """The child's ``DurableStore``: stored steps came with the job; writes are made by the parent."""

    def __init__(self, ctx: _ChildContext) -> None:
        self._ctx = ctx
        self._limit: int | None = None

    def stored_steps(self) -> dict[str, Any]:
        return {name: step.result for name, step in self._ctx.job.steps.items()}

    def save_step(self, name: str, entry_json: str) -> bool:
        return bool(self._ctx._call("durable", ("save_step", (name, entry_json))))

    def create_token(self, name: str, entry_json: str, token: NewToken) -> bool:
        return bool(self._ctx._call("durable", ("create_token", (name, entry_json, token))))

    def get_token(self, token_id: str) -> TokenRecord | None:
        found: TokenRecord | None = self._ctx._call("durable", ("get_token", (token_id,)))
        return found

    def token_schema(self, schema: str | dict[str, Any] | None) -> tuple[str | None, str | None]:
        signal, schema_json = self._ctx._call("durable", ("token_schema", (schema,)))
        return signal, schema_json

    def step_limit(self) -> int:
        if self._limit is None:
            self._limit = int(self._ctx._call("durable", ("step_limit", ())))
        return self._limit


def _child_main(conn: multiprocessing.connection.Connection) -> None:
    try:
        handler_ref, sys_path, job = conn.recv()
    except (EOFError, OSError):  # the worker ended before it had a job for us: nothing to say
        os._exit(0)
    try:
        sys.path[:] = sys_path
        info = inspect_handler(import_handler(handler_ref))
        args = handler_arguments(info, job.payload, _ChildContext(job, conn))
        result = asyncio.run(info.func(*args)) if info.is_async else info.func(*args)
        _send_or_exit(conn, ("result", result))
    except WaitRequested as exc:  # a durable handler waits: the parent settles the wait
        _send_or_exit(conn, ("wait", (exc.until, exc.token_id)))
    except BaseException as exc:  # bounded here: a huge message never crosses the pipe
        _send_or_exit(conn, ("raised", (error_message(exc), traceback_text(exc))))
    finally:
        conn.close()


def _send_or_exit(conn: multiprocessing.connection.Connection, message: Any) -> None:
    try:
        conn.send(message)
    except OSError:  # the worker is gone (killed, or ended by a handler): nobody to answer
        os._exit(1)


def _die_with_parent() -> None:
    """Exit as soon as the worker that started us is gone (even after its SIGKILL)."""
    parent = os.getppid()
    try:  # Linux: the kernel sends SIGKILL when the parent dies
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:  # elsewhere: poll for being re-parented
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="dqflow-parent-watch", daemon=True).start()


if __name__ == "__main__":
    _die_with_parent()
    _child_main(multiprocessing.connection.Connection(int(sys.argv[1])))
