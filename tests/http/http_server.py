"""``dqflow serve`` and ``dqflow run`` as real processes for the HTTP tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
HTTP_APP = Path(__file__).parent / "app" / "jobs.yaml"
WRITE_TOKEN = "write-token-0123456789"
READ_TOKEN = "read-token-0123456789"
START_TIMEOUT = 90  # seconds: imports and a first connection take long on a loaded CI machine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DQFLOW_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass
class Server:
    """A running ``dqflow serve``: its base URL, backend and log."""

    base_url: str
    backend: str
    log: Path
    proc: subprocess.Popen[bytes]
    headers: dict[str, str] = field(default_factory=dict)

    def client(self, token: str | None = READ_TOKEN, **kwargs: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]

    def writer(self) -> httpx.Client:
        return self.client(WRITE_TOKEN)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def serve(backend: str, log: Path, *args: str, tokens: bool = True, config: Path = HTTP_APP) -> Iterator[Server]:
    """Start ``dqflow serve`` on a free port; yield once it answers; stop it after."""
    port = free_port()
    extra = {"DQFLOW_API_TOKEN": WRITE_TOKEN, "DQFLOW_API_READ_TOKEN": READ_TOKEN} if tokens else {}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dqflow",
                "serve",
                "--config",
                str(config),
                "--backend",
                backend,
                "--port",
                str(port),
                *args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_env(extra),
            cwd=REPO,
        )
    server = Server(f"http://127.0.0.1:{port}", backend, log, proc)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"dqflow serve exited with {proc.returncode}:\n{server.log_text()}")
            try:
                with server.client() as client:
                    if client.get("/api/health").status_code == 200:
                        break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"dqflow serve did not answer within {START_TIMEOUT} s:\n{server.log_text()}")
            time.sleep(0.1)
        yield server
    finally:
        stop(proc)


@contextmanager
def worker(backend: str, log: Path, *args: str, config: Path = HTTP_APP) -> Iterator[subprocess.Popen[bytes]]:
    """A real ``dqflow run`` worker process for the block."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dqflow", "run", "--config", str(config), "--backend", backend, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_env({}),
            cwd=REPO,
        )
    try:
        yield proc
    finally:
        stop(proc)
