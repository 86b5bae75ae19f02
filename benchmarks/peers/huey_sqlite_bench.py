"""huey with SQLite storage (``SqliteHuey``, results stored) on the workload of
``benchmarks/throughput.py``; prints one JSON line.

Workload: payload ``{"n": i}``, the task returns ``{"n": i, "ok": true}`` (huey
stores the result). Enqueue N one by one (into a database of its own), then N
with ``task.map`` (huey's bulk call; it enqueues one by one); process those N
with a consumer of C worker threads (huey's default polling) until huey's result
store holds all N; then latency: 200 tasks 20 ms apart on the idle consumer,
enqueue call to task start. Each run uses fresh temporary SQLite files, in WAL
mode with ``synchronous=NORMAL`` like dqflow's (``--synchronous full`` is huey's
own default, an fsync per commit).

    .venv/bin/python benchmarks/peers/huey_sqlite_bench.py --jobs 5000 --concurrency 16
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from huey import SqliteHuey
from huey.storage import SqliteStorage

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/_common.py
from _common import percentile

STARTS: dict[int, float] = {}
SYNCHRONOUS = {"off": 0, "normal": 1, "full": 2}


def storage_class(synchronous: str) -> type[SqliteStorage]:
    """huey's SqliteStorage with ``PRAGMA synchronous`` set (huey's ``fsync`` knows only FULL and OFF)."""
    level = SYNCHRONOUS[synchronous]

    class Storage(SqliteStorage):  # type: ignore[misc]
        def _create_connection(self) -> Any:
            conn = super()._create_connection()
            conn.execute(f"pragma synchronous={level}")
            return conn

    return Storage


def make_huey(path: Path, synchronous: str) -> tuple[Any, Any, Any]:
    """A SqliteHuey on ``path`` with the benchmark's two tasks."""
    huey = SqliteHuey("dqbench", filename=str(path), results=True, storage_class=storage_class(synchronous))

    @huey.task()  # type: ignore[untyped-decorator]
    def handler(payload: dict[str, Any]) -> dict[str, Any]:
        return {"n": payload["n"], "ok": True}

    @huey.task()  # type: ignore[untyped-decorator]
    def latency_handler(payload: dict[str, Any]) -> dict[str, Any]:
        STARTS[payload["n"]] = time.time()
        return {"n": payload["n"], "ok": True}

    return huey, handler, latency_handler


def run(folder: Path, jobs: int, concurrency: int, latency_jobs: int, gap: float, synchronous: str) -> dict[str, Any]:
    _single, single_handler, _ = make_huey(folder / "single.db", synchronous)
    single_handler({"n": -1})  # connection warm
    start = time.perf_counter()
    for i in range(jobs):
        single_handler({"n": i})
    enqueue_s = time.perf_counter() - start

    huey, handler, latency_handler = make_huey(folder / "queue.db", synchronous)
    start = time.perf_counter()
    group = handler.map([({"n": i},) for i in range(jobs)])
    bulk_s = time.perf_counter() - start

    consumer = huey.create_consumer(workers=concurrency, worker_type="thread", periodic=False)
    start = time.perf_counter()
    consumer.start()
    while huey.result_count() < jobs:
        time.sleep(0.005)
    process_s = time.perf_counter() - start
    stores_output = all(group[i] == {"n": i, "ok": True} for i in (0, jobs // 2, jobs - 1))

    time.sleep(1.0)  # idle
    enqueued_at: dict[int, float] = {}
    for i in range(latency_jobs):
        enqueued_at[i] = time.time()
        latency_handler({"n": i})
        time.sleep(gap)
    deadline = time.time() + 30
    while len(STARTS) < latency_jobs and time.time() < deadline:
        time.sleep(0.01)
    delays = [(STARTS[i] - enqueued_at[i]) * 1000 for i in sorted(STARTS)]
    consumer.stop(graceful=True)
    return {
        "system": "huey",
        "backend": "sqlite",
        "jobs": jobs,
        "concurrency": concurrency,
        "enqueue_jobs_per_s": round(jobs / enqueue_s, 1),
        "enqueue_bulk_jobs_per_s": round(jobs / bulk_s, 1),
        "process_jobs_per_s": round(jobs / process_s, 1),
        "latency_p50_ms": round(statistics.median(delays), 3) if delays else None,
        "latency_p99_ms": round(percentile(delays, 0.99), 3) if delays else None,
        "stores_output": stores_output,
        "sqlite_synchronous": synchronous,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency-jobs", type=int, default=200)
    parser.add_argument("--latency-gap-ms", type=float, default=20.0)
    parser.add_argument(
        "--synchronous",
        choices=sorted(SYNCHRONOUS),
        default="normal",
        help="SQLite durability: normal (as dqflow: WAL, synchronous=NORMAL), full (huey's default), off",
    )
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="huey-bench-") as folder:
        result = run(
            Path(folder), args.jobs, args.concurrency, args.latency_jobs, args.latency_gap_ms / 1000, args.synchronous
        )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
