"""A stale worker (paused past its lease with SIGSTOP, then resumed) cannot write anything late.

The paused worker's handlers wake up past their sleep and write progress, output or
their completion. Its heartbeat would also notice, a moment later, that the lease was
taken over and stop the handlers; to make sure the late writes really reach the
storage (and are refused there by the fencing token, not skipped by the worker), the
test holds the storage's writes for a second while the worker resumes: a SQLite write
lock, a PostgreSQL table lock that lets reads through, ``CLIENT PAUSE WRITE`` on a Redis
server of the test's own. (Row locks would not do on PostgreSQL: a fenced ``UPDATE`` whose
token no longer matches the row skips it without waiting for its lock, so the heartbeat's
renewal could come back first, cancel the handlers and race their writes.)
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from backends import backend_url
from helpers import APP_CONFIG, executions

from dqflow import EventType, JobStatus, Queue
from reliability._support import RedisServer, Workers, completed_events, runs_by_pid, wait_until

pytestmark = pytest.mark.reliability

LATE_WRITES = {"completion": [], "progress": ["progress"], "output": ["output"]}
LOG_LINE = {
    "completion": "completion rejected",
    "progress": "progress write rejected",
    "output": "output write rejected",
}


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def stale_backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, Callable[[list[int]], object]]]:
    """A backend URL and a way to hold its writes to some jobs for a while."""
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        url = f"{server.url}?prefix=stale"

        @contextmanager
        def hold_redis(job_ids: list[int]) -> Iterator[None]:
            client = server.client()
            client.execute_command("CLIENT", "PAUSE", 10_000, "WRITE")
            try:
                yield
            finally:
                client.execute_command("CLIENT", "UNPAUSE")
                client.close()

        yield url, hold_redis
        return
    with backend_url(request.param, tmp_path) as url:
        if request.param == "sqlite":

            @contextmanager
            def hold_sqlite(job_ids: list[int]) -> Iterator[None]:
                conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
                conn.execute("BEGIN IMMEDIATE")  # the write lock; readers go on (WAL)
                try:
                    yield
                finally:
                    conn.execute("ROLLBACK")
                    conn.close()

            yield url, hold_sqlite
        else:
            from dqflow.storage.postgres._connect import parse_url

            @contextmanager
            def hold_postgres(job_ids: list[int]) -> Iterator[None]:
                conn = parse_url(url).connect(autocommit=False)
                conn.execute("LOCK TABLE dqflow_jobs IN EXCLUSIVE MODE")  # every write waits; reads go on
                try:
                    yield
                finally:
                    conn.rollback()
                    conn.close()

            yield url, hold_postgres


def test_late_writes_of_a_stale_worker_are_rejected(
    stale_backend: tuple[str, Callable[[list[int]], object]], tmp_path: Path, workers: Workers
) -> None:
    backend, hold_writes = stale_backend
    log = tmp_path / "runs.log"
    queue = Queue.from_yaml(APP_CONFIG, backend=backend)
    # each handler sleeps ignoring cancellation, then writes: on the paused worker those writes come late
    ids = {
        late: queue.add("late_writer", {"n": n, "log": str(log), "sleep": 0.5, "writes": writes})
        for n, (late, writes) in enumerate(LATE_WRITES.items())
    }
    stale = workers.start(backend, "--concurrency", "3", "--lease", "1", name="stale")
    wait_until(lambda: len(executions(log)) == 3, 30, interval=0.01, what="the first worker runs all three jobs")
    os.kill(stale.pid, signal.SIGSTOP)
    try:
        rescuer = workers.start(backend, "--concurrency", "3", "--lease", "1", name="rescuer")

        def taken_over() -> bool:
            return all(queue.get_job(i).status is JobStatus.COMPLETED for i in ids.values())

        wait_until(taken_over, 30, what="the second worker completes every job")
        after_rescue = {i: queue.get_job(i) for i in ids.values()}
        held = hold_writes(list(ids.values()))
        held.__enter__()  # type: ignore[attr-defined]
    except BaseException:
        os.kill(stale.pid, signal.SIGCONT)
        raise
    try:
        os.kill(stale.pid, signal.SIGCONT)
        time.sleep(1.0)  # the stale worker's late writes are now waiting on the storage
    finally:
        held.__exit__(None, None, None)  # type: ignore[attr-defined]
    wait_until(lambda: workers.log_of(stale).count("rejected:") >= 3, 15, what="three rejected writes logged")
    time.sleep(0.3)  # room for anything else the stale worker might still try
    stale.send_signal(signal.SIGTERM)
    rescuer.send_signal(signal.SIGTERM)
    assert stale.wait(timeout=30) == 0
    assert rescuer.wait(timeout=30) == 0

    stale_log = workers.log_of(stale)
    for late, job_id in ids.items():
        assert f"job {job_id}: {LOG_LINE[late]}: this worker no longer holds the job" in stale_log, stale_log
    assert "0 completed, 0 failed, 3 stale writes rejected" in stale_log, stale_log

    runs = runs_by_pid(log)
    assert sorted(runs[stale.pid]) == sorted(ids.values())
    assert sorted(runs[rescuer.pid]) == sorted(ids.values())
    for late, job_id in ids.items():
        job = queue.get_job(job_id)
        assert job == after_rescue[job_id], f"{late}: the stale worker changed the job after it was taken over"
        assert job.status is JobStatus.COMPLETED and job.attempts == 2
        via = "set_output" if late == "output" else "return"
        assert job.output == {"n": job.payload["n"], "pid": rescuer.pid, "via": via}
        if late == "progress":
            assert job.progress == rescuer.pid % 101
        kinds = [e.event_type for e in queue.get_events(job_id)]
        assert kinds.count(EventType.COMPLETED) == 1, kinds
    assert completed_events(queue, list(ids.values())) == Counter({i: 1 for i in ids.values()})
    queue.close()
