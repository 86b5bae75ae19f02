"""PostgreSQL's change feed under concurrency: a row committed late is answered in order, never
skipped; a rolled-back insert's gap is passed after the grace period; a trimmed log is skipped.
A batch write appends each job's rows (statement-level event trigger, filtered row trigger)."""

from __future__ import annotations

import psycopg
import pytest
from backends import pg_test_database

from dqflow.storage.base import Completion, NewJob
from dqflow.storage.postgres import PostgresStorage, changes


def _insert(conn: psycopg.Connection, schema: str, job_id: int, progress: int) -> None:
    conn.execute(
        f'INSERT INTO "{schema}".dqflow_job_changes (job_id, kind, data) VALUES (%s, %s, %s)',
        (job_id, "progress", psycopg.types.json.Jsonb({"progress": progress})),
    )


def test_a_late_commit_is_answered_in_order(storage: PostgresStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    schema = storage.schema
    assert schema is not None
    job_id = storage.add_jobs([NewJob("t", "{}")])[0].job_id
    start = storage.change_cursor()
    database = pg_test_database()
    with psycopg.connect(database) as slow, psycopg.connect(database, autocommit=True) as fast:
        _insert(slow, schema, job_id, 1)  # takes the next id, not committed yet
        _insert(fast, schema, job_id, 2)  # a higher id, visible at once
        assert storage.read_changes(start) == []  # the gap holds the reader back
        slow.commit()
    assert [c.data["progress"] for c in storage.read_changes(start)] == [1, 2]

    with psycopg.connect(database) as rolled_back, psycopg.connect(database, autocommit=True) as fast:
        after = storage.change_cursor()
        _insert(rolled_back, schema, job_id, 3)
        _insert(fast, schema, job_id, 4)
        rolled_back.rollback()
    assert storage.read_changes(after) == []  # could still be a slow commit...
    monkeypatch.setattr(changes, "GAP_GRACE_SECONDS", 0.0)
    assert [c.data["progress"] for c in storage.read_changes(after)] == [4]  # ...until it is old enough


def test_a_reader_behind_the_trimmed_log_gets_what_is_left(storage: PostgresStorage) -> None:
    schema = storage.schema
    assert schema is not None
    job_id = storage.add_jobs([NewJob("t", "{}")])[0].job_id
    with psycopg.connect(pg_test_database(), autocommit=True) as conn:
        conn.execute(f"SELECT setval('\"{schema}\".dqflow_job_changes_id_seq', 20000)")
        for progress in range(3):
            _insert(conn, schema, job_id, progress)
    # Cursor 5 is long trimmed away (the log keeps the newest ~10000): the reader gets what is left.
    assert [c.data["progress"] for c in storage.read_changes("5")] == [0, 1, 2]


def test_a_batch_completion_appends_each_changed_output_and_each_event(storage: PostgresStorage) -> None:
    job_ids = [added.job_id for added in storage.add_jobs([NewJob("t", "{}") for _ in range(3)])]
    start = storage.change_cursor()
    claimed = {job.id: job for job in storage.claim_jobs("w", ["t"], 3, 60_000)}
    first, second, third = (claimed[job_id] for job_id in job_ids)
    assert storage.set_output(first.id, first.lease_token, '{"a": 1}')
    assert storage.set_progress(second.id, second.lease_token, 50)
    assert storage.set_progress(second.id, second.lease_token, 50)  # unchanged: no row
    outcomes = [
        Completion(first.id, first.lease_token, '{"a": 1}'),  # the same output: no row
        Completion(second.id, second.lease_token, '{"b": 2}'),
        Completion(third.id, third.lease_token, None),  # keeps no output: no row
    ]
    assert storage.settle_jobs(outcomes) == [True, True, True]
    changes_read = [(c.job_id, c.kind, c.data) for c in storage.read_changes(start)]
    assert sorted(job_id for job_id, kind, _ in changes_read if kind == "processing") == job_ids
    written = [(job_id, kind, data) for job_id, kind, data in changes_read if kind != "processing"]
    assert written[:3] == [
        (first.id, "output", {}),
        (second.id, "progress", {"progress": 50}),
        (second.id, "output", {}),
    ]
    assert sorted(written[3:]) == [(job_id, "completed", {}) for job_id in job_ids]
