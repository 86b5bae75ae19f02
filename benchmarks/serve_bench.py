"""dqflow serve: requests/s of ``GET /api/jobs/{id}`` and SSE delivery delay; prints one JSON line.

1. ``--readers`` concurrent clients read one job for ``--seconds``   → ``get_job_per_s``
2. ``--clients`` SSE clients subscribe to one job (``/api/events?jobId=``); this
   process holds the job's lease and stores ``--outputs`` outputs 20 ms apart, each
   carrying ``time.time()``; every client notes when each ``job:output`` arrives
   → ``sse_p50_ms``, ``sse_p99_ms`` (stored → received, over all clients), ``sse_received``.

The server is a real ``dqflow serve`` process on a fresh backend (a temporary
SQLite file, a temporary PostgreSQL database, or a unique Redis prefix).

    .venv/bin/python benchmarks/serve_bench.py --backend sqlite
    .venv/bin/python benchmarks/serve_bench.py --backend postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python benchmarks/serve_bench.py --backend redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_common.py
from _common import fresh_pg_database, loadavg, percentile

from dqflow import Declaration, Queue

TOKEN = "bench-token"


@contextmanager
def fresh_backend(kind: str, folder: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'queue.db'}"
    elif kind.startswith("postgresql"):
        from dqflow.storage.postgres.migrations import migrate

        with fresh_pg_database(kind, "dqflow_http_bench") as url:
            migrate(url)
            yield url
    elif kind.startswith("redis"):
        import redis

        prefix = f"dqbench:{uuid.uuid4().hex[:8]}"
        yield f"{kind}?prefix={prefix}"
        client = redis.Redis.from_url(kind)
        for key in client.scan_iter(match=f"{{{prefix}}}*"):
            client.delete(key)
    else:
        raise SystemExit(f"unknown backend {kind!r}")


@contextmanager
def server(backend: str, folder: Path) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = folder / "jobs.yaml"
    # The handler is never imported: dqflow serve only reads the declaration.
    config.write_text("jobs:\n  tick:\n    handler: bench:tick\n    output: {type: object, required: [sent]}\n")
    env = {**os.environ, "DQFLOW_API_TOKEN": TOKEN}
    log = open(folder / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "dqflow", "serve", "-c", str(config), "-b", backend, "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/api/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("dqflow serve did not start: " + (folder / "serve.log").read_text())
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()


async def get_job_rate(base: str, job_id: int, readers: int, seconds: float) -> float:
    done = 0
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=readers)
    async with httpx.AsyncClient(base_url=base, limits=limits) as client:

        async def reader() -> None:
            nonlocal done
            while time.monotonic() < stop:
                response = await client.get(f"/api/jobs/{job_id}")
                assert response.status_code == 200
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(reader() for _ in range(readers)))
    return done / (time.monotonic() - started)


async def sse_delays(base: str, queue: Queue, job_id: int, token: int, clients: int, outputs: int) -> list[float]:
    delays: list[float] = []
    connected = 0
    all_connected = asyncio.Event()
    limits = httpx.Limits(max_connections=clients + 10)
    timeout = httpx.Timeout(60, read=60)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout) as client:

        async def listen() -> None:
            nonlocal connected
            async with client.stream("GET", "/api/events", params={"jobId": job_id}) as response:
                received = 0
                event = ""
                async for line in response.aiter_lines():
                    if line == ": connected":
                        connected += 1
                        if connected == clients:
                            all_connected.set()
                    elif line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: ") and event == "job:output":
                        delays.append(time.time() - json.loads(line[6:])["output"]["sent"])
                        received += 1
                        if received == outputs:
                            return

        async def write() -> None:
            await asyncio.wait_for(all_connected.wait(), 60)
            for _ in range(outputs):
                text = json.dumps({"sent": time.time()})
                await asyncio.to_thread(queue.storage.set_output, job_id, token, text)
                await asyncio.sleep(0.02)

        await asyncio.wait_for(asyncio.gather(write(), *(listen() for _ in range(clients))), 120)
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="sqlite")
    parser.add_argument("--readers", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--outputs", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, fresh_backend(args.backend, Path(tmp)) as url:
        folder = Path(tmp)
        tick = {"handler": "bench:tick", "output": {"type": "object", "required": ["sent"]}}
        declaration = Declaration.build({"tick": tick}, import_handlers=False)
        with Queue(declaration, url) as queue, server(url, folder) as base:
            job_id = queue.add("tick", {})
            rate = asyncio.run(get_job_rate(base, job_id, args.readers, args.seconds))
            claimed = queue.storage.claim_jobs("bench", None, 1, 600_000)
            assert claimed and claimed[0].id == job_id
            delays = asyncio.run(sse_delays(base, queue, job_id, claimed[0].lease_token, args.clients, args.outputs))
    result: dict[str, Any] = {
        "backend": args.backend.split("://")[0] if "://" in args.backend else args.backend,
        "get_job_per_s": round(rate),
        "sse_clients": args.clients,
        "sse_received": len(delays),
        "sse_p50_ms": round(percentile(delays, 0.5) * 1000, 1),
        "sse_p99_ms": round(percentile(delays, 0.99) * 1000, 1),
        "load": loadavg(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
