"""Does every value of one JSON Schema fit another? The question behind every workflow link.

:func:`fits` compares a *producer* (what a reference can give: the workflow
input, a step's output, a path inside them) with a *consumer* (where it goes:
a payload field, the workflow output, ``for_each``, ``if``) and returns
:class:`Finding` s:

* an **error** when some value the producer allows is certainly refused by the
  consumer: a type the consumer does not accept (``null`` into ``string``, a
  number into an enum of strings), any string into an enum, a field optional
  in the producer but required by the consumer, a key the consumer's
  ``additionalProperties: false`` forbids, ...;
* a **warning** when the checker cannot decide (a ``pattern``, ``minimum`` or
  ``format`` the producer does not share, ``allOf``, a ``$ref`` it cannot
  follow, a producer with no schema): the value is still validated when the
  step runs.

No finding means the link is proven. A producer that is one known value
(``const``, a literal in the mapping) is validated exactly with ``jsonschema``.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any, Literal

from jsonschema.exceptions import best_match

from dqflow.workflows.schema_view import (
    Choice,
    Node,
    Opaque,
    Shape,
    View,
    accepts_type,
    describe,
    json_type,
    overlaps,
    view,
)

__all__ = ["Finding", "fits", "fits_value", "join"]

Level = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem with a link: where in the producer and the consumer, their types, and why."""

    level: Level
    reason: str
    producer_path: str
    producer_type: str
    consumer_path: str
    consumer_type: str


def join(path: str, key: str) -> str:
    """``$.a`` + ``b`` → ``$.a.b``; ``[*]`` is appended as it is."""
    if key.startswith("["):
        return path + key
    if key.isidentifier():
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key, ensure_ascii=False)}]"


def _finding(level: Level, reason: str, p: View, c: View, pp: str, cp: str) -> Finding:
    return Finding(level, reason, pp, describe(p), cp, describe(c))


_trail = threading.local()  # the (producer, consumer) pairs being compared, to stop on recursive schemas
_MAX_DEPTH = 64
_UNKNOWN = Opaque("no schema declares it")
_ABSENT = Opaque("absent")


def fits(producer: Node | None, consumer: Node | None, pp: str = "$", cp: str = "$") -> list[Finding]:
    """Findings for putting any value of ``producer`` where ``consumer`` is expected.

    ``None`` as producer means nothing declares the value; as consumer, anything is accepted.
    ``pp``/``cp`` are the data paths the findings are reported at.
    """
    if consumer is None:
        return []
    key = (0 if producer is None else id(producer.schema), id(consumer.schema))
    active: set[tuple[int, int]] | None = getattr(_trail, "active", None)
    outermost = active is None
    if active is None:
        active = _trail.active = set()
    if key in active:
        return []  # a recursive schema met itself: what holds one level up holds here (coinduction)
    active.add(key)
    try:
        return _fits(_UNKNOWN if producer is None else view(producer), consumer, pp, cp)
    finally:
        active.discard(key)
        if outermost:
            del _trail.active


def _fits(p: View, consumer: Node, pp: str, cp: str) -> list[Finding]:
    depth = getattr(_trail, "depth", 0)
    if depth > _MAX_DEPTH:  # a union that contains itself, say: leave it to the run-time check
        return [_finding("warning", "too deeply nested to check", p, Opaque("deep"), pp, cp)]
    _trail.depth = depth + 1
    try:
        return _fits_view(p, consumer, pp, cp)
    finally:
        _trail.depth = depth


def _fits_view(p: View, consumer: Node, pp: str, cp: str) -> list[Finding]:
    c = view(consumer)
    if isinstance(c, Shape) and c.anything:
        return []
    if isinstance(c, Opaque):
        return [_finding("warning", f"the checker cannot read {cp}: {c.reason}", p, c, pp, cp)]
    if isinstance(p, Opaque):
        return [_finding("warning", f"the checker cannot read {pp}: {p.reason}", p, c, pp, cp)]
    if isinstance(p, Choice):
        found: list[Finding] = []
        for branch in p.branches:
            for finding in fits(branch, consumer, pp, cp):
                if finding not in found:
                    found.append(finding)
        return found
    if not p.typed:
        return [_finding("warning", f"{pp} declares no type", p, c, pp, cp)]
    if p.enum is not None:
        return [f for value in p.enum for f in fits_value(value, consumer, pp, cp, shown=p)]
    if isinstance(c, Choice):
        return _fits_choice(p, c, pp, cp)
    return _fits_shape(p, c, pp, cp)


def _type_reason(json_type: str, c: Shape) -> str:
    if json_type == "null":
        return "null is not allowed"
    if json_type == "number" and "integer" in c.types:
        return "a number may have a fraction; an integer is required"
    return f"{json_type} is not accepted"


def _fits_shape(p: Shape, c: Shape, pp: str, cp: str) -> list[Finding]:
    wrong = [t for t in sorted(p.types) if not accepts_type(c.types, t)]
    if wrong:
        return [_finding("error", "; ".join(_type_reason(t, c) for t in wrong), p, c, pp, cp)]
    if c.enum is not None:
        return [_finding("error", f"any {describe(p)} may come, not only those values", p, c, pp, cp)]
    found: list[Finding] = []
    for keyword, value in c.applicable_constraints(p.types).items():
        if p.constraints.get(keyword) != value:
            shown = "..." if isinstance(value, (dict, list)) else json.dumps(value, ensure_ascii=False)
            reason = f"{keyword}: {shown} cannot be proven"
            found.append(_finding("warning", reason, p, c, pp, cp))
    if "object" in p.types:
        found += _fits_object(p, c, pp, cp)
    if "array" in p.types and c.items is not None:
        found += fits(p.items, c.items, join(pp, "[*]"), join(cp, "[*]"))
    return found


def _fits_object(p: Shape, c: Shape, pp: str, cp: str) -> list[Finding]:
    found: list[Finding] = []
    for name in sorted(c.required - p.required):
        consumer_field = view(c.properties[name]) if name in c.properties else c
        if name in p.properties:
            reason, producer_field = "optional there, required here", view(p.properties[name])
        else:
            reason, producer_field = "absent there, required here", _ABSENT
        found.append(_finding("error", reason, producer_field, consumer_field, join(pp, name), join(cp, name)))
    for name, sub in p.properties.items():
        target = c.properties.get(name, c.additional)
        if target is False:
            reason = f"the key {name!r} is not allowed (additionalProperties: false)"
            found.append(_finding("error", reason, view(sub), c, join(pp, name), cp))
        elif target is not True:
            found += fits(sub, target, join(pp, name), join(cp, name))
    if p.additional is not False and c.additional is False:
        reason = "other keys may come (no additionalProperties: false there), none are allowed here"
        found.append(_finding("warning", reason, p, c, pp, cp))
    elif p.additional is not False and isinstance(c.additional, Node):
        extra = None if p.additional is True else p.additional
        found += fits(extra, c.additional, join(pp, "[*]"), join(cp, "[*]"))
    return found


def _fits_choice(p: Shape, c: Choice, pp: str, cp: str) -> list[Finding]:
    """A union consumer, matched type by type (so ``string|null`` fits ``anyOf: [string, null]``)."""
    word = "oneOf" if c.exclusive else "anyOf"
    found: list[Finding] = []
    branches = [view(branch) for branch in c.branches]
    for part in [p.only(t) for t in sorted(p.types)] if len(p.types) > 1 else [p]:
        verdicts = [_fits(part, branch, pp, cp) for branch in c.branches]
        clean = [index for index, verdict in enumerate(verdicts) if not verdict]
        if clean and not c.exclusive:
            continue
        if len(clean) == 1 and all(
            isinstance(other, Shape) and other.typed and not overlaps(other.types, part.types)
            for index, other in enumerate(branches)
            if index != clean[0]
        ):
            continue
        if clean:
            found.append(_finding("warning", f"cannot prove exactly one {word} branch matches", part, c, pp, cp))
        elif not any(not isinstance(b, Shape) or overlaps(b.types, part.types) for b in branches):
            found.append(_finding("error", f"{describe(part)} fits no {word} branch", part, c, pp, cp))
        else:
            found.append(_finding("warning", f"cannot prove it fits one {word} branch", part, c, pp, cp))
    return found


def fits_value(
    value: Any, consumer: Node | None, pp: str = "$", cp: str = "$", *, shown: View | None = None
) -> list[Finding]:
    """Findings for one known value (a literal in the mapping, a ``const``): validated exactly."""
    if consumer is None:
        return []
    p = shown if shown is not None else Shape(types=frozenset({json_type(value)}), typed=True, enum=(value,))
    c = view(consumer)
    if isinstance(c, Shape) and not accepts_type(c.types, json_type(value)):
        return [_finding("error", _type_reason(json_type(value), c), p, c, pp, cp)]
    if isinstance(c, Shape) and c.enum is not None and not any(_same(value, allowed) for allowed in c.enum):
        return [_finding("error", "not one of those values", p, c, pp, cp)]
    try:
        reason = _first_error(value, consumer)
    except Exception as exc:  # an unresolvable $ref and the like: the run-time check decides
        return [_finding("warning", f"the checker cannot read {cp}: {exc}", p, c, pp, cp)]
    return [] if reason is None else [_finding("error", reason, p, c, pp, cp)]


def _same(a: Any, b: Any) -> bool:
    """JSON equality: ``1 == True`` in Python, not in JSON."""
    return json_type(a) == json_type(b) and a == b


def _first_error(value: Any, node: Node) -> str | None:
    """The most relevant jsonschema message for ``value`` against ``node`` (None when valid)."""
    cls: Any = node.dialect
    # The node's resolver, so its $refs (local or to other schema files) resolve as when the job runs.
    checker = cls(node.schema, format_checker=cls.FORMAT_CHECKER, _resolver=node.resolver)
    error = best_match(checker.iter_errors(value))
    return None if error is None else str(error.message)
