"""dqflow throughput and latency on one backend; prints one JSON line.

Workload (the same for every peer in ``benchmarks/peers/``): a job type with
payload ``{"n": i}`` whose handler returns ``{"n": i, "ok": true}``, declared
with payload and output JSON Schemas (validation is part of the cost).

1. enqueue N jobs one by one (``Queue.add``)             → ``enqueue_jobs_per_s``
2. enqueue N jobs in one call (``Queue.add_many``)        → ``enqueue_bulk_jobs_per_s``
3. process those N pre-queued jobs with a worker of concurrency C until all are
   completed, checked in storage (N completed, each with its output) → ``process_jobs_per_s``
4. on an idle running worker, add ``--latency-jobs`` jobs 20 ms apart; the handler
   records ``time.time()`` when it starts → ``latency_p50_ms``, ``latency_p99_ms``
   (enqueue to handler start).

Every run gets a fresh backend: a temporary SQLite file; on PostgreSQL a
temporary database (created, migrated, dropped; a database that is already
migrated is used as given, so a caller can prepare one); on Redis a unique
``?prefix=`` (or the given one, emptied first) whose keys are deleted after.
Step 1 writes to a backend of its own, so that step 3 sees only its N jobs.

    .venv/bin/python benchmarks/throughput.py --backend sqlite --jobs 5000 --concurrency 16
    .venv/bin/python benchmarks/throughput.py --backend postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python benchmarks/throughput.py --backend redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from dqflow import Declaration, JobSpec, JobStatus, Queue, Worker

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_common.py
from _common import percentile

PAYLOAD_SCHEMA = {
    "type": "object",
    "properties": {"n": {"type": "integer"}},
    "required": ["n"],
    "additionalProperties": False,
}
OUTPUT_SCHEMA = {
    "type": "object",
    "properties": {"n": {"type": "integer"}, "ok": {"type": "boolean"}},
    "required": ["n", "ok"],
    "additionalProperties": False,
}
STARTS: dict[int, float] = {}


def handler(payload: dict[str, Any]) -> dict[str, Any]:
    """The benchmark's job: return ``{"n": n, "ok": true}`` (stored as the job's output)."""
    return {"n": payload["n"], "ok": True}


def latency_handler(payload: dict[str, Any]) -> dict[str, Any]:
    """The same, recording when it started."""
    STARTS[payload["n"]] = time.time()
    return {"n": payload["n"], "ok": True}


def declaration() -> Declaration:
    """Two job types with schemas: ``bench`` (throughput) and ``bench_latency``."""
    spec = {"payload": PAYLOAD_SCHEMA, "output": OUTPUT_SCHEMA, "max_attempts": 1}
    return Declaration.build(
        {"bench": {"handler": handler, **spec}, "bench_latency": {"handler": latency_handler, **spec}}
    )


# -- fresh backends ----------------------------------------------------------------------


def kind_of(url: str) -> str:
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        return "sqlite"
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    if scheme in ("redis", "rediss"):
        return "redis"
    raise SystemExit(f"error: unknown backend {url!r}: use sqlite, postgresql://... or redis://...")


@contextmanager
def fresh_backend(url: str, *, reuse_prepared: bool = True) -> Iterator[str]:
    """A URL of an empty backend like ``url``; removed afterwards."""
    kind = kind_of(url)
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="dqbench-") as folder:
            yield f"sqlite:///{Path(folder) / 'queue.db'}"
    elif kind == "postgresql":
        with _fresh_postgres(url, reuse_prepared) as fresh:
            yield fresh
    else:
        with _fresh_redis(url, reuse_prepared) as fresh:
            yield fresh


@contextmanager
def _fresh_postgres(url: str, reuse_prepared: bool) -> Iterator[str]:
    import psycopg

    from dqflow.storage.postgres.migrations import migrate, migration_status

    if reuse_prepared and all(applied is not None for _, applied in migration_status(url)):
        yield url  # prepared by the caller (e.g. compare_postgres.py with history rows)
        return
    parts = urlsplit(url)
    name = f"dqbench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    fresh = urlunsplit(parts._replace(path=f"/{name}"))
    try:
        migrate(fresh)
        yield fresh
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def _fresh_redis(url: str, reuse_prepared: bool) -> Iterator[str]:
    import redis

    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    if not (reuse_prepared and query.get("prefix")):
        query["prefix"] = f"dqbench_{uuid.uuid4().hex[:10]}"
    prefix = query["prefix"]
    client = redis.Redis.from_url(urlunsplit(parts._replace(query="")))

    def delete_keys() -> None:
        keys = list(client.scan_iter(match="{" + prefix + "}*", count=5000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])

    delete_keys()
    try:
        yield urlunsplit(parts._replace(query=urlencode(query)))
    finally:
        delete_keys()
        client.close()


# -- the workload ------------------------------------------------------------------------


def enqueue_one_by_one(url: str, jobs: int) -> float:
    """Jobs per second of ``Queue.add``."""
    with Queue(declaration(), url) as queue:
        queue.add("bench", {"n": -1})  # connections and statements warm
        start = time.perf_counter()
        for i in range(jobs):
            queue.add("bench", {"n": i})
        return jobs / (time.perf_counter() - start)


def completed_with_output(queue: Queue, ids: list[int]) -> int:
    """How many of ``ids`` are completed with the expected output (read back from storage)."""
    wanted = set(ids)
    good = 0
    cursor = None
    while True:
        page = queue.list_jobs(status=JobStatus.COMPLETED, job_type="bench", limit=10_000, cursor=cursor)
        for job in page.jobs:
            if job.id in wanted and job.output == {"n": job.payload["n"], "ok": True}:
                good += 1
        if page.next_cursor is None:
            return good
        cursor = page.next_cursor


def measure_latency(queue: Queue, concurrency: int, count: int, gap: float) -> list[float]:
    """Milliseconds from just before ``add`` to the handler's start, on an idle running worker."""
    worker = Worker(queue, concurrency=concurrency, job_types=["bench_latency"])
    thread = threading.Thread(target=worker.run, name="latency-worker", daemon=True)
    thread.start()
    time.sleep(1.0)  # started and idle
    added: dict[int, float] = {}
    for i in range(count):
        added[i] = time.time()
        queue.add("bench_latency", {"n": i})
        time.sleep(gap)
    deadline = time.time() + 30
    while len(STARTS) < count and time.time() < deadline:
        time.sleep(0.01)
    worker.stop()
    thread.join(60)
    return [(STARTS[i] - added[i]) * 1000 for i in sorted(STARTS)]


def run(url: str, jobs: int, concurrency: int, latency_jobs: int, gap: float) -> dict[str, Any]:
    with fresh_backend(url, reuse_prepared=False) as single_url:
        enqueue_rate = enqueue_one_by_one(single_url, jobs)

    with fresh_backend(url) as fresh, Queue(declaration(), fresh) as queue:
        specs = [JobSpec("bench", {"n": i}) for i in range(jobs)]
        start = time.perf_counter()
        ids = queue.add_many(specs)
        bulk_rate = jobs / (time.perf_counter() - start)

        worker = Worker(queue, concurrency=concurrency, job_types=["bench"], drain=True)
        start = time.perf_counter()
        worker.run()
        process_s = time.perf_counter() - start
        done = completed_with_output(queue, ids)
        if done != jobs:
            raise SystemExit(f"error: only {done} of {jobs} jobs completed with their output")

        delays = measure_latency(queue, concurrency, latency_jobs, gap)

    return {
        "system": "dqflow",
        "backend": kind_of(url),
        "jobs": jobs,
        "concurrency": concurrency,
        "enqueue_jobs_per_s": round(enqueue_rate, 1),
        "enqueue_bulk_jobs_per_s": round(bulk_rate, 1),
        "process_jobs_per_s": round(jobs / process_s, 1),
        "latency_p50_ms": round(statistics.median(delays), 3) if delays else None,
        "latency_p99_ms": round(percentile(delays, 0.99), 3) if delays else None,
        "stores_output": done == jobs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backend", default="sqlite", help="sqlite (a temporary file), postgresql://... or redis://..."
    )
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency-jobs", type=int, default=200)
    parser.add_argument("--latency-gap-ms", type=float, default=20.0)
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)
    url = args.backend if "://" in args.backend or args.backend != "sqlite" else "sqlite://"
    result = run(url, args.jobs, args.concurrency, args.latency_jobs, args.latency_gap_ms / 1000)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
