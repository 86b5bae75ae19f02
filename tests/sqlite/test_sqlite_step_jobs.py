"""SQLite inserts a batch's next step jobs in one statement: each run names its job, each job has its event."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import DOUBLE_JOBS, doubling_chain, make_queue

from dqflow import EventType, WorkflowStatus
from dqflow.storage import Completion

JOBS = DOUBLE_JOBS
WORKFLOWS = doubling_chain("ab")


def test_a_batch_of_runs_gets_its_next_jobs_each_named_by_its_run_with_its_added_event(tmp_path: Path) -> None:
    queue = make_queue(f"sqlite:///{tmp_path / 'q.db'}", JOBS, workflows=WORKFLOWS)
    try:
        run_ids = queue.start_workflows("linear", [{"n": n} for n in range(7)])
        storage = queue.storage
        for step in ("a", "b"):
            jobs = storage.claim_jobs("w", None, 100, 60_000)
            assert sorted(job.workflow_step or "" for job in jobs) == [step] * 7
            completions = [
                Completion(
                    job.id,
                    job.lease_token,
                    json.dumps({"n": job.payload["n"] * 2}),
                    job.workflow_run_id,
                )
                for job in jobs
            ]
            assert storage.settle_jobs(completions) == [True] * 7
            for n, run_id in enumerate(run_ids):
                run = queue.require_workflow(run_id)
                if step == "a":
                    assert run.status is WorkflowStatus.RUNNING
                    (job_id,) = run.step("b").job_ids
                    job = queue.get_job(job_id)
                    assert (job.workflow_run_id, job.workflow_step, job.payload) == (run_id, "b", {"n": 2 * n})
                    assert [event.event_type for event in queue.get_events(job_id)] == [EventType.ADDED]
                else:
                    assert run.status is WorkflowStatus.COMPLETED and run.output == {"n": 4 * n}
    finally:
        queue.close()
