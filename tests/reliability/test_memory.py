"""A worker's memory does not grow with the number of jobs it has processed (benchmarks/memory.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from reliability._support import TESTS

pytestmark = pytest.mark.reliability

BENCHMARK = TESTS.parent / "benchmarks" / "memory.py"


def test_worker_memory_is_flat_over_20000_jobs_on_sqlite() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARK), "--backend", "sqlite", "--jobs", "20000", "--checkpoint", "5000"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(result)
    assert result["jobs"] == 20000 and result["backend"] == "sqlite"
    allowed = max(5.0, result["rss_mb_at_checkpoint"] * 0.10)  # modest growth only: no per-job leak
    assert result["growth_mb"] <= allowed, result
