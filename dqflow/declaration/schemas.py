"""JSON Schemas compiled once and reused on the hot path.

A :class:`SchemaValidator` checks the schema against its metaschema when it is
built (so a bad schema fails at load time, never mid-job), keeps the compiled
``jsonschema`` validator and answers ``errors(value)`` with one message per
problem, each naming the path of the field: ``"$.images[2]: 5 is not of type 'string'"``.

The hot path (a valid value) is answered by ``fastjsonschema``, which compiles
the schema to Python code, whenever the schema only uses keywords that mean
the same in Draft 7 and in the schema's own dialect. Only a value it rejects is
looked at again by ``jsonschema`` (which has the last word and the messages).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import fastjsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError, best_match
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from dqflow.errors import ValidationFailed

__all__ = ["InvalidSchemaError", "SchemaValidator", "json_path"]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# Keywords whose meaning differs from Draft 7 (or that Draft 7 lacks): such schemas skip the fast path.
_NOT_DRAFT7 = frozenset(
    {
        "$defs",
        "$anchor",
        "$dynamicRef",
        "$dynamicAnchor",
        "$recursiveRef",
        "$recursiveAnchor",
        "$vocabulary",
        "$ref",
        "prefixItems",
        "unevaluatedItems",
        "unevaluatedProperties",
        "dependentRequired",
        "dependentSchemas",
        "minContains",
        "maxContains",
        "items",
    }
)


def _draft7_compatible(schema: Any) -> bool:
    if isinstance(schema, Mapping):
        for key, value in schema.items():
            if key in _NOT_DRAFT7 and not (key == "items" and isinstance(value, Mapping)):
                return False
            if not _draft7_compatible(value):
                return False
    elif isinstance(schema, list):
        return all(_draft7_compatible(item) for item in schema)
    return True


def _fast_validator(schema: Mapping[str, Any] | bool) -> Any:
    if not isinstance(schema, Mapping) or not _draft7_compatible(schema):
        return None
    draft7 = {key: value for key, value in schema.items() if key != "$schema"}
    draft7["$schema"] = "http://json-schema.org/draft-07/schema#"
    try:
        return fastjsonschema.compile(draft7)
    except Exception:  # anything it cannot compile simply stays on the slow path
        return None


class InvalidSchemaError(ValueError):
    """The schema itself is not a valid JSON Schema; the message says where and why."""


class _UnknownDialect:
    """Sentinel returned by ``validator_for`` for a ``$schema`` it does not know."""


def json_path(parts: Any) -> str:
    """Render a jsonschema path (deque of keys and indexes) as ``$.a.b[2]``."""
    out = ["$"]
    for part in parts:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _IDENTIFIER.match(str(part)):
            out.append(f".{part}")
        else:
            out.append(f"[{json.dumps(str(part), ensure_ascii=False)}]")
    return "".join(out)


def _message(error: ValidationError) -> str:
    text = f"{json_path(error.absolute_path)}: {error.message}"
    if error.context:
        # anyOf / oneOf: say which branch came closest and why it failed.
        closest = best_match(error.context)
        if closest is not None:
            text += f" (closest: {json_path(closest.absolute_path)}: {closest.message})"
    return text


class SchemaValidator:
    """A JSON Schema checked and compiled once; cheap to call many times."""

    __slots__ = ("_fast", "_validator", "name", "schema")

    def __init__(self, schema: Mapping[str, Any] | bool, *, name: str | None = None) -> None:
        """Check ``schema`` against its metaschema and compile it.

        The dialect comes from ``$schema`` (Draft 2020-12 when absent); format
        checking is on. Raises :class:`InvalidSchemaError` for a bad schema.
        """
        if not isinstance(schema, (Mapping, bool)):
            raise InvalidSchemaError(f"a JSON Schema must be an object or a boolean, not {type(schema).__name__}")
        cls: Any = validator_for(schema, default=_UnknownDialect)  # type: ignore[arg-type]
        if cls is _UnknownDialect:
            dialect = schema.get("$schema") if isinstance(schema, Mapping) else None
            if isinstance(schema, Mapping) and "$schema" in schema:
                raise InvalidSchemaError(f"unknown $schema dialect {dialect!r}")
            cls = Draft202012Validator
        try:
            cls.check_schema(schema)
        except SchemaError as exc:
            raise InvalidSchemaError(f"{json_path(exc.absolute_path)}: {exc.message}") from exc
        self.schema = schema
        self.name = name
        self._validator: Validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
        self._fast = _fast_validator(schema)

    def __repr__(self) -> str:
        return f"SchemaValidator({self.name or self.schema!r})"

    def is_valid(self, value: Any) -> bool:
        """True when ``value`` matches the schema (the fast path: no messages built)."""
        if self._fast is not None:
            try:
                self._fast(value)
                return True
            except fastjsonschema.JsonSchemaException:
                pass
        return bool(self._validator.is_valid(value))

    def errors(self, value: Any) -> list[str]:
        """Every problem with ``value``, one message each (empty when valid)."""
        if self.is_valid(value):
            return []
        found = sorted(self._validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path])
        return [_message(error) for error in found]

    def validate(self, value: Any, error: type[ValidationFailed] = ValidationFailed, what: str = "value") -> None:
        """Raise ``error(what, messages)`` when ``value`` does not match."""
        problems = self.errors(value)
        if problems:
            raise error(what, problems)
