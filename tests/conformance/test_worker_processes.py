"""Conformance: several real worker processes drain one queue; every job completes exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from helpers import APP_CONFIG, executions, start_worker_process

from dqflow import JobStatus, Queue

REPO = Path(__file__).resolve().parents[2]


def test_several_worker_processes_complete_each_job_exactly_once(backend: str, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    queue = Queue.from_yaml(APP_CONFIG, backend=backend)
    ids = queue.add_many(
        [{"job_type": "record_run", "payload": {"n": i, "log": str(log), "sleep": 0.1}} for i in range(300)]
        + [{"job_type": "async_record_run", "payload": {"n": i, "log": str(log)}} for i in range(300, 400)]
    )
    workers = [
        start_worker_process(backend, "--drain", "--concurrency", "8", log=tmp_path / f"worker{i}.log")
        for i in range(3)
    ]
    for proc in workers:
        assert proc.wait(timeout=120) == 0
    counts = Counter(executions(log))
    assert set(counts) == set(ids)
    assert max(counts.values()) == 1, f"jobs run twice: {[j for j, c in counts.items() if c > 1]}"
    page = queue.list_jobs(status="completed", limit=1000)
    assert len(page.jobs) == 400
    assert all(job.status is JobStatus.COMPLETED and job.output["ok"] is True for job in page.jobs)
    assert all(job.attempts == 1 for job in page.jobs)
    pids = {line.split()[1] for line in log.read_text().splitlines()}
    assert len(pids) >= 2, "the work was not shared between processes"
    queue.close()


def _cli(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m dqflow ARGS`` in a real process, with this checkout first on the path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "dqflow", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_a_worker_leaves_job_types_it_does_not_declare_to_workers_that_do(backend: str, tmp_path: Path) -> None:
    (tmp_path / "service.py").write_text(
        "def echo(payload):\n    return payload\n\n\ndef new_type(payload):\n    return 1\n"
    )
    v1 = "jobs:\n  echo: {handler: 'service:echo'}\n"
    (tmp_path / "v1.yaml").write_text(f"backend: {backend}\n{v1}")
    (tmp_path / "v2.yaml").write_text(f"backend: {backend}\n{v1}  new_type: {{handler: 'service:new_type'}}\n")
    newer = Queue.from_yaml(tmp_path / "v2.yaml")
    echo = newer.add("echo", {"n": 1})
    new = newer.add("new_type", {})

    result = _cli("-c", "v1.yaml", "run", "--drain", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "1 completed" in result.stdout, result.stdout
    assert newer.require_job(echo).status is JobStatus.COMPLETED
    job = newer.require_job(new)
    assert job.status is JobStatus.PENDING and job.attempts == 0 and job.error_history == [], job

    result = _cli("-c", "v2.yaml", "run", "--drain", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    job = newer.require_job(new)
    assert job.status is JobStatus.COMPLETED and job.output == 1, job
    newer.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lease", "0"], "lease must be more than 0 seconds"),
        (["--lease", "-1"], "--lease"),
        (["--concurrency", "0"], "--concurrency"),
        (["--concurrency", "5000"], "concurrency must be from 1 to 1000"),
    ],
)
def test_run_refuses_worker_settings_that_cannot_work(args: list[str], message: str, tmp_path: Path) -> None:
    (tmp_path / "service.py").write_text("def echo(payload):\n    return payload\n")
    (tmp_path / "jobs.yaml").write_text(
        f"backend: sqlite:///{tmp_path / 'q.db'}\njobs:\n  echo: {{handler: 'service:echo'}}\n"
    )
    result = _cli("run", "--drain", *args, cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr and result.stderr.startswith("error: "), result.stderr
