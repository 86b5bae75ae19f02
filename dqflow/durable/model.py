"""The typed shapes of durable handlers, the same from every backend.

A job's steps and its current wait are JSON columns of the job (``steps``,
``wait``); a token is a row (a hash on Redis) of its own. Storage writes the JSON
text built here and hands back these models.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

SLEEP_STEP = "dqflow:sleep:"
"""Prefix of the step a ``ctx.sleep`` stores (its wake time), numbered by call order in a run."""
TOKEN_STEP = "dqflow:token:"
"""Prefix of the step a ``ctx.create_token`` stores (the token's id), numbered by call order in a run."""


def iso(value: datetime) -> str:
    """ISO-8601 text of an aware datetime, in UTC."""
    return value.astimezone(UTC).isoformat()


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# Storage builds these from stored rows without validating (``model_construct``): their validators are
# built on first use, so that importing the storage contract (``dqflow add``) does not build them.
_ON_FIRST_USE = ConfigDict(defer_build=True)


class JobStep(BaseModel):
    """A completed ``ctx.step``: its JSON result and when it was stored."""

    model_config = _ON_FIRST_USE

    result: Any = None
    completed_at: datetime

    @classmethod
    def from_storage(cls, value: Any) -> JobStep:
        """From the stored entry ``{"result": ..., "completed_at": "<iso>"}`` (trusted, not validated)."""
        if isinstance(value, JobStep):
            return value
        return cls.model_construct(result=value.get("result"), completed_at=_time(value["completed_at"]))


def step_json(result_json: str, completed_at: datetime) -> str:
    """The stored entry of a step whose result is the JSON text ``result_json``."""
    return f'{{"result":{result_json},"completed_at":{json.dumps(iso(completed_at))}}}'


class JobWait(BaseModel):
    """What a ``waiting`` durable job waits for: a sleep until a time, or a token (until its timeout)."""

    model_config = _ON_FIRST_USE

    kind: Literal["sleep", "token"]
    until: datetime | None = None
    token_id: str | None = None

    @classmethod
    def from_storage(cls, value: Any) -> JobWait:
        """From the stored ``{"kind", "until", "token_id"}`` (trusted, not validated)."""
        if isinstance(value, JobWait):
            return value
        until = value.get("until")
        return cls.model_construct(
            kind=value["kind"], until=None if until is None else _time(until), token_id=value.get("token_id")
        )


def durable_fields(fields: dict[str, Any]) -> None:
    """Turn the stored ``steps`` and ``wait`` of a job's fields into their models (in place)."""
    steps = fields.get("steps")
    if steps:
        fields["steps"] = {name: JobStep.from_storage(entry) for name, entry in steps.items()}
    wait = fields.get("wait")
    if wait is not None:
        fields["wait"] = JobWait.from_storage(wait)


class TokenStatus(StrEnum):
    """Where a wait token is in its life."""

    PENDING = "pending"
    COMPLETED = "completed"
    EXPIRED = "expired"  # its timeout passed; its job resumed without data
    ABANDONED = "abandoned"  # never completed, and its job is finished or deleted: it never will be


FINISHED_JOB_STATUSES = frozenset({"completed", "failed", "cancelled"})


def shown_token_status(stored: str, job_status: str | None) -> str:
    """A token's status as read: a ``pending`` token whose job is finished (``job_status`` one of
    ``FINISHED_JOB_STATUSES``) or deleted (None) is ``abandoned``; otherwise the stored status."""
    if stored == TokenStatus.PENDING and (job_status is None or job_status in FINISHED_JOB_STATUSES):
        return TokenStatus.ABANDONED.value
    return stored


class TokenRecord(BaseModel):
    """A wait token: the job it belongs to, its schema, and its data once completed."""

    model_config = _ON_FIRST_USE

    id: str
    job_id: int
    status: TokenStatus
    signal: str | None = None  # the `signals:` schema its data must match, by name
    data_schema: dict[str, Any] | None = None  # or an inline JSON Schema
    data: Any = None
    timeout_at: datetime | None = None
    created_at: datetime
    completed_at: datetime | None = None

    @classmethod
    def from_storage(cls, fields: dict[str, Any]) -> TokenRecord:
        """From backend fields (``schema`` and ``data`` already parsed; times aware)."""
        fields = dict(fields)
        fields["data_schema"] = fields.pop("schema", None)
        fields["status"] = TokenStatus(fields["status"])
        return cls.model_construct(**fields)


@dataclass(frozen=True, slots=True)
class NewToken:
    """A token to create. ``schema_json``: an inline JSON Schema as text."""

    id: str
    timeout_at: datetime | None = None
    signal: str | None = None
    schema_json: str | None = None
