"""Numbered SQLite migrations (``migrations/NNNN_name.sql``), applied on open.

``migrate`` runs inside the caller's write transaction (``BEGIN IMMEDIATE``), so
processes opening the same file at once apply each migration exactly once, and a
failed migration leaves the file as it was. ``dqflow_migrations`` records what is
applied; a file that already has a migration this code does not know was written
by a newer dqflow and is refused (``StorageTooNewError``) rather than misread.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from functools import cache
from importlib import resources

from dqflow.errors import StorageTooNewError

_TABLE_DDL = (
    "CREATE TABLE IF NOT EXISTS dqflow_migrations ("
    " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
)


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered SQL file: ``version`` 1 for ``0001_initial.sql``."""

    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        """The file split into complete statements (``executescript`` would commit)."""
        statements: list[str] = []
        buffer = ""
        for line in self.sql.splitlines(keepends=True):
            buffer += line
            if sqlite3.complete_statement(buffer):
                statements.append(buffer.strip())
                buffer = ""
        if any(line.strip() and not line.strip().startswith("--") for line in buffer.splitlines()):
            raise ValueError(f"SQLite migration {self.name}: incomplete statement at the end")
        return statements


@cache
def available() -> tuple[Migration, ...]:
    """The migrations shipped with dqflow, in order."""
    folder = resources.files(__package__) / "migrations"
    entries = sorted((e for e in folder.iterdir() if e.name.endswith(".sql")), key=lambda e: e.name)
    return tuple(
        Migration(int(e.name[:4]), e.name.removesuffix(".sql"), e.read_text(encoding="utf-8")) for e in entries
    )


def latest_version() -> int:
    """The storage version this code writes."""
    return available()[-1].version


def migrate(conn: sqlite3.Connection, where: str) -> list[str]:
    """Apply the pending migrations on ``conn`` (inside the caller's write transaction);
    return the names applied. ``StorageTooNewError`` if the file is newer than this code."""
    conn.execute(_TABLE_DDL)
    applied = dict(conn.execute("SELECT version, name FROM dqflow_migrations").fetchall())
    unknown = sorted(version for version in applied if version > latest_version())
    if unknown:
        names = ", ".join(applied[version] for version in unknown)
        raise StorageTooNewError(
            f"SQLite file {where} was upgraded by a newer dqflow (storage version {unknown[-1]}: {names});"
            f" this dqflow knows versions up to {latest_version()}: upgrade dqflow to use it"
        )
    done: list[str] = []
    for migration in available():
        if migration.version in applied:
            continue
        for statement in migration.statements():
            conn.execute(statement)
        conn.execute(
            "INSERT INTO dqflow_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            (migration.version, migration.name, time.time()),
        )
        done.append(migration.name)
    return done
