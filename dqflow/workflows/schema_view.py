"""JSON Schemas read as *shapes*: the few facts the workflow checker compares.

A schema is read into one of three views:

* :class:`Shape` — its types, ``enum``/``const``, object properties (required
  or not, ``additionalProperties``), array ``items``, and the constraint
  keywords (``pattern``, ``minimum``, ...) the checker does not compare but
  must not ignore;
* :class:`Choice` — an ``anyOf`` / ``oneOf`` of branches;
* :class:`Opaque` — something the checker cannot read (``allOf``, a ``$ref``
  outside the document, ...); the reason says what.

Local ``$ref`` pointers (``#/$defs/image``) are followed inside the schema's
own document (:attr:`Node.root`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote

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
    """A (sub)schema and the document its ``$ref`` pointers resolve in."""

    schema: Any
    root: Any

    @classmethod
    def of(cls, schema: Any) -> Node:
        """A whole schema document."""
        return cls(schema, schema)

    def sub(self, schema: Any) -> Node:
        """A subschema of the same document."""
        return Node(schema, self.root)


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


def _widen(types: frozenset[str]) -> frozenset[str]:
    return types | {"number"} if "integer" in types else types


def _pointer(root: Any, ref: str) -> Any:
    """Follow a local ``#/a/b`` pointer; KeyError when it leads nowhere."""
    target = root
    for raw in ref[1:].split("/")[1:] if ref != "#" else []:
        token = unquote(raw).replace("~1", "/").replace("~0", "~")
        if isinstance(target, list) and token.isdigit() and int(token) < len(target):
            target = target[int(token)]
        elif isinstance(target, Mapping) and token in target:
            target = target[token]
        else:
            raise KeyError(ref)
    return target


def _deref(node: Node) -> Node | Opaque:
    seen = 0
    while isinstance(node.schema, Mapping) and "$ref" in node.schema:
        ref = node.schema["$ref"]
        others = [key for key in node.schema if key != "$ref" and key not in _ANNOTATIONS]
        if others:
            return Opaque(f"$ref {ref!r} next to other keywords ({', '.join(sorted(others))})")
        if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
            return Opaque(f"$ref {ref!r} points outside the schema")
        try:
            node = node.sub(_pointer(node.root, ref))
        except KeyError:
            return Opaque(f"$ref {ref!r} cannot be followed")
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
