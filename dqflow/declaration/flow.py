"""Flow control in ``jobs.yaml``: ``concurrency``, ``rate_limit``, ``group_concurrency``, ``dead_letter``.

The raw shapes (pydantic, strict) and the compiled parts: a key template such as
``"${payload.customerId}"`` is parsed once at load, its path checked against the
payload schema (it must exist, be required and hold a scalar), and resolved per job
at add time into the key storage enforces the limit on (docs/FLOW_CONTROL.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from dqflow.bounds import INT32_MAX
from dqflow.declaration.schemas import SchemaValidator
from dqflow.durations import bounded_duration, to_ms
from dqflow.errors import ConfigError, PayloadValidationError

if TYPE_CHECKING:
    from dqflow.declaration.model import JobTypeSpec

__all__ = [
    "ConcurrencyLimit",
    "KeyTemplate",
    "RateLimit",
    "RawConcurrency",
    "RawRateLimit",
    "check_key_paths",
    "dead_letter_spec",
    "flow_options",
    "group_key",
]

_REFERENCE = re.compile(r"\$\{([^}]*)\}")
_PATH = re.compile(r"^payload((?:\.[A-Za-z_][A-Za-z0-9_]*)+)$")
_SCALARS = frozenset({"string", "integer", "number", "boolean"})
MAX_KEY_LENGTH = 512
"""Most characters of a resolved key (the template's text plus the payload values)."""


class KeyValueError(ValueError):
    """A payload does not hold the value a key reads."""


@dataclass(frozen=True, slots=True)
class KeyTemplate:
    """A key as written (``"region-${payload.region}"``): literal text and payload paths."""

    text: str
    parts: tuple[str | tuple[str, ...], ...]  # a literal, or the field names of a payload path

    @classmethod
    def parse(cls, text: str) -> KeyTemplate:
        """The template; ValueError naming the reference that is not ``${payload.a.b}``."""
        parts: list[str | tuple[str, ...]] = []
        end = 0
        for match in _REFERENCE.finditer(text):
            if match.start() > end:
                parts.append(text[end : match.start()])
            path = _PATH.match(match.group(1).strip())
            if path is None:
                raise ValueError(
                    f"key {text!r}: {match.group(0)} is not a payload field reference"
                    " (write ${payload.field} or ${payload.a.b})"
                )
            parts.append(tuple(path.group(1)[1:].split(".")))
            end = match.end()
        if end < len(text):
            parts.append(text[end:])
        if "${" in "".join(p for p in parts if isinstance(p, str)):
            raise ValueError(f"key {text!r}: an unclosed ${{ (write ${{payload.field}})")
        return cls(text, tuple(parts))

    @property
    def paths(self) -> tuple[tuple[str, ...], ...]:
        """The payload paths the key reads."""
        return tuple(part for part in self.parts if isinstance(part, tuple))

    def resolve(self, payload: Any, job_type: str, what: str) -> str:
        """The key of one (validated) payload; ValueError if a field it reads is missing or not a scalar."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = payload
            for name in part:
                if not isinstance(value, dict) or name not in value:
                    raise KeyValueError(
                        f"{job_type}: the {what} key {self.text!r} reads payload.{'.'.join(part)}, which is missing"
                    )
                value = value[name]
            if isinstance(value, (dict, list)) or value is None:
                raise KeyValueError(
                    f"{job_type}: the {what} key {self.text!r} reads payload.{'.'.join(part)},"
                    f" which is {json.dumps(value)[:40]}, not a string, number or boolean"
                )
            out.append(value if isinstance(value, str) else json.dumps(value))
        key = f"{job_type}:{''.join(out)}"
        if len(key) > MAX_KEY_LENGTH:
            raise KeyValueError(f"{job_type}: the {what} key is {len(key)} characters long (at most {MAX_KEY_LENGTH})")
        return key


@dataclass(frozen=True, slots=True)
class ConcurrencyLimit:
    """At most ``limit`` jobs with one key processing at once (no key: one key for the whole type)."""

    limit: int
    key: KeyTemplate | None = None

    def key_of(self, payload: Any, job_type: str) -> str:
        """The stored concurrency key of a job of ``job_type`` with ``payload``."""
        return job_type if self.key is None else self.key.resolve(payload, job_type, "concurrency")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``limit`` starts per ``per`` seconds (fixed windows) per key."""

    limit: int
    per: float
    key: KeyTemplate | None = None

    @property
    def window_ms(self) -> int:
        """The window in whole milliseconds."""
        return max(1, round(self.per * 1000))

    def key_of(self, payload: Any, job_type: str) -> str:
        """The stored rate key of a job of ``job_type`` with ``payload``."""
        return job_type if self.key is None else self.key.resolve(payload, job_type, "rate_limit")


def group_key(group: str) -> str:
    """The concurrency key of a group (shared by every job type); ValueError for a bad group id."""
    if not isinstance(group, str) or not group or "\x00" in group:
        raise ValueError(f"group must be a non-empty string without NUL characters, not {group!r}")
    if len(group) > MAX_KEY_LENGTH:
        raise ValueError(f"group is {len(group)} characters long (at most {MAX_KEY_LENGTH})")
    return f"group:{group}"


# --------------------------------------------------------------------------- raw YAML shapes


def _template(value: Any) -> Any:
    if isinstance(value, str):
        return KeyTemplate.parse(value)
    return value


def _per(value: Any) -> float:
    seconds = bounded_duration(value)
    if seconds < 0.001:
        raise ValueError("per must be at least 1ms")
    return seconds


Key = Annotated[KeyTemplate | None, BeforeValidator(_template)]
Limit = Annotated[int, Field(ge=1, le=INT32_MAX)]
Per = Annotated[float, BeforeValidator(_per)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, arbitrary_types_allowed=True)


class RawConcurrency(_Strict):
    limit: Limit
    key: Key = None

    def compiled(self) -> ConcurrencyLimit:
        return ConcurrencyLimit(self.limit, self.key)


class RawRateLimit(_Strict):
    limit: Limit
    per: Per
    key: Key = None

    def compiled(self) -> RateLimit:
        return RateLimit(self.limit, self.per, self.key)


GroupConcurrency = Annotated[int, Field(ge=1, le=INT32_MAX)]


# --------------------------------------------------------------------------- checks at load


def check_key_paths(
    key: KeyTemplate | None,
    schema: SchemaValidator | None,
    loc: tuple[str | int, ...],
    problem: Callable[[str, tuple[str | int, ...]], ConfigError],
) -> list[ConfigError]:
    """Problems of a key's payload paths: each must exist in the payload schema, be required
    (every valid payload has it) and hold a string, number or boolean."""
    if key is None or not key.paths:
        return []
    if schema is None:
        return [problem(f"key {key.text!r} reads the payload, but the job type declares no payload schema", loc)]
    # Imported here: dqflow.workflows builds on the declaration package, not the other way round.
    from dqflow.workflows.producers import PathError, walk
    from dqflow.workflows.schema_view import Node, Shape, describe, view

    problems: list[ConfigError] = []
    root = Node.of_validator(schema)
    for path in key.paths:
        where = "payload." + ".".join(path)
        try:
            found = walk(root, path)
        except PathError as exc:
            problems.append(problem(f"key {key.text!r}: {where} cannot exist: {exc}", loc))
            continue
        if found.node is None:
            problems.append(problem(f"key {key.text!r}: cannot tell what {where} is ({found.unknown})", loc))
            continue
        if found.may_be_absent:
            problems.append(
                problem(f"key {key.text!r}: {where} may be absent; make it required in the payload schema", loc)
            )
            continue
        shown = view(found.node)
        if not isinstance(shown, Shape) or not shown.typed or not shown.types <= _SCALARS:
            problems.append(
                problem(f"key {key.text!r}: {where} is {describe(shown)}, not a string, number or boolean", loc)
            )
    return problems


# --------------------------------------------------------------------------- at add time


def flow_options(spec: JobTypeSpec, payload_json: str, group: str | None) -> dict[str, Any]:
    """The flow-control fields of a new job (``NewJob`` keyword arguments; none for a plain job).

    ``group`` overrides the type's concurrency key: the job shares the limit of every job
    of that group, whatever its type; the limit is the type's ``group_concurrency``, else
    its ``concurrency.limit`` (ValueError when it has neither).
    """
    options: dict[str, Any] = {}
    concurrency, rate = spec.concurrency, spec.rate_limit
    payload: Any = None
    if (concurrency is not None and concurrency.key is not None and group is None) or (
        rate is not None and rate.key is not None
    ):
        payload = json.loads(payload_json)
    try:
        if group is not None:
            limit = spec.group_concurrency or (concurrency.limit if concurrency is not None else None)
            if limit is None:
                raise ValueError(
                    f"{spec.name}: group={group!r} needs a limit: set group_concurrency (in defaults or on the"
                    " job type) or concurrency.limit in jobs.yaml"
                )
            options["concurrency_key"] = group_key(group)
            options["concurrency_limit"] = limit
        elif concurrency is not None:
            options["concurrency_key"] = concurrency.key_of(payload, spec.name)
            options["concurrency_limit"] = concurrency.limit
        if rate is not None:
            options["rate_key"] = rate.key_of(payload, spec.name)
            options["rate_limit"] = rate.limit
            options["rate_window_ms"] = rate.window_ms
    except KeyValueError as exc:
        raise PayloadValidationError(f"payload of {spec.name}", [str(exc)]) from None
    return options


def dead_letter_spec(target: JobTypeSpec) -> str:
    """``NewJob.dead_letter_json`` for a job whose dead-letter type is ``target``: its type
    and the options its declaration gives (the payload is the envelope storage builds)."""
    retry = target.retry
    return json.dumps(
        {
            "job_type": target.name,
            "priority": target.priority,
            "max_attempts": target.max_attempts,
            "timeout_ms": to_ms(target.timeout),
            "retry_delay_ms": to_ms(retry.delay),
            "retry_backoff": retry.backoff,
            "retry_max_delay_ms": to_ms(retry.max_delay),
            "retry_jitter": retry.jitter,
        },
        separators=(",", ":"),
    )
