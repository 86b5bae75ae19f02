"""Schema migrations of the backend a URL names: what ``dqflow migrate`` drives.

Only PostgreSQL's are applied by hand; SQLite applies its numbered migrations
itself when it opens the file, and Redis records its layout version on first use.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from dqflow.extras import missing_extra


@contextmanager
def _postgres_driver() -> Iterator[None]:
    """Turn a missing ``dqflow[postgres]`` into its one-line error."""
    try:
        yield
    except ImportError as exc:
        error = missing_extra("postgres", exc)
        if error is None:
            raise
        raise error from exc


@dataclass(frozen=True, slots=True)
class BackendMigrations:
    """The numbered migrations of one PostgreSQL database (``postgresql://...?schema=``)."""

    url: str

    def status(self) -> list[tuple[str, datetime | None]]:
        """Each migration with the time it was applied (None: pending), in order."""
        with _postgres_driver():
            from dqflow.storage.postgres.migrations import migration_status
        return migration_status(self.url)

    def pending_sql(self) -> str:
        """The SQL ``apply`` would run now (empty when up to date)."""
        with _postgres_driver():
            from dqflow.storage.postgres.migrations import pending_sql
        return pending_sql(self.url)

    def apply(self) -> list[str]:
        """Apply the pending migrations in order; the names applied (empty: up to date)."""
        with _postgres_driver():
            from dqflow.storage.postgres.migrations import migrate
        return migrate(self.url)


def backend_migrations(url: str) -> BackendMigrations | None:
    """The migrations the backend at ``url`` needs, or None for one that needs none."""
    scheme = url.split(":", 1)[0].lower()
    return BackendMigrations(url) if scheme in ("postgresql", "postgres") else None
