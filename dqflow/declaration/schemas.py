"""JSON Schemas compiled once and reused on the hot path.

A :class:`SchemaValidator` checks the schema against its metaschema when it is
built (so a bad schema fails at load time, never mid-job), keeps the compiled
``jsonschema`` validator and answers ``errors(value)`` with one message per
problem, each naming the path of the field: ``"$.images[2]: 5 is not of type 'string'"``.

The hot path (a valid value) is answered by ``fastjsonschema``, which compiles
the schema to Python code, whenever the schema only uses keywords that mean
the same in Draft 7 and in the schema's own dialect. Only a value it rejects is
looked at again by ``jsonschema`` (which has the last word and the messages).

``$ref`` may point into the same schema or at another schema file (relative to
the schema that refers to it). Files are read through :class:`LocalSchemaFiles`,
which serves only files under the project's folders and never the network.
Every ``$ref`` is resolved when the schema is checked: one that cannot be is an
:class:`InvalidSchemaError` at load time, never a failure mid-job.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit
from urllib.request import url2pathname

import fastjsonschema
import referencing.jsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError, best_match
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from referencing import Registry, Resource, Specification
from referencing.exceptions import NoSuchAnchor, PointerToNowhere, Unresolvable

from dqflow.errors import ValidationFailed

__all__ = ["InvalidSchemaError", "LocalSchemaFiles", "SchemaValidator", "json_path"]

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


class _NotServed(Exception):
    """A ``$ref`` target that :class:`LocalSchemaFiles` will not or cannot serve; the message says why."""


# Keys whose values are data, not subschemas: a "$ref" inside them is not a reference.
_DATA_KEYWORDS = frozenset({"const", "enum", "examples", "default"})


class LocalSchemaFiles:
    """Schema files that ``$ref`` may name: JSON files under ``roots``, read once each.

    Remote references (``http:``, ``https:``, ...) are never fetched, and a file
    outside every root is refused, so a declaration cannot read the machine's
    other files through a ``$ref``.
    """

    def __init__(self, roots: Iterable[Path]) -> None:
        self.roots: list[Path] = []
        self._documents: dict[Path, Any] = {}
        for root in roots:
            self.allow(root)

    def allow(self, folder: Path) -> None:
        """Serve the files under ``folder`` too."""
        folder = Path(folder).resolve()
        if folder not in self.roots:
            self.roots.append(folder)

    def read(self, uri: str) -> Any:
        """The JSON document at the ``file:`` URI ``uri``; ``_NotServed`` saying why not."""
        parts = urlsplit(uri)
        if parts.scheme != "file":
            raise _NotServed(f"{uri} is not a local file (remote schemas are never fetched; refer to a file path)")
        path = Path(url2pathname(parts.path)).resolve()
        if path in self._documents:
            return self._documents[path]
        if not any(path.is_relative_to(root) for root in self.roots):
            folders = ", ".join(str(root) for root in self.roots)
            raise _NotServed(f"{path} is outside the project ({folders})")
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise _NotServed(f"file {path} not found") from None
        except json.JSONDecodeError as exc:
            raise _NotServed(f"file {path} is not valid JSON: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise _NotServed(f"file {path} cannot be read: {exc}") from None
        self._documents[path] = document
        return document


def _specification(cls: Any) -> Specification[Any]:
    return referencing.jsonschema.specification_with(cls.META_SCHEMA["$schema"])


def _unresolvable_reason(exc: Unresolvable) -> str:
    cause = exc.__cause__
    while cause is not None and not isinstance(cause, _NotServed):
        cause = cause.__cause__
    if cause is not None:
        return str(cause)
    if isinstance(exc, PointerToNowhere):
        return f"nothing is at {exc.ref!r} in that document"
    if isinstance(exc, NoSuchAnchor):
        return f"no anchor {exc.anchor!r} in that document"
    return f"{type(exc).__name__}: {exc.ref!r}" if hasattr(exc, "ref") else type(exc).__name__


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

    __slots__ = ("_base_uri", "_cls", "_fast", "_files", "_registry", "_validator", "name", "schema")

    def __init__(
        self,
        schema: Mapping[str, Any] | bool,
        *,
        name: str | None = None,
        base_uri: str | None = None,
        files: LocalSchemaFiles | None = None,
    ) -> None:
        """Check ``schema`` against its metaschema, resolve every ``$ref`` and compile it.

        The dialect comes from ``$schema`` (Draft 2020-12 when absent); format
        checking is on. ``base_uri`` (a ``file:`` URI) is where relative
        ``$ref``s start from; ``files`` serves the files they name (none when
        absent). Raises :class:`InvalidSchemaError` for a bad schema or a
        ``$ref`` that cannot be resolved.
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
        self._cls = cls
        self._base_uri = base_uri or ""
        self._files = files
        self._registry: Registry[Any] = Registry(retrieve=self._retrieve)  # type: ignore[call-arg]
        self._check_refs()
        self._validator: Validator = cls(schema, registry=self._registry, format_checker=cls.FORMAT_CHECKER)
        self._fast = _fast_validator(schema)

    def __repr__(self) -> str:
        return f"SchemaValidator({self.name or self.schema!r})"

    def _retrieve(self, uri: str) -> Resource[Any]:
        if self._files is None:
            raise _NotServed(f"{uri}: this schema has no folder to read other schema files from")
        target = urljoin(self._base_uri, uri) if not urlsplit(uri).scheme else uri
        document = self._files.read(target)
        return Resource.from_contents(document, default_specification=_specification(self._cls))

    def _check_refs(self) -> None:
        """Resolve every ``$ref`` in the schema and in the files it names; the first failure raises."""
        specification = _specification(self._cls)
        # The same resolver the validator uses: the root under its own $id (or ""), files by retrieval.
        resolver = self._registry.resolver_with_root(specification.create_resource(self.schema))
        seen: set[int] = set()
        pending: list[tuple[Any, Any, str, str]] = [(self.schema, resolver, "$", self.name or "the schema")]
        while pending:
            node, resolver, path, where = pending.pop()
            if isinstance(node, list):
                pending.extend((item, resolver, f"{path}[{i}]", where) for i, item in enumerate(node))
                continue
            if not isinstance(node, Mapping) or id(node) in seen:
                continue
            seen.add(id(node))
            if specification.id_of(node) is not None:
                resolver = resolver.in_subresource(specification.create_resource(node))
            ref = node.get("$ref")
            if isinstance(ref, str):
                try:
                    resolved = resolver.lookup(ref)
                except Unresolvable as exc:
                    raise InvalidSchemaError(
                        f"{path}.$ref: {ref!r} cannot be resolved: {_unresolvable_reason(exc)}"
                        + ("" if where == (self.name or "the schema") else f" (in {where})")
                    ) from None
                if id(resolved.contents) not in seen:
                    target = urljoin(self._base_uri, ref.partition("#")[0]) if ref.partition("#")[0] else where
                    pending.append((resolved.contents, resolved.resolver, f"{path}.$ref", target))
            for key, value in node.items():
                if key not in _DATA_KEYWORDS and isinstance(value, (Mapping, list)):
                    pending.append((value, resolver, f"{path}.{key}", where))

    def resolver(self) -> Any:
        """A ``referencing`` resolver rooted at this schema (``$ref``s resolve as they do in validation).

        Typed ``Any``: ``referencing`` does not export its ``Resolver`` type.
        """
        return self._registry.resolver_with_root(_specification(self._cls).create_resource(self.schema))

    @property
    def validator_class(self) -> Any:
        """The ``jsonschema`` validator class of the schema's dialect."""
        return self._cls

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
