"""procrastinate on dqflow's benchmark workload; prints one JSON line like ``benchmarks/throughput.py``.

Workload (identical for every system): payload ``{"n": i}`` (the task's
arguments), the task returns ``{"n": i, "ok": true}`` (procrastinate stores no
result: ``stores_output`` is false). Enqueue N jobs one by one, then N in one
bulk call (``batch_defer``); process N pre-queued jobs on one worker process with
concurrency C, timed from the bulk insert until no job is todo/doing in the
database; then latency from enqueue to task start over 200 jobs sent 20 ms apart
to the idle worker. Runs in a fresh database that it creates and drops.

    python benchmarks/peers/procrastinate_bench.py --jobs 10000 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import procrastinate
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/_common.py
from _common import fresh_pg_database, percentile

ADMIN_URL = os.environ.get("DQFLOW_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
TASK = "bench"


def make_app(url: str, starts: Any = None, **pool: Any) -> tuple[procrastinate.App, Any]:
    """The app with its one task; ``starts`` (a queue) receives (n, start time) of latency jobs."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url, **pool))

    async def bench(n: int) -> dict[str, Any]:
        started = time.time()
        if n < 0 and starts is not None:
            starts.put((n, started))
        return {"n": n, "ok": True}

    task = app.task(name=TASK)(bench)
    return app, task


def worker_process(url: str, concurrency: int, starts: Any) -> None:
    """Child process: one procrastinate worker with ``concurrency`` sub-workers (and a pool
    big enough for all of them)."""
    logging.disable(logging.CRITICAL)
    app, _ = make_app(url, starts, min_size=1, max_size=concurrency + 2)

    async def main() -> None:
        async with app.open_async():
            await app.run_worker_async(concurrency=concurrency, wait=True, delete_jobs="never")

    asyncio.run(main())


async def unfinished(conn: psycopg.AsyncConnection[Any]) -> int:
    cur = await conn.execute("SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def run(args: argparse.Namespace) -> dict[str, Any]:
    jobs, concurrency = args.jobs, args.concurrency
    with fresh_pg_database(args.admin_url, "bench_procrastinate") as url:
        app, task = make_app(url)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()

            started = time.perf_counter()
            for n in range(jobs):
                await task.defer_async(n=n)
            single = jobs / (time.perf_counter() - started)
            started = time.perf_counter()
            await task.batch_defer_async(*[{"n": n} for n in range(jobs)])
            bulk = jobs / (time.perf_counter() - started)
            conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
            await conn.execute("TRUNCATE procrastinate_jobs CASCADE")

            context = multiprocessing.get_context("spawn")
            starts = context.Queue()
            child = context.Process(target=worker_process, args=(url, concurrency, starts), daemon=True)
            child.start()
            try:
                await task.defer_async(n=-1_000_000)  # warm-up: wait until the worker runs
                await asyncio.to_thread(starts.get, True, 60)

                await task.batch_defer_async(*[{"n": n} for n in range(jobs)])
                started = time.perf_counter()
                while await unfinished(conn):
                    await asyncio.sleep(0.005)
                rate = jobs / (time.perf_counter() - started)
                cur = await conn.execute(
                    "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded' AND (args->>'n')::int >= 0"
                )
                row = await cur.fetchone()
                if not row or row[0] != jobs:
                    raise SystemExit(f"procrastinate: {row[0] if row else 0} of {jobs} jobs succeeded")

                await asyncio.sleep(0.5)
                sent: dict[int, float] = {}
                for i in range(1, args.latency_jobs + 1):
                    sent[-i] = time.time()
                    await task.defer_async(n=-i)
                    await asyncio.sleep(args.latency_gap_ms / 1000)
                latencies = []
                for _ in range(args.latency_jobs):
                    n, begun = await asyncio.to_thread(starts.get, True, 60)
                    latencies.append((begun - sent[n]) * 1000)
            finally:
                await conn.close()
                child.terminate()
                child.join(10)
    return {
        "system": "procrastinate",
        "backend": "postgresql",
        "jobs": jobs,
        "concurrency": concurrency,
        "enqueue_jobs_per_s": round(single, 1),
        "enqueue_bulk_jobs_per_s": round(bulk, 1),
        "process_jobs_per_s": round(rate, 1),
        "latency_p50_ms": round(statistics.median(latencies), 2),
        "latency_p99_ms": round(percentile(latencies, 0.99), 2),
        "stores_output": False,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency-jobs", type=int, default=200)
    parser.add_argument("--latency-gap-ms", type=float, default=20.0)
    parser.add_argument("--admin-url", default=ADMIN_URL, help="a database to connect to for CREATE DATABASE")
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    sys.exit(main())
