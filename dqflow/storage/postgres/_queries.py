"""The backend's SQL: one statement per file in ``queries/``, read once per process.

Statements name the tables plainly (``dqflow_jobs``); for a dqflow schema they
are qualified once at load time, so they also work on a caller's connection
whose ``search_path`` does not include that schema.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from functools import cache
from importlib import resources

_OBJECTS = re.compile(r"\b(dqflow_jobs_id_seq|dqflow_jobs|dqflow_job_events|dqflow_job_changes|dqflow_migrations)\b")


@cache
def read(name: str) -> str:
    """The text of ``queries/<name>.sql``."""
    return (resources.files(__package__) / "queries" / f"{name}.sql").read_text(encoding="utf-8")


def qualify(sql: str, schema: str | None) -> str:
    """Prefix dqflow's tables (and id sequence) with ``schema`` (a checked, plain identifier)."""
    if not schema:
        return sql
    return _OBJECTS.sub(lambda match: f"{schema}.{match.group(1)}", sql)


@dataclass(frozen=True, slots=True)
class Queries:
    """Every statement the backend runs, qualified for one schema."""

    add_jobs: str
    add_jobs_unkeyed: str
    find_idempotency_keys: str
    get_job: str
    list_jobs: str
    get_events: str
    count_jobs: str
    read_changes: str
    newest_change: str
    cancel_job: str
    retry_job: str
    edit_job: str
    claim_jobs: str
    renew_leases: str
    complete_jobs: str
    fail_jobs: str
    release_jobs: str
    set_progress: str
    set_output: str
    reclaim_expired: str
    next_due_in: str

    @classmethod
    @cache
    def load(cls, schema: str | None) -> Queries:
        """All statements for ``schema`` (cached: each file is read once)."""
        return cls(**{f.name: qualify(read(f.name), schema) for f in fields(cls)})
