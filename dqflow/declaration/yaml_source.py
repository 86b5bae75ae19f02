"""Read ``jobs.yaml`` as YAML with line numbers: the node tree (for locating keys) and the data.

Mapping keys stay the text written (``on:`` is ``"on"``, not ``True``); duplicate
keys, an alias that contains itself and aliases that expand too far (an "alias
bomb") are refused before anything is built.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import yaml

from dqflow.errors import ConfigError, raise_all

__all__ = ["MAX_ALIAS_EXPANSION", "Loc", "Locator", "key_text", "parse_yaml"]

Loc = tuple[str | int, ...]
"""A key path: ``("jobs", "report", "retry", "delay")``."""

_MERGE_TAG = "tag:yaml.org,2002:merge"


def key_text(loc: Loc) -> str:
    """``jobs.report.tags[2]``: a key path as a message shows it."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class Locator:
    """Maps a key path (pydantic ``loc``) to the line of ``jobs.yaml`` where it is written."""

    def __init__(self, root: yaml.Node) -> None:
        self.root = root

    def line(self, loc: Loc) -> int | None:
        node: yaml.Node = self.root
        line = node.start_mark.line + 1
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                found = None
                for key_node, value_node in node.value:  # last wins, as in the constructed dict
                    if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(part):
                        found = (key_node, value_node)
                if found is None:
                    break
                line = found[0].start_mark.line + 1
                node = found[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                break
        return line


def _duplicates(node: yaml.Node, loc: Loc, file: str, seen: set[int], out: list[ConfigError]) -> None:
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                continue
            name = key_node.value
            line = key_node.start_mark.line + 1
            if name in first_line:
                out.append(
                    ConfigError(
                        f"duplicate key {name!r} (first written on line {first_line[name]})",
                        file=file,
                        line=line,
                        key=key_text((*loc, name)),
                    )
                )
            else:
                first_line[name] = line
            _duplicates(value_node, (*loc, name), file, seen, out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _duplicates(item, (*loc, index), file, seen, out)


MAX_ALIAS_EXPANSION = 200_000
"""How many nodes aliases may add to a declaration once expanded (an "alias bomb" adds billions)."""


# libyaml (C) parses ten times faster than PyYAML's Python parser; both give the same nodes and marks.
_Parser: Any = yaml.SafeLoader  # PyYAML built without libyaml
if yaml.__with_libyaml__:
    import yaml.cyaml

    _Parser = getattr(yaml.cyaml, "CParser", yaml.SafeLoader)


class _DeclarationLoader(_Parser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):  # type: ignore[misc]
    """YAML 1.1 as PyYAML reads it, except that a mapping key stays the text written.

    ``on:``, ``yes:``, ``1:`` or ``null:`` as a key is that string, so a job type
    called ``on`` is reported (or accepted) under its own name and line instead
    of becoming ``True``.
    """

    def __init__(self, text: str) -> None:
        _Parser.__init__(self, text)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key: Any = key_node.value
            else:
                key = self.construct_object(key_node, deep=deep)
                if not isinstance(key, Hashable):
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        "found an unhashable key",
                        key_node.start_mark,
                    )
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_aliases(root: yaml.Node, file: str) -> None:
    """Refuse a node that contains itself, and aliases that expand beyond ``MAX_ALIAS_EXPANSION`` nodes.

    Sizes are counted on the node graph (each node once), so the check itself
    costs no more than the file is long, however much the aliases would expand.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise ConfigError(
                "an alias refers to a node that contains it (a cycle)", file=file, line=node.start_mark.line + 1
            )
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)
    added = sizes[id(root)] - len(sizes)
    if added > MAX_ALIAS_EXPANSION:
        raise ConfigError(
            f"aliases (*name) would expand the declaration by {added:,} nodes, "
            f"more than the {MAX_ALIAS_EXPANSION:,} allowed: refusing to expand it",
            file=file,
        )


def parse_yaml(text: str, file: str) -> tuple[yaml.Node | None, Any]:
    """The root node (None for an empty document) and the data; ConfigError with the line otherwise."""
    try:
        loader = _DeclarationLoader(text)
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text, file) from exc
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        if "*" in text:  # no alias can be written without one
            _check_aliases(node, file)
        problems: list[ConfigError] = []
        _duplicates(node, (), file, set(), problems)
        if problems:
            raise_all(problems)
        return node, loader.construct_document(node)
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text, file) from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or "syntax error"
        if exc.context:
            where = f" (line {exc.context_mark.line + 1})" if exc.context_mark is not None else ""
            what = f"{what}, {exc.context}{where}"
        raise ConfigError(f"invalid YAML: {what}", file=file, line=None if mark is None else mark.line + 1) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=file) from exc
    except RecursionError:
        raise ConfigError("invalid YAML: nested too deeply", file=file) from None
    finally:
        loader.dispose()


def _reader_error(exc: yaml.reader.ReaderError, text: str, file: str) -> ConfigError:
    """A character YAML does not allow (a control character, say), with its line."""
    line = text.count("\n", 0, exc.position) + 1 if isinstance(exc.position, int) else None
    char = exc.character if isinstance(exc.character, str) else chr(exc.character)
    return ConfigError(f"invalid YAML: character {char!r} is not allowed here", file=file, line=line)
