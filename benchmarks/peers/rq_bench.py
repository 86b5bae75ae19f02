"""RQ on the workload of ``benchmarks/throughput.py``; prints one JSON line.

Workload: payload ``{"n": i}``, the handler returns ``{"n": i, "ok": true}`` (RQ
stores it as the job's result). Enqueue N one by one, then N in bulk
(``Queue.enqueue_many``, one pipeline); process those N pre-queued jobs with C
worker processes until RQ's finished registry holds all N; then latency: 200 jobs
20 ms apart on the idle workers, enqueue call to handler start.

RQ's default ``Worker`` forks a work horse per job; ``--worker simple`` runs jobs
in the worker process (``SimpleWorker``). Uses its own Redis db (flushed before
and after): ``--redis redis://127.0.0.1:6379/12``.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import redis
from rq import Queue, SimpleWorker, Worker
from rq.job import Job

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/_common.py
from _common import percentile

QUEUE = "dqbench"
LATENCY_KEY = "dqbench:latency"
_conn: redis.Redis | None = None


def handler(payload: dict[str, Any]) -> dict[str, Any]:
    return {"n": payload["n"], "ok": True}


def latency_handler(payload: dict[str, Any]) -> dict[str, Any]:
    started = time.time()
    global _conn
    if _conn is None:
        _conn = redis.Redis.from_url(os.environ["DQBENCH_REDIS"])
    _conn.hset(LATENCY_KEY, str(payload["n"]), repr(started))
    return {"n": payload["n"], "ok": True}


def _work(url: str, worker_kind: str) -> None:
    logging.disable(logging.CRITICAL)
    os.environ["DQBENCH_REDIS"] = url
    conn = redis.Redis.from_url(url)
    cls = SimpleWorker if worker_kind == "simple" else Worker
    worker = cls([Queue(QUEUE, connection=conn)], connection=conn)
    worker.work(burst=False, logging_level="ERROR")


def run(url: str, jobs: int, concurrency: int, latency_jobs: int, gap: float, worker_kind: str) -> dict[str, Any]:
    # RQ refuses functions of __main__: refer to this file by its module name
    import rq_bench

    handler, latency_handler = rq_bench.handler, rq_bench.latency_handler
    conn = redis.Redis.from_url(url)
    conn.flushdb()
    queue = Queue(QUEUE, connection=conn)

    start = time.perf_counter()
    for i in range(jobs):
        queue.enqueue(handler, {"n": i})
    enqueue_s = time.perf_counter() - start
    queue.empty()  # type: ignore[no-untyped-call]
    conn.flushdb()

    start = time.perf_counter()
    queued = queue.enqueue_many([Queue.prepare_data(handler, ({"n": i},)) for i in range(jobs)])
    bulk_s = time.perf_counter() - start

    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_work, args=(url, worker_kind), daemon=True) for _ in range(concurrency)]
    start = time.perf_counter()
    for process in workers:
        process.start()
    registry = queue.finished_job_registry
    while registry.get_job_count() < jobs:
        time.sleep(0.005)
    process_s = time.perf_counter() - start
    sample = Job.fetch(queued[jobs // 2].id, connection=conn)
    stores_output = sample.return_value() == {"n": jobs // 2, "ok": True}

    delays: list[float] = []
    enqueued_at: dict[int, float] = {}
    for i in range(latency_jobs):
        enqueued_at[i] = time.time()
        queue.enqueue(latency_handler, {"n": i})
        time.sleep(gap)
    deadline = time.time() + 30
    while int(conn.hlen(LATENCY_KEY)) < latency_jobs and time.time() < deadline:  # type: ignore[arg-type]
        time.sleep(0.01)
    starts: dict[bytes, bytes] = conn.hgetall(LATENCY_KEY)  # type: ignore[assignment]
    for key, value in starts.items():
        delays.append((float(value) - enqueued_at[int(key)]) * 1000)

    for process in workers:
        if process.pid:
            os.kill(process.pid, signal.SIGTERM)
    for process in workers:
        process.join(10)
        if process.is_alive():
            process.kill()
    conn.flushdb()
    return {
        "system": f"rq{'' if worker_kind == 'fork' else ' (SimpleWorker)'}",
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
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/12", help="Redis URL with its own db")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency-jobs", type=int, default=200)
    parser.add_argument("--latency-gap-ms", type=float, default=20.0)
    parser.add_argument("--worker", choices=("fork", "simple"), default="fork")
    args = parser.parse_args(argv)
    result = run(args.redis, args.jobs, args.concurrency, args.latency_jobs, args.latency_gap_ms / 1000, args.worker)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
