"""The metaschema check of common schemas, without loading ``jsonschema``.

``jsonschema`` and ``referencing`` take longer to import than the rest of ``dqflow add``.
Most declared schemas use a few keywords whose metaschema rules are short and the same
in every draft dqflow reads, or known apart (draft 4's boolean ``exclusiveMinimum``):
:func:`surely_valid` says True only for a schema made of those keywords, each holding a
value its draft's metaschema accepts, with no ``$ref`` or ``$id`` (nothing to resolve).
False means "not known here", never "invalid": the caller then asks ``jsonschema``, which
has the last word and the messages. The rules follow the metaschemas of drafts 4, 6, 7,
2019-09 and 2020-12 as ``jsonschema`` checks them (with its ``regex`` format);
``tests/test_schema_verdicts.py`` checks generated schemas against ``check_schema``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["DRAFT_04", "KNOWN_DIALECTS", "dialect_of", "surely_valid"]

DRAFT_04 = "http://json-schema.org/draft-04/schema#"

KNOWN_DIALECTS = (
    "https://json-schema.org/draft/2020-12/schema",
    "https://json-schema.org/draft/2019-09/schema",
    "http://json-schema.org/draft-07/schema#",
    "http://json-schema.org/draft-06/schema#",
    DRAFT_04,
)
"""Each draft's metaschema URI, as its ``jsonschema`` validator's ``META_SCHEMA["$schema"]`` spells it."""

# A "$schema" with or without its empty fragment names the same draft (jsonschema compares URIs so).
_BY_SPELLING = {uri.rstrip("#"): uri for uri in KNOWN_DIALECTS}

_SIMPLE_TYPES = frozenset({"array", "boolean", "integer", "null", "number", "object", "string"})


def dialect_of(schema: Any, default: str) -> str | None:
    """The metaschema URI ``schema`` is read with: ``default`` when it names none, the known
    draft its ``$schema`` names, None for any other ``$schema`` (left to ``jsonschema``)."""
    if not isinstance(schema, Mapping) or "$schema" not in schema:
        return default
    named = schema["$schema"]
    if not isinstance(named, str):
        return None
    return _BY_SPELLING.get(named[:-1] if named.endswith("#") else named)


def surely_valid(schema: Any, dialect: str) -> bool:
    """True only when ``schema`` surely passes the metaschema of ``dialect`` (one of
    :data:`KNOWN_DIALECTS`, which its ``$schema`` names if it has one) and holds no
    reference; False when that is not known here."""
    if dialect not in KNOWN_DIALECTS:
        return False
    if isinstance(schema, Mapping) and "$schema" in schema:
        if dialect_of(schema, dialect) != dialect:
            return False
        schema = {key: value for key, value in schema.items() if key != "$schema"}
    try:
        return _Rules(draft4=dialect == DRAFT_04).schema(schema)
    except RecursionError:
        return False


class _Rules:
    """The keyword rules of one dialect family (draft 4, or the later drafts)."""

    __slots__ = ("draft4",)

    def __init__(self, *, draft4: bool) -> None:
        self.draft4 = draft4

    def schema(self, value: Any) -> bool:
        """A (sub)schema: an object of known keywords with accepted values, or a boolean after draft 4."""
        if isinstance(value, bool):
            return not self.draft4
        if not isinstance(value, Mapping):
            return False
        for key, item in value.items():
            rule = _KEYWORDS.get(key) if isinstance(key, str) else None
            if rule is None or not rule(self, item, value):
                return False
        return True


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    """A non-negative integer (a float, even 1.0, is left to jsonschema: draft 4 refuses it)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_regex(value: Any) -> bool:
    """jsonschema's ``regex`` format: ``re.compile`` accepts it."""
    if not isinstance(value, str):
        return False
    try:
        re.compile(value)
    except Exception:  # re.error, or anything else: jsonschema decides
        return False
    return True


def _unique_strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value) and len(set(value)) == len(value)


def _distinct_scalars(values: list[Any]) -> bool:
    """No two items are equal as JSON; only strings, finite numbers, booleans and null are compared."""
    seen: set[tuple[type, Any]] = set()
    for item in values:
        key: tuple[type, Any]
        if item is None or isinstance(item, (bool, str)):
            key = (type(item), item)
        elif isinstance(item, (int, float)) and math.isfinite(item):
            key = (float, item)  # 1 and 1.0 are one number
        else:
            return False
        if key in seen:
            return False
        seen.add(key)
    return True


Rule = Callable[[_Rules, Any, Mapping[str, Any]], bool]


def _text(rules: _Rules, value: Any, schema: Mapping[str, Any]) -> bool:
    return isinstance(value, str)


def _anything(rules: _Rules, value: Any, schema: Mapping[str, Any]) -> bool:
    return True


def _flag(rules: _Rules, value: Any, schema: Mapping[str, Any]) -> bool:
    return isinstance(value, bool)


def _number(rules: _Rules, value: Any, schema: Mapping[str, Any]) -> bool:
    return _is_number(value)


def _count(rules: _Rules, value: Any, schema: Mapping[str, Any]) -> bool:
    return _is_count(value)


def _divisor(rules: _Rules, value: Any, schema: Mapping[str, Any]) -> bool:
    return _is_number(value) and value > 0


def _pattern(rules: _Rules, value: Any, schema: Mapping[str, Any]) -> bool:
    return _is_regex(value)


def _types(rules: _Rules, value: Any, schema: Mapping[str, Any]) -> bool:
    if isinstance(value, str):
        return value in _SIMPLE_TYPES
    return _unique_strings(value) and len(value) > 0 and all(name in _SIMPLE_TYPES for name in value)


def _enum(rules: _Rules, value: Any, schema: Mapping[str, Any]) -> bool:
    # Later drafts take any array; draft 4 wants a non-empty one without repeats.
    return isinstance(value, list) and (not rules.draft4 or (len(value) > 0 and _distinct_scalars(value)))


def _required(rules: _Rules, value: Any, schema: Mapping[str, Any]) -> bool:
    return _unique_strings(value) and (not rules.draft4 or len(value) > 0)


def _exclusive(bound: str) -> Rule:
    """Draft 4: a boolean beside its ``minimum``/``maximum``; later drafts: a number."""

    def rule(rules: _Rules, value: Any, schema: Mapping[str, Any]) -> bool:
        return (isinstance(value, bool) and bound in schema) if rules.draft4 else _is_number(value)

    return rule


def _subschema(rules: _Rules, value: Any, schema: Mapping[str, Any]) -> bool:
    return rules.schema(value)


def _subschema_or_flag(rules: _Rules, value: Any, schema: Mapping[str, Any]) -> bool:
    return isinstance(value, bool) or rules.schema(value)  # draft 4 allows a boolean here too


def _subschemas(rules: _Rules, value: Any, schema: Mapping[str, Any]) -> bool:
    return isinstance(value, list) and len(value) > 0 and all(rules.schema(item) for item in value)


def _named_subschemas(rules: _Rules, value: Any, schema: Mapping[str, Any]) -> bool:
    return isinstance(value, Mapping) and all(isinstance(k, str) and rules.schema(v) for k, v in value.items())


def _pattern_subschemas(rules: _Rules, value: Any, schema: Mapping[str, Any]) -> bool:
    return _named_subschemas(rules, value, schema) and all(_is_regex(key) for key in value)


# Each keyword's rule holds in every draft: where a draft does not know the keyword, its
# metaschema accepts any value, and the rule here only narrows that.
_KEYWORDS: dict[str, Rule] = {
    "title": _text,
    "description": _text,
    "$comment": _text,
    "format": _text,
    "contentEncoding": _text,
    "contentMediaType": _text,
    "default": _anything,
    "const": _anything,
    "examples": lambda rules, value, schema: isinstance(value, list),
    "readOnly": _flag,
    "writeOnly": _flag,
    "deprecated": _flag,
    "type": _types,
    "enum": _enum,
    "multipleOf": _divisor,
    "minimum": _number,
    "maximum": _number,
    "exclusiveMinimum": _exclusive("minimum"),
    "exclusiveMaximum": _exclusive("maximum"),
    "minLength": _count,
    "maxLength": _count,
    "minItems": _count,
    "maxItems": _count,
    "minProperties": _count,
    "maxProperties": _count,
    "uniqueItems": _flag,
    "pattern": _pattern,
    "required": _required,
    "properties": _named_subschemas,
    "patternProperties": _pattern_subschemas,
    "additionalProperties": _subschema_or_flag,
    "items": _subschema,  # the array form differs between drafts: left to jsonschema
    "contains": _subschema,
    "propertyNames": _subschema,
    "not": _subschema,
    "if": _subschema,
    "then": _subschema,
    "else": _subschema,
    "allOf": _subschemas,
    "anyOf": _subschemas,
    "oneOf": _subschemas,
}
