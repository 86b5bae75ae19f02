"""The database restarts while several worker processes drain thousands of jobs: no job is lost,
none is completed twice, and the workers reconnect on their own (with backoff) without crashing.

PostgreSQL: the system cluster is restarted with ``pg_ctlcluster ... restart`` (and started
again in ``finally`` whatever happens). Redis: a server of the test's own (AOF, fsync on
every write) is shut down and started again on the same directory and port.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from backends import IN_CI, backend_url
from helpers import APP_CONFIG, executions

from dqflow import JobStatus, Queue
from reliability._support import RedisServer, Workers, completed_events, wait_until

pytestmark = pytest.mark.reliability

JOBS = 3000
WORKERS = 3


def _pg_cluster() -> tuple[str, str]:
    if shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").is_dir():
        message = "pg_ctlcluster is not available: cannot restart PostgreSQL"
        if IN_CI:
            pytest.fail(f"CI=true: {message}")
        pytest.skip(message)
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
    return version, "main"


def _pg_ctl(action: str) -> None:
    version, cluster = _pg_cluster()
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, cluster, action], check=True, timeout=120)


def _pg_running() -> bool:
    version, cluster = _pg_cluster()
    status = subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, cluster, "status"], capture_output=True, timeout=30
    )
    return status.returncode == 0


def count_completed(queue: Queue) -> int:
    return len(queue.list_jobs(status="completed", limit=10_000).jobs)


def drain_through_restart(
    backend: str, tmp_path: Path, workers: Workers, restart: Callable[[], None]
) -> dict[str, float]:
    log = tmp_path / "runs.log"
    queue = Queue.from_yaml(APP_CONFIG, backend=backend)
    ids: list[int] = []
    for start in range(0, JOBS, 1000):
        ids += queue.add_many(
            [
                {"job_type": "record_run", "payload": {"n": i, "log": str(log), "sleep": 0.03}}
                for i in range(start, min(JOBS, start + 1000))
            ]
        )
    procs = [workers.start(backend, "--concurrency", "4", "--lease", "5", name=f"drainer{i}") for i in range(WORKERS)]
    wait_until(lambda: count_completed(queue) >= JOBS // 5, 120, interval=0.1, what="a fifth of the jobs done")
    done_before = count_completed(queue)
    began = time.monotonic()
    restart()
    restarted_in = time.monotonic() - began
    # (this process's own pooled connections died too: the first calls may fail, "retry")
    remaining = wait_until(lambda: JOBS - count_completed(queue) + 1, 30, what="the database answers again") - 1
    assert remaining > 0, "the queue was drained before the restart: make the jobs slower"
    wait_until(lambda: count_completed(queue) == JOBS, 180, interval=0.25, what="every job completed")
    drained_in = time.monotonic() - began

    crashed = [(p.pid, p.returncode) for p in procs if p.poll() is not None]
    assert not crashed, f"worker processes died: {crashed}\n" + "\n".join(workers.log_of(p)[-3000:] for p in procs)
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        assert proc.wait(timeout=60) == 0, workers.log_of(proc)[-3000:]
    logs = [workers.log_of(p) for p in procs]
    assert any("retrying in" in text for text in logs), "no worker noticed the restart"
    assert all("Traceback" not in text for text in logs), next(t for t in logs if "Traceback" in t)[-5000:]

    # every job completed, and exactly once (one `completed` event each)
    jobs = queue.list_jobs(limit=10_000).jobs
    assert len(jobs) == JOBS
    assert all(job.status is JobStatus.COMPLETED for job in jobs), Counter(job.status for job in jobs)
    assert all(job.output == {"n": job.payload["n"], "ok": True} for job in jobs)
    completions = completed_events(queue, ids)
    assert completions == Counter({i: 1 for i in ids}), {i: c for i, c in completions.items() if c != 1}
    runs = Counter(executions(log))
    assert set(runs) == set(ids), "a job was never executed"
    rerun = {i: c for i, c in runs.items() if c > 1}
    attempts = Counter(job.attempts for job in jobs)
    queue.close()
    figures = {
        "jobs": JOBS,
        "executions": sum(runs.values()),
        "jobs_run_more_than_once": len(rerun),
        "completed_before_restart": done_before,
        "restart_seconds": round(restarted_in, 2),
        "drained_seconds_after_restart_began": round(drained_in, 2),
        "attempts": dict(attempts),
        "rejected_writes_logged": sum(text.count("rejected:") for text in logs),
    }
    print(f"\n{backend.split(':')[0]} restart under load: {figures}", file=sys.stderr)
    return figures


def test_postgresql_restart_under_load(tmp_path: Path, workers: Workers) -> None:
    _pg_cluster()
    with backend_url("postgresql", tmp_path) as backend:

        def restart() -> None:
            try:
                _pg_ctl("restart")
            finally:
                if not _pg_running():
                    _pg_ctl("start")

        try:
            drain_through_restart(backend, tmp_path, workers, restart)
        finally:
            if not _pg_running():  # never leave the system PostgreSQL down
                _pg_ctl("start")


def test_redis_restart_under_load(tmp_path: Path, workers: Workers, redis_server: RedisServer) -> None:
    def restart() -> None:
        redis_server.shutdown()
        time.sleep(0.5)  # the workers see connection errors for a moment
        redis_server.start()

    drain_through_restart(f"{redis_server.url}?prefix=restart", tmp_path, workers, restart)
