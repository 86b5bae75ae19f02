"""Fixtures of the conformance suite: a ready ``Storage`` on each backend in turn."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dqflow.storage import Storage, open_storage


@pytest.fixture
def storage(backend: str) -> Iterator[Storage]:
    """A set-up ``Storage`` on a fresh SQLite file, PostgreSQL schema or Redis prefix."""
    store = open_storage(backend)
    store.setup()
    yield store
    store.close()
