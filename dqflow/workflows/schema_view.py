"""JSON Schemas read as *shapes*: the few facts the workflow checker compares.

A schema is read into one of three views:

* :class:`Shape` — its types, ``enum``/``const``, object properties (required
  or not, ``additionalProperties``), array ``items``, and the constraint
  keywords (``pattern``, ``minimum``, ...) the checker does not compare but
  must not ignore;
* :class:`Choice` — an ``anyOf`` / ``oneOf`` of branches;
* :class:`Opaque` — something the checker cannot read (``allOf``, a ``$ref``
  outside the document, ...); the reason says what.

``$ref`` s are followed with the resolver of the schema's document
(:attr:`Node.resolver`): local pointers (``#/$defs/image``) and, for schemas
loaded from ``jobs.yaml``, other schema files of the project.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import referencing.jsonschema
from jsonschema import Draft202012Validator
from jsonschema.validators import validator_for
from referencing import Registry, Specification
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from dqflow.declaration.schemas import SchemaValidator

__all__ = [
    "ALL_TYPES",
    "Choice",
    "Node",
    "Opaque",
    "Shape",
    "View",
    "accepts_type",
    "describe",
    "json_type",
    "overlaps",
    "view",
]

TYPE_ORDER = ("object", "array", "string", "number", "integer", "boolean", "null")
ALL_TYPES = frozenset(TYPE_ORDER)

# Keywords that only describe (never reject a value).
_ANNOTATIONS = frozenset(
    {
        "$schema",
        "$id",
        "$comment",
        "$defs",
        "definitions",
        "$anchor",
        "$dynamicAnchor",
        "$vocabulary",
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
        "contentMediaType",
        "contentEncoding",
        "contentSchema",
    }
)

# Keywords that reject values in ways the checker does not compare, with the types they apply to.
_CONSTRAINTS: dict[str, frozenset[str]] = {
    **dict.fromkeys(("pattern", "format", "minLength", "maxLength"), frozenset({"string"})),
    **dict.fromkeys(
        ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"),
        frozenset({"number", "integer"}),
    ),
    **dict.fromkeys(
        (
            "minItems",
            "maxItems",
            "uniqueItems",
            "contains",
            "minContains",
            "maxContains",
            "prefixItems",
            "additionalItems",
            "unevaluatedItems",
        ),
        frozenset({"array"}),
    ),
    **dict.fromkeys(
        (
            "minProperties",
            "maxProperties",
            "patternProperties",
            "propertyNames",
            "dependentRequired",
            "dependentSchemas",
            "dependencies",
            "unevaluatedProperties",
        ),
        frozenset({"object"}),
    ),
    **dict.fromkeys(("not", "if", "then", "else", "$dynamicRef", "$recursiveRef"), ALL_TYPES),
}

_MAX_REF_DEPTH = 32


@dataclass(frozen=True, slots=True)
class Node:
    """A (sub)schema, the resolver its ``$ref`` s resolve with, and its dialect's validator class."""

    schema: Any
    resolver: Any  # a referencing resolver (the package does not export its type)
    dialect: Any = Draft202012Validator

    @classmethod
    def of(cls, schema: Any) -> Node:
        """A whole schema document on its own (``$ref`` s only within it)."""
        dialect: Any = validator_for(schema, default=Draft202012Validator)
        root = _specification(dialect).create_resource(schema)
        return cls(schema, Registry().resolver_with_root(root), dialect)

    @classmethod
    def of_validator(cls, validator: SchemaValidator) -> Node:
        """A schema as the loader compiled it: ``$ref`` s to other files resolve too."""
        return cls(validator.schema, validator.resolver(), validator.validator_class)

    def sub(self, schema: Any) -> Node:
        """A subschema (or a wrapper around one) of the same document."""
        return Node(schema, self.resolver, self.dialect)


def _specification(dialect: Any) -> Specification[Any]:
    uri = getattr(dialect, "META_SCHEMA", {}).get("$schema", "")
    return referencing.jsonschema.specification_with(uri, default=DRAFT202012)


@dataclass(frozen=True, slots=True)
class Shape:
    """What a schema allows, in the terms the checker compares."""

    types: frozenset[str]
    typed: bool  # `type`, `enum` or `const` was written (else any type is allowed)
    enum: tuple[Any, ...] | None
    properties: Mapping[str, Node] = field(default_factory=dict)
    required: frozenset[str] = frozenset()
    additional: Node | bool = True  # True: any extra key; False: none
    items: Node | None = None  # None: any element
    constraints: Mapping[str, Any] = field(default_factory=dict)

    @property
    def anything(self) -> bool:
        """True for ``{}`` / ``true``: every value fits."""
        return (
            not self.typed
            and not self.constraints
            and not self.properties
            and not self.required
            and (self.additional is True and self.items is None)
        )

    def only(self, json_type: str) -> Shape:
        """The same shape restricted to one type (to match a union branch by branch)."""
        return replace(self, types=frozenset({json_type}), typed=True)

    def applicable_constraints(self, types: frozenset[str]) -> dict[str, Any]:
        """The constraints that can reject a value of one of ``types``."""
        return {key: value for key, value in self.constraints.items() if _CONSTRAINTS[key] & _widen(types)}


@dataclass(frozen=True, slots=True)
class Choice:
    """``anyOf`` (``exclusive=False``) or ``oneOf`` (``exclusive=True``)."""

    branches: tuple[Node, ...]
    exclusive: bool


@dataclass(frozen=True, slots=True)
class Opaque:
    """A schema the checker cannot read; ``reason`` says why."""

    reason: str


View = Shape | Choice | Opaque


def json_type(value: Any) -> str:
    """The JSON Schema type of a JSON value (``1.0`` is an integer, as the spec says)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def accepts_type(types: frozenset[str], json_type: str) -> bool:
    """True when a schema of ``types`` accepts values of ``json_type`` (integers are numbers)."""
    return json_type in types or (json_type == "integer" and "number" in types)


def overlaps(a: frozenset[str], b: frozenset[str]) -> bool:
    """True when some value has a type in both (an integer is a number too)."""
    return bool(_widen(a) & _widen(b))


def _widen(types: frozenset[str]) -> frozenset[str]:
    return types | {"number"} if "integer" in types else types


def _deref(node: Node) -> Node | Opaque:
    seen = 0
    while isinstance(node.schema, Mapping) and "$ref" in node.schema:
        ref = node.schema["$ref"]
        others = [key for key in node.schema if key != "$ref" and key not in _ANNOTATIONS]
        if others:
            return Opaque(f"$ref {ref!r} next to other keywords ({', '.join(sorted(others))})")
        try:
            resolved = node.resolver.lookup(ref)
        except Unresolvable:
            return Opaque(f"$ref {ref!r} cannot be followed")
        node = Node(resolved.contents, resolved.resolver, node.dialect)
        seen += 1
        if seen > _MAX_REF_DEPTH:
            return Opaque(f"$ref {ref!r} loops")
    return node


def view(node: Node) -> View:
    """Read ``node`` into a :class:`Shape`, :class:`Choice` or :class:`Opaque`."""
    resolved = _deref(node)
    if isinstance(resolved, Opaque):
        return resolved
    schema = resolved.schema
    if schema is True or schema == {}:
        return Shape(types=ALL_TYPES, typed=False, enum=None)
    if schema is False:
        return Shape(types=frozenset(), typed=True, enum=None)
    if not isinstance(schema, Mapping):
        return Opaque(f"{json.dumps(schema)} is not a schema")
    meaningful = {key for key in schema if key not in _ANNOTATIONS}
    for combinator in ("anyOf", "oneOf", "allOf"):
        if combinator not in schema:
            continue
        branches = schema[combinator]
        if meaningful != {combinator}:
            others = ", ".join(sorted(meaningful - {combinator}))
            return Opaque(f"{combinator} next to other keywords ({others})")
        if len(branches) == 1:
            return view(resolved.sub(branches[0]))
        if combinator == "allOf":
            return Opaque("allOf with several branches")
        return Choice(tuple(resolved.sub(branch) for branch in branches), exclusive=combinator == "oneOf")
    return _shape(resolved, schema)


def _shape(node: Node, schema: Mapping[str, Any]) -> Shape:
    written = schema.get("type")
    typed = written is not None
    types = ALL_TYPES if written is None else frozenset([written] if isinstance(written, str) else written)
    enum: tuple[Any, ...] | None = None
    if "const" in schema:
        enum = (schema["const"],)
    elif "enum" in schema:
        enum = tuple(schema["enum"])
    if enum is not None:
        typed = True
        types = frozenset(json_type(value) for value in enum if accepts_type(types, json_type(value)))
    constraints = {key: schema[key] for key in schema if key in _CONSTRAINTS}
    items = schema.get("items")
    if isinstance(items, list):  # the old tuple form: positional schemas
        constraints["prefixItems"] = items
        items = None
    additional = schema.get("additionalProperties", True)
    return Shape(
        types=types,
        typed=typed,
        enum=enum,
        properties={name: node.sub(sub) for name, sub in schema.get("properties", {}).items()},
        required=frozenset(schema.get("required", ())),
        additional=additional if isinstance(additional, bool) else node.sub(additional),
        items=None if items is None or items is True else node.sub(items),
        constraints=constraints,
    )


def describe(shown: View, depth: int = 0) -> str:
    """A short type text: ``string|null``, ``one of 'a', 'b'``, ``anyOf(object, null)``."""
    if isinstance(shown, Opaque):
        return "unknown"
    if isinstance(shown, Choice):
        word = "oneOf" if shown.exclusive else "anyOf"
        if depth >= 2:
            return f"{word}(...)"
        return f"{word}({', '.join(describe(view(branch), depth + 1) for branch in shown.branches)})"
    if shown.enum is not None:
        values = ", ".join(json.dumps(value, ensure_ascii=False) for value in shown.enum[:6])
        more = ", ..." if len(shown.enum) > 6 else ""
        return f"{json.dumps(shown.enum[0], ensure_ascii=False)}" if len(shown.enum) == 1 else f"one of {values}{more}"
    if not shown.typed:
        return "any"
    if not shown.types:
        return "nothing (false)"
    return "|".join(t for t in TYPE_ORDER if t in shown.types)
