"""PostgreSQL keeps the run states it wrote: the lock answers a run's steps only when it moved
on since, and only states whose transaction committed are kept."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from helpers import DOUBLE_JOBS, FAST_WORKER, doubling_chain, make_queue

from dqflow import Declaration, Queue, WorkflowStatus
from dqflow.errors import StorageError
from dqflow.storage import Completion, workflows
from dqflow.storage.postgres._workflows import PgWorkflows
from dqflow.storage.postgres.backend import PostgresStorage

JOBS = DOUBLE_JOBS
WORKFLOWS = doubling_chain(returns="b")


def _claim(queue: Queue) -> tuple[int, int, int | None]:
    (job,) = queue.storage.claim_jobs("w", None, 1, 60_000)
    return job.id, job.lease_token, job.workflow_run_id


def _complete(queue: Queue, claimed: tuple[int, int, int | None], output: dict[str, Any]) -> None:
    completion = Completion(claimed[0], claimed[1], json.dumps(output), claimed[2])
    assert queue.storage.settle_jobs([completion]) == [True]


def _settle(queue: Queue, output: dict[str, Any]) -> None:
    _complete(queue, _claim(queue), output)


def _known(queue: Queue) -> PgWorkflows:
    storage = queue.storage
    assert isinstance(storage, PostgresStorage)
    return storage._workflows


def test_the_next_step_plans_from_the_state_this_process_wrote(pg_url: str) -> None:
    queue = make_queue(pg_url, JOBS, workflows=WORKFLOWS)
    try:
        run_id = queue.start_workflow("linear", {"n": 1})
        assert _known(queue).known.get(run_id) is None  # started: its first jobs' ids are drawn in SQL
        _settle(queue, {"n": 2})
        kept = _known(queue).known.get(run_id)
        assert kept is not None and kept.version == 2
        _settle(queue, {"n": 4})  # planned from the kept state: the lock answered no steps
        kept = _known(queue).known.get(run_id, 3)
        assert kept is not None and kept.steps[1]["output"] == {"n": 4}
        # only the steps that changed were encoded again: the text is the whole state's all the same
        database, schema = pg_url.split("?schema=")
        with psycopg.connect(database) as conn:
            row = conn.execute(f"SELECT steps::text FROM {schema}.dqflow_workflow_runs WHERE id = %s", (run_id,))
            (text,) = row.fetchone() or ("",)
        assert text == json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
        assert json.loads(text) == kept.steps
        _settle(queue, {"n": 8})
        run = queue.require_workflow(run_id)
        assert run.status is WorkflowStatus.COMPLETED and run.output == {"n": 4}
        assert _known(queue).known.get(run_id) is None  # finished: no more steps will end
    finally:
        queue.close()


def test_a_run_moved_by_another_process_is_read_again(pg_url: str) -> None:
    first, second = (make_queue(pg_url, JOBS, workflows=WORKFLOWS) for _ in range(2))
    try:
        run_id = first.start_workflow("linear", {"n": 1})
        _settle(first, {"n": 2})  # step a: ``first`` keeps the state it wrote (b running)
        _settle(second, {"n": 5})  # step b, elsewhere: c running, the version moved on
        _settle(first, {"n": 10})  # step c: ``first`` must not plan from what it kept
        run = first.require_workflow(run_id)
        assert run.status is WorkflowStatus.COMPLETED and run.output == {"n": 5}
    finally:
        first.close()
        second.close()


def test_a_state_whose_transaction_failed_is_not_kept(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = (make_queue(pg_url, JOBS, workflows=WORKFLOWS) for _ in range(2))
    try:
        run_id = first.start_workflow("linear", {"n": 1})
        _settle(first, {"n": 2})  # kept at version 2
        write = PgWorkflows.write

        def write_then_fail(self: PgWorkflows, conn: psycopg.Connection[Any], *args: Any, **kwargs: Any) -> None:
            write(self, conn, *args, **kwargs)
            conn.execute("SELECT 1 / 0")  # the settle's transaction rolls back after writing version 3

        b = _claim(first)
        monkeypatch.setattr(PgWorkflows, "write", write_then_fail)
        with pytest.raises(StorageError):
            _complete(first, b, {"n": 99})
        monkeypatch.undo()
        _complete(second, b, {"n": 5})  # version 3 elsewhere, with another job for c
        _settle(first, {"n": 10})  # ``first`` must plan from the stored version 3, not its own
        run = first.require_workflow(run_id)
        assert run.status is WorkflowStatus.COMPLETED and run.output == {"n": 5}
    finally:
        first.close()
        second.close()


def test_a_state_written_inside_the_callers_transaction_is_not_kept(pg_url: str) -> None:
    """On the caller's connection in an open transaction, a settle only releases a savepoint:
    the caller may still roll it back."""
    parts = urlsplit(pg_url)
    schema = parse_qs(parts.query)["schema"][0]
    other = make_queue(pg_url, JOBS, workflows=WORKFLOWS)
    conn = psycopg.connect(parts._replace(query="").geturl())
    first = Queue(Declaration.build(JOBS, workflows=WORKFLOWS, worker=FAST_WORKER), backend=conn, schema=schema)
    try:
        run_id = other.start_workflow("linear", {"n": 1})
        a = _claim(other)
        conn.execute("SELECT 1")  # the caller's transaction
        _complete(first, a, {"n": 99})
        conn.rollback()
        assert _known(first).known.get(run_id) is None
        _complete(other, a, {"n": 2})  # version 2 elsewhere, with another job for b
        _settle(first, {"n": 5})
        conn.commit()
        _settle(other, {"n": 10})
        run = other.require_workflow(run_id)
        assert run.status is WorkflowStatus.COMPLETED and run.output == {"n": 5}
    finally:
        first.close()
        conn.close()
        other.close()


def test_a_step_rewrites_its_run_on_the_same_page(pg_url: str) -> None:
    """Pages of runs keep room (fillfactor): a settled step's new run version stays beside the
    old one (a HOT update, no index entries), even when the runs were stored side by side."""
    database, schema = pg_url.split("?schema=")
    queue = make_queue(pg_url, JOBS, workflows=WORKFLOWS)
    try:
        queue.start_workflows("linear", [{"n": n} for n in range(40)])

        def pages() -> dict[int, int]:
            with psycopg.connect(database) as conn:
                rows = conn.execute(f"SELECT id, (ctid::text::point)[0]::int FROM {schema}.dqflow_workflow_runs")
                return {int(run_id): int(page) for run_id, page in rows.fetchall()}

        before = pages()
        assert len(set(before.values())) > 1  # the runs fill more than one page
        jobs = queue.storage.claim_jobs("w", None, 40, 60_000)
        completions = [Completion(j.id, j.lease_token, json.dumps({"n": 2}), j.workflow_run_id) for j in jobs]
        assert queue.storage.settle_jobs(completions) == [True] * 40
        assert pages() == before
    finally:
        queue.close()


def test_a_run_read_from_the_database_has_only_its_changed_steps_encoded(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock answers the step state as text: the steps an advance leaves alone are written
    as read, not decoded and encoded again."""
    first, second = (make_queue(pg_url, JOBS, workflows=WORKFLOWS) for _ in range(2))
    try:
        run_id = first.start_workflow("linear", {"n": 1})
        _settle(first, {"n": 2})
        encoded: list[Any] = []
        encode = workflows.encode_step
        monkeypatch.setattr(workflows, "encode_step", lambda step: encoded.append(step) or encode(step))
        _settle(second, {"n": 4})  # a run ``second`` never wrote: read
        assert sorted(step["name"] for step in encoded) == ["b", "c"]  # b completed, c started; a as read
        run = second.require_workflow(run_id)
        assert [step.output for step in run.steps] == [{"n": 2}, {"n": 4}, None]
    finally:
        first.close()
        second.close()


def test_an_error_in_the_settle_of_a_step_commits_nothing(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The statements of a step's settle share the transaction its pipeline's Sync ends: an
    exception raised after they were sent rolls all of them back (the completion too)."""
    queue = make_queue(pg_url, JOBS, workflows=WORKFLOWS)
    try:
        run_id = queue.start_workflow("linear", {"n": 1})
        write = PgWorkflows.write

        def write_then_raise(self: PgWorkflows, *args: Any, **kwargs: Any) -> None:
            write(self, *args, **kwargs)
            raise RuntimeError("planned")

        a = _claim(queue)
        monkeypatch.setattr(PgWorkflows, "write", write_then_raise)
        with pytest.raises(RuntimeError, match="planned"):
            _complete(queue, a, {"n": 99})
        monkeypatch.undo()
        job = queue.get_job(a[0])
        assert job is not None and job.status.value == "processing"
        assert queue.require_workflow(run_id).step("a").status.value == "running"
        _complete(queue, a, {"n": 2})  # still held: the fence lets the same completion in again
        _settle(queue, {"n": 5})
        _settle(queue, {"n": 10})
        run = queue.require_workflow(run_id)
        assert run.status is WorkflowStatus.COMPLETED and run.output == {"n": 5}
    finally:
        queue.close()
