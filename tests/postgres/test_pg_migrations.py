"""Migrations: applied in order, once, safely from two processes; status, SQL, not-migrated errors."""

from __future__ import annotations

import multiprocessing
from datetime import datetime

import psycopg
import pytest

from dqflow.errors import ConfigError, NotMigratedError, StorageTooNewError
from dqflow.storage import NewJob, open_storage
from dqflow.storage.postgres import PostgresStorage, migrate, migration_status, pending_sql
from dqflow.storage.postgres.migrations import available

NAMES = [m.name for m in available()]


def _tables(url: str) -> set[str]:
    database, schema = url.split("?schema=")
    with psycopg.connect(database) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchall()
    return {row[0] for row in rows}


def test_shipped_migrations_are_numbered_in_order() -> None:
    assert NAMES[0] == "0001_initial"
    assert sorted(NAMES) == NAMES
    assert all(name[:4].isdigit() and name[4] == "_" for name in NAMES)


def test_migrate_creates_schema_tables_and_records_itself(bare_url: str) -> None:
    assert migrate(bare_url) == NAMES
    assert {"dqflow_jobs", "dqflow_job_events", "dqflow_migrations"} <= _tables(bare_url)
    status = migration_status(bare_url)
    assert [name for name, _ in status] == NAMES
    assert all(isinstance(applied_at, datetime) and applied_at.tzinfo is not None for _, applied_at in status)


def test_migrate_twice_applies_nothing_the_second_time(bare_url: str) -> None:
    assert migrate(bare_url) == NAMES
    assert migrate(bare_url) == []
    assert migration_status(bare_url) == migration_status(bare_url)


def _migrate_in_child(url: str) -> list[str]:
    return migrate(url)


def test_two_processes_at_once_apply_each_migration_once(bare_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        results = pool.map(_migrate_in_child, [bare_url] * 4)
    applied = sorted(name for result in results for name in result)
    assert applied == NAMES
    database, schema = bare_url.split("?schema=")
    with psycopg.connect(database) as conn:
        count = conn.execute(f"SELECT count(*) FROM {schema}.dqflow_migrations").fetchone()
    assert count == (len(NAMES),)


def test_status_before_migrating_lists_every_migration_as_pending(bare_url: str) -> None:
    assert migration_status(bare_url) == [(name, None) for name in NAMES]


def test_pending_sql_is_the_script_migrate_would_run(bare_url: str) -> None:
    script = pending_sql(bare_url)
    assert "CREATE TABLE dqflow_jobs" in script
    assert "dqflow_migrations" in script
    # The script alone migrates the schema (what a DBA would run by hand).
    database = bare_url.split("?", 1)[0]
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(script.encode())
    assert [applied is not None for _, applied in migration_status(bare_url)] == [True] * len(NAMES)
    assert migrate(bare_url) == []
    assert pending_sql(bare_url) == ""


def test_migrate_on_a_callers_connection(bare_url: str) -> None:
    database, schema = bare_url.split("?schema=")
    with psycopg.connect(database) as conn:
        assert migrate(conn, schema=schema) == NAMES
        conn.commit()
    assert "dqflow_jobs" in _tables(bare_url)


def test_setup_on_an_unmigrated_database_says_to_run_dqflow_migrate(bare_url: str) -> None:
    store = PostgresStorage(bare_url)
    try:
        with pytest.raises(NotMigratedError, match="dqflow migrate"):
            store.setup()
        # Skipping setup does not help: the first statement says the same.
        with pytest.raises(NotMigratedError, match="dqflow migrate"):
            store.add_jobs([NewJob("a", "{}")])
    finally:
        store.close()


def test_setup_passes_once_migrated(bare_url: str) -> None:
    migrate(bare_url)
    store = open_storage(bare_url.replace("postgresql://", "postgres://", 1))
    assert isinstance(store, PostgresStorage)
    try:
        store.setup()
        assert store.add_jobs([NewJob("a", "{}")])[0].created
    finally:
        store.close()


def test_invalid_schema_name_is_a_config_error(bare_url: str) -> None:
    database = bare_url.split("?", 1)[0]
    with pytest.raises(ConfigError, match="schema"):
        migrate(f"{database}?schema=Bad-Name")
    with pytest.raises(ConfigError, match="schema"):
        PostgresStorage(f"{database}?schema=x;drop")


def test_0002_adds_meta_to_existing_jobs(bare_url: str) -> None:
    database, schema = bare_url.split("?schema=")
    first = available()[0]
    with psycopg.connect(database, autocommit=True) as conn:  # a database migrated by dqflow 0001 only
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"SET search_path TO {schema}")
        conn.execute(first.sql.encode())
        conn.execute("CREATE TABLE dqflow_migrations (name text PRIMARY KEY, applied_at timestamptz DEFAULT now())")
        conn.execute("INSERT INTO dqflow_migrations (name) VALUES (%s)", (first.name,))
        conn.execute("INSERT INTO dqflow_jobs (job_type, payload) VALUES ('old', '{\"x\": 1}')")
    with pytest.raises(NotMigratedError, match="missing migrations 0002"):
        PostgresStorage(bare_url).setup()
    assert migrate(bare_url) == NAMES[1:]
    store = PostgresStorage(bare_url)
    try:
        store.setup()
        old = store.get_job(1)
        assert old is not None and old.payload == {"x": 1} and old.meta == {}
    finally:
        store.close()


def test_migrate_refuses_a_database_migrated_by_a_newer_dqflow(bare_url: str) -> None:
    migrate(bare_url)
    database, schema = bare_url.split("?schema=")
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f"INSERT INTO {schema}.dqflow_migrations (name) VALUES ('9999_future')")
    with pytest.raises(StorageTooNewError, match=r"newer dqflow.*9999_future"):
        migrate(bare_url)
