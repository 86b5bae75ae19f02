"""SQLite migrations: numbered files applied on open, recorded, and files from before numbering upgraded."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from dqflow.storage import NewJob, open_storage
from dqflow.storage.sqlite.migrations import available, latest_version


def _versions(path: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT version, name FROM dqflow_migrations ORDER BY version").fetchall()


def test_shipped_migrations_are_numbered_in_order() -> None:
    migrations = available()
    versions = [m.version for m in migrations]
    # numbers are reserved per change while several are in flight: increasing, not always contiguous
    assert versions[0] == 1 and versions == sorted(set(versions))
    assert migrations[0].name == "0001_initial" and latest_version() == migrations[-1].version >= 2
    assert all(m.statements() for m in migrations)


def test_a_new_file_gets_every_migration_recorded_once(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    for _ in range(2):
        store = open_storage(f"sqlite:///{path}")
        store.setup()
        store.close()
    assert _versions(path) == [(m.version, m.name) for m in available()]


def test_processes_opening_a_new_file_at_once_migrate_it_once(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    errors: list[BaseException] = []

    def open_and_setup() -> None:
        try:
            store = open_storage(f"sqlite:///{path}")
            store.setup()
            store.close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_and_setup) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert _versions(path) == [(m.version, m.name) for m in available()]


def test_a_file_from_before_numbered_migrations_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # what dqflow's unversioned schema.sql created
        conn.executescript(available()[0].sql)
        conn.execute(
            "INSERT INTO dqflow_jobs (job_type, payload, run_at, max_attempts, retry_delay_ms, retry_backoff,"
            " retry_jitter, created_at, updated_at) VALUES ('old', '{\"x\": 1}', 0, 3, 10, 'fixed', 0, 0, 0)"
        )
    store = open_storage(f"sqlite:///{path}")
    store.setup()
    try:
        old = store.get_job(1)
        assert old is not None and old.payload == {"x": 1} and old.meta == {}
        assert store.add_jobs([NewJob("new", "{}", meta_json='{"v": 2}')])[0].job_id == 2
        assert store.get_job(2).meta == {"v": 2}  # type: ignore[union-attr]
    finally:
        store.close()
    assert _versions(path) == [(m.version, m.name) for m in available()]
