"""pgqueuer on dqflow's benchmark workload; prints one JSON line like ``benchmarks/throughput.py``.

Workload (identical for every system): payload ``{"n": i}``, the handler returns
``{"n": i, "ok": true}`` (pgqueuer stores no result: ``stores_output`` is false).
Enqueue N jobs one by one, then N in one bulk call; process N pre-queued jobs
with concurrency C until all are done (checked in the database); latency from
enqueue to handler start over 200 jobs sent 20 ms apart to the idle worker.
The worker is one separate process (concurrency C, uvloop as ``pgq run``);
processing is timed from the bulk insert of N jobs to the moment the queue
table is empty (pgqueuer deletes finished jobs). Runs in a fresh database that
it creates and drops.

    python benchmarks/peers/pgqueuer_bench.py --jobs 10000 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from pgqueuer import PgQueuer, Queries
from pgqueuer.models import Job

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/_common.py
from _common import fresh_pg_database, percentile

ADMIN_URL = os.environ.get("DQFLOW_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
ENTRYPOINT = "bench"


async def connect(url: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(url, autocommit=True)


def payload(n: int) -> bytes:
    return json.dumps({"n": n}).encode()


def handle(job: Job) -> dict[str, Any]:
    data = json.loads(job.payload or b"{}")
    return {"n": data["n"], "ok": True}


async def measure_enqueue(url: str, jobs: int) -> tuple[float, float]:
    conn = await connect(url)
    queries = Queries.from_psycopg_connection(conn)
    started = time.perf_counter()
    for n in range(jobs):
        await queries.enqueue(ENTRYPOINT, payload(n))
    single = jobs / (time.perf_counter() - started)
    started = time.perf_counter()
    await queries.enqueue([ENTRYPOINT] * jobs, [payload(n) for n in range(jobs)], [0] * jobs)
    bulk = jobs / (time.perf_counter() - started)
    await queries.clear_queue()
    await conn.close()
    return single, bulk


def worker_process(url: str, concurrency: int, starts: Any) -> None:
    """Child process: a continuous pgqueuer worker (uvloop, as ``pgq run`` uses), reporting
    the start time of each latency job (``n < 0``)."""

    async def main() -> None:
        pgq = PgQueuer.from_psycopg_connection(await connect(url))

        @pgq.entrypoint(ENTRYPOINT)
        async def bench(job: Job) -> None:
            started = time.time()
            n = handle(job)["n"]
            if n < 0:
                starts.put((n, started))

        # pgqueuer requires max_concurrent_tasks >= 2 * batch_size.
        await pgq.run(batch_size=max(1, concurrency // 2), max_concurrent_tasks=concurrency)

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


async def queued(conn: psycopg.AsyncConnection[Any]) -> int:
    cur = await conn.execute("SELECT count(*) FROM pgqueuer")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def measure_worker(url: str, jobs: int, concurrency: int, count: int, gap: float) -> tuple[float, float, float]:
    """Processing rate of N pre-queued jobs, then enqueue-to-start latency, on one worker process."""
    context = multiprocessing.get_context("spawn")
    starts = context.Queue()
    child = context.Process(target=worker_process, args=(url, concurrency, starts), daemon=True)
    child.start()
    conn = await connect(url)
    queries = Queries.from_psycopg_connection(conn)
    try:
        await queries.enqueue(ENTRYPOINT, payload(-1_000_000))  # warm-up: wait until the worker runs
        starts.get(timeout=60)

        await queries.enqueue([ENTRYPOINT] * jobs, [payload(n) for n in range(jobs)], [0] * jobs)
        started = time.perf_counter()
        while await queued(conn):  # done in storage: pgqueuer deletes finished jobs
            await asyncio.sleep(0.005)
        rate = jobs / (time.perf_counter() - started)

        await asyncio.sleep(0.5)
        sent: dict[int, float] = {}
        for i in range(1, count + 1):
            sent[-i] = time.time()
            await queries.enqueue(ENTRYPOINT, payload(-i))
            await asyncio.sleep(gap)
        latencies = []
        for _ in range(count):
            n, begun = starts.get(timeout=60)
            latencies.append((begun - sent[n]) * 1000)
    finally:
        await conn.close()
        child.terminate()
        child.join(10)
    return rate, statistics.median(latencies), percentile(latencies, 0.99)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with fresh_pg_database(args.admin_url, "bench_pgqueuer") as url:
        conn = await connect(url)
        await Queries.from_psycopg_connection(conn).install()
        await conn.close()
        single, bulk = await measure_enqueue(url, args.jobs)
        rate, p50, p99 = await measure_worker(
            url, args.jobs, args.concurrency, args.latency_jobs, args.latency_gap_ms / 1000
        )
    return {
        "system": "pgqueuer",
        "backend": "postgresql",
        "jobs": args.jobs,
        "concurrency": args.concurrency,
        "enqueue_jobs_per_s": round(single, 1),
        "enqueue_bulk_jobs_per_s": round(bulk, 1),
        "process_jobs_per_s": round(rate, 1),
        "latency_p50_ms": round(p50, 2),
        "latency_p99_ms": round(p99, 2),
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
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    sys.exit(main())
