"""SQLite keeps the run states it wrote (``RunStates``): used only at the version it wrote, only once committed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helpers import DOUBLE_JOBS, doubling_chain, make_queue

from dqflow import Queue, WorkflowStatus
from dqflow.storage import Completion
from dqflow.storage.run_states import WrittenRunStates
from dqflow.storage.sqlite._workflows import RunStates
from dqflow.storage.workflows import RunState

JOBS = DOUBLE_JOBS
WORKFLOWS = doubling_chain()


def _state(run_id: int, version: int) -> RunState:
    return RunState(run_id, "linear", WorkflowStatus.RUNNING, {}, [], [], version)


def test_a_state_is_used_at_its_version_once_published_and_dropped_when_its_transaction_failed() -> None:
    kept = RunStates(WrittenRunStates(max_runs=2))
    kept.begin()
    kept.stage(_state(1, 2), 100, whole=True)
    assert kept.get(1, 2) is None  # not committed yet
    kept.begin()  # the transaction failed: the next one starts
    kept.publish()
    assert kept.get(1, 2) is None
    kept.stage(_state(1, 2), 100, whole=True)
    kept.publish()
    assert kept.get(1, 2) is not None and kept.get(1, 3) is None
    for run_id in (2, 3):
        kept.stage(_state(run_id, 1), 100, whole=True)
    kept.publish()
    assert kept.get(1, 2) is None and kept.get(3, 1) is not None  # the least recently written went


def test_memory_is_bounded_by_the_size_of_the_step_states() -> None:
    kept = RunStates(WrittenRunStates(max_bytes=1600))
    kept.stage(_state(1, 1), 101, whole=True)  # over a sixteenth of the budget: not kept
    kept.read(2, 60)
    kept.stage(_state(2, 1), 40, whole=False)  # changed steps on top of what was read: 100
    kept.publish()
    assert kept.get(1, 1) is None and kept.get(2, 1) is not None
    for run_id in range(3, 19):
        kept.stage(_state(run_id, 1), 100, whole=True)
    kept.publish()
    assert kept.get(2, 1) is None and kept.get(3, 1) is not None  # 16 x 100 fit, the oldest went


def _settle(queue: Queue, output: dict[str, Any]) -> None:
    (job,) = queue.storage.claim_jobs("w", None, 1, 60_000)
    completion = Completion(job.id, job.lease_token, json.dumps(output), job.workflow_run_id)
    assert queue.storage.settle_jobs([completion]) == [True]


def test_a_run_moved_by_another_process_is_read_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    first, second = (make_queue(url, JOBS, workflows=WORKFLOWS) for _ in range(2))
    try:
        run_id = first.start_workflow("linear", {"n": 1})
        _settle(first, {"n": 2})  # step a: ``first`` keeps the state it wrote (b running)
        _settle(second, {"n": 4})  # step b, elsewhere: c running
        _settle(first, {"n": 8})  # step c: ``first`` must not plan from what it kept
        run = first.require_workflow(run_id)
        assert run.status is WorkflowStatus.COMPLETED and run.output == {"n": 8}
    finally:
        first.close()
        second.close()
