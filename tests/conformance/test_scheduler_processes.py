"""Three real worker processes share one ``* * * * *`` schedule on a clock 60x fast, two of them skewed:
each tick is enqueued exactly once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from helpers import TESTS, wait_until

from dqflow import Queue
from dqflow.schedules.clock import CLOCK_ENV

CONFIG = """\
worker: {concurrency: 2, lease: 3s, heartbeat: 200ms, poll_interval: 200ms, shutdown_grace: 2s}
jobs:
  tick: {handler: 'sched_proc_svc:tick'}
schedules:
  every_minute: {cron: '* * * * *', job: tick, catch_up: all}
"""
ADDED = re.compile(r"schedule every_minute: tick (\S+) added job (\d+)")
START = datetime(2030, 5, 1, 11, 59, 30, tzinfo=UTC)


def _added(logs: list[Path]) -> list[tuple[str, int]]:
    return [(m[1], int(m[2])) for log in logs if log.exists() for m in ADDED.finditer(log.read_text())]


def test_three_worker_processes_enqueue_each_tick_once(backend: str, tmp_path: Path) -> None:
    (tmp_path / "sched_proc_svc.py").write_text("def tick(payload):\n    return None\n")
    config = tmp_path / "jobs.yaml"
    config.write_text(CONFIG)
    anchor = time.time()
    logs = [tmp_path / f"worker{n}.log" for n in range(3)]
    workers = []
    for log, skew in zip(logs, (0, 3, -2), strict=True):  # simulated seconds of clock skew
        start = (START + timedelta(seconds=skew)).isoformat()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", CLOCK_ENV: f"start={start},anchor={anchor},speed=60"}
        with open(log, "ab") as out:
            workers.append(
                subprocess.Popen(
                    [sys.executable, str(TESTS / "worker_process.py"), str(config), backend],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            )
    try:
        # at least two simulated minutes of ticks after every worker is up
        wait_until(
            lambda: all("worker ready" in log.read_text() for log in logs if log.exists()) and len(logs) == 3, 60
        )
        ready = len(_added(logs))
        wait_until(lambda: len(_added(logs)) >= ready + 3, timeout=90, interval=0.2)
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        for proc in workers:
            assert proc.wait(timeout=60) == 0
    added = _added(logs)
    counts = Counter(tick for tick, _ in added)
    assert max(counts.values()) == 1, f"ticks enqueued twice: {[t for t, c in counts.items() if c > 1]}"
    ticks = sorted(datetime.fromisoformat(tick) for tick in counts)
    assert ticks == [ticks[0] + timedelta(minutes=m) for m in range(len(ticks))], "a tick was missed"
    queue = Queue.from_yaml(config, backend=backend)
    jobs = queue.list_jobs(job_type="tick", limit=1000).jobs
    assert sorted(job.id for job in jobs) == sorted(job_id for _, job_id in added)
    assert sorted(job.meta["tick"] for job in jobs) == [t.isoformat().replace("+00:00", "Z") for t in ticks]
    queue.close()
