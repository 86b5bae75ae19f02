"""huey (Redis storage) on the workload of ``benchmarks/throughput.py``; prints one JSON line.

Workload: payload ``{"n": i}``, the task returns ``{"n": i, "ok": true}`` (huey
stores results). Enqueue N one by one, then N with ``task.map`` (huey's bulk call;
it enqueues one by one); process those N with a consumer of C worker threads
(blocking reads, huey's default) until huey's result store holds all N; then
latency: 200 tasks 20 ms apart on the idle consumer, enqueue call to task start.
Uses its own Redis db (flushed before and after): ``--redis redis://127.0.0.1:6379/13``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from huey import RedisHuey

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/_common.py
from _common import percentile

STARTS: dict[int, float] = {}


def run(url: str, jobs: int, concurrency: int, latency_jobs: int, gap: float) -> dict[str, Any]:
    huey = RedisHuey("dqbench", url=url, results=True, blocking=True)

    @huey.task()  # type: ignore[untyped-decorator]
    def handler(payload: dict[str, Any]) -> dict[str, Any]:
        return {"n": payload["n"], "ok": True}

    @huey.task()  # type: ignore[untyped-decorator]
    def latency_handler(payload: dict[str, Any]) -> dict[str, Any]:
        STARTS[payload["n"]] = time.time()
        return {"n": payload["n"], "ok": True}

    client = huey.storage.conn
    client.flushdb()
    start = time.perf_counter()
    for i in range(jobs):
        handler({"n": i})
    enqueue_s = time.perf_counter() - start
    client.flushdb()

    start = time.perf_counter()
    group = handler.map([({"n": i},) for i in range(jobs)])
    bulk_s = time.perf_counter() - start

    consumer = huey.create_consumer(workers=concurrency, worker_type="thread", periodic=False)
    start = time.perf_counter()
    consumer.start()
    while huey.result_count() < jobs:
        time.sleep(0.005)
    process_s = time.perf_counter() - start
    stores_output = group[jobs // 2] == {"n": jobs // 2, "ok": True}

    enqueued_at: dict[int, float] = {}
    for i in range(latency_jobs):
        enqueued_at[i] = time.time()
        latency_handler({"n": i})
        time.sleep(gap)
    deadline = time.time() + 30
    while len(STARTS) < latency_jobs and time.time() < deadline:
        time.sleep(0.01)
    delays = [(STARTS[i] - enqueued_at[i]) * 1000 for i in STARTS]

    consumer.stop(graceful=True)
    client.flushdb()
    return {
        "system": "huey (redis)",
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
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13", help="Redis URL with its own db")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency-jobs", type=int, default=200)
    parser.add_argument("--latency-gap-ms", type=float, default=20.0)
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)
    result = run(args.redis, args.jobs, args.concurrency, args.latency_jobs, args.latency_gap_ms / 1000)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
