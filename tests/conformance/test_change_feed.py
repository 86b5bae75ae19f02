"""The change feed (storage/changes.py) on every backend: what a worker process stores,
in order, readable after a cursor from another process, with a prompt wake-up."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from helpers import make_queue, running_worker, start_worker_process, wait_for_status

from dqflow import JobContext, Queue, StorageError
from dqflow.storage import Storage, open_storage

HTTP_APP = Path(__file__).resolve().parent.parent / "http" / "app" / "jobs.yaml"


def _changes(queue: Queue, after: str) -> list[tuple[int, str, dict[str, object]]]:
    return [(c.job_id, c.kind, c.data) for c in queue.storage.read_changes(after)]


def test_the_feed_has_events_progress_and_output_in_order(backend: str, tmp_path: Path) -> None:
    with Queue.from_yaml(HTTP_APP, backend=backend, import_handlers=False) as queue:
        start = queue.storage.change_cursor()
        steps = queue.add("steps", {"steps": 3})
        failing = queue.add("boom", {"why": "x"})
        cancelled = queue.add("steps", {"steps": 1}, delay="1h")
        queue.cancel(cancelled)
        worker = start_worker_process(backend, "--drain", config=HTTP_APP, log=tmp_path / "worker.log")
        try:
            assert worker.wait(60) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
        changes = queue.storage.read_changes(start)
        assert all(c.at.tzinfo is not None and c.cursor for c in changes)
        assert {c.job_type for c in changes} == {"steps", "boom"}
        of_steps = [(c.kind, c.data) for c in changes if c.job_id == steps]
        assert of_steps[0][0] == "processing"
        assert [d["progress"] for k, d in of_steps if k == "progress"] == [33, 67, 100]
        assert [k for k, _ in of_steps if k == "output"] == [
            "output"
        ] * 3  # each set_output; the return equals the last
        assert of_steps[-1][0] == "completed" and all(d == {} for k, d in of_steps if k == "output")
        of_boom = [c.kind for c in changes if c.job_id == failing]
        assert of_boom == ["processing", "failed"]
        assert [c.data["will_retry"] for c in changes if c.job_id == failing and c.kind == "failed"] == [False]
        assert [c.kind for c in changes if c.job_id == cancelled] == ["cancelled"]
        assert "added" not in {c.kind for c in changes}
        # Cursors are ordered: reading after any change answers exactly the rest.
        middle = changes[len(changes) // 2]
        assert queue.storage.read_changes(middle.cursor) == changes[len(changes) // 2 + 1 :]
        assert queue.storage.read_changes(changes[-1].cursor) == []
        assert queue.storage.read_changes(start, limit=2) == changes[:2]
        assert queue.storage.change_cursor() == changes[-1].cursor


def test_wait_for_changes_wakes_on_a_change_from_another_connection(backend: str) -> None:
    def hold(payload: object, ctx: JobContext) -> None:
        for progress in (10, 20):
            ctx.set_progress(progress)
            time.sleep(0.3)

    jobs = {"hold": {"handler": hold}}
    with make_queue(backend, jobs) as queue, make_queue(backend, jobs) as other:
        cursor = queue.storage.change_cursor()
        started = time.monotonic()
        queue.storage.wait_for_changes(cursor, 0.2)  # nothing happens: the whole timeout
        assert 0.15 <= time.monotonic() - started < 2
        woke: list[float] = []

        def waiter() -> None:
            begin = time.monotonic()
            queue.storage.wait_for_changes(cursor, 10)
            woke.append(time.monotonic() - begin)

        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(0.1)
        job_id = other.add("hold", {})
        other.cancel(job_id)
        thread.join(15)
        assert woke and woke[0] < 2, woke
        assert [c.kind for c in queue.storage.read_changes(cursor)] == ["cancelled"]
        with running_worker(other):
            retried = other.retry(job_id)
            wait_for_status(other, retried.id, "completed")
        kinds = [c.kind for c in queue.storage.read_changes(cursor)]
        assert kinds == ["cancelled", "retried", "processing", "progress", "progress", "completed"]


@pytest.mark.parametrize("cursor", ["", "abc", "-1", "1:2:3", "x-y", None])
def test_a_malformed_cursor_is_a_value_error(backend: str, cursor: object) -> None:
    with (
        make_queue(backend, {"a": {"handler": lambda payload: None}}) as queue,
        pytest.raises(ValueError, match="invalid change cursor"),
    ):
        queue.storage.read_changes(cursor)  # type: ignore[arg-type]


def test_close_ends_a_wait_for_changes_in_progress(backend: str) -> None:
    """A Queue's follower may be inside the feed when the Queue closes: close ends it, never crashes."""
    for _ in range(5):
        storage = open_storage(backend)
        storage.setup()
        cursor = storage.change_cursor()
        ended: list[BaseException] = []

        def follow(storage: Storage = storage, cursor: str = cursor, ended: list[BaseException] = ended) -> None:
            try:
                while True:
                    storage.wait_for_changes(cursor, 10)
                    storage.read_changes(cursor)
            except Exception as exc:  # the storage closed under it
                ended.append(exc)

        thread = threading.Thread(target=follow, daemon=True)
        thread.start()
        time.sleep(0.05)
        started = time.monotonic()
        storage.close()
        thread.join(timeout=5)
        assert not thread.is_alive() and time.monotonic() - started < 2
        assert len(ended) == 1 and isinstance(ended[0], StorageError), ended


def test_closing_a_queue_that_waited_is_quick(backend: str) -> None:
    with make_queue(backend, {"quick": {"handler": lambda payload: payload}}) as queue:
        job_id = queue.add("quick", {"n": 1})
        queue.cancel(job_id)
        queue.wait(job_id, timeout=5)  # starts the queue's feed follower
        assert queue.changes.following
        started = time.monotonic()
    assert time.monotonic() - started < 0.5
