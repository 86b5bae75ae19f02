"""Caller connections and pools, transactional enqueue, NOTIFY wake-ups, lost connections,
the claim's asynchronous commit."""

from __future__ import annotations

import statistics
import threading
import time

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from dqflow.errors import StorageError
from dqflow.record import JobStatus
from dqflow.storage import Completion, NewJob, open_storage
from dqflow.storage.postgres import PostgresStorage


@pytest.fixture
def parts(pg_url: str) -> tuple[str, str]:
    database, schema = pg_url.split("?schema=")
    return database, schema


def count_jobs(storage: PostgresStorage) -> int:
    from dqflow.storage import JobFilter

    return len(storage.list_jobs(JobFilter(limit=1000)).jobs)


def test_add_inside_the_callers_transaction_rolls_back_with_it(
    storage: PostgresStorage, parts: tuple[str, str]
) -> None:
    database, _ = parts
    with psycopg.connect(database) as conn:
        [result] = storage.add_jobs([NewJob("a", "{}")], connection=conn)
        assert result.created
        assert storage.get_job(result.job_id) is None  # not visible before the caller commits
        conn.rollback()
    assert storage.get_job(result.job_id) is None
    assert count_jobs(storage) == 0


def test_add_inside_the_callers_transaction_commits_with_it_and_wakes_workers(
    storage: PostgresStorage, parts: tuple[str, str]
) -> None:
    database, _ = parts
    storage.wait_for_jobs(0, None)  # start listening
    with psycopg.connect(database) as conn:
        conn.execute("CREATE TEMP TABLE app_orders (id int)")
        conn.execute("INSERT INTO app_orders VALUES (1)")
        [result] = storage.add_jobs([NewJob("a", "{}")], connection=conn)
        started = time.monotonic()
        storage.wait_for_jobs(0.3, None)  # no NOTIFY before the commit
        assert time.monotonic() - started >= 0.25
        conn.commit()
    started = time.monotonic()
    storage.wait_for_jobs(5, None)
    assert time.monotonic() - started < 1
    record = storage.get_job(result.job_id)
    assert record is not None and record.status is JobStatus.PENDING


def test_storage_on_a_callers_connection(parts: tuple[str, str]) -> None:
    database, schema = parts
    with psycopg.connect(database) as conn:
        store = open_storage(conn, schema=schema)
        assert isinstance(store, PostgresStorage)
        store.setup()
        [result] = store.add_jobs([NewJob("a", '{"x": 1}')])
        [claimed] = store.claim_jobs("w", None, 5, 10_000)
        assert store.settle_jobs([Completion(claimed.id, claimed.lease_token, '{"ok": true}')]) == [True]
        store.close()
        assert not conn.closed  # the caller's connection stays the caller's
    other = PostgresStorage(f"{database}?schema={schema}")
    record = other.get_job(result.job_id)
    other.close()
    assert record is not None and record.output == {"ok": True}


def test_storage_on_a_callers_pool(parts: tuple[str, str]) -> None:
    database, schema = parts
    with ConnectionPool(database, min_size=1, max_size=2, open=True) as pool:
        store = PostgresStorage(pool, schema=schema)
        store.setup()
        [result] = store.add_jobs([NewJob("a", "{}")])
        assert store.get_job(result.job_id) is not None
        store.close()
        assert not pool.closed


def test_wait_ignores_other_job_types(storage: PostgresStorage) -> None:
    storage.wait_for_jobs(0, None)
    storage.add_jobs([NewJob("other", "{}")])
    started = time.monotonic()
    storage.wait_for_jobs(0.2, ["mine"])
    assert time.monotonic() - started >= 0.18


def _timed_wake(waiter_store: PostgresStorage, producer: PostgresStorage) -> float:
    """Milliseconds from the start of an add to the idle waiter waking up."""
    ready = threading.Event()
    woke_at: list[float] = []

    def wait() -> None:
        ready.set()
        waiter_store.wait_for_jobs(5, ["work"])
        woke_at.append(time.perf_counter())

    waiter = threading.Thread(target=wait)
    waiter.start()
    ready.wait()
    time.sleep(0.01)
    sent = time.perf_counter()
    producer.add_jobs([NewJob("work", "{}")])
    waiter.join()
    return (woke_at[0] - sent) * 1000


def test_notify_wakes_an_idle_worker_within_milliseconds(storage: PostgresStorage, pg_url: str) -> None:
    producer = PostgresStorage(pg_url)
    storage.wait_for_jobs(0, ["work"])
    try:
        latencies = [_timed_wake(storage, producer) for _ in range(30)]
    finally:
        producer.close()
    median = statistics.median(latencies)
    print(f"add_jobs start to idle waiter awake: p50 {median:.2f} ms, max {max(latencies):.2f} ms")
    assert median < 20, latencies


def test_a_lost_connection_raises_storage_error_and_the_next_call_recovers(
    storage: PostgresStorage, parts: tuple[str, str]
) -> None:
    database, _ = parts
    storage.add_jobs([NewJob("a", "{}")])
    storage.wait_for_jobs(0, None)

    def kill_our_backends() -> None:
        with psycopg.connect(database, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = 'dqflow'"
                " AND pid <> pg_backend_pid()"
            )

    kill_our_backends()
    with pytest.raises(StorageError, match="connection"):
        storage.claim_jobs("w", None, 1, 1000)
    # The broken connection was discarded: the next call works.
    [claimed] = storage.claim_jobs("w", None, 1, 1000)
    assert claimed.status is JobStatus.PROCESSING
    # The LISTEN connection reports the loss once, then reconnects.
    kill_our_backends()
    with pytest.raises(StorageError):
        storage.wait_for_jobs(1, None)
    storage.wait_for_jobs(0.05, None)
    assert storage.get_job(claimed.id) is not None


def test_unreachable_server_is_a_clear_storage_error() -> None:
    store = PostgresStorage("postgresql://nobody@127.0.0.1:1/none", pool_timeout=1, connect_timeout=1)
    try:
        with pytest.raises(StorageError, match=r"127\.0\.0\.1"):
            store.get_job(1)
    finally:
        store.close()


def test_only_the_claim_commits_asynchronously(storage: PostgresStorage) -> None:
    """The claim turns synchronous_commit off for its own transaction; the session keeps it on."""
    storage.add_jobs([NewJob("work", "{}")])
    with storage._connection("checking") as conn:
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
    for _ in range(3):
        storage.claim_jobs("w", None, 1, 30_000)
        with storage._connection("checking") as conn:
            assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
