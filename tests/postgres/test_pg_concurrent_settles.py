"""A PostgreSQL worker has two result writes in flight at once (``concurrent_settles``):
a settle that waits on a lock (here a workflow run another transaction holds) holds up
only its own batch, and results that come after it are written meanwhile."""

from __future__ import annotations

import threading
import time
from typing import Any

from helpers import make_queue, running_worker, wait_for_status, wait_until

from dqflow import JobStatus, WorkflowStatus
from dqflow.storage.postgres._connect import parse_url
from dqflow.worker import JobContext

N_INPUT = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def test_a_settle_waiting_on_a_locked_run_does_not_hold_up_later_results(pg_url: str) -> None:
    step_ran = threading.Event()

    def step(payload: Any, ctx: JobContext) -> Any:
        step_ran.set()
        return {"n": payload["n"] * 2}

    def plain(payload: Any, ctx: JobContext) -> Any:
        return {"n": payload["n"]}

    queue = make_queue(
        pg_url,
        {"step": {"handler": step}, "plain": {"handler": plain}},
        workflows={"one": {"input": N_INPUT, "steps": {"a": {"job": "step", "payload": {"n": "${input.n}"}}}}},
    )
    assert queue.storage.concurrent_settles == 2
    run_id = queue.start_workflow("one", {"n": 4})
    (step_job,) = queue.require_workflow(run_id).steps[0].job_ids
    lock = parse_url(pg_url).connect(autocommit=False)
    try:
        lock.execute("SELECT id FROM dqflow_workflow_runs WHERE id = %s FOR UPDATE", (run_id,))
        with running_worker(queue, concurrency=2):
            assert step_ran.wait(10), "the step's handler did not run"
            time.sleep(0.3)  # its settle is now waiting for the run's lock
            plain_id = queue.add("plain", {"n": 1})
            wait_for_status(queue, plain_id, "completed", timeout=10)
            assert queue.require_job(step_job).status is JobStatus.PROCESSING  # still held up, alone
            lock.rollback()
            wait_until(lambda: queue.require_workflow(run_id).is_finished, 10)
        run = queue.require_workflow(run_id)
        assert run.status is WorkflowStatus.COMPLETED and run.steps[0].output == {"n": 8}
        assert queue.require_job(step_job).status is JobStatus.COMPLETED
    finally:
        lock.close()
        queue.close()
