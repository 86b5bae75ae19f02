"""What a reference can give: walk its path through the producing schema.

``walk(node, path)`` follows ``.field``, ``[3]`` and ``[*]`` through a schema
exactly as the resolver follows them through a value, and answers the
:class:`Produced` schema, whether the value may be absent (an optional field,
an index past the end, a step into ``null``), or why the path cannot exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from dqflow.workflows.compat import join
from dqflow.workflows.references import Each, PathPart, format_path
from dqflow.workflows.schema_view import Choice, Node, Opaque, Shape, describe, view

__all__ = ["PathError", "Produced", "elements_of", "walk"]


@dataclass(frozen=True, slots=True)
class Produced:
    """The schema a reference gives (``None``: unknown, see ``unknown``) and where it read it."""

    node: Node | None
    path: str
    may_be_absent: bool = False
    unknown: str | None = None  # why the checker cannot tell what this is


class PathError(ValueError):
    """The path cannot exist in the producing schema (or its value may be missing in an element)."""


def _describe_node(node: Node) -> str:
    return describe(view(node))


def walk(node: Node | None, parts: tuple[PathPart, ...], path: str = "$") -> Produced:
    """Follow ``parts`` from ``node`` (the value at ``path``); PathError when the schema rules it out."""
    absent = False
    for index, part in enumerate(parts):
        if node is None:
            return Produced(None, format_path(parts[index:], path), absent, "no schema declares it")
        wanted = "array" if isinstance(part, (int, Each)) else "object"
        found = _branch(node, wanted, path)
        if isinstance(found, Produced):
            return Produced(None, found.path, absent, found.unknown)
        shape, others = found
        absent = absent or others
        if isinstance(part, Each):
            return _each(shape, parts[index + 1 :], join(path, "[*]"), absent)
        if isinstance(part, int):
            node, path, absent = shape.items, f"{path}[{part}]", True
            continue
        step = _field(shape, part, path)
        if isinstance(step, Produced):
            return Produced(None, step.path, absent, step.unknown)
        node, optional = step
        path = join(path, part)
        absent = absent or optional
    return Produced(node, path, absent, None if node is not None else "no schema declares it")


def _branch(node: Node, wanted: str, path: str) -> tuple[Shape, bool] | Produced:
    """The shape to step into (of type ``wanted``) and whether the value may be something else."""
    shown = view(node)
    if isinstance(shown, Opaque):
        return Produced(None, path, unknown=shown.reason)
    if isinstance(shown, Choice):
        views = [view(branch) for branch in shown.branches]
        fitting = [v for v in views if not isinstance(v, Shape) or wanted in v.types or not v.typed]
        if len(fitting) != 1 or not isinstance(fitting[0], Shape):
            return Produced(None, path, unknown=f"{path} is {describe(shown)}")
        return fitting[0], len(views) > 1
    if not shown.typed:
        return Produced(None, path, unknown=f"{path} declares no type")
    if wanted not in shown.types:
        article = "an" if wanted[0] in "aeiou" else "a"
        raise PathError(f"{path} is {describe(shown)}, not {article} {wanted}")
    return shown, len(shown.types) > 1


def _field(shape: Shape, name: str, path: str) -> tuple[Node, bool] | Produced:
    if name in shape.properties:
        return shape.properties[name], name not in shape.required
    if isinstance(shape.additional, Node):
        return shape.additional, True
    if "patternProperties" in shape.constraints:
        return Produced(None, join(path, name), unknown=f"{path} has patternProperties")
    if not shape.properties and shape.additional is True:
        return Produced(None, join(path, name), unknown=f"{path} declares no properties")
    known = ", ".join(shape.properties) or "none"
    raise PathError(f"{path} has no field {name!r} (fields: {known})")


def _each(shape: Shape, rest: tuple[PathPart, ...], path: str, absent: bool) -> Produced:
    element = walk(shape.items, rest, path)
    if element.may_be_absent:
        raise PathError(f"{element.path} may be absent in some elements; [*] needs it in every one")
    if element.node is None:
        return Produced(None, element.path, absent, element.unknown)
    mapped = element.node.sub({"type": "array", "items": element.node.schema})
    return Produced(mapped, element.path, absent)


def elements_of(produced: Produced) -> Produced:
    """What one element of the array ``produced`` is (the ``item`` of a ``for_each`` step)."""
    path = join(produced.path, "[*]")
    if produced.node is None:
        return Produced(None, path, unknown=produced.unknown)
    found = _branch(produced.node, "array", produced.path)
    if isinstance(found, Produced):
        return Produced(None, path, unknown=found.unknown)
    items = found[0].items
    return Produced(items, path, unknown=None if items is not None else f"{produced.path} declares no items")
