"""Fixtures of the Redis backend tests: a fresh key prefix per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from backends import REDIS_URL, backend_url

from dqflow.storage.redis import RedisStorage


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """``redis://...?prefix=dqtest:<random>``; its keys are deleted afterwards."""
    with backend_url("redis", tmp_path) as url:
        yield url


@pytest.fixture
def storage(redis_url: str) -> Iterator[RedisStorage]:
    s = RedisStorage(redis_url)
    s.setup()
    yield s
    s.close()


@pytest.fixture
def raw() -> Iterator[redis.Redis]:
    """A plain client on the test server (for inspecting keys)."""
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    client.close()
