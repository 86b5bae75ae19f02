"""Conformance: several real worker processes drain one queue; every job completes exactly once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from helpers import APP_CONFIG, executions, start_worker_process

from dqflow import JobStatus, Queue


def test_several_worker_processes_complete_each_job_exactly_once(backend: str, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    queue = Queue.from_yaml(APP_CONFIG, backend=backend)
    ids = queue.add_many(
        [{"job_type": "record_run", "payload": {"n": i, "log": str(log), "sleep": 0.03}} for i in range(300)]
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
