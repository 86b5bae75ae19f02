"""Shared pieces of the reliability tests: real worker processes that are always cleaned up."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helpers import APP_CONFIG, executions, start_worker_process

from dqflow import EventType, Queue

TESTS = Path(__file__).resolve().parent.parent


class Workers:
    """Starts real worker processes (tests/worker_process.py); kills whatever is left at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}

    def start(
        self, backend: str, *args: str, config: Path = APP_CONFIG, name: str | None = None
    ) -> subprocess.Popen[bytes]:
        log = self.tmp_path / f"{name or f'worker{len(self.procs)}'}.log"
        proc = start_worker_process(backend, *args, config=config, log=log)
        self.procs.append(proc)
        self.logs[proc.pid] = log
        return proc

    def log_of(self, proc: subprocess.Popen[bytes]) -> str:
        path = self.logs[proc.pid]
        return path.read_text(errors="replace") if path.exists() else ""

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGCONT)
                    proc.kill()
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll ``predicate`` (exceptions count as "not yet": the database may be restarting)."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s" + (f" (last error: {last})" if last else ""))
        time.sleep(interval)


def runs_by_pid(log: Path) -> dict[int, list[int]]:
    """Job ids executed, per worker pid (from the handlers' run log)."""
    out: dict[int, list[int]] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            job_id, pid = line.split()[:2]
            out.setdefault(int(pid), []).append(int(job_id))
    return out


def completed_events(queue: Queue, job_ids: list[int]) -> Counter[int]:
    """How many ``completed`` events each job has in storage."""
    return Counter(
        {job_id: sum(1 for e in queue.get_events(job_id) if e.event_type is EventType.COMPLETED) for job_id in job_ids}
    )


__all__ = ["TESTS", "Workers", "completed_events", "executions", "runs_by_pid", "wait_until"]


class RedisServer:
    """A Redis server of the test's own (own port, own directory, AOF fsync'd on every write)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--logfile",
                str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        try:
            wait_until(lambda: client.ping(), 20, what=f"redis-server on port {self.port} answers")
        finally:
            client.close()

    def client(self) -> Any:
        import redis

        return redis.Redis(port=self.port, socket_connect_timeout=2)

    def shutdown(self) -> None:
        """SHUTDOWN (the AOF is already on disk) and wait for the process to end."""
        import redis

        if self.proc is None or self.proc.poll() is not None:
            return
        client = self.client()
        try:
            client.shutdown(nosave=False)
        except redis.exceptions.ConnectionError:
            pass
        finally:
            client.close()
        self.proc.wait(timeout=20)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
