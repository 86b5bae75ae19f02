"""Fixtures of the reliability tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from backends import IN_CI

from reliability._support import RedisServer, Workers


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    """Start real worker processes with ``workers.start(backend, ...)``; all are killed at teardown."""
    pool = Workers(tmp_path)
    try:
        yield pool
    finally:
        pool.cleanup()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server (AOF, appendfsync always) in a tmp dir, on a free port; killed at teardown."""
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed"
        if IN_CI:
            pytest.fail(f"CI=true: {message}")
        pytest.skip(message)
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
