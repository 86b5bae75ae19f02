"""The PostgreSQL backend: ``PostgresStorage`` and its numbered SQL migrations."""

from __future__ import annotations

from dqflow.storage.postgres.backend import PostgresStorage
from dqflow.storage.postgres.migrations import migrate, migration_status, pending_sql

__all__ = ["PostgresStorage", "migrate", "migration_status", "pending_sql"]
