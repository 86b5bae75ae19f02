"""Flow control under real load, with real worker processes.

Concurrency keys: 4 worker processes x concurrency 8, 500 jobs on 5 keys, limit 2.
Each handler counts itself in and out of its key in a file shared by every process
(under ``flock``), between its claim and its settle, so the peak it records can only
be lower than what storage allowed, never higher.

Rate limits: the starts storage records (``started_at``, on the clock the claim's
window is computed on) never exceed the limit in any window.
"""

from __future__ import annotations

import json
import math
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from dqflow import JobStatus, Queue
from reliability._support import Workers, wait_until

pytestmark = pytest.mark.reliability

HANDLERS = '''
"""Handlers of the concurrency-key test: count runs per key in a file shared by every process."""

import fcntl
import json
import os
import time

STATE = os.environ.get("DQFLOW_TEST_FLOW_STATE", "")


def _update(key, step):
    with open(STATE, "r+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        state = json.loads(handle.read() or "{}")
        running = state.setdefault("running", {})
        peak = state.setdefault("peak", {})
        running[key] = running.get(key, 0) + step
        peak[key] = max(peak.get(key, 0), running[key])
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(state))
        handle.flush()
        fcntl.flock(handle, fcntl.LOCK_UN)


def rated(payload):
    return None


def limited(payload):
    _update(payload["customer"], 1)
    try:
        time.sleep(payload["sleep"])
    finally:
        _update(payload["customer"], -1)
'''

CONFIG = """
worker:
  concurrency: 8
  lease: 20s
  heartbeat: 1s
jobs:
  limited:
    handler: flow_handlers:limited
    payload:
      type: object
      properties:
        customer: {type: string}
        sleep: {type: number}
      required: [customer, sleep]
    concurrency:
      limit: 2
      key: "${payload.customer}"
  rated:
    handler: flow_handlers:rated
    payload:
      type: object
      properties:
        customer: {type: string}
      required: [customer]
    rate_limit:
      limit: 4
      per: 1s
      key: "${payload.customer}"
"""


def _project(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "flow_handlers.py").write_text(HANDLERS)
    config = tmp_path / "jobs.yaml"
    config.write_text(textwrap.dedent(CONFIG))
    state = tmp_path / "state.json"
    state.write_text("{}")
    return config, state


def test_at_most_the_limit_per_key_runs_at_once_across_worker_processes(
    backend: str, tmp_path: Path, workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, state = _project(tmp_path)
    monkeypatch.setenv("DQFLOW_TEST_FLOW_STATE", str(state))
    customers = [f"customer-{n}" for n in range(5)]
    with Queue.from_yaml(config, backend=backend) as queue:
        ids = queue.add_many(
            [{"job_type": "limited", "payload": {"customer": customers[n % 5], "sleep": 0.01}} for n in range(500)]
        )
        started = time.monotonic()
        for _ in range(4):
            workers.start(backend, "--concurrency", "8", config=config)
        counts = wait_until(
            lambda: (c := queue.count_jobs()).get(("limited", JobStatus.COMPLETED), 0) == 500 and c,
            60,
            what="all 500 jobs complete",
        )
        elapsed = time.monotonic() - started
        assert counts == {("limited", JobStatus.COMPLETED): 500}
        assert all(
            queue.get_job(job_id).concurrency_key == f"limited:{customers[i % 5]}" for i, job_id in enumerate(ids[:5])
        )
    recorded = json.loads(state.read_text())
    assert recorded["peak"] == dict.fromkeys(customers, 2), recorded
    assert recorded["running"] == dict.fromkeys(customers, 0)
    assert elapsed < 60


def test_rate_limited_starts_never_exceed_the_limit_per_window(
    backend: str, tmp_path: Path, workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, state = _project(tmp_path)
    monkeypatch.setenv("DQFLOW_TEST_FLOW_STATE", str(state))
    with Queue.from_yaml(config, backend=backend) as queue:
        ids = queue.add_many([{"job_type": "rated", "payload": {"customer": f"c{n % 2}"}} for n in range(24)])
        for _ in range(3):
            workers.start(backend, "--concurrency", "8", config=config)
        wait_until(
            lambda: queue.count_jobs().get(("rated", JobStatus.COMPLETED), 0) == 24, 30, what="all 24 jobs complete"
        )
        jobs = [queue.get_job(job_id) for job_id in ids]
    per_window = Counter((job.payload["customer"], math.floor(job.started_at.timestamp())) for job in jobs)
    assert max(per_window.values()) <= 4, per_window
    # 12 jobs per key at 4 per window: at least three windows each, every full one used up
    for customer in ("c0", "c1"):
        windows = sorted(w for (c, w) in per_window if c == customer)
        assert windows[-1] - windows[0] >= 2, per_window
        assert sum(per_window[(customer, w)] for w in windows) == 12
