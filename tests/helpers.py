"""Helpers shared by tests: queues built in code, in-process workers, real worker processes,
and short forms of storage calls for the contract suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from dqflow import Declaration, Queue, Worker
from dqflow.record import EventType, JobRecord
from dqflow.storage import Completion, Failure, JobFilter, NewJob, Release, Storage

TESTS = Path(__file__).parent
APP_CONFIG = TESTS / "app" / "jobs.yaml"
FAST_WORKER = {"lease": "3s", "heartbeat": "100ms", "poll_interval": "100ms", "shutdown_grace": "5s"}


DOUBLE_JOBS: dict[str, dict[str, Any]] = {
    "double": {"handler": lambda payload: {"n": payload["n"] * 2}, "max_attempts": 1}
}
"""One job type, ``double``: ``{"n": n}`` -> ``{"n": 2n}``, one attempt."""


def doubling_chain(steps: str = "abc", returns: str | None = None) -> dict[str, Any]:
    """The ``workflows`` of one workflow ``linear``: a chain of ``double`` steps named by the
    letters of ``steps``, each fed the one before; it returns ``returns``'s (default: the last) ``n``."""
    chain: dict[str, Any] = {}
    before = None
    for name in steps:
        source = "${input.n}" if before is None else f"${{steps.{before}.output.n}}"
        chain[name] = {"job": "double", "payload": {"n": source}, **({"needs": [before]} if before else {})}
        before = name
    return {
        "linear": {
            "input": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
            "steps": chain,
            "returns": {"n": f"${{steps.{returns or steps[-1]}.output.n}}"},
        }
    }


def make_queue(backend: str, jobs: Mapping[str, Mapping[str, Any]], **declaration: Any) -> Queue:
    """A queue on ``backend`` with job types built in code (fast worker settings by default)."""
    declaration.setdefault("worker", FAST_WORKER)
    declaration.setdefault("defaults", {"retry": {"delay": "50ms", "backoff": "fixed", "jitter": False}})
    return Queue(Declaration.build(jobs, **declaration), backend=backend)


@contextmanager
def running_worker(queue: Queue, **options: Any) -> Iterator[Worker]:
    """Run a worker on a background thread for the duration of the block."""
    worker = Worker(queue, **options)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            worker.run()
        except BaseException as exc:  # surfaced to the test below
            errors.append(exc)

    thread = threading.Thread(target=target, name="test-worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(timeout=30)
        assert not thread.is_alive(), "worker did not stop within 30 s"
        if errors:
            raise errors[0]


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def wait_for_status(queue: Queue, job_id: int, *statuses: str, timeout: float = 15.0) -> Any:
    """Wait until the job reaches one of ``statuses``; return its record."""

    def check() -> Any:
        job = queue.get_job(job_id)
        return job if job is not None and job.status.value in statuses else None

    return wait_until(check, timeout)


def start_worker_process(
    backend: str, *args: str, config: Path = APP_CONFIG, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``tests/worker_process.py`` as a real process; wait until it is ready."""
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(TESTS / "worker_process.py"), str(config), backend, *args],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env,
    )
    return proc


def executions(log: Path) -> list[int]:
    """Job ids recorded by the test handlers, one per execution."""
    if not log.exists():
        return []
    return [int(line.split()[0]) for line in log.read_text().splitlines() if line.strip()]


# -- storage-level helpers (the contract suite in tests/conformance) -----------------------


def add_jobs(storage: Storage, n: int = 1, job_type: str = "t", **options: Any) -> list[int]:
    """Add ``n`` jobs with payload ``{"n": i}``; return their ids."""
    jobs = [NewJob(job_type, json.dumps({"n": i}), **options) for i in range(n)]
    return [result.job_id for result in storage.add_jobs(jobs)]


def add_job(storage: Storage, job_type: str = "t", **options: Any) -> int:
    """Add one job; return its id."""
    return add_jobs(storage, 1, job_type, **options)[0]


def claim_one(storage: Storage, worker_id: str = "w1", lease_ms: int = 30_000) -> JobRecord:
    """Claim exactly one job (fails the test if none or several come back)."""
    claimed = storage.claim_jobs(worker_id, None, 1, lease_ms)
    assert len(claimed) == 1, claimed
    return claimed[0]


def event_types(storage: Storage, job_id: int) -> list[EventType]:
    """The job's event types, oldest first."""
    return [event.event_type for event in storage.get_events(job_id)]


def list_all_ids(storage: Storage, job_filter: JobFilter) -> list[int]:
    """Every matching id, following ``next_cursor`` page by page (full pages checked)."""
    found: list[int] = []
    cursor = job_filter.cursor
    while True:
        page = storage.list_jobs(replace(job_filter, cursor=cursor))
        found += [job.id for job in page.jobs]
        if page.next_cursor is None:
            return found
        assert len(page.jobs) == job_filter.limit
        cursor = page.next_cursor


def complete(storage: Storage, job: JobRecord, output_json: str | None = None) -> bool:
    """Complete one claimed job with the token of its claim; True if applied."""
    return storage.settle_jobs([Completion(job.id, job.lease_token, output_json)])[0]


def step_completion(job: JobRecord, output: Any) -> Completion:
    """The completion of a claimed (step) job with ``output``, carrying its run as the worker does."""
    return Completion(job.id, job.lease_token, json.dumps(output), workflow_run_id=job.workflow_run_id)


def fail(
    storage: Storage,
    job: JobRecord,
    error: str = "boom",
    reason: str = "handler_error",
    retry_at: datetime | None = None,
    traceback: str | None = None,
) -> bool:
    """Fail one claimed job's attempt (for good unless ``retry_at``); True if applied."""
    return storage.settle_jobs([Failure(job.id, job.lease_token, error, reason, retry_at, traceback)])[0]


def release(storage: Storage, job: JobRecord, *, started: bool) -> bool:
    """Hand one claimed job back (the attempt refunded unless ``started``); True if applied."""
    return storage.settle_jobs([Release(job.id, job.lease_token, started)])[0]
