"""Load ``jobs.yaml``: YAML with line numbers → strict pydantic check → compiled :class:`Declaration`.

Every problem becomes a :class:`~dqflow.errors.ConfigError` that names the
file, the line and the key (``jobs.generate_report.retry.delay``). When several
problems are found at once, one :class:`DeclarationError` lists them all, one
per line, and carries them in ``.problems``.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from dqflow.declaration.handlers import HandlerImportError, add_import_root, handler_ref_of, import_handler
from dqflow.declaration.model import (
    Declaration,
    JobTypeSpec,
    Limits,
    RawDeclaration,
    RawDefaults,
    RawJob,
    RawLimits,
    RawRetry,
    RawWorker,
    RetryPolicy,
    WorkerSettings,
)
from dqflow.declaration.schemas import InvalidSchemaError, LocalSchemaFiles, SchemaValidator
from dqflow.errors import ConfigError, shown

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "DeclarationError",
    "build_declaration",
    "find_config",
    "load_declaration",
]

CONFIG_ENV = "DQFLOW_CONFIG"
DEFAULT_CONFIG = "jobs.yaml"

Loc = tuple[str | int, ...]


class DeclarationError(ConfigError):
    """Several problems in one declaration; ``problems`` holds one ConfigError each.

    ``file``/``line``/``key`` are those of the first problem; the message lists all.
    """

    def __init__(self, problems: list[ConfigError]) -> None:
        first = problems[0]
        super().__init__(first.reason, file=first.file, line=first.line, key=first.key)
        # Each problem's message is bounded already; the list of them is not cut.
        self.reason = first.reason + "".join(f"\n{problem}" for problem in problems[1:])
        self.args = (str(first) + "".join(f"\n{problem}" for problem in problems[1:]),)
        self.problems = problems


# --------------------------------------------------------------------------- finding the file


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The declaration to load: ``explicit``, else ``$DQFLOW_CONFIG``, else ``./jobs.yaml``.

    A folder means ``jobs.yaml`` inside it. Raises ConfigError naming the path tried.
    """
    env = os.environ.get(CONFIG_ENV, "").strip()
    if explicit is not None and str(explicit) != "":
        candidate, origin = Path(explicit), "given path"
    elif env:
        candidate, origin = Path(env), f"${CONFIG_ENV}"
    else:
        candidate, origin = Path(DEFAULT_CONFIG), "default"
    if candidate.is_dir():
        candidate = candidate / DEFAULT_CONFIG
    if not candidate.is_file():
        hint = "" if origin != "default" else f"; pass a path (--config) or set {CONFIG_ENV}"
        raise ConfigError(
            f"declaration not found: tried {candidate} ({origin}, {candidate.absolute()}){hint}",
            file=str(candidate),
        )
    return candidate


# --------------------------------------------------------------------------- YAML with line numbers

_MERGE_TAG = "tag:yaml.org,2002:merge"


def _key_text(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class _Locator:
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
                        key=_key_text((*loc, name)),
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


class _DeclarationLoader(yaml.SafeLoader):
    """YAML 1.1 as PyYAML reads it, except that a mapping key stays the text written.

    ``on:``, ``yes:``, ``1:`` or ``null:`` as a key is that string, so a job type
    called ``on`` is reported (or accepted) under its own name and line instead
    of becoming ``True``.
    """

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


def _parse_yaml(text: str, file: str) -> tuple[yaml.Node | None, Any]:
    try:
        loader = _DeclarationLoader(text)
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text, file) from exc
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        _check_aliases(node, file)
        problems: list[ConfigError] = []
        _duplicates(node, (), file, set(), problems)
        if problems:
            _raise(problems)
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


# --------------------------------------------------------------------------- pydantic errors → messages

_KIND = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "list": "a list",
    "dict": "a mapping",
    "NoneType": "null",
}
_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def _kind(value: Any) -> str:
    return _KIND.get(type(value).__name__, type(value).__name__)


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The raw model whose keys live at ``loc`` (for listing allowed keys)."""
    parts = [p for p in loc if p != "[key]"]
    if not parts:
        return RawDeclaration
    head, rest = parts[0], parts[1:]
    if head == "defaults":
        return RawDefaults if not rest else RawRetry if rest == ["retry"] else None
    if head == "worker" and not rest:
        return RawWorker
    if head == "limits" and not rest:
        return RawLimits
    if head == "jobs" and len(rest) == 1:
        return RawJob
    if head == "jobs" and len(rest) == 2 and rest[1] == "retry":
        return RawRetry
    return None


def _describe(error: ErrorDetails) -> str:
    kind = error["type"]
    loc: Loc = tuple(error["loc"])
    value = error.get("input")
    if kind == "extra_forbidden":
        name = str(loc[-1])
        model = _model_at(loc[:-1])
        if model is None:
            return f"unknown key {name!r}"
        allowed = list(model.model_fields)
        close = difflib.get_close_matches(name, allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown key {name!r}{hint} (allowed: {', '.join(allowed)})"
    if kind == "missing":
        return f"missing required key {loc[-1]!r}"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {_kind(value)} ({shown(value)})"
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return f"{message[:1].lower()}{message[1:]} (got {shown(value)})"


def _data_loc(loc: tuple[Any, ...]) -> Loc:
    return tuple(p for p in loc if p != "[key]")


# --------------------------------------------------------------------------- compiling


@dataclass
class _Context:
    file: str | None
    locator: _Locator | None
    base_dir: Path | None
    import_handlers: bool
    schema_files: LocalSchemaFiles = field(init=False)

    def __post_init__(self) -> None:
        # `$ref`s may name schema files under the declaration's folder (and, below, under
        # the folder of each schema file the declaration names), never anything else.
        self.schema_files = LocalSchemaFiles([self.folder])

    @property
    def folder(self) -> Path:
        return self.base_dir or Path.cwd()

    def problem(self, message: str, loc: Loc) -> ConfigError:
        line = self.locator.line(loc) if self.locator is not None else None
        return ConfigError(message, file=self.file, line=line, key=_key_text(loc) or None)


def _raise(problems: list[ConfigError]) -> None:
    problems = sorted(problems, key=lambda p: p.line if p.line is not None else 1 << 60)
    if len(problems) == 1:
        raise problems[0]
    raise DeclarationError(problems)


def _pick(name: str, job: RawJob, defaults: RawDefaults) -> Any:
    if name in job.model_fields_set:
        return getattr(job, name)
    return getattr(defaults, name)


def _retry(*layers: RawRetry) -> RetryPolicy:
    values: dict[str, Any] = {}
    for layer in layers:
        for name in layer.model_fields_set:
            values[name] = getattr(layer, name)
    return RetryPolicy(**values)


def _load_schema(
    source: Any,
    which: str,
    loc: Loc,
    ctx: _Context,
    cache: dict[Path, SchemaValidator],
    out: list[ConfigError],
) -> SchemaValidator | None:
    if source is None or isinstance(source, SchemaValidator):
        return source
    if isinstance(source, dict):
        try:
            return SchemaValidator(
                source,
                name=f"{_key_text(loc)} (inline)",
                base_uri=ctx.folder.resolve().as_uri() + "/",
                files=ctx.schema_files,
            )
        except InvalidSchemaError as exc:
            out.append(ctx.problem(f"inline {which} schema is not a valid JSON Schema: {exc}", loc))
            return None
    written = str(source)
    path = Path(written).expanduser()
    if not path.is_absolute():
        path = ctx.folder / path
    path = path.resolve()
    if path in cache:
        return cache[path]
    if not path.is_file():
        out.append(ctx.problem(f"{which} schema file {written} not found (looked for {path})", loc))
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        out.append(ctx.problem(f"{which} schema file {written} is not valid JSON: {exc}", loc))
        return None
    except (OSError, UnicodeDecodeError) as exc:
        out.append(ctx.problem(f"{which} schema file {written} cannot be read: {exc}", loc))
        return None
    try:
        ctx.schema_files.allow(path.parent)
        validator = SchemaValidator(document, name=str(path), base_uri=path.as_uri(), files=ctx.schema_files)
    except InvalidSchemaError as exc:
        out.append(ctx.problem(f"{which} schema file {written} is not a valid JSON Schema: {exc}", loc))
        return None
    cache[path] = validator
    return validator


def _handler(job: RawJob, loc: Loc, ctx: _Context, out: list[ConfigError]) -> tuple[str, Callable[..., Any] | None]:
    if not isinstance(job.handler, str):
        func: Callable[..., Any] = job.handler
        return handler_ref_of(func), func
    ref = job.handler
    if not ctx.import_handlers:
        return ref, None
    if ctx.base_dir is not None:
        add_import_root(ctx.base_dir)
    try:
        return ref, import_handler(ref)
    except HandlerImportError as exc:
        out.append(ctx.problem(f"handler {ref!r} cannot be loaded: {exc}", loc))
        return ref, None


def _compile(data: Any, ctx: _Context, path: Path | None) -> Declaration:
    try:
        raw = RawDeclaration.model_validate(data)
    except ValidationError as exc:
        _raise([ctx.problem(_describe(err), _data_loc(tuple(err["loc"]))) for err in exc.errors()])
        raise  # unreachable: _raise always raises

    problems: list[ConfigError] = []
    cache: dict[Path, SchemaValidator] = {}
    defaults = raw.defaults
    job_types: dict[str, JobTypeSpec] = {}
    for name, job in raw.jobs.items():
        base: Loc = ("jobs", name)
        retry = _retry(defaults.retry, job.retry)
        if retry.max_delay is not None and retry.max_delay < retry.delay:
            where = (*base, "retry") if "retry" in job.model_fields_set else ("defaults", "retry")
            problems.append(
                ctx.problem(
                    f"retry.max_delay ({retry.max_delay:g}s) is shorter than retry.delay ({retry.delay:g}s)",
                    where,
                )
            )
        payload = _load_schema(job.payload, "payload", (*base, "payload"), ctx, cache, problems)
        output = _load_schema(job.output, "output", (*base, "output"), ctx, cache, problems)
        handler_ref, handler = _handler(job, (*base, "handler"), ctx, problems)
        job_types[name] = JobTypeSpec(
            name=name,
            handler_ref=handler_ref,
            handler=handler,
            payload_schema=payload,
            output_schema=output,
            max_attempts=_pick("max_attempts", job, defaults),
            timeout=_pick("timeout", job, defaults),
            retry=retry,
            priority=_pick("priority", job, defaults),
            tags=tuple(dict.fromkeys(_pick("tags", job, defaults))),
            isolation=job.isolation,
            description=job.description,
        )
    w = raw.worker
    if w.heartbeat >= w.lease:
        problems.append(
            ctx.problem(
                f"heartbeat ({w.heartbeat:g}s) must be shorter than lease ({w.lease:g}s), "
                "or a live job's lease would expire",
                ("worker", "heartbeat"),
            )
        )
    if problems:
        _raise(problems)

    return Declaration(
        path=path,
        backend=raw.backend,
        job_types=job_types,
        worker=WorkerSettings(
            concurrency=w.concurrency,
            batch_size=w.batch_size or w.concurrency,
            lease=w.lease,
            heartbeat=w.heartbeat,
            poll_interval=w.poll_interval,
            shutdown_grace=w.shutdown_grace,
        ),
        limits=Limits(max_payload_bytes=raw.limits.max_payload_bytes, max_output_bytes=raw.limits.max_output_bytes),
    )


# --------------------------------------------------------------------------- public entry points


def load_declaration(path: str | os.PathLike[str], *, import_handlers: bool = True) -> Declaration:
    """Load, check and compile a ``jobs.yaml``.

    Schema paths are relative to the file's folder, which is also put at the
    front of ``sys.path`` so handlers beside it import. With
    ``import_handlers=False`` handler references are checked for shape only and
    ``JobTypeSpec.handler`` is ``None``. Raises ConfigError (file, line, key).
    """
    source = Path(path)
    file = str(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"declaration not found: {source.absolute()}", file=file) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the declaration: {exc}", file=file) from exc
    node, data = _parse_yaml(text, file)
    if node is None:
        raise ConfigError("the file is empty: declare at least `jobs:`", file=file, line=1)
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(
            f"the top level must be a mapping (backend, defaults, worker, limits, jobs), not {_kind(data)}",
            file=file,
            line=node.start_mark.line + 1,
        )
    resolved = source.resolve()
    ctx = _Context(file=file, locator=_Locator(node), base_dir=resolved.parent, import_handlers=import_handlers)
    return _compile(data, ctx, resolved)


def build_declaration(
    jobs: Mapping[str, Mapping[str, Any]],
    *,
    defaults: Mapping[str, Any] | None = None,
    worker: Mapping[str, Any] | None = None,
    limits: Mapping[str, Any] | None = None,
    backend: str | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    import_handlers: bool = True,
) -> Declaration:
    """:meth:`Declaration.build`: the same checks as ``jobs.yaml``, from Python dicts."""

    def plain(value: Any) -> Any:
        if isinstance(value, Mapping) and not isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value

    data: dict[str, Any] = {"jobs": {name: plain(spec) for name, spec in jobs.items()}}
    for key, section in (("defaults", defaults), ("worker", worker), ("limits", limits)):
        if section is not None:
            data[key] = plain(section)
    if backend is not None:
        data["backend"] = backend
    folder = None if base_dir is None else Path(base_dir).resolve()
    ctx = _Context(file=None, locator=None, base_dir=folder, import_handlers=import_handlers)
    return _compile(data, ctx, None)
