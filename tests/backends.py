"""Test backends: a fresh SQLite file, PostgreSQL schema or Redis key prefix per test.

Outside CI a backend whose server is absent is skipped with the reason; with
``CI=true`` an absent server fails the test instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PG_ADMIN_URL = os.environ.get("DQFLOW_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("DQFLOW_TEST_REDIS", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
BACKEND_KINDS = ("sqlite", "postgresql", "redis")

_pg_database: str | None = None


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

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{_pg_database}" WITH (FORCE)')
    _pg_database = None


@contextmanager
def backend_url(kind: str, tmp_path: Path) -> Iterator[str]:
    """Yield a URL for an empty, ready (migrated) backend of ``kind``; clean up after."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'queue.db'}"
    elif kind == "postgresql":
        import psycopg

        from dqflow.storage.postgres.migrations import migrate

        schema = f"t_{uuid.uuid4().hex[:12]}"
        url = f"{pg_test_database()}?schema={schema}"
        migrate(url)
        try:
            yield url
        finally:
            with psycopg.connect(pg_test_database(), autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
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
