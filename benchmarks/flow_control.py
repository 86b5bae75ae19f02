"""Claim throughput with concurrency keys on (500 keys, limit 1) against plain jobs; prints JSON lines.

Two job types that differ only in flow control: ``plain`` and ``keyed``
(``concurrency: {limit: 1, key: "${payload.k}"}``, ``k`` = job number mod 500).
For each backend, each mode and each of ``--runs`` rounds (modes alternate, so load
drifts hit both alike), on a fresh backend:

* ``claim_jobs_per_s``: N pre-queued jobs claimed in batches of ``--batch`` and
  completed with one ``settle_jobs`` per batch, straight on the storage (the claim
  path and its slot bookkeeping, nothing else);
* ``worker_jobs_per_s``: N pre-queued jobs processed by a ``Worker`` (concurrency C,
  drain) until all are completed.

The medians of the rounds and the keyed/plain ratio are printed per backend.

    .venv/bin/python benchmarks/flow_control.py --backend sqlite --backend postgresql://root@127.0.0.1:5432/postgres \\
        --backend redis://127.0.0.1:6379/0 --jobs 2000 --runs 3
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

from dqflow import Declaration, JobStatus, Queue, Worker
from dqflow.storage import Completion

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/throughput.py
from throughput import fresh_backend, kind_of

KEYS = 500
PAYLOAD = {"type": "object", "properties": {"n": {"type": "integer"}, "k": {"type": "string"}}, "required": ["n", "k"]}


def handler(payload: dict[str, Any]) -> None:
    """The benchmark's job: nothing."""


def declaration(job_type: str) -> Declaration:
    """``plain``, or ``keyed``: the same job type with a concurrency key (``plain`` alone
    also loads on a dqflow without flow control, for ``--plain-only`` against another tree)."""
    spec: dict[str, Any] = {"handler": handler, "payload": PAYLOAD, "max_attempts": 1}
    if job_type == "keyed":
        spec["concurrency"] = {"limit": 1, "key": "${payload.k}"}
    return Declaration.build({job_type: spec}, worker={"heartbeat": "1s", "lease": "30s", "poll_interval": "100ms"})


def _fill(queue: Queue, job_type: str, jobs: int) -> None:
    queue.add_many([{"job_type": job_type, "payload": {"n": n, "k": f"k{n % KEYS}"}} for n in range(jobs)])


def claim_rate(url: str, job_type: str, jobs: int, batch: int) -> float:
    """Jobs per second claimed and completed in batches straight on the storage."""
    with Queue(declaration(job_type), url) as queue:
        _fill(queue, job_type, jobs)
        storage = queue.storage
        done = 0
        start = time.perf_counter()
        while done < jobs:
            claimed = storage.claim_jobs("bench", [job_type], batch, 30_000)
            if not claimed:
                raise RuntimeError(f"{job_type}: the claim found nothing with {jobs - done} jobs left")
            storage.settle_jobs([Completion(job.id, job.lease_token) for job in claimed])
            done += len(claimed)
        return jobs / (time.perf_counter() - start)


def worker_rate(url: str, job_type: str, jobs: int, concurrency: int) -> float:
    """Jobs per second a draining worker completes."""
    with Queue(declaration(job_type), url) as queue:
        _fill(queue, job_type, jobs)
        worker = Worker(queue, concurrency=concurrency, drain=True, job_types=[job_type])
        start = time.perf_counter()
        worker.run()
        elapsed = time.perf_counter() - start
        done = queue.count_jobs().get((job_type, JobStatus.COMPLETED), 0)
        if done != jobs:
            raise RuntimeError(f"{job_type}: {done} of {jobs} completed")
        return jobs / elapsed


def measure(url: str, jobs: int, runs: int, batch: int, concurrency: int, plain_only: bool) -> dict[str, Any]:
    """Medians per mode and the keyed/plain ratios on one backend."""
    all_modes = ("plain",) if plain_only else ("plain", "keyed")
    rates: dict[str, dict[str, list[float]]] = {m: {"claim": [], "worker": []} for m in all_modes}
    for run in range(runs):
        modes = all_modes if run % 2 == 0 else all_modes[::-1]
        for mode in modes:
            with fresh_backend(url) as fresh:
                rates[mode]["claim"].append(claim_rate(fresh, mode, jobs, batch))
            with fresh_backend(url) as fresh:
                rates[mode]["worker"].append(worker_rate(fresh, mode, jobs, concurrency))
    medians = {mode: {what: statistics.median(values) for what, values in m.items()} for mode, m in rates.items()}
    ratios = {}
    if not plain_only:
        ratios = {
            "claim_keyed_vs_plain": round(medians["keyed"]["claim"] / medians["plain"]["claim"], 3),
            "worker_keyed_vs_plain": round(medians["keyed"]["worker"] / medians["plain"]["worker"], 3),
        }
    return {
        "backend": kind_of(url),
        "jobs": jobs,
        "runs": runs,
        "batch": batch,
        "concurrency": concurrency,
        "claim_jobs_per_s": {mode: round(m["claim"]) for mode, m in medians.items()},
        "worker_jobs_per_s": {mode: round(m["worker"]) for mode, m in medians.items()},
        **ratios,
        "all_runs": {
            mode: {what: [round(v) for v in values] for what, values in m.items()} for mode, m in rates.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--backend", action="append", required=True, help="sqlite, or a PostgreSQL / Redis URL")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--plain-only", action="store_true", help="only plain jobs (runs on any dqflow tree)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for backend in args.backend:
        url = "sqlite:///unused.db" if backend == "sqlite" else backend
        result = measure(url, args.jobs, args.runs, args.batch, args.concurrency, args.plain_only)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
