"""How job fields are written into and read out of a job's Redis hash.

Integers are decimal text, booleans ``1``/``0``, JSON values their text,
timestamps integer microseconds since the epoch (UTC, exact), and a null is an
absent field. An absent field reads as the ``JobRecord`` default: ``attempts``
and ``lease_token`` (0), ``error_history`` and ``tags`` (empty), ``meta`` (``{}``)
stay absent until they change, which keeps bulk inserts fast. Every field is
read by its ``JobRecord`` column type: the layout follows the record, not a copy.
``added_event`` (id of the job's ``added`` event) and ``tagset`` are backend
bookkeeping, not ``JobRecord`` fields. ``JobRecord`` round-trips exactly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic_core import PydanticUndefined
from sqlalchemy import JSON, Boolean, DateTime, Integer, Text

from dqflow.durable.model import durable_fields
from dqflow.record import JobEvent, JobRecord, JobTable
from dqflow.storage.base import JOB_OPTIONS, JobOption, OptionKind

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


def pairs_to_dict(flat: Sequence[str]) -> dict[str, str]:
    """HGETALL as returned by a script (a flat list) to a dict."""
    it = iter(flat)
    return dict(zip(it, it, strict=True))


def _json(text: str) -> Any:
    return [] if text == "[]" else json.loads(text)


def _decoder(name: str, column: Any) -> Callable[[str], Any]:
    """How the hash text of ``JobRecord.<name>`` is read, by its column type."""
    annotation = JobRecord.model_fields[name].annotation
    if isinstance(annotation, type) and issubclass(annotation, StrEnum):
        return {member.value: member for member in annotation}.__getitem__
    kinds: tuple[tuple[type, Callable[[str], Any]], ...] = (
        (Boolean, "1".__eq__),
        (Integer, int),  # BigInteger too
        (DateTime, from_us),
        (JSON, _json),
        (Text, str),
    )
    for sql_type, decode in kinds:
        if isinstance(column.type, sql_type):
            return decode
    raise TypeError(f"JobRecord.{name}: no Redis decoding for {column.type!r}")  # pragma: no cover


def _absent(name: str) -> Callable[[], Any]:
    """What an absent hash field reads as: the field's default (a fresh one per record)."""
    info = JobRecord.model_fields[name]
    if info.default_factory is not None:
        return info.default_factory  # type: ignore[return-value]
    default = None if info.default is PydanticUndefined else info.default
    return lambda: default


_COLUMNS = JobTable.__table__.columns  # type: ignore[attr-defined]
_FIELDS = tuple(JobRecord.model_fields)
_CODEC = [(name, _decoder(name, _COLUMNS[name]), _absent(name)) for name in _FIELDS]


def record_from_hash(h: Mapping[str, str]) -> JobRecord:
    """Build the ``JobRecord`` stored in a job hash (every field, read by its column type)."""
    get = h.get
    fields: dict[str, Any] = {}
    for name, decode, absent in _CODEC:
        raw = get(name)
        fields[name] = absent() if raw is None else decode(raw)
    if fields["steps"] or fields["wait"] is not None:
        durable_fields(fields)
    return _construct(fields)


class HashRecords:
    """The records of job hashes alike but for the fields ``varying``: what ``record_from_hash``
    builds from the whole hash, each shared field decoded once (a settle's claimed step jobs
    of one job type share all but their ids, payloads, runs and times). A shared field whose
    value is mutable (a list or dict: tags, meta, error_history) is decoded again for each
    record, which owns it."""

    __slots__ = ("_decoders", "_fields", "_mutable")

    def __init__(self, shared: Mapping[str, str], varying: Sequence[str]) -> None:
        fields: dict[str, Any] = {}
        self._decoders: dict[str, tuple[Callable[[str], Any], Callable[[], Any]]] = {}
        self._mutable: list[tuple[str, str | None, Callable[[str], Any], Callable[[], Any]]] = []
        for name, decode, absent in _CODEC:  # in _FIELDS order, as record_from_hash fills them
            if name in varying:
                fields[name] = None
                self._decoders[name] = (decode, absent)
                continue
            raw = shared.get(name)
            fields[name] = value = absent() if raw is None else decode(raw)
            if isinstance(value, (list, dict)):
                self._mutable.append((name, raw, decode, absent))
        self._fields = fields

    def record(self, values: Mapping[str, str | None]) -> JobRecord:
        """The record of the hash that holds the shared fields and ``values`` (the varying ones;
        None: absent)."""
        fields = self._fields.copy()
        decoders = self._decoders
        for name, raw in values.items():
            decode, absent = decoders[name]
            fields[name] = absent() if raw is None else decode(raw)
        for name, shared, decode, absent in self._mutable:
            fields[name] = absent() if shared is None else decode(shared)
        if fields["steps"] or fields["wait"] is not None:
            durable_fields(fields)
        return _construct(fields)


def _construct(fields: dict[str, Any]) -> JobRecord:
    """``JobRecord.model_construct`` without its per-field default handling (7x faster).

    Safe because ``fields`` holds every field of the model with a value of the
    declared type (``record_from_hash`` fills each one).
    """
    record: JobRecord = JobRecord.__new__(JobRecord)
    object.__setattr__(record, "__dict__", fields)
    object.__setattr__(record, "__pydantic_fields_set__", set(_FIELDS))
    object.__setattr__(record, "__pydantic_extra__", None)
    object.__setattr__(record, "__pydantic_private__", None)
    return record


def _empty_text(option: JobOption) -> str | None:
    """The JSON text an absent field stands for (``{}`` for meta), if the option has one."""
    factory = JobRecord.model_fields[option.column].default_factory
    if option.kind is OptionKind.JSON_TEXT and factory is not None:
        return json.dumps(factory())  # type: ignore[call-arg]
    return None


_EMPTY_TEXT = {option.name: _empty_text(option) for option in JOB_OPTIONS}


def encode_option(option: JobOption, value: Any) -> Any:
    """The hash value of a job option, checked so Lua (doubles) holds it exactly;
    None means the field stays absent (null, or the empty default such as ``{}``)."""
    name = option.name
    if value is None:
        if not option.nullable:
            raise ValueError(f"{name} must not be None")
        return None
    if value == _EMPTY_TEXT[name]:
        return None
    kind = option.kind
    if kind is OptionKind.INT32:
        return check_int(name, value, int32=True)
    if kind is OptionKind.INT:
        return check_int(name, value)
    if kind is OptionKind.BOOL:
        return 1 if value else 0
    if kind is OptionKind.TIME:
        return to_us(value, name)
    if kind is OptionKind.STRINGS:
        return tags_json(value)
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, not {value!r}")
    return value


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
