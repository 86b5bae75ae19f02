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
    # Modest growth only. The Python heap stays flat (checked with tracemalloc); what RSS gains on SQLite
    # is its page cache filling up (about 2 MiB per connection, one connection per storage thread).
    # A leak of 1 KiB per job would add 15 MB here.
    assert result["growth_mb"] <= 10.0, result
