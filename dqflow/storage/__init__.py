"""Storage backends behind one contract (``Storage``), chosen by URL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dqflow.errors import ConfigError
from dqflow.extras import missing_extra
from dqflow.storage.base import (
    FAILURE_TEXT_LIMIT,
    AddResult,
    Completion,
    Failure,
    FlowControlCounts,
    JobFilter,
    JobPage,
    Lease,
    NewJob,
    Outcome,
    ReclaimedJob,
    Release,
    ScheduleState,
    StepClaim,
    Storage,
    TagMode,
    TickResult,
    TickVerdict,
    UniqueRule,
    Wait,
    WorkerInfo,
)

__all__ = [
    "FAILURE_TEXT_LIMIT",
    "AddResult",
    "Completion",
    "Failure",
    "FlowControlCounts",
    "JobFilter",
    "JobPage",
    "Lease",
    "NewJob",
    "Outcome",
    "ReclaimedJob",
    "Release",
    "ScheduleState",
    "StepClaim",
    "Storage",
    "TagMode",
    "TickResult",
    "TickVerdict",
    "UniqueRule",
    "Wait",
    "WorkerInfo",
    "open_storage",
]

DEFAULT_BACKEND = "sqlite:///.dqflow/queue.db"


def open_storage(backend: str | Any, **options: Any) -> Storage:
    """Open the backend named by a URL (``sqlite:///path``, ``postgresql://...``,
    ``redis://...``), or wrap a caller's own psycopg connection/pool or redis client."""
    if isinstance(backend, Storage):
        return backend
    if not isinstance(backend, str):
        module = type(backend).__module__
        if module.startswith("psycopg"):
            from dqflow.storage.postgres.backend import PostgresStorage

            return PostgresStorage(backend, **options)
        if module.startswith("redis"):
            from dqflow.storage.redis.backend import RedisStorage

            return RedisStorage(backend, **options)
        raise ConfigError(f"cannot use {type(backend).__name__} as a backend", key="backend")
    scheme = backend.split(":", 1)[0].lower()
    if scheme == "sqlite":
        from dqflow.storage.sqlite.backend import SqliteStorage

        return SqliteStorage(backend, **options)
    if scheme in ("postgresql", "postgres"):
        return _backend_class("postgres")(backend, **options)
    if scheme in ("redis", "rediss"):
        return _backend_class("redis")(backend, **options)
    raise ConfigError(
        f"unknown backend {backend!r}: use sqlite:///path, postgresql://... or redis://...",
        key="backend",
    )


def _backend_class(extra: str) -> Callable[..., Storage]:
    """The PostgreSQL or Redis backend; a one-line error naming the extra when its driver is missing."""
    try:
        if extra == "postgres":
            from dqflow.storage.postgres.backend import PostgresStorage

            return PostgresStorage
        from dqflow.storage.redis.backend import RedisStorage

        return RedisStorage
    except ImportError as exc:
        error = missing_extra(extra, exc)
        if error is None:
            raise
        raise error from exc
