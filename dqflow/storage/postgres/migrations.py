"""Numbered plain-SQL migrations (``migrations/NNNN_name.sql``), applied in order.

``migrate`` runs each pending file in its own transaction and records it in
``dqflow_migrations``. Every transaction first takes a transaction-level
advisory lock for the schema and re-reads what is applied, so running it twice,
or from two processes at once, applies each file exactly once. With
``?schema=NAME`` everything (the migrations table too) lives in that schema,
created if missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql

from dqflow.errors import NotMigratedError, StorageError, StorageTooNewError
from dqflow.storage.postgres._connect import Settings, check_schema, parse_url
from dqflow.storage.postgres._queries import qualify

__all__ = ["Migration", "available", "migrate", "migration_status", "missing_migrations", "pending_sql"]

_TABLE_DDL = """CREATE TABLE IF NOT EXISTS dqflow_migrations (
    name        text        PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
)"""
_LOCK = "SELECT pg_advisory_xact_lock(hashtext(%s))"
_APPLIED = "SELECT name, applied_at FROM dqflow_migrations ORDER BY name"
_RECORD = "INSERT INTO dqflow_migrations (name) VALUES (%s)"
_TABLE_EXISTS = "SELECT to_regclass(%s) IS NOT NULL"


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered SQL file: ``name`` is its stem, e.g. ``0001_initial``."""

    name: str
    sql: str


@cache
def available() -> tuple[Migration, ...]:
    """The migrations shipped with dqflow, in order."""
    folder = resources.files(__package__) / "migrations"
    files = sorted((entry for entry in folder.iterdir() if entry.name.endswith(".sql")), key=lambda entry: entry.name)
    return tuple(Migration(entry.name[: -len(".sql")], entry.read_text(encoding="utf-8")) for entry in files)


Target = str | psycopg.Connection[Any]


@contextmanager
def _session(target: Target, schema: str | None) -> Iterator[tuple[psycopg.Connection[Any], str | None, str]]:
    """A connection for ``target`` (a URL, opened and closed here, or the caller's connection),
    the schema, and a printable name of the database."""
    if isinstance(target, str):
        settings: Settings = parse_url(target, schema=schema)
        conn = settings.connect(autocommit=True)
        try:
            yield conn, settings.schema, settings.display
        finally:
            conn.close()
    else:
        yield target, check_schema(schema), "the given connection"


def _lock_key(schema: str | None) -> str:
    return f"dqflow.migrate:{schema or ''}"


def _table(schema: str | None) -> str:
    return qualify("dqflow_migrations", schema)


def _applied(conn: psycopg.Connection[Any], schema: str | None) -> dict[str, datetime]:
    exists = conn.execute(_TABLE_EXISTS, (_table(schema),)).fetchone()
    if not exists or not exists[0]:
        return {}
    rows = conn.execute(qualify(_APPLIED, schema)).fetchall()
    return {str(name): applied_at for name, applied_at in rows}


def _set_path(conn: psycopg.Connection[Any], schema: str | None) -> None:
    if schema:
        conn.execute("SELECT set_config('search_path', %s, true)", (schema,))


def migrate(target: Target, *, schema: str | None = None) -> list[str]:
    """Apply the pending migrations in order; return the names applied (empty: up to date).

    ``target`` is a ``postgresql://`` URL (``?schema=NAME`` honoured) or an open
    psycopg connection (then pass ``schema=``).
    """
    applied_now: list[str] = []
    try:
        with _session(target, schema) as (conn, chosen, display):
            with conn.transaction():
                conn.execute(_LOCK, (_lock_key(chosen),))
                if chosen:
                    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(chosen)))
                conn.execute(qualify(_TABLE_DDL, chosen))
                refuse_newer(_applied(conn, chosen), f"{display} (schema {chosen})" if chosen else display)
            for migration in available():
                with conn.transaction():
                    conn.execute(_LOCK, (_lock_key(chosen),))
                    if migration.name in _applied(conn, chosen):
                        continue
                    _set_path(conn, chosen)
                    conn.execute(migration.sql.encode())
                    conn.execute(qualify(_RECORD, chosen), (migration.name,))
                applied_now.append(migration.name)
    except psycopg.Error as exc:
        raise StorageError(f"migration failed: {exc}") from exc
    return applied_now


def migration_status(target: Target, *, schema: str | None = None) -> list[tuple[str, datetime | None]]:
    """Each known migration with the time it was applied (None: pending), in order."""
    try:
        with _session(target, schema) as (conn, chosen, _display):
            applied = _applied(conn, chosen)
    except psycopg.Error as exc:
        raise StorageError(f"cannot read the migration status: {exc}") from exc
    names = [m.name for m in available()]
    extra = sorted(set(applied) - set(names))
    return [(name, applied.get(name)) for name in [*names, *extra]]


def pending_sql(target: Target, *, schema: str | None = None) -> str:
    """The SQL ``migrate`` would run now, as one script (empty when up to date)."""
    pending = [name for name, applied_at in migration_status(target, schema=schema) if applied_at is None]
    if not pending:
        return ""
    chosen = parse_url(target, schema=schema).schema if isinstance(target, str) else check_schema(schema)
    by_name = {m.name: m for m in available()}
    parts = ["-- dqflow migrations (what `dqflow migrate` applies)"]
    if chosen:
        parts.append(f"CREATE SCHEMA IF NOT EXISTS {chosen};\nSET search_path TO {chosen};")
    parts.append(_TABLE_DDL + ";")
    for name in pending:
        parts.append(f"-- {name}\nBEGIN;\n{by_name[name].sql.strip()}\n")
        parts.append(f"INSERT INTO dqflow_migrations (name) VALUES ('{name}');\nCOMMIT;")
    return "\n\n".join(parts) + "\n"


def missing_migrations(conn: psycopg.Connection[Any], schema: str | None) -> list[str]:
    """Names of the shipped migrations not applied in ``schema`` yet."""
    applied = _applied(conn, schema)
    return [m.name for m in available() if m.name not in applied]


def refuse_newer(applied: Iterable[str], place: str) -> None:
    """``StorageTooNewError`` if ``applied`` names a migration this code does not ship
    (a newer dqflow migrated the database: this code would misread or damage it)."""
    known = {m.name for m in available()}
    unknown = sorted(set(applied) - known)
    if unknown:
        raise StorageTooNewError(
            f"PostgreSQL {place} was migrated by a newer dqflow (migrations {', '.join(unknown)});"
            f" this dqflow knows up to {available()[-1].name}: upgrade dqflow to use it"
        )


def require_migrated(conn: psycopg.Connection[Any], schema: str | None, where: str) -> None:
    """``NotMigratedError`` (saying to run ``dqflow migrate``) unless every migration is
    applied; ``StorageTooNewError`` if the database has migrations this code does not know."""
    place = f"{where} (schema {schema})" if schema and f"schema={schema}" not in where else where
    applied = _applied(conn, schema)
    refuse_newer(applied, place)
    missing = [m.name for m in available() if m.name not in applied]
    if not missing:
        return
    if len(missing) == len(available()):
        raise NotMigratedError(
            f"PostgreSQL {place} has no dqflow tables yet: run `dqflow migrate` "
            "(or dqflow.storage.postgres.migrations.migrate(url)) first"
        )
    raise NotMigratedError(f"PostgreSQL {place} is missing migrations {', '.join(missing)}: run `dqflow migrate`")
