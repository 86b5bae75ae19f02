"""How job fields are written into and read out of a job's Redis hash.

Integers are decimal text, booleans ``1``/``0``, JSON values their text,
timestamps integer microseconds since the epoch (UTC, exact), and a null is an
absent field. ``attempts`` and ``lease_token`` (0) and ``error_history`` and
``tags`` (empty) are absent too until they change, which keeps bulk inserts
fast. ``added_event`` (id of the job's ``added`` event) and ``tagset`` are
backend bookkeeping, not ``JobRecord`` fields. ``JobRecord`` round-trips exactly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from dqflow.record import JobEvent, JobRecord, JobStatus

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# run_at is part of a ready-set member as fixed-width digits; keep it exact in Lua doubles
_MIN_US = -1_000_000_000_000_000  # 1938-04-24
_MAX_US = 7_999_999_999_999_999  # 2223-07-04
_INT32 = (-(2**31), 2**31 - 1)
_SAFE_INT = (-(2**53), 2**53)


def to_us(value: datetime, name: str = "timestamp") -> int:
    """Microseconds since the epoch of an aware datetime."""
    if not isinstance(value, datetime):
        raise ValueError(f"{name} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (got naive {value.isoformat()})")
    us = (value - EPOCH) // _MICROSECOND
    if not _MIN_US <= us <= _MAX_US:
        raise ValueError(f"{name} {value.isoformat()} is outside the range the Redis backend stores (1939-2222)")
    return us


_TIMES: dict[str, datetime] = {}


def from_us(text: str) -> datetime:
    """The aware UTC datetime of a stored microsecond count (memoised: a claim's
    records share their timestamps, and datetimes are immutable)."""
    value = _TIMES.get(text)
    if value is None:
        if len(_TIMES) >= 4096:
            _TIMES.clear()
        value = _TIMES[text] = EPOCH + timedelta(microseconds=int(text))
    return value


def check_int(name: str, value: Any, *, int32: bool = False, minimum: int | None = None) -> int:
    """An integer field, checked so Lua (doubles) and the SQL backends hold it exactly."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, not {value!r}")
    low, high = _INT32 if int32 else _SAFE_INT
    if minimum is not None:
        low = max(low, minimum)
    if not low <= value <= high:
        raise ValueError(f"{name} {value} is out of range ({low}..{high})")
    return value


def tags_json(tags: Sequence[str]) -> str:
    """The stored tag list (order and repeats as given)."""
    if not tags:
        return "[]"
    for tag in tags:
        if not isinstance(tag, str):
            raise ValueError(f"tags must be strings, not {tag!r}")
    return json.dumps(list(tags), ensure_ascii=False, separators=(",", ":"))


def tag_set(tags: Sequence[str]) -> tuple[list[str], str]:
    """Sorted distinct tags and their signature (the key of the exact-match index)."""
    if not tags:
        return [], ""
    unique = sorted(set(tags))
    return unique, (json.dumps(unique, ensure_ascii=False, separators=(",", ":")) if unique else "")


def _opt_int(value: str | None) -> int | None:
    return None if value is None else int(value)


def _opt_time(value: str | None) -> datetime | None:
    return None if value is None else from_us(value)


def pairs_to_dict(flat: Sequence[str]) -> dict[str, str]:
    """HGETALL as returned by a script (a flat list) to a dict."""
    it = iter(flat)
    return dict(zip(it, it, strict=True))


def _json_list(text: str | None) -> Any:
    return [] if text is None or text == "[]" else json.loads(text)


def _construct(fields: dict[str, Any]) -> JobRecord:
    """``JobRecord.model_construct`` without its per-field default handling (7x faster).

    Safe because ``fields`` holds every field of the model with a value of the
    declared type; ``_FIELDS`` is checked against the model at import.
    """
    record: JobRecord = JobRecord.__new__(JobRecord)
    object.__setattr__(record, "__dict__", fields)
    object.__setattr__(record, "__pydantic_fields_set__", set(_FIELDS))
    object.__setattr__(record, "__pydantic_extra__", None)
    object.__setattr__(record, "__pydantic_private__", None)
    return record


_STATUSES = {status.value: status for status in JobStatus}


def record_from_hash(h: Mapping[str, str]) -> JobRecord:
    """Build the ``JobRecord`` stored in a job hash."""
    get = h.get
    output = get("output")
    return _build(
        {
            "id": int(h["id"]),
            "job_type": h["job_type"],
            "payload": json.loads(h["payload"]),
            "status": _STATUSES[h["status"]],
            "priority": int(h["priority"]),
            "run_at": from_us(h["run_at"]),
            "attempts": int(get("attempts", 0)),
            "max_attempts": int(h["max_attempts"]),
            "timeout_ms": _opt_int(get("timeout_ms")),
            "retry_delay_ms": int(h["retry_delay_ms"]),
            "retry_backoff": h["retry_backoff"],
            "retry_max_delay_ms": _opt_int(get("retry_max_delay_ms")),
            "retry_jitter": h["retry_jitter"] == "1",
            "progress": _opt_int(get("progress")),
            "output": None if output is None else json.loads(output),
            "error_history": _json_list(get("error_history")),
            "failure_reason": get("failure_reason"),
            "tags": _json_list(get("tags")),
            "idempotency_key": get("idempotency_key"),
            "created_at": from_us(h["created_at"]),
            "updated_at": from_us(h["updated_at"]),
            "started_at": _opt_time(get("started_at")),
            "completed_at": _opt_time(get("completed_at")),
            "last_failed_at": _opt_time(get("last_failed_at")),
            "last_retried_at": _opt_time(get("last_retried_at")),
            "cancelled_at": _opt_time(get("cancelled_at")),
            "locked_by": get("locked_by"),
            "locked_at": _opt_time(get("locked_at")),
            "lease_expires_at": _opt_time(get("lease_expires_at")),
            "lease_token": int(get("lease_token", 0)),
        }
    )


_FIELDS = (
    "id",
    "job_type",
    "payload",
    "status",
    "priority",
    "run_at",
    "attempts",
    "max_attempts",
    "timeout_ms",
    "retry_delay_ms",
    "retry_backoff",
    "retry_max_delay_ms",
    "retry_jitter",
    "progress",
    "output",
    "error_history",
    "failure_reason",
    "tags",
    "idempotency_key",
    "created_at",
    "updated_at",
    "started_at",
    "completed_at",
    "last_failed_at",
    "last_retried_at",
    "cancelled_at",
    "locked_by",
    "locked_at",
    "lease_expires_at",
    "lease_token",
)
# the fast path only while the hash layout covers exactly the model's fields
_build: Callable[[dict[str, Any]], JobRecord] = (
    _construct if set(_FIELDS) == set(JobRecord.model_fields) else JobRecord.from_storage
)


def event_from_json(job_id: int, text: str) -> JobEvent:
    """Build a ``JobEvent`` from an entry of a job's events list."""
    entry = json.loads(text)
    return JobEvent.from_storage(
        {
            "id": entry["id"],
            "job_id": job_id,
            "event_type": entry["type"],
            "created_at": EPOCH + timedelta(microseconds=entry["at"]),
            "data": entry["data"],
        }
    )


def added_event(job_id: int, event_id: int, created_at: str) -> JobEvent:
    """The ``added`` event, kept in the job hash rather than the events list."""
    return JobEvent.from_storage(
        {
            "id": event_id,
            "job_id": job_id,
            "event_type": "added",
            "created_at": from_us(created_at),
            "data": None,
        }
    )


def as_text(value: Any) -> Any:
    """Decode bytes (from a caller's client without ``decode_responses``) recursively."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [as_text(item) for item in value]
    if isinstance(value, dict):
        return {as_text(k): as_text(v) for k, v in value.items()}
    return value
