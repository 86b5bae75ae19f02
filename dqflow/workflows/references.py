"""The reference language of workflow mappings: ``${input.a}``, ``${steps.fetch.output.images[*].url}``.

A mapping (a step's ``payload``, ``for_each``, ``if``, the workflow's
``returns``) is any JSON value; every string in it is a *template*. This module
parses templates once, at load time, into a small tree the checker types and
the resolver evaluates.

Grammar (whitespace inside ``${ }`` is not allowed)::

    reference := "${" root path "}"
    root      := "input" | "item" | "steps." NAME ".output" | "steps." NAME ".outputs"
    path      := ( "." NAME | "[" DIGITS "]" | "[*]" | "[" JSON-STRING "]" )*
    NAME      := [A-Za-z_][A-Za-z0-9_]*

``$${`` writes a literal ``${``. A string that is exactly one reference is
replaced by the value (its JSON type kept); references inside a longer string
are interpolated (see :func:`render`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "EACH",
    "Constant",
    "Each",
    "Interpolation",
    "ListTemplate",
    "MapTemplate",
    "PathPart",
    "Ref",
    "RefTemplate",
    "ReferenceSyntaxError",
    "Template",
    "format_path",
    "parse_template",
    "references",
    "render",
]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DIGITS = re.compile(r"[0-9]+")


class Each:
    """The ``[*]`` path part: apply the rest of the path to every element of an array."""

    _instance: Each | None = None

    def __new__(cls) -> Each:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "EACH"


EACH = Each()

PathPart = str | int | Each
"""A key (``.name`` or ``["key"]``), an index (``[2]``) or ``EACH`` (``[*]``)."""

RootKind = Literal["input", "item", "output", "outputs"]


class ReferenceSyntaxError(ValueError):
    """A template that does not parse; ``position`` is the 1-based column in the string."""

    def __init__(self, reason: str, text: str, position: int) -> None:
        self.reason = reason
        self.text = text
        self.position = position
        super().__init__(f"invalid reference in {text!r} at position {position}: {reason}")


def format_path(parts: tuple[PathPart, ...], start: str = "$") -> str:
    """``("images", EACH, "url")`` → ``$.images[*].url`` (the notation of every message)."""
    out = [start]
    for part in parts:
        if isinstance(part, Each):
            out.append("[*]")
        elif isinstance(part, int):
            out.append(f"[{part}]")
        elif _NAME.fullmatch(part):
            out.append(f".{part}")
        else:
            out.append(f"[{json.dumps(part, ensure_ascii=False)}]")
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Ref:
    """One reference. ``kind`` says what it reads; ``step`` names the step for output/outputs."""

    kind: RootKind
    step: str | None
    path: tuple[PathPart, ...]
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class Constant:
    """A JSON value with no reference in it (kept as written)."""

    value: Any


@dataclass(frozen=True, slots=True)
class RefTemplate:
    """A string that is exactly one reference: the referenced value, with its JSON type."""

    ref: Ref


@dataclass(frozen=True, slots=True)
class Interpolation:
    """A string with references inside other text: always a string."""

    parts: tuple[str | Ref, ...]
    text: str


@dataclass(frozen=True, slots=True)
class MapTemplate:
    """A mapping whose values are templates."""

    items: tuple[tuple[str, Template], ...]


@dataclass(frozen=True, slots=True)
class ListTemplate:
    """A list whose elements are templates."""

    items: tuple[Template, ...]


Template = Constant | RefTemplate | Interpolation | MapTemplate | ListTemplate


# --------------------------------------------------------------------------- parsing


class _Scanner:
    def __init__(self, text: str, start: int) -> None:
        self.text = text
        self.pos = start

    def fail(self, reason: str, at: int | None = None) -> ReferenceSyntaxError:
        return ReferenceSyntaxError(reason, self.text, (self.pos if at is None else at) + 1)

    def peek(self, literal: str) -> bool:
        return self.text.startswith(literal, self.pos)

    def take(self, literal: str) -> bool:
        if self.peek(literal):
            self.pos += len(literal)
            return True
        return False

    def name(self, what: str) -> str:
        match = _NAME.match(self.text, self.pos)
        if match is None:
            raise self.fail(f"expected {what} (letters, digits, _)")
        self.pos = match.end()
        return match.group()

    def bracket(self) -> PathPart:
        """After ``[``: ``*]``, ``12]`` or ``"key"]``."""
        if self.take("*]"):
            return EACH
        digits = _DIGITS.match(self.text, self.pos)
        if digits is not None:
            self.pos = digits.end()
            if not self.take("]"):
                raise self.fail("expected ']' after the index")
            return int(digits.group())
        if self.peek('"'):
            decoder = json.JSONDecoder()
            try:
                key, end = decoder.raw_decode(self.text, self.pos)
            except json.JSONDecodeError:
                raise self.fail("unterminated quoted key") from None
            self.pos = end
            if not self.take("]"):
                raise self.fail("expected ']' after the quoted key")
            return str(key)
        raise self.fail('expected an index, * or a "quoted key" inside [ ]')

    def reference(self) -> Ref:
        """After ``${``: a whole reference up to and including ``}``."""
        begin = self.pos - 2
        kind: RootKind
        step: str | None = None
        root = self.name("input, item or steps")
        if root in ("input", "item"):
            kind = root  # type: ignore[assignment]
        elif root == "steps":
            if not self.take("."):
                raise self.fail("expected '.' and a step name after 'steps'")
            step = self.name("a step name")
            if not self.take("."):
                raise self.fail(f"expected '.output' or '.outputs' after 'steps.{step}'")
            at = self.pos
            which = self.name("output or outputs")
            if which not in ("output", "outputs"):
                raise self.fail(f"expected 'output' or 'outputs', got {which!r}", at)
            kind = which  # type: ignore[assignment]
        else:
            raise self.fail(f"unknown root {root!r}: a reference starts with input, item or steps", begin + 2)
        path: list[PathPart] = []
        while not self.take("}"):
            if self.pos >= len(self.text):
                raise self.fail("missing '}'")
            if self.take("."):
                path.append(self.name("a field name"))
            elif self.take("["):
                path.append(self.bracket())
            else:
                raise self.fail(f"unexpected {self.text[self.pos]!r}: expected '.', '[' or '}}'")
        return Ref(kind=kind, step=step, path=tuple(path), text=self.text[begin : self.pos])


def _parse_string(text: str) -> Template:
    parts: list[str | Ref] = []
    literal: list[str] = []
    scanner = _Scanner(text, 0)
    while scanner.pos < len(text):
        if scanner.take("$${"):
            literal.append("${")
        elif scanner.take("${"):
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(scanner.reference())
        else:
            literal.append(text[scanner.pos])
            scanner.pos += 1
    if literal:
        parts.append("".join(literal))
    if len(parts) == 1 and isinstance(parts[0], Ref):
        return RefTemplate(parts[0])
    if not any(isinstance(part, Ref) for part in parts):
        return Constant("".join(p for p in parts if isinstance(p, str)))
    return Interpolation(tuple(parts), text)


def parse_template(value: Any) -> Template:
    """Parse every string in ``value`` (a JSON value); :class:`ReferenceSyntaxError` on bad syntax.

    The error's ``path`` attribute (a tuple of keys/indexes inside ``value``) says where.
    """
    return _parse(value, ())


def _parse(value: Any, where: tuple[str | int, ...]) -> Template:
    if isinstance(value, str):
        try:
            return _parse_string(value)
        except ReferenceSyntaxError as exc:
            exc.path = where  # type: ignore[attr-defined]
            raise
    if isinstance(value, dict):
        items = tuple((str(key), _parse(item, (*where, str(key)))) for key, item in value.items())
        if all(isinstance(t, Constant) for _, t in items):
            return Constant(value)
        return MapTemplate(items)
    if isinstance(value, list):
        elements = tuple(_parse(item, (*where, index)) for index, item in enumerate(value))
        if all(isinstance(t, Constant) for t in elements):
            return Constant(value)
        return ListTemplate(elements)
    return Constant(value)


def references(template: Template) -> Iterator[tuple[tuple[str | int, ...], Ref]]:
    """Every reference in ``template`` with where it sits (keys/indexes inside the mapping)."""
    yield from _walk(template, ())


def _walk(template: Template, where: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], Ref]]:
    if isinstance(template, RefTemplate):
        yield where, template.ref
    elif isinstance(template, Interpolation):
        for part in template.parts:
            if isinstance(part, Ref):
                yield where, part
    elif isinstance(template, MapTemplate):
        for key, item in template.items:
            yield from _walk(item, (*where, key))
    elif isinstance(template, ListTemplate):
        for index, element in enumerate(template.items):
            yield from _walk(element, (*where, index))


def render(value: Any) -> str:
    """How an interpolated value reads: a string as is, anything else as compact JSON.

    ``true``, ``null``, ``3``, ``2.5``, ``["a","b"]``, ``{"k":1}``.
    """
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
