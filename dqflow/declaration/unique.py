"""``unique:`` of a job type (or ``Queue.add(unique=...)``): when a new job is a duplicate of an existing one.

```yaml
unique:
  key: "${payload.customerId}"   # or a list of payload paths; absent: the whole payload
  for: 10m                       # a job added less than 10 minutes ago blocks (absent: any age)
  while: [pending, processing]   # ... while in one of these states (absent: any state)
```

A duplicate is not added: ``add`` returns the id of the existing job. The key's
value is hashed with the job type (``unique_key``), so it is short whatever the
payload. Key paths are checked against the payload schema where it declares
``properties``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dqflow.durations import bounded_duration
from dqflow.enums import JobStatus
from dqflow.errors import kind_of

__all__ = ["UniqueSpec", "parse_unique", "schema_problems"]

_TEMPLATE = re.compile(r"^\$\{payload((?:\.[A-Za-z_][A-Za-z0-9_-]*)*)\}$")
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$")
_KEYS = ("key", "for", "while")


@dataclass(frozen=True, slots=True)
class UniqueSpec:
    """A checked ``unique`` rule: payload paths of the key (None: the whole payload), window, states."""

    paths: tuple[tuple[str, ...], ...] | None = None
    within: float | None = None
    statuses: tuple[JobStatus, ...] = ()

    def key_of(self, job_type: str, payload: Any) -> str:
        """The unique key of a job of ``job_type`` with ``payload`` (a missing path counts as null)."""
        if self.paths is None:
            value: Any = payload
        else:
            value = [_dig(payload, path) for path in self.paths]
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return f"{job_type}:{hashlib.sha256(text.encode()).hexdigest()[:40]}"


def _dig(payload: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(payload, dict) or part not in payload:
            return None
        payload = payload[part]
    return payload


def _path(written: Any) -> tuple[str, ...]:
    if not isinstance(written, str):
        raise ValueError(f"unique.key: a path must be a string, got {kind_of(written)}")
    match = _TEMPLATE.match(written)
    if match:
        if not match.group(1):
            raise ValueError("unique.key: ${payload} is the whole payload: leave `key` out instead")
        return tuple(match.group(1)[1:].split("."))
    if _PATH.match(written):
        return tuple(written.split("."))
    raise ValueError(f'unique.key: {written!r} is not a payload path (write "${{payload.field}}" or "field.sub")')


def parse_unique(value: Any) -> UniqueSpec:
    """``unique`` as written (a mapping with ``key``, ``for``, ``while``) → ``UniqueSpec``; ValueError saying why."""
    if not isinstance(value, Mapping):
        raise ValueError(f"unique must be a mapping (key, for, while), got {kind_of(value)}")
    unknown = [str(name) for name in value if name not in _KEYS]
    if unknown:
        raise ValueError(f"unique: unknown key {unknown[0]!r} (allowed: key, for, while)")
    key = value.get("key")
    paths: tuple[tuple[str, ...], ...] | None = None
    if key is not None:
        written = key if isinstance(key, list) else [key]
        if not written:
            raise ValueError("unique.key: an empty list; leave `key` out to use the whole payload")
        paths = tuple(_path(item) for item in written)
    within = None
    if value.get("for") is not None:
        within = bounded_duration(value["for"])
        if within <= 0:
            raise ValueError("unique.for must be greater than 0 (leave it out for no time limit)")
    statuses: tuple[JobStatus, ...] = ()
    states = value.get("while")
    if states is not None:
        if not isinstance(states, list) or not states:
            raise ValueError("unique.while must be a non-empty list of job states")
        try:
            statuses = tuple(dict.fromkeys(JobStatus(state) for state in states))
        except ValueError:
            allowed = ", ".join(status.value for status in JobStatus)
            raise ValueError(f"unique.while: {states!r} names an unknown state (states: {allowed})") from None
    return UniqueSpec(paths, within, statuses)


def schema_problems(spec: UniqueSpec, schema: Any) -> list[str]:
    """Key paths the payload schema (a JSON Schema document) says cannot exist."""
    problems = []
    for path in spec.paths or ():
        level = schema
        for depth, part in enumerate(path):
            if not isinstance(level, dict) or not isinstance(level.get("properties"), dict):
                break  # nothing declared here (or a $ref): cannot tell
            if part not in level["properties"]:
                where = ".".join(path[: depth + 1])
                declared = ", ".join(sorted(level["properties"])) or "none"
                problems.append(f"unique.key: payload.{where} is not in the payload schema (declared: {declared})")
                break
            level = level["properties"][part]
    return problems
