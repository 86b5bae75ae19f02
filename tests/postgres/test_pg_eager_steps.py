"""PostgreSQL's ``settle_and_claim``: the advance's insert takes the claimed jobs in their
processing state (``workflow_add_claimed_jobs_update_runs``), in the settle's transaction and
round trips; ``settle_jobs`` sends what it always sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from helpers import DOUBLE_JOBS, FAST_WORKER, doubling_chain, make_queue

from dqflow import Declaration, JobStatus, Queue
from dqflow.record import JobRecord
from dqflow.storage import Completion, StepClaim
from dqflow.storage.postgres._workflows import PgWorkflows
from dqflow.storage.postgres.backend import PostgresStorage

WORKFLOWS = doubling_chain("abcd")
CLAIM = StepClaim(worker_id="w", job_types=None, limit=4, lease_ms=60_000)


@pytest.fixture
def queue(pg_url: str) -> Iterator[Queue]:
    opened = make_queue(pg_url, DOUBLE_JOBS, workflows=WORKFLOWS)
    yield opened
    opened.close()


def _storage(queue: Queue) -> PostgresStorage:
    assert isinstance(queue.storage, PostgresStorage)
    return queue.storage


def _claim_one(queue: Queue) -> JobRecord:
    (job,) = queue.storage.claim_jobs("w", None, 1, 60_000)
    return job


def _done(job: JobRecord, run_id: bool = True) -> Completion:
    return Completion(job.id, job.lease_token, json.dumps({"n": 2}), job.workflow_run_id if run_id else None)


def test_only_the_advances_insert_differs_and_no_round_trip_is_added(
    queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """settle_jobs sends the plain insert; settle_and_claim sends the claiming one instead, and
    everything else alike, in as many network waits (its answer comes with the commit's)."""
    queue.start_workflows("linear", [{"n": 1}, {"n": 2}])
    sent: list[str] = []
    waits: list[int] = []
    execute, wait = psycopg.Cursor.execute, psycopg.Connection.wait

    def recording_execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(query)
        return execute(self, query, *args, **kwargs)

    def counting_wait(self: Any, *args: Any, **kwargs: Any) -> Any:
        waits.append(1)
        return wait(self, *args, **kwargs)

    q = _storage(queue)._q
    plain, eager = _claim_one(queue), _claim_one(queue)
    monkeypatch.setattr(psycopg.Cursor, "execute", recording_execute)
    monkeypatch.setattr(psycopg.Connection, "wait", counting_wait)
    assert queue.storage.settle_jobs([_done(plain)]) == [True]
    plain_sent, plain_waits = sent[:], len(waits)
    sent.clear()
    waits.clear()
    applied, taken = queue.storage.settle_and_claim([_done(eager)], CLAIM)
    assert applied == [True] and [job.workflow_step for job in taken] == ["b"]
    assert q.workflow_add_jobs_update_runs in plain_sent and q.workflow_add_claimed_jobs_update_runs not in plain_sent
    assert sent == [
        q.workflow_add_claimed_jobs_update_runs if query == q.workflow_add_jobs_update_runs else query
        for query in plain_sent
    ]
    assert len(waits) == plain_waits


def test_an_error_after_the_claiming_insert_commits_nothing(queue: Queue, monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = queue.start_workflow("linear", {"n": 1})
    write = PgWorkflows.write

    def write_then_raise(self: PgWorkflows, *args: Any, **kwargs: Any) -> None:
        write(self, *args, **kwargs)
        raise RuntimeError("planned")

    a = _claim_one(queue)
    monkeypatch.setattr(PgWorkflows, "write", write_then_raise)
    with pytest.raises(RuntimeError, match="planned"):
        queue.storage.settle_and_claim([_done(a)], CLAIM)
    monkeypatch.undo()
    assert queue.require_job(a.id).status is JobStatus.PROCESSING
    assert queue.require_workflow(run_id).step("b").job_ids == []
    assert queue.list_jobs(status=JobStatus.PROCESSING).jobs == [queue.require_job(a.id)]
    applied, taken = queue.storage.settle_and_claim([_done(a)], CLAIM)  # the fence lets it in again
    assert applied == [True] and [job.workflow_step for job in taken] == ["b"]


def test_a_step_job_settled_without_its_run_id_still_claims_the_next_one(queue: Queue) -> None:
    """The plain settle's path (runs locked after the job's statement) claims as well."""
    run_id = queue.start_workflow("linear", {"n": 1})
    applied, taken = queue.storage.settle_and_claim([_done(_claim_one(queue), run_id=False)], CLAIM)
    assert applied == [True]
    (b,) = taken
    assert (b.workflow_run_id, b.workflow_step, b.status, b.locked_by) == (run_id, "b", JobStatus.PROCESSING, "w")
    assert queue.require_job(b.id) == b
    assert [event.event_type for event in queue.get_events(b.id)] == ["added", "processing"]


def test_in_the_callers_transaction_the_claim_is_the_callers_to_commit_or_roll_back(pg_url: str) -> None:
    parts = urlsplit(pg_url)
    schema = parse_qs(parts.query)["schema"][0]
    other = make_queue(pg_url, DOUBLE_JOBS, workflows=WORKFLOWS)
    conn = psycopg.connect(parts._replace(query="").geturl())
    mine = Queue(Declaration.build(DOUBLE_JOBS, workflows=WORKFLOWS, worker=FAST_WORKER), backend=conn, schema=schema)
    try:
        run_id = other.start_workflow("linear", {"n": 1})
        a = _claim_one(other)
        conn.execute("SELECT 1")  # the caller's transaction
        applied, taken = mine.storage.settle_and_claim([_done(a)], CLAIM)
        assert applied == [True] and [job.workflow_step for job in taken] == ["b"]
        assert other.get_job(taken[0].id) is None  # not committed yet
        conn.rollback()
        assert other.get_job(taken[0].id) is None
        assert other.require_job(a.id).status is JobStatus.PROCESSING
        applied, taken = mine.storage.settle_and_claim([_done(a)], CLAIM)
        conn.commit()
        (b,) = taken
        assert other.require_job(b.id) == b
        assert other.storage.claim_jobs("other", None, 10, 60_000) == []
        assert other.require_workflow(run_id).step("b").job_ids == [b.id]
    finally:
        mine.close()
        conn.close()
        other.close()
