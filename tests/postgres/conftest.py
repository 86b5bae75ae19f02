"""Fixtures of the PostgreSQL backend tests: a fresh schema (migrated or not) per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from backends import backend_url, pg_test_database

from dqflow.storage.postgres import PostgresStorage


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    """URL of a fresh, migrated schema (``...?schema=t_...``)."""
    with backend_url("postgresql", tmp_path) as url:
        yield url


@pytest.fixture
def storage(pg_url: str) -> Iterator[PostgresStorage]:
    """A ready ``PostgresStorage`` on a fresh schema."""
    store = PostgresStorage(pg_url)
    store.setup()
    yield store
    store.close()


@pytest.fixture
def bare_url() -> Iterator[str]:
    """URL of a schema that does not exist yet (nothing migrated); dropped afterwards."""
    database = pg_test_database()
    schema = f"m_{uuid.uuid4().hex[:12]}"
    yield f"{database}?schema={schema}"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
