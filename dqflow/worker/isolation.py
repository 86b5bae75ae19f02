"""``isolation: process``: run a handler in a child process that can be killed.

A handler stuck in C code or in an endless loop cannot be stopped inside a
thread. For job types declared with ``isolation: process`` the worker starts a
fresh Python process per attempt (``python -m dqflow.worker.child``: no
inherited threads, locks or connections, and no re-import of the caller's main
module), and kills it when the job times out, is cancelled or the worker shuts
down. One child is kept started and waiting (its imports done), so the
interpreter's start-up never counts against a job's timeout.

The child talks to the parent over a pipe: ``set_progress`` and
``set_output`` are forwarded to the parent's real ``JobContext`` (so the
same validation, fencing and events apply) and answered, so an invalid
``set_output`` still raises inside the handler. Durable calls work the same way:
the child gets the job's stored steps with the job, and each new step or token
is written by the parent, fenced by its lease, before the child goes on; a wait
comes back as ``("wait", (until, token_id))``.
"""

from __future__ import annotations

import atexit
import multiprocessing.connection
import socket
import subprocess
import sys
import threading
from typing import Any

from dqflow.durable.context import WaitRequested
from dqflow.errors import DqflowError, ValidationFailed
from dqflow.record import JobRecord
from dqflow.worker.context import JobContext

_POLL_SECONDS = 0.05

_Child = tuple[subprocess.Popen[bytes], multiprocessing.connection.Connection]
_warm: list[_Child] = []
_warm_lock = threading.Lock()


def _spawn() -> _Child:
    parent_sock, child_sock = socket.socketpair()
    process = subprocess.Popen(
        [sys.executable, "-m", "dqflow.worker.child", str(child_sock.fileno())],
        pass_fds=[child_sock.fileno()],
        stdin=subprocess.DEVNULL,
    )
    child_sock.close()
    return process, multiprocessing.connection.Connection(parent_sock.detach())


def prewarm() -> None:
    """Start a waiting child now (a worker calls this when it has isolated job types)."""
    with _warm_lock:
        if not _warm:
            _warm.append(_spawn())


def _take() -> _Child:
    """A started child (a warm one when there is one), leaving a fresh one warming."""
    with _warm_lock:
        child = None
        while _warm:
            candidate = _warm.pop()
            if candidate[0].poll() is None:
                child = candidate
                break
            candidate[1].close()
        if child is None:
            child = _spawn()
        _warm.append(_spawn())
    return child


@atexit.register
def _stop_warm() -> None:
    with _warm_lock:
        for process, conn in _warm:
            process.kill()
            process.wait()
            conn.close()
        _warm.clear()


class HandlerFailed(Exception):
    """The isolated handler raised; the message is its exception, formatted; ``traceback`` is the child's."""

    def __init__(self, message: str, traceback: str) -> None:
        super().__init__(message)
        self.traceback = traceback


class ProcessKilled(Exception):
    """The child process was killed (timeout, cancellation) or died on its own."""


def run_in_process(handler_ref: str, job: JobRecord, ctx: JobContext) -> Any:
    """Run the handler for ``job`` in a child process; block until it ends.

    Returns the handler's return value. Raises ``HandlerFailed`` when it
    raised, ``ProcessKilled`` when the child was killed because ``ctx`` was
    cancelled (timeout, cancel, shutdown) or died without answering.
    """
    process, parent_conn = _take()
    try:
        parent_conn.send((handler_ref, list(sys.path), job))
        while True:
            if ctx.cancelled:
                raise ProcessKilled(f"killed: {ctx.cancel_reason}")
            if not parent_conn.poll(_POLL_SECONDS):
                if process.poll() is not None and not parent_conn.poll(0):
                    raise ProcessKilled(f"handler process exited with code {process.returncode} without a result")
                continue
            try:
                kind, value = parent_conn.recv()
            except (EOFError, OSError):
                process.wait(timeout=5)
                raise ProcessKilled(f"handler process exited with code {process.returncode} without a result") from None
            if kind == "result":
                return value
            if kind == "raised":
                message, traceback = value
                raise HandlerFailed(message, traceback)
            if kind == "wait":
                raise WaitRequested(*value)
            parent_conn.send(_forward(ctx, kind, value))
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=5)
        parent_conn.close()


_DURABLE_CALLS = frozenset({"save_step", "create_token", "get_token", "token_schema", "step_limit"})


def _forward(ctx: JobContext, kind: str, value: Any) -> tuple[str, Any]:
    try:
        if kind == "durable":
            method, args = value
            if method not in _DURABLE_CALLS:
                return ("error", f"unknown durable call {method!r}")
            return ("ok", getattr(ctx.durable_store, method)(*args))
        if kind == "progress":
            ctx.set_progress(value)
        else:
            ctx.set_output(value)
    except ValidationFailed as exc:
        return ("invalid", (exc.what, exc.errors))
    except (ValueError, TypeError, DqflowError) as exc:
        return ("error", str(exc))
    return ("ok", None)
