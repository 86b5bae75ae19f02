"""``dqflow add --wait``: the job's output on stdout, exit 1 when it fails or the wait times out."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cli_support import Result, dqflow_process, one_line_error, subprocess_env


@contextmanager
def worker_process(project: Path) -> Iterator[None]:
    """``dqflow run`` as a real process for the duration of the block."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dqflow", "run", "--concurrency", "2"],
        cwd=project,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_add_wait_prints_the_output_or_the_failure(project: Path) -> None:
    with worker_process(project):
        done = dqflow_process("add", "ok", "-p", '{"n": 7}', "--wait", "--wait-timeout", "60s", cwd=project)
        assert done.code == 0, done.err
        assert json.loads(done.out) == {"n": 7, "ok": True}
        as_json = dqflow_process("add", "ok", "-p", '{"n": 8}', "--wait", "--json", cwd=project)
        document = json.loads(as_json.out)
        assert as_json.code == 0 and document["status"] == "completed" and document["output"] == {"n": 8, "ok": True}
        failed = dqflow_process(
            "add", "boom", "-p", '{"why": "no disk"}', "--wait", "--wait-timeout", "60s", cwd=project
        )
        assert failed.code == 1 and failed.out == ""
        assert failed.err.strip().endswith("failed: RuntimeError: boom: no disk"), failed.err


def test_add_wait_times_out(project: Path) -> None:
    """No worker runs: the wait ends after --wait-timeout with one error line; the job stays queued."""
    timed_out = dqflow_process("add", "ok", "-p", '{"n": 1}', "--wait", "--wait-timeout", "300ms", cwd=project)
    line = one_line_error(timed_out)
    assert "did not finish within 0.3 s" in line and "pending" in line
    shown = dqflow_process("show", "1", "--json", cwd=project)
    assert json.loads(shown.out)["status"] == "pending"


def test_wait_timeout_needs_wait(project: Path, dq: Callable[..., Result]) -> None:
    refused = dq("add", "ok", "-p", '{"n": 1}', "--wait-timeout", "1s")
    assert "--wait-timeout needs --wait" in one_line_error(refused, code=2)
    assert dq("list", "--json").out.count('"id"') == 0
