"""arq on the workload of ``benchmarks/throughput.py``; prints one JSON line.

Workload: payload ``{"n": i}``, the handler returns ``{"n": i, "ok": true}`` (arq
keeps it as the job result). Enqueue N one by one; arq has no bulk API, so the
"bulk" figure enqueues N with ``asyncio.gather`` in chunks of 500 (its fastest
way); process those N with one worker, ``max_jobs=C``, until a result is stored
for every job; then latency: 200 jobs 20 ms apart on the idle worker, enqueue call
to handler start. arq polls its queue every ``poll_delay`` (default 0.5 s): pass
``--poll-delay`` to change it. Uses its own Redis db (flushed before and after).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker, func

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/_common.py
from _common import percentile

STARTS: dict[int, float] = {}


async def handler(ctx: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    return {"n": payload["n"], "ok": True}


async def latency_handler(ctx: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    STARTS[payload["n"]] = time.time()
    return {"n": payload["n"], "ok": True}


async def run(
    url: str, jobs: int, concurrency: int, latency_jobs: int, gap: float, poll_delay: float | None
) -> dict[str, Any]:
    settings = RedisSettings.from_dsn(url)
    pool = await create_pool(settings)
    await pool.flushdb()

    start = time.perf_counter()
    for i in range(jobs):
        await pool.enqueue_job("handler", {"n": i})
    enqueue_s = time.perf_counter() - start
    await pool.flushdb()

    start = time.perf_counter()
    ids: list[str] = []
    for chunk in range(0, jobs, 500):
        made = await asyncio.gather(
            *(pool.enqueue_job("handler", {"n": i}) for i in range(chunk, min(jobs, chunk + 500)))
        )
        ids += [job.job_id for job in made if job is not None]
    bulk_s = time.perf_counter() - start

    options: dict[str, Any] = {}
    if poll_delay is not None:
        options["poll_delay"] = poll_delay
    worker = Worker(
        functions=[func(handler, name="handler"), func(latency_handler, name="latency_handler")],
        redis_pool=pool,
        max_jobs=concurrency,
        handle_signals=False,
        log_results=False,
        **options,
    )
    start = time.perf_counter()
    task = asyncio.create_task(worker.async_run())
    while worker.jobs_complete + worker.jobs_failed < jobs:
        await asyncio.sleep(0.005)
    process_s = time.perf_counter() - start
    stored = 0
    for chunk in range(0, len(ids), 1000):
        stored += await pool.exists(*(f"arq:result:{job_id}" for job_id in ids[chunk : chunk + 1000]))
    stores_output = stored == jobs and worker.jobs_failed == 0

    enqueued_at: dict[int, float] = {}
    for i in range(latency_jobs):
        enqueued_at[i] = time.time()
        await pool.enqueue_job("latency_handler", {"n": i})
        await asyncio.sleep(gap)
    deadline = time.time() + 30
    while len(STARTS) < latency_jobs and time.time() < deadline:
        await asyncio.sleep(0.01)
    delays = [(STARTS[i] - enqueued_at[i]) * 1000 for i in STARTS]

    with contextlib.suppress(asyncio.CancelledError):  # in-flight jobs cancelled at teardown
        await worker.close()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    await pool.flushdb()
    await pool.aclose()
    return {
        "system": "arq" if poll_delay is None else f"arq (poll_delay={poll_delay}s)",
        "backend": "redis",
        "jobs": jobs,
        "concurrency": concurrency,
        "enqueue_jobs_per_s": round(jobs / enqueue_s, 1),
        "enqueue_bulk_jobs_per_s": round(jobs / bulk_s, 1),
        "process_jobs_per_s": round(jobs / process_s, 1),
        "latency_p50_ms": round(statistics.median(delays), 3) if delays else None,
        "latency_p99_ms": round(percentile(delays, 0.99), 3) if delays else None,
        "stores_output": stores_output,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/11", help="Redis URL with its own db")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency-jobs", type=int, default=200)
    parser.add_argument("--latency-gap-ms", type=float, default=20.0)
    parser.add_argument("--poll-delay", type=float, default=None, help="seconds (arq's default: 0.5)")
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)
    result = asyncio.run(
        run(
            args.redis,
            args.jobs,
            args.concurrency,
            args.latency_jobs,
            args.latency_gap_ms / 1000,
            args.poll_delay,
        )
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
