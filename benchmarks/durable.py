"""Durable handlers on each backend: the cost of a step, and how fast a wait ends.

1. ``step_stored_per_s``: ``ctx.step`` calls that run their function and store the
   result (one fenced write each), on a claimed job, one after another;
   ``step_replayed_per_s``: the same steps when the handler runs again (answered
   from the claimed record: no storage call), over 20 runs.
2. ``sleep_wake_p50_ms`` / ``_p99_ms``: jobs sleep until a due time (spread 50 ms
   apart so the worker is idle at each); from the due time to the handler running
   again (``time.time()`` at its resume).
3. ``token_wake_p50_ms`` / ``_p99_ms``: jobs wait for a token; from just before
   ``queue.complete_token`` to the handler running again.

Each backend is fresh (tests/backends.py makes a temporary SQLite file, PostgreSQL
schema or Redis prefix). Prints one JSON line per backend.

    .venv/bin/python benchmarks/durable.py --backends sqlite postgresql redis
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_common.py
sys.path.insert(0, str(ROOT / "tests"))  # tests/backends.py: fresh backends
from _common import loadavg, percentile  # noqa: E402
from backends import backend_url, drop_pg_test_database  # noqa: E402

from dqflow import Declaration, JobContext, Queue, Worker  # noqa: E402
from dqflow.storage import Release  # noqa: E402

_REPLAYS = 20  # replayed runs timed (one is too short to time)
_resumed: dict[int, float] = {}  # job id -> time.time() when its handler resumed
_lock = threading.Lock()


def _mark(job_id: int) -> None:
    with _lock:
        _resumed.setdefault(job_id, time.time())


def sleeper(payload: dict[str, Any], ctx: JobContext) -> None:
    ctx.sleep_until(datetime.fromtimestamp(payload["due"], UTC))
    _mark(ctx.job.id)


def token_waiter(payload: dict[str, Any], ctx: JobContext) -> None:
    ctx.wait_for_token(ctx.create_token(timeout=120))
    _mark(ctx.job.id)


def _queue(url: str) -> Queue:
    declaration = Declaration.build(
        {"sleeper": {"handler": sleeper}, "token_waiter": {"handler": token_waiter}, "noop": {"handler": sleeper}},
        worker={"concurrency": 8, "poll_interval": "1s", "heartbeat": "1s", "lease": "10s"},
    )
    return Queue(declaration, backend=url)


def step_rates(queue: Queue, steps: int) -> tuple[float, float]:
    """(stored steps/s, replayed steps/s) on one claimed job."""
    queue.add("noop", {"due": 0})
    storage = queue.storage
    [job] = storage.claim_jobs("bench", ["noop"], 1, 60_000)
    ctx = JobContext(queue, job)
    started = time.perf_counter()
    for i in range(steps):
        ctx.step(f"s{i}", int, i)
    stored = steps / (time.perf_counter() - started)
    storage.settle_jobs([Release(job.id, job.lease_token, started=False)])
    [again] = storage.claim_jobs("bench", ["noop"], 1, 60_000)
    started = time.perf_counter()
    for _ in range(_REPLAYS):  # each a run of the handler: a fresh context, the same claimed record
        ctx = JobContext(queue, again)
        for i in range(steps):
            assert ctx.step(f"s{i}", int, -1) == i
    replayed = steps * _REPLAYS / (time.perf_counter() - started)
    storage.settle_jobs([Release(again.id, again.lease_token, started=False)])
    return stored, replayed


def _wait_all(ids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with _lock:
            if all(job_id in _resumed for job_id in ids):
                return
        time.sleep(0.01)
    raise RuntimeError(f"only {sum(i in _resumed for i in ids)} of {len(ids)} handlers resumed")


def sleep_delays(queue: Queue, jobs: int) -> list[float]:
    """ms from each job's due time to its handler's resume."""
    start = time.time() + 1.0
    dues = {queue.add("sleeper", {"due": start + i * 0.05}): start + i * 0.05 for i in range(jobs)}
    _wait_all(list(dues), timeout=60 + jobs * 0.05)
    return [(_resumed[job_id] - due) * 1000 for job_id, due in dues.items()]


def token_delays(queue: Queue, jobs: int) -> list[float]:
    """ms from just before ``complete_token`` to the handler's resume, one token at a time."""
    delays = []
    for _ in range(jobs):
        job_id = queue.add("token_waiter", {})
        deadline = time.monotonic() + 30
        while True:
            job = queue.require_job(job_id)
            if job.status.value == "waiting":
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {job_id} never waited")
            time.sleep(0.005)
        token_id = str(job.steps["dqflow:token:1"].result["token_id"])
        time.sleep(0.02)  # the worker is idle again
        sent = time.time()
        queue.complete_token(token_id, None)
        _wait_all([job_id], timeout=30)
        delays.append((_resumed[job_id] - sent) * 1000)
    return delays


def run(kind: str, steps: int, jobs: int) -> dict[str, Any]:
    _resumed.clear()  # job ids start at 1 again on each fresh backend
    with tempfile.TemporaryDirectory() as folder, backend_url(kind, Path(folder)) as url:
        queue = _queue(url)
        stored, replayed = step_rates(queue, steps)
        worker = Worker(queue, job_types=["sleeper", "token_waiter"])
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        try:
            sleeps = sleep_delays(queue, jobs)
            tokens = token_delays(queue, jobs)
        finally:
            worker.stop()
            thread.join(30)
            queue.close()
    return {
        "backend": kind,
        "step_stored_per_s": round(stored),
        "step_replayed_per_s": round(replayed),
        "sleep_wake_p50_ms": round(percentile(sleeps, 0.5), 2),
        "sleep_wake_p99_ms": round(percentile(sleeps, 0.99), 2),
        "token_wake_p50_ms": round(percentile(tokens, 0.5), 2),
        "token_wake_p99_ms": round(percentile(tokens, 0.99), 2),
        "load": loadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql", "redis"])
    parser.add_argument("--steps", type=int, default=2000, help="steps stored, then replayed")
    parser.add_argument("--jobs", type=int, default=100, help="sleeping jobs, and token waits")
    args = parser.parse_args()
    try:
        for kind in args.backends:
            print(json.dumps(run(kind, args.steps, args.jobs)), flush=True)
    finally:
        drop_pg_test_database()


if __name__ == "__main__":
    main()
