"""``WrittenRunStates``: the run states a storage wrote, used at their version, bounded in number and size."""

from __future__ import annotations

import threading

from dqflow import WorkflowStatus
from dqflow.storage.run_states import WrittenRunStates
from dqflow.storage.workflows import RunState


def _state(run_id: int, version: int, status: WorkflowStatus = WorkflowStatus.RUNNING) -> RunState:
    return RunState(run_id, "linear", status, {}, [], [], version)


def test_a_state_is_used_only_at_the_version_it_was_written_at() -> None:
    kept = WrittenRunStates()
    kept.keep(_state(1, 3), 10)
    assert kept.get(1, 3) is not None and kept.get(1) is not None
    assert kept.get(1, 2) is None and kept.get(1, 4) is None and kept.get(2) is None
    kept.keep(_state(1, 4), 12)
    assert kept.get(1, 3) is None and kept.get(1, 4) is not None and kept.size_of(1) == 12
    kept.forget(1)
    assert kept.get(1) is None and kept.size_of(1) is None and len(kept) == 0


def test_a_finished_run_is_dropped() -> None:
    kept = WrittenRunStates()
    kept.keep(_state(1, 1), 10)
    kept.keep(_state(1, 2, WorkflowStatus.COMPLETED), 10)
    assert kept.get(1) is None and len(kept) == 0


def test_the_least_recently_written_go_past_the_number_of_runs() -> None:
    kept = WrittenRunStates(max_runs=2)
    for run_id in (1, 2):
        kept.keep(_state(run_id, 1), 10)
    kept.keep(_state(1, 2), 10)  # written again: now the most recent
    kept.keep(_state(3, 1), 10)
    assert kept.get(2) is None and kept.get(1) is not None and kept.get(3) is not None


def test_memory_is_bounded_by_the_size_of_the_step_states() -> None:
    kept = WrittenRunStates(max_bytes=1600)
    kept.keep(_state(1, 1), 101)  # over a sixteenth of the budget: not kept
    assert kept.get(1) is None
    for run_id in range(2, 19):
        kept.keep(_state(run_id, 1), 100)
    assert len(kept) == 16 and kept.get(2) is None and kept.get(3) is not None  # 16 x 100 fit
    kept.keep(_state(3, 2), 40)  # a smaller state in its place frees room for one more
    kept.keep(_state(19, 1), 60)
    assert len(kept) == 17 and kept.get(4) is not None


def test_threads_keep_and_forget_without_losing_count() -> None:
    kept = WrittenRunStates(max_runs=64, max_bytes=64 * 16 * 10)

    def churn(base: int) -> None:
        for i in range(2000):
            run_id = base + i % 100
            kept.keep(_state(run_id, i), 10)
            if i % 3 == 0:
                kept.forget(run_id)

    threads = [threading.Thread(target=churn, args=(n * 1000,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(kept) <= 64
    for run_id in range(4000):
        kept.forget(run_id)
    for run_id in range(16):  # the size count came back to 0: 16 states of a sixteenth all fit
        kept.keep(_state(run_id, 1), 64 * 10)
    assert len(kept) == 16
