"""JSON Schemas compiled once and reused on the hot path.

A :class:`SchemaValidator` checks the schema against its metaschema when it is
built (so a bad schema fails at load time, never mid-job), keeps the compiled
``jsonschema`` validator and answers ``errors(value)`` with one message per
problem, each naming the path of the field: ``"$.images[2]: 5 is not of type 'string'"``.

The hot path (a valid value) is answered by ``fastjsonschema``, which compiles
the schema to Python code, whenever the schema only uses keywords that mean
the same in Draft 7 and in the schema's own dialect. Only a value it rejects is
looked at again by ``jsonschema`` (which has the last word and the messages).

``jsonschema`` and ``referencing`` load only when something needs them (they cost
more than the rest of ``dqflow add``): a schema of common keywords in a known
dialect, without ``$ref``, passes its metaschema check without them when it surely
passes it (:mod:`dqflow.declaration.metaschema`); a schema without ``format`` is
compiled for the fast path without ``jsonschema``'s format checkers; the full
validator is built on the first value the fast path refuses (or cannot judge).

``$ref`` may point into the same schema or at another schema file (relative to
the schema that refers to it). Files are read through :class:`LocalSchemaFiles`,
which serves only files under the project's folders and never the network.
Every ``$ref`` is resolved when the schema is checked: one that cannot be is an
:class:`InvalidSchemaError` at load time, never a failure mid-job.
"""

from __future__ import annotations

import decimal
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urljoin, urlsplit

from dqflow.declaration.metaschema import dialect_of, surely_valid
from dqflow.errors import ValidationFailed, shown

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError
    from jsonschema.protocols import Validator
    from referencing import Registry, Resource, Specification
    from referencing.exceptions import Unresolvable

__all__ = ["DRAFTS", "InvalidSchemaError", "LocalSchemaFiles", "SchemaValidator", "file_uri", "json_path"]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def file_uri(path: str) -> str:
    """The ``file:`` URI of an absolute path, as ``urllib.request.pathname2url`` makes it.

    Not imported from ``urllib.request``: loading it (``http.client``, ``email``, ``ssl``)
    would cost every command that reads ``jobs.yaml`` more than this whole module.
    """
    if os.name == "nt":
        from nturl2path import pathname2url

        return "file:" + pathname2url(path)
    return "file://" + quote(path)


def _path_of(uri_path: str) -> str:
    """The file path of a ``file:`` URI's path part (``urllib.request.url2pathname``)."""
    if os.name == "nt":
        from nturl2path import url2pathname

        return url2pathname(uri_path)
    return unquote(uri_path)


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


# Dialects fastjsonschema implements itself; a 2019-09/2020-12 schema that only uses keywords meaning
# the same in draft 7 is compiled as draft 7.
_FAST_DIALECTS = {
    "http://json-schema.org/draft-04/schema#",
    "http://json-schema.org/draft-06/schema#",
    "http://json-schema.org/draft-07/schema#",
}


def _uses_multiple_of(schema: Any) -> bool:
    if isinstance(schema, Mapping):
        return "multipleOf" in schema or any(_uses_multiple_of(value) for value in schema.values())
    if isinstance(schema, list):
        return any(_uses_multiple_of(item) for item in schema)
    return False


def _uses_format(schema: Any) -> bool:
    """Whether a ``format`` keyword may be in ``schema`` (any ``"format"`` key not holding a subschema)."""
    if isinstance(schema, Mapping):
        return any(
            (key == "format" and not isinstance(value, (Mapping, bool))) or _uses_format(value)
            for key, value in schema.items()
        )
    if isinstance(schema, list):
        return any(_uses_format(item) for item in schema)
    return False


def _fast_formats(cls: Any) -> dict[str, Any]:
    """Every format the full validator checks, as fastjsonschema callables: one verdict on both paths."""
    checker = cls.FORMAT_CHECKER

    def conforms(name: str) -> Any:
        return lambda value: checker.conforms(value, name)

    return {name: conforms(name) for name in checker.checkers}


_NO_FAST_PATH: tuple[None, type[Exception]] = (None, Exception)


def _compile_fast(
    schema: Mapping[str, Any] | bool, dialect: str, formats: Callable[[], dict[str, Any]]
) -> tuple[Any, type[Exception]]:
    """fastjsonschema's compiled function for ``schema`` read as ``dialect`` (a metaschema URI) and
    the error it raises for a value that does not match; no function when only the full validator is exact.

    Schemas with ``multipleOf`` stay on the full validator, whose check is exact
    (fastjsonschema divides a float by an integer divisor in floating point).
    ``formats()`` gives the full validator's format checks; asked only when the
    schema has a ``format`` (without one, no format check is compiled either way).
    """
    if not isinstance(schema, Mapping) or _uses_multiple_of(schema):
        return _NO_FAST_PATH
    if dialect in _FAST_DIALECTS:
        document = {**schema, "$schema": dialect}
    elif _draft7_compatible(schema):
        document = {key: value for key, value in schema.items() if key != "$schema"}
        document["$schema"] = "http://json-schema.org/draft-07/schema#"
    else:
        return _NO_FAST_PATH
    import fastjsonschema

    try:
        function = fastjsonschema.compile(
            document,
            formats=formats() if _uses_format(schema) else {},
            use_default=False,  # never fill in a value's defaults: it is looked at, not changed
            detailed_exceptions=False,  # its messages are never shown (jsonschema words refusals)
        )
    except Exception:  # anything it cannot compile simply stays on the slow path
        return _NO_FAST_PATH
    return function, fastjsonschema.JsonSchemaException


_EXACT = decimal.Context(prec=2000, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)


def _is_multiple(instance: float, divisor: float) -> bool:
    """``multipleOf`` in exact decimal arithmetic: 0.07 and 19.99 are multiples of 0.01, 0.071 is not."""
    if isinstance(instance, int) and isinstance(divisor, int):
        return instance % divisor == 0
    try:
        return _EXACT.remainder(_EXACT.create_decimal(repr(instance)), _EXACT.create_decimal(repr(divisor))) == 0
    except decimal.DecimalException:
        return False


def _exact_multiple_of(validator: Any, divisor: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    """jsonschema's ``multipleOf`` keyword, exact (:func:`_is_multiple`)."""
    from jsonschema.exceptions import ValidationError

    if validator.is_type(instance, "number") and not _is_multiple(instance, divisor):
        yield ValidationError(f"{instance!r} is not a multiple of {divisor!r}")


_EXACT_VALIDATORS: dict[Any, Any] = {}


def _exact(cls: Any) -> Any:
    """``cls`` with an exact ``multipleOf`` (one subclass per dialect, made once)."""
    exact = _EXACT_VALIDATORS.get(cls)
    if exact is None:
        from jsonschema import validators

        exact = _EXACT_VALIDATORS[cls] = validators.extend(cls, {"multipleOf": _exact_multiple_of})  # type: ignore[no-untyped-call]
    return exact


DRAFTS: dict[str, str] = {
    "2020-12": "https://json-schema.org/draft/2020-12/schema",
    "2019-09": "https://json-schema.org/draft/2019-09/schema",
    "draft-07": "http://json-schema.org/draft-07/schema#",
    "draft-06": "http://json-schema.org/draft-06/schema#",
    "draft-04": "http://json-schema.org/draft-04/schema#",
}
"""The JSON Schema drafts a declaration may name (``schema_draft``) for schemas without ``$schema``."""


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
        self._allowed: set[str | Path] = set()
        self._documents: dict[Path, Any] = {}
        for root in roots:
            self.allow(root)

    def allow(self, folder: str | Path) -> None:
        """Serve the files under ``folder`` too."""
        if folder in self._allowed:  # as given: most schema files share a few folders
            return
        self._allowed.add(folder)
        resolved = Path(folder).resolve()
        if resolved not in self.roots:
            self.roots.append(resolved)

    def read(self, uri: str) -> Any:
        """The JSON document at the ``file:`` URI ``uri``; ``_NotServed`` saying why not."""
        parts = urlsplit(uri)
        if parts.scheme != "file":
            raise _NotServed(f"{uri} is not a local file (remote schemas are never fetched; refer to a file path)")
        path = Path(_path_of(parts.path)).resolve()
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
    import referencing.jsonschema

    return referencing.jsonschema.specification_with(cls.META_SCHEMA["$schema"])


def _unresolvable_reason(exc: Unresolvable) -> str:
    from referencing.exceptions import NoSuchAnchor, PointerToNowhere

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


def _own_id(specification: Specification[Any], node: Mapping[str, Any]) -> str | None:
    """The ``$id`` (``id`` before draft 6) of ``node``; None also for a map of property names
    that holds a property called so (the walk in ``_check_refs`` sees every mapping)."""
    try:
        found = specification.id_of(node)
    except (AttributeError, TypeError):  # referencing reads the property's schema as an id
        return None
    return found if isinstance(found, str) else None


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
        from jsonschema.exceptions import best_match

        # anyOf / oneOf: say which branch came closest and why it failed.
        closest = best_match(error.context)
        if closest is not None:
            text += f" (closest: {json_path(closest.absolute_path)}: {closest.message})"
    return text


# Per process, by content: a schema text already checked against its metaschema, and the fast
# validator compiled for a schema text. Many job types share schemas; each is done once.
_METASCHEMA_OK: set[tuple[str, str]] = set()
_FAST_BY_TEXT: dict[str, tuple[Any, type[Exception]]] = {}

_NOT_BUILT: Any = object()  # the fast validator is compiled on first use; None means "no fast path"


def _text_of(schema: Mapping[str, Any] | bool) -> str:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"), default=repr)


class SchemaValidator:
    """A JSON Schema checked and compiled once; cheap to call many times.

    With ``lazy=True`` the checks (metaschema, ``$ref``s) wait for :meth:`check`
    or the first validation, and compiling waits for the first validation, so a
    declaration with thousands of job types costs little to load when only a
    few of them are used. Checks and compiled validators are shared by content.
    """

    __slots__ = (
        "_base_uri",
        "_checked",
        "_cls",
        "_dialect",
        "_draft",
        "_fast",
        "_files",
        "_full",
        "_on_invalid",
        "_refusal",
        "_registry",
        "_text",
        "name",
        "schema",
    )

    def __init__(
        self,
        schema: Mapping[str, Any] | bool,
        *,
        name: str | None = None,
        base_uri: str | None = None,
        files: LocalSchemaFiles | None = None,
        lazy: bool = False,
        on_invalid: Callable[[InvalidSchemaError], Exception] | None = None,
        draft: str = "2020-12",
    ) -> None:
        """Check ``schema`` against its metaschema and resolve every ``$ref`` (now, or later if ``lazy``).

        The dialect comes from ``$schema`` (``draft`` when absent: one of
        :data:`DRAFTS`, 2020-12 by default); formats are checked (uri, email,
        date-time, date, uuid, ipv4, ipv6, ...) and ``multipleOf`` is exact,
        the same on the fast and the full path. ``base_uri`` (a ``file:`` URI) is where relative
        ``$ref``s start from; ``files`` serves the files they name (none when
        absent). A bad schema or a ``$ref`` that cannot be resolved raises
        :class:`InvalidSchemaError`, or what ``on_invalid`` makes of it.
        """
        if not isinstance(schema, (Mapping, bool)):
            raise InvalidSchemaError(f"a JSON Schema must be an object or a boolean, not {type(schema).__name__}")
        if draft not in DRAFTS:
            raise InvalidSchemaError(f"unknown JSON Schema draft {shown(draft)} (one of: {', '.join(DRAFTS)})")
        self.schema = schema
        self.name = name
        self._draft = draft
        self._base_uri = base_uri or ""
        self._files = files
        self._on_invalid = on_invalid
        self._registry: Registry[Any] | None = None
        self._dialect = DRAFTS[draft]  # the metaschema URI the schema is read with (set by the check)
        self._cls: Any = None  # jsonschema's validator class of that dialect, looked up on first need
        self._text: str | None = None
        self._checked = False
        self._full: Validator | None = None
        self._fast: Any = _NOT_BUILT  # the hot path reads this one attribute
        self._refusal: type[Exception] = Exception  # what ``_fast`` raises for a value that does not match
        if not lazy:
            self.check()

    def __repr__(self) -> str:
        return f"SchemaValidator({self.name or self.schema!r})"

    @property
    def checked(self) -> bool:
        """True once the schema passed :meth:`check`."""
        return self._checked

    def check(self) -> None:
        """Check the schema against its metaschema and resolve every ``$ref`` (once; later calls are free)."""
        if self._checked:
            return
        try:
            self._check()
        except InvalidSchemaError as exc:
            if self._on_invalid is not None:
                raise self._on_invalid(exc) from exc
            raise
        self._checked = True

    def _check(self) -> None:
        schema = self.schema
        dialect = dialect_of(schema, DRAFTS[self._draft])
        if dialect is not None and surely_valid(schema, dialect):
            self._dialect = dialect  # valid for its metaschema, and no $ref to resolve
            return
        self._check_with_jsonschema()

    def _check_with_jsonschema(self) -> None:
        from jsonschema.exceptions import SchemaError
        from jsonschema.validators import validator_for

        schema = self.schema
        cls: Any = validator_for(schema, default=_UnknownDialect)  # type: ignore[arg-type]
        if cls is _UnknownDialect:
            if isinstance(schema, Mapping) and "$schema" in schema:
                raise InvalidSchemaError(f"unknown $schema dialect {shown(schema['$schema'])}")
            cls = validator_for({"$schema": DRAFTS[self._draft]})
        self._cls = cls
        self._dialect = cls.META_SCHEMA.get("$schema") or cls.META_SCHEMA.get("id")
        key = (cls.__name__, self._content())
        if key not in _METASCHEMA_OK:
            try:
                cls.check_schema(schema)
            except SchemaError as exc:
                raise InvalidSchemaError(f"{json_path(exc.absolute_path)}: {exc.message}") from exc
            _METASCHEMA_OK.add(key)
        self._check_refs()

    def _content(self) -> str:
        """The schema's text with its draft: what checks and fast validators are shared by."""
        if self._text is None:
            self._text = f"{self._draft}:{_text_of(self.schema)}"
        return self._text

    def _validator_class(self) -> Any:
        """jsonschema's validator class of the schema's dialect (loads jsonschema)."""
        if self._cls is None:
            from jsonschema.validators import validator_for

            self._cls = validator_for({"$schema": self._dialect})
        return self._cls

    def _full_validator(self) -> Validator:
        """jsonschema's validator for the schema, built on first need (two threads may both build: same result)."""
        full = self._full
        if full is None:
            self.check()
            cls = self._validator_class()
            full = _exact(cls)(self.schema, registry=self._files_registry(), format_checker=cls.FORMAT_CHECKER)
            self._full = full
        return full

    def _fast_validator(self) -> Any:
        """fastjsonschema's compiled function (None: the schema has no fast path), compiled on first use."""
        fast = self._fast
        if fast is _NOT_BUILT:
            self.check()
            text = self._content()
            if text not in _FAST_BY_TEXT:
                _FAST_BY_TEXT[text] = _compile_fast(self.schema, self._dialect, self._format_checks)
            fast, self._refusal = _FAST_BY_TEXT[text]
            self._fast = fast  # last: the hot path reads it
        return fast

    def _format_checks(self) -> dict[str, Any]:
        """The full validator's format checks, for the fast path (loads jsonschema)."""
        return _fast_formats(self._validator_class())

    def _files_registry(self) -> Registry[Any]:
        """Where ``$ref``s to other files are looked up (made on first need)."""
        if self._registry is None:
            from referencing import Registry

            self._registry = Registry(retrieve=self._retrieve)  # type: ignore[call-arg]
        return self._registry

    def _retrieve(self, uri: str) -> Resource[Any]:
        from referencing import Resource

        if self._files is None:
            raise _NotServed(f"{uri}: this schema has no folder to read other schema files from")
        target = urljoin(self._base_uri, uri) if not urlsplit(uri).scheme else uri
        document = self._files.read(target)
        return Resource.from_contents(document, default_specification=_specification(self._validator_class()))

    def _check_refs(self) -> None:
        """Resolve every ``$ref`` in the schema and in the files it names; the first failure raises."""
        from referencing.exceptions import Unresolvable

        specification = _specification(self._validator_class())
        # The same resolver the validator uses: the root under its own $id (or ""), files by retrieval.
        resolver = self._files_registry().resolver_with_root(specification.create_resource(self.schema))
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
            if _own_id(specification, node) is not None:
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
        self.check()
        specification = _specification(self._validator_class())
        return self._files_registry().resolver_with_root(specification.create_resource(self.schema))

    @property
    def validator_class(self) -> Any:
        """The ``jsonschema`` validator class of the schema's dialect."""
        self.check()
        return self._validator_class()

    def is_valid(self, value: Any) -> bool:
        """True when ``value`` matches the schema (the fast path: no messages built)."""
        fast = self._fast
        if fast is _NOT_BUILT:  # first use: compile now
            fast = self._fast_validator()
        if fast is not None:
            try:
                fast(value)
                return True
            except self._refusal:  # the class the function raises (kept with it: modules may be reloaded)
                pass
        return bool(self._full_validator().is_valid(value))

    def errors(self, value: Any) -> list[str]:
        """Every problem with ``value``, one message each (empty when valid)."""
        if self.is_valid(value):
            return []
        found = sorted(self._full_validator().iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path])
        return [_message(error) for error in found]

    def validate(self, value: Any, error: type[ValidationFailed] = ValidationFailed, what: str = "value") -> None:
        """Raise ``error(what, messages)`` when ``value`` does not match."""
        problems = self.errors(value)
        if problems:
            raise error(what, problems)
