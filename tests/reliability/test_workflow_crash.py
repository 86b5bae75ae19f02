"""Workflows with real ``dqflow run`` worker processes: a worker SIGKILLed mid-step, and three
workers draining many runs of a five-step workflow with a fan-out; every step job completes
exactly once (its stored ``completed`` events) and every run completes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import executions

from dqflow import JobStatus, Queue, WorkflowStatus
from reliability._support import TESTS, completed_events, wait_until

pytestmark = pytest.mark.reliability

WORKFLOWS = TESTS / "app" / "workflows.yaml"
RUNS = int(os.environ.get("DQFLOW_TEST_WORKFLOW_RUNS", "300"))
FAN_OUT = 10


class DqflowRun:
    """``dqflow run`` worker processes (this worktree's code); killed at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, backend: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp_path / f"worker{len(self.procs)}.log", "ab")  # noqa: SIM115 - the child's
        env = {k: v for k, v in os.environ.items() if not k.startswith("DQFLOW_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS.parent), env.get("PYTHONPATH", "")]))
        proc = subprocess.Popen(
            [sys.executable, "-m", "dqflow", "run", "--config", str(WORKFLOWS), "--backend", backend, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def dqflow_run(tmp_path: Path) -> Iterator[DqflowRun]:
    pool = DqflowRun(tmp_path)
    try:
        yield pool
    finally:
        pool.cleanup()


def _step_jobs(queue: Queue, run_ids: list[int]) -> list[int]:
    ids: list[int] = []
    for run_id in run_ids:
        ids += [job_id for step in queue.require_workflow(run_id).steps for job_id in step.job_ids]
    return ids


def test_a_worker_killed_mid_step_and_the_run_completes_once(
    backend: str, tmp_path: Path, dqflow_run: DqflowRun
) -> None:
    log = tmp_path / "runs.log"
    with Queue.from_yaml(WORKFLOWS, backend=backend) as queue:
        run_id = queue.start_workflow("crash", {"n": 7, "log": str(log), "sleep": 60})
        victim = dqflow_run.start(backend, "--concurrency", "2", "--lease", "2s")
        wait_until(lambda: executions(log), 30, what="the victim starts the slow step")
        slow_job = queue.require_workflow(run_id).step("slow").job_ids[0]
        locked_by = queue.require_job(slow_job).locked_by
        assert locked_by and f":{victim.pid}:" in locked_by

        os.kill(victim.pid, signal.SIGKILL)  # mid-step: the handler is sleeping
        victim.wait(timeout=10)
        killed_at = time.monotonic()
        rescuer = dqflow_run.start(backend, "--concurrency", "2", "--lease", "2s")
        run = wait_until(lambda: (r := queue.require_workflow(run_id)).is_finished and r, 40, what="the run finishes")
        assert time.monotonic() - killed_at < 30

        assert run.status is WorkflowStatus.COMPLETED, (run.failure_reason, run.error)
        assert run.output == {"n": 7, "pid": rescuer.pid}
        assert [s.status.value for s in run.steps] == ["completed"] * 3
        job_ids = _step_jobs(queue, [run_id])
        assert len(job_ids) == 3
        assert completed_events(queue, job_ids) == {job_id: 1 for job_id in job_ids}
        slow = queue.require_job(slow_job)
        assert slow.attempts == 2 and slow.output == {"n": 7, "pid": rescuer.pid}
        assert executions(log) == [slow_job, slow_job]  # the killed execution and the rescuer's
        assert all(queue.require_job(j).attempts == 1 for j in job_ids if j != slow_job)


def test_three_workers_drain_many_runs_each_step_job_once(backend: str, tmp_path: Path, dqflow_run: DqflowRun) -> None:
    jobs_per_run = 4 + FAN_OUT
    with Queue.from_yaml(WORKFLOWS, backend=backend) as queue:
        began = time.monotonic()
        run_ids = [queue.start_workflow("five", {"n": n, "items": list(range(FAN_OUT))}) for n in range(RUNS)]
        for _ in range(3):
            dqflow_run.start(backend, "--concurrency", "8")

        def finished() -> int:
            page = queue.list_workflows(statuses=("running",), limit=1)
            return not page.runs

        wait_until(finished, 50, interval=0.2, what=f"{RUNS} runs finished")
        drained_in = time.monotonic() - began

        page = queue.list_workflows(limit=10_000)
        assert len(page.runs) == RUNS
        assert {run.status for run in page.runs} == {WorkflowStatus.COMPLETED}
        assert all(run.output == {"n": sum(range(FAN_OUT))} for run in page.runs)
        job_ids = _step_jobs(queue, run_ids)
        assert len(job_ids) == len(set(job_ids)) == RUNS * jobs_per_run

        jobs = queue.list_jobs(limit=10_000).jobs
        assert len(jobs) == RUNS * jobs_per_run
        assert {job.status for job in jobs} == {JobStatus.COMPLETED}
        assert {job.attempts for job in jobs} == {1}
        assert completed_events(queue, job_ids) == {job_id: 1 for job_id in job_ids}
        assert time.monotonic() - began < 60, (
            f"drained in {drained_in:.1f}s, checked in {time.monotonic() - began:.1f}s"
        )
