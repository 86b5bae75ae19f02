"""Memory of a dqflow worker over a long run; prints one JSON line.

A worker (in this process, drain mode) processes ``--jobs`` pre-queued jobs of the
benchmark workload (payload ``{"n": i}`` validated by a schema, handler returns
``{"n": i, "ok": true}`` validated and stored as output). The resident set size
(RSS, from /proc/self/status) is read once the worker has completed ``--checkpoint``
jobs and again when it has completed them all; a worker that does not leak ends
with about the memory it had at the checkpoint.

    .venv/bin/python benchmarks/memory.py --backend sqlite --jobs 100000
    .venv/bin/python benchmarks/memory.py --backend postgresql://postgres@127.0.0.1:5432/postgres --jobs 100000
    .venv/bin/python benchmarks/memory.py --backend redis://127.0.0.1:6379/0 --jobs 100000

Each run gets a fresh backend (see ``throughput.py``: a temporary SQLite file, a
temporary PostgreSQL database, a unique Redis prefix), removed afterwards.
Fields: ``rss_mb_at_checkpoint``, ``rss_mb_at_end``, ``growth_mb`` (end minus
checkpoint), ``growth_pct``, ``peak_rss_mb`` (VmHWM), ``rss_mb_before_worker``
(after enqueueing, before the worker starts), ``rss_mb_every_tenth`` (RSS after
each tenth of the jobs: a plateau or steady growth), ``seconds`` (processing time).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import fresh_backend, kind_of

from dqflow import Declaration, Queue, Worker

PAYLOAD = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}
OUTPUT = {"type": "object", "required": ["n", "ok"], "properties": {"n": {"type": "integer"}, "ok": {"const": True}}}


def handler(payload: dict[str, Any]) -> dict[str, Any]:
    return {"n": payload["n"], "ok": True}


def rss_mb(field: str = "VmRSS") -> float:
    """A memory figure of this process in MiB, from /proc/self/status (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"{field} not found in /proc/self/status")


def run(url: str, jobs: int, checkpoint: int, concurrency: int, batch: int) -> dict[str, Any]:
    declaration = Declaration.build(
        {"noop": {"handler": handler, "payload": PAYLOAD, "output": OUTPUT, "max_attempts": 3}},
        worker={"lease": "30s", "heartbeat": "1s", "poll_interval": "100ms", "shutdown_grace": "10s"},
    )
    queue = Queue(declaration, backend=url)
    try:
        for start in range(0, jobs, batch):
            queue.add_many([{"job_type": "noop", "payload": {"n": i}} for i in range(start, min(jobs, start + batch))])
        gc.collect()
        before = rss_mb()
        worker = Worker(queue, concurrency=concurrency, drain=True)
        marks: dict[str, float] = {}
        samples: list[float] = []  # RSS at every tenth of the jobs: a plateau, or steady growth?
        finished = threading.Event()

        def watch() -> None:
            step = max(1, jobs // 10)
            while not finished.is_set():
                done = worker.stats.completed
                if done >= checkpoint and "checkpoint" not in marks:
                    marks["checkpoint"] = rss_mb()
                    marks["checkpoint_completed"] = done
                if done >= step * (len(samples) + 1) and len(samples) < 9:
                    samples.append(rss_mb())
                time.sleep(0.005)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        began = time.perf_counter()
        worker.run()
        seconds = time.perf_counter() - began
        finished.set()
        watcher.join()
        end = rss_mb()
        at_checkpoint = marks.get("checkpoint", end)
        if worker.stats.completed != jobs:
            raise SystemExit(f"only {worker.stats.completed} of {jobs} jobs completed")
        return {
            "benchmark": "worker_memory",
            "backend": kind_of(url),
            "jobs": jobs,
            "concurrency": concurrency,
            "checkpoint": checkpoint,
            "completed_at_checkpoint_sample": int(marks.get("checkpoint_completed", jobs)),
            "rss_mb_before_worker": before,
            "rss_mb_at_checkpoint": at_checkpoint,
            "rss_mb_at_end": end,
            "growth_mb": round(end - at_checkpoint, 1),
            "growth_pct": round((end - at_checkpoint) / at_checkpoint * 100, 1),
            "peak_rss_mb": rss_mb("VmHWM"),
            "rss_mb_every_tenth": [*samples, end],
            "seconds": round(seconds, 1),
            "jobs_per_s": round(jobs / seconds),
        }
    finally:
        queue.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="sqlite", help="sqlite, or a PostgreSQL / Redis URL")
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--checkpoint", type=int, default=None, help="default: a tenth of --jobs")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--enqueue-batch", type=int, default=5_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    checkpoint = args.checkpoint or max(1, args.jobs // 10)
    if not 0 < checkpoint < args.jobs:
        parser.error("--checkpoint must be between 0 and --jobs")
    with fresh_backend(args.backend) as url:
        result = run(url, args.jobs, checkpoint, args.concurrency, args.enqueue_batch)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
