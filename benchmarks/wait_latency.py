"""How soon ``Queue.wait`` returns after a job completes, and how many reads it makes meanwhile.

A worker of concurrency 2 runs in-process (a thread); the producer adds one job that
sleeps ``--sleep`` seconds, waits for it, and records the time from the job's
``completed_at`` to the return of ``wait``, ``--jobs`` times per backend. Run it
against two trees to compare (``PYTHONPATH=<tree>``)::

    .venv/bin/python benchmarks/wait_latency.py --backends sqlite postgresql redis
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import loadavg
from throughput import fresh_backend

BASES = {
    "sqlite": "sqlite:///unused",
    "postgresql": "postgresql://postgres@127.0.0.1:5432/postgres",
    "redis": "redis://127.0.0.1:6379/0",
}


def measure(url: str, jobs: int, sleep: float) -> tuple[list[float], float]:
    """(ms from completion to the return of ``wait`` per job, record reads per wait)."""
    import threading

    from dqflow import Declaration, Queue, Worker

    def slow(payload: dict[str, Any]) -> dict[str, Any]:
        time.sleep(payload["s"])
        return {}

    declaration = Declaration.build({"slow": {"handler": slow}}, worker={"poll_interval": "50ms"})
    latencies: list[float] = []
    reads = 0
    with Queue(declaration, backend=url) as queue:
        worker = Worker(queue, concurrency=2)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        read = queue.require_job

        def counted(job_id: int) -> Any:
            nonlocal reads
            reads += 1
            return read(job_id)

        queue.require_job = counted  # type: ignore[method-assign]
        try:
            for _ in range(jobs):
                record = queue.wait(queue.add("slow", {"s": sleep}), timeout=60)
                assert record.completed_at is not None
                latencies.append((time.time() - record.completed_at.timestamp()) * 1000)
        finally:
            worker.stop()
            thread.join(30)
    return latencies, reads / jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=list(BASES), choices=list(BASES))
    parser.add_argument("--jobs", type=int, default=15)
    parser.add_argument("--sleep", type=float, default=0.6, help="Seconds each job runs.")
    args = parser.parse_args()
    print(f"load average {loadavg()}")
    print("| backend | wait returns after completion, p50 / max | record reads per wait |")
    print("|---|---:|---:|")
    for backend in args.backends:
        with fresh_backend(BASES[backend], reuse_prepared=False) as url:
            latencies, reads = measure(url, args.jobs, args.sleep)
        print(f"| {backend} | {statistics.median(latencies):.1f} / {max(latencies):.1f} ms | {reads:.1f} |")


if __name__ == "__main__":
    main()
