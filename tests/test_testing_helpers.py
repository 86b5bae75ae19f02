"""``dqflow.testing``: the in-memory queue, ``run_until_idle``, the assertions and the pytest plugin."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from dqflow import Declaration, JobStatus, Queue
from dqflow.errors import StorageError
from dqflow.testing import ANY, MEMORY_URL, MemoryQueue

REPO = Path(__file__).resolve().parent.parent


def _double(payload: dict[str, int]) -> dict[str, int]:
    return {"n": payload["n"] * 2}


def _broken(payload: object) -> None:
    raise RuntimeError("no disk left")


JOBS = {
    "double": {"handler": _double, "payload": {"type": "object", "required": ["n"]}},
    "broken": {"handler": _broken, "max_attempts": 1},
    "slow": {"handler": lambda payload: time.sleep(payload["s"]), "max_attempts": 1},
}


def test_memory_queues_are_private_and_gone_when_closed() -> None:
    with MemoryQueue(JOBS) as one, MemoryQueue(JOBS) as two:
        one.add("double", {"n": 1})
        assert one.count_jobs() == {("double", JobStatus.PENDING): 1} and two.count_jobs() == {}
        folder = Path(one.storage.path).parent  # type: ignore[attr-defined]
        assert folder.is_dir()
    assert not folder.exists()
    with Queue(Declaration.build(JOBS), backend=MEMORY_URL) as plain:  # the URL works for any Queue
        assert plain.add("double", {"n": 1}) == 1
    with pytest.raises(StorageError, match=r"sqlite:///:memory:"):
        Queue(Declaration.build(JOBS), backend="sqlite:///")


def test_run_until_idle_runs_everything_ready_and_leaves_later_jobs() -> None:
    with MemoryQueue(JOBS) as queue:
        ids = [queue.add("double", {"n": n}) for n in range(5)]
        later = queue.add("double", {"n": 99}, delay="1h")
        failing = queue.add("broken", {})
        queue.run_until_idle()
        assert [r.output for r in queue.assert_completed(ids[0])] == [{"n": 0}]
        assert [queue.require_job(i).output["n"] for i in ids] == [0, 2, 4, 6, 8]
        assert queue.require_job(later).status is JobStatus.PENDING
        queue.assert_failed(failing, error="no disk left")
        queue.assert_enqueued("double", {"n": 99}, status="pending", count=1)


def test_assertions_say_what_there_is() -> None:
    with MemoryQueue(JOBS) as queue:
        queue.add("double", {"n": 1})
        with pytest.raises(
            AssertionError, match=r"expected a double job\(s\) with payload \{'n': 2\}, found 0; .*#1 pending"
        ):
            queue.assert_enqueued("double", {"n": 2})
        with pytest.raises(AssertionError, match=r"expected job 1 completed: #1 pending \(attempt 0/3\)"):
            queue.assert_completed(1)
        failing = queue.add("broken", {})
        queue.run_until_idle()
        with pytest.raises(AssertionError, match="last error: RuntimeError: no disk left"):
            queue.assert_completed(failing)
        with pytest.raises(AssertionError, match=r"output \{'n': 2\} != \{'n': 3\}"):
            queue.assert_completed("double", output={"n": 3})
        with pytest.raises(AssertionError, match="no slow job at all"):
            queue.assert_completed("slow", output=ANY)


def test_run_until_idle_times_out_and_works_from_async_code() -> None:
    with MemoryQueue(JOBS) as queue:
        queue.add("slow", {"s": 3})
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=r"jobs still running after 0.3 s: #1 processing"):
            queue.run_until_idle(timeout=0.3)
        assert time.monotonic() - started < 30

        async def in_a_test_loop() -> None:
            queue.add("double", {"n": 4})
            queue.run_until_idle()

        asyncio.run(in_a_test_loop())
        queue.assert_completed("double", output={"n": 8})


def test_the_example_projects_test_passes_with_the_plugin() -> None:
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONPATH": str(REPO)}
    env.pop("DQFLOW_CONFIG", None)
    args = ["-p", "dqflow.testing.pytest_plugin", "-p", "timeout", "-q", "examples/test_example_jobs.py"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout


def test_the_plugin_is_a_pytest11_entry_point() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["pytest11"] == {"dqflow": "dqflow.testing.pytest_plugin"}
