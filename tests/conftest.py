"""Shared fixtures. ``backend`` runs a test once per storage backend."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from backends import BACKEND_KINDS, backend_url, drop_pg_test_database

# The CLI tests' fixtures (``project``, ``dq``) live beside their helpers.
pytest_plugins = ["cli_support"]


@pytest.fixture(params=BACKEND_KINDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of a fresh, migrated backend: sqlite, postgresql and redis in turn."""
    with backend_url(request.param, tmp_path) as url:
        yield url


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    drop_pg_test_database()
