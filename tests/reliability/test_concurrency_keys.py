"""Concurrency keys under real load: 4 worker processes x concurrency 8, 500 jobs on 5 keys, limit 2.

Each handler counts itself in and out of its key in a file shared by every process
(under ``flock``), between its claim and its settle, so the peak it records can only
be lower than what storage allowed, never higher.
"""

from __future__ import annotations

import json
import textwrap
import time
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
