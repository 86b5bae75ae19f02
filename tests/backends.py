"""Test backends: a fresh SQLite file, PostgreSQL schema or Redis key prefix per test.

Outside CI a backend whose server is absent is skipped with the reason; with
``CI=true`` an absent server fails the test instead.

Migrating a PostgreSQL schema costs a few hundred milliseconds and the suite asks
for hundreds, so a schema a test is done with is kept and handed to a later test
once it is proven as good as new (``_reuse_pg_schema``): every table emptied and
every sequence restarted in one transaction, its catalog identical to that of a
schema just migrated, and no other session connected that could still write to
it. Anything else, and the test gets a freshly migrated schema instead.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

PG_ADMIN_URL = os.environ.get("DQFLOW_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("DQFLOW_TEST_REDIS", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
BACKEND_KINDS = ("sqlite", "postgresql", "redis")

_pg_database: str | None = None
_pg_used_schemas: list[str] = []  # migrated schemas whose test is over: reused once proven clean
_pg_pristine: str | None = None  # the catalog fingerprint of a freshly migrated schema


def server_absent(what: str, exc: BaseException) -> None:
    """Skip (or, in CI, fail) because a server does not answer."""
    message = f"{what} is not reachable ({exc}); start it or run .ci/run"
    if IN_CI:
        pytest.fail(f"CI=true: {message}")
    pytest.skip(message)


def pg_test_database() -> str:
    """Create (once per test session) a database for the tests; return its URL."""
    global _pg_database
    import psycopg

    if _pg_database is None:
        name = f"dqflow_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        try:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
        except psycopg.OperationalError as exc:
            server_absent("PostgreSQL at " + PG_ADMIN_URL, exc)
        _pg_database = name
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{_pg_database}"


def drop_pg_test_database() -> None:
    """Drop the session's test database (end of the test session)."""
    global _pg_database
    if _pg_database is None:
        return
    import psycopg

    _pg_used_schemas.clear()  # dropped with the database
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{_pg_database}" WITH (FORCE)')
    _pg_database = None


@contextmanager
def backend_url(kind: str, tmp_path: Path) -> Iterator[str]:
    """Yield a URL for an empty, ready (migrated) backend of ``kind``; clean up after."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'queue.db'}"
    elif kind == "postgresql":
        from dqflow.storage.postgres.migrations import migrate

        database = pg_test_database()
        schema = _reuse_pg_schema(database)
        if schema is None:
            schema = f"t_{uuid.uuid4().hex[:12]}"
            migrate(f"{database}?schema={schema}")
            _remember_pristine(database, schema)
        try:
            yield f"{database}?schema={schema}"
        finally:
            # cleaned (or dropped) when the next test asks: by then every fixture of this one is gone
            _pg_used_schemas.append(schema)
    elif kind == "redis":
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
        try:
            client.ping()
        except redis.exceptions.ConnectionError as exc:
            server_absent("Redis at " + REDIS_URL, exc)
        prefix = f"dqtest:{uuid.uuid4().hex[:12]}"
        try:
            yield f"{REDIS_URL}?prefix={prefix}"
        finally:
            keys = list(client.scan_iter(match=f"{{{prefix}}}*", count=1000))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start : start + 500])
            client.close()
    else:
        raise ValueError(kind)


# The catalog of one schema as text, its own name replaced: tables with their storage options,
# columns, constraints, indexes, triggers, functions, sequences, and the migrations recorded.
_FINGERPRINT = """
SELECT concat_ws(E'\\n',
  (SELECT string_agg(format('%%s %%s %%s', c.relname, c.relkind, c.reloptions), E'\\n' ORDER BY c.relname)
     FROM pg_class c WHERE c.relnamespace = n.oid),
  (SELECT string_agg(format('%%s.%%s %%s %%s %%s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
                            a.attnotnull, pg_get_expr(d.adbin, d.adrelid)), E'\\n' ORDER BY c.relname, a.attnum)
     FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
     LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE c.relnamespace = n.oid AND a.attnum > 0 AND NOT a.attisdropped),
  (SELECT string_agg(format('%%s %%s', k.conname, pg_get_constraintdef(k.oid)), E'\\n' ORDER BY k.conname)
     FROM pg_constraint k WHERE k.connamespace = n.oid),
  (SELECT string_agg(pg_get_indexdef(i.indexrelid), E'\\n' ORDER BY 1)
     FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relnamespace = n.oid),
  (SELECT string_agg(pg_get_triggerdef(t.oid) || ' ' || t.tgenabled::text, E'\\n' ORDER BY 1)
     FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace = n.oid AND NOT t.tgisinternal),
  (SELECT string_agg(pg_get_functiondef(p.oid), E'\\n' ORDER BY 1) FROM pg_proc p WHERE p.pronamespace = n.oid),
  (SELECT string_agg(format('%%s %%s %%s %%s', s.sequencename, s.start_value, s.increment_by, s.last_value),
                     E'\\n' ORDER BY s.sequencename)
     FROM pg_sequences s WHERE s.schemaname = n.nspname)
) FROM pg_namespace n WHERE n.nspname = %s
"""


def _fingerprint(conn: Any, schema: str) -> str:
    row = conn.execute(_FINGERPRINT, (schema,)).fetchone()
    migrations = conn.execute(f'SELECT name FROM "{schema}".dqflow_migrations ORDER BY name').fetchall()
    text = f"{row[0] if row else ''}\n{[name for (name,) in migrations]}"
    return text.replace(schema, "<schema>")


def _remember_pristine(database: str, schema: str) -> None:
    """Record the fingerprint of a schema just migrated (once per session)."""
    global _pg_pristine
    if _pg_pristine is None:
        import psycopg

        with psycopg.connect(database, autocommit=True) as conn:
            _pg_pristine = _fingerprint(conn, schema)


def _reuse_pg_schema(database: str) -> str | None:
    """A used schema made as good as new, else None (used schemas that fail the checks are dropped)."""
    import psycopg

    if not _pg_used_schemas:
        return None
    with psycopg.connect(database, autocommit=True) as conn:
        while _pg_used_schemas:
            schema = _pg_used_schemas.pop()
            if _pristine_again(conn, schema):
                return schema
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return None


def _pristine_again(conn: Any, schema: str) -> bool:
    """Empty ``schema``'s tables and restart its sequences; True if it is now as freshly migrated.

    False (nothing trusted) when another session is connected to the database (a process
    or thread of the last test could still write) or the catalog differs from a new schema's.
    """
    import gc

    import psycopg

    gc.collect()  # a queue the last test left unclosed closes its connections when collected
    if _pg_pristine is None or not _alone(conn):
        return False
    try:
        with conn.transaction():
            conn.execute("SET LOCAL lock_timeout = '2s'")
            # no triggers (the change feed's) and no foreign-key checks while every table is emptied
            conn.execute("SET LOCAL session_replication_role = replica")
            tables = conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename <> 'dqflow_migrations'",
                (schema,),
            ).fetchall()
            for (table,) in tables:
                conn.execute(f'DELETE FROM "{schema}"."{table}"')
            conn.execute(
                "SELECT setval(format('%%I.%%I', schemaname, sequencename)::regclass, start_value, false)"
                " FROM pg_sequences WHERE schemaname = %s",
                (schema,),
            )
            if _fingerprint(conn, schema) != _pg_pristine:
                raise _NotPristine
    except (_NotPristine, psycopg.Error):
        return False
    return True


def _alone(conn: Any, patience: float = 0.3) -> bool:
    """True once no other client is connected to the database (a closed one may take a moment to go)."""
    deadline = time.monotonic() + patience
    while True:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        ).fetchone()
        if row is not None and row[0] == 0:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


class _NotPristine(Exception):
    """Rolls back a clean-up that left the schema unlike a new one."""
