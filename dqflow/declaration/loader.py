"""Load ``jobs.yaml`` (or dicts in code): YAML with line numbers → strict pydantic check → :class:`Declaration`.

:class:`Declaration` is defined here, beside the loader that builds it, so
``Declaration.build`` needs no import back into this module.

Every problem becomes a :class:`~dqflow.errors.ConfigError` that names the
file, the line and the key (``jobs.generate_report.retry.delay``). When several
problems are found at once, one :class:`DeclarationError` lists them all, one
per line, and carries them in ``.problems``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from dqflow.declaration.dead_letter import dead_letter_problems
from dqflow.declaration.flow import check_key_paths
from dqflow.declaration.handlers import (
    HANDLER_REF,
    HandlerImportError,
    add_import_root,
    handler_ref_of,
    import_handler,
)
from dqflow.declaration.messages import describe
from dqflow.declaration.model import (
    JobTypeSpec,
    Limits,
    RawDeclaration,
    RawDefaults,
    RawJob,
    RawRetention,
    RawRetry,
    Retention,
    RetryPolicy,
    WorkerSettings,
)
from dqflow.declaration.models import MODEL_REF, ModelSchemaError, import_model, is_model, model_ref, model_schema
from dqflow.declaration.schemas import DRAFTS, InvalidSchemaError, LocalSchemaFiles, SchemaValidator, file_uri
from dqflow.declaration.unique import UniqueSpec, parse_unique, schema_problems
from dqflow.declaration.yaml_source import Loc, Locator, key_text, parse_yaml
from dqflow.errors import ConfigError, DeclarationError, UnknownJobTypeError, kind_of, raise_all

if TYPE_CHECKING:
    from dqflow.declaration.schedules import Schedule
    from dqflow.workflows.compile import TypeCheck
    from dqflow.workflows.model import Workflow

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "Declaration",
    "DeclarationError",
    "build_declaration",
    "find_config",
    "load_declaration",
]

CONFIG_ENV = "DQFLOW_CONFIG"
DEFAULT_CONFIG = "jobs.yaml"

# --------------------------------------------------------------------------- the compiled declaration


@dataclass(frozen=True)
class Declaration:
    """A whole declaration: job types, workflows, schedules, worker settings, limits, backend URL."""

    path: Path | None = None
    backend: str | None = None
    job_types: dict[str, JobTypeSpec] = field(default_factory=dict)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    limits: Limits = field(default_factory=Limits)
    workflows: dict[str, Workflow] = field(default_factory=dict)
    schedules: dict[str, Schedule] = field(default_factory=dict)
    events_retention: float | None = None  # seconds a finished job keeps its history (None: as long as the job)
    signals: dict[str, SchemaValidator] = field(default_factory=dict)
    """``signals:``: JSON Schemas of the data that completes a wait token, by name (docs/DURABLE.md)."""
    deferred_type_checks: dict[str, TypeCheck] = field(default_factory=dict, repr=False, compare=False)
    """Workflows whose type check loading deferred (``check_schemas=False``); see :meth:`check_workflows`."""

    @property
    def base_dir(self) -> Path | None:
        """The folder of the YAML file (schema paths and handlers are relative to it)."""
        return None if self.path is None else self.path.parent

    def check_schemas(self, names: Iterable[str] | None = None) -> None:
        """Check the schemas of job types ``names`` (all when None) now, if loading deferred it.

        Raises the ConfigError (file, line, key) of each bad schema, all of them listed.
        """
        problems: list[ConfigError] = []
        for name in self.job_types if names is None else names:
            try:
                self.job_type(name).check_schemas()
            except DeclarationError as exc:
                problems.extend(exc.problems)
            except ConfigError as exc:
                problems.append(exc)
        if problems:
            raise_all(problems)

    def check_workflows(self, names: Iterable[str] | None = None) -> None:
        """Type-check the links of workflows ``names`` (all when None) now, if loading deferred it.

        Free once done. Raises the ConfigError (file, line, key) of each problem, all of
        them listed, as loading with ``check_schemas=True`` would have; the checker's
        warnings land in each workflow's ``warnings``.
        """
        problems: list[ConfigError] = []
        for name in list(self.deferred_type_checks if names is None else names):
            check = self.deferred_type_checks.get(name)
            if check is None:
                continue
            errors, warnings = check.run()
            if errors:
                problems += errors
                continue
            self.workflows[name] = replace(self.workflows[name], warnings=warnings)
            self.deferred_type_checks.pop(name, None)
        if problems:
            raise_all(list({str(problem): problem for problem in problems}.values()))

    def job_type(self, name: str) -> JobTypeSpec:
        """The spec of ``name``; :class:`UnknownJobTypeError` when it is not declared."""
        try:
            return self.job_types[name]
        except KeyError:
            known = ", ".join(sorted(self.job_types)) or "none"
            raise UnknownJobTypeError(f"unknown job type {name!r} (declared: {known})") from None

    @classmethod
    def build(
        cls,
        jobs: Mapping[str, Mapping[str, Any]],
        *,
        defaults: Mapping[str, Any] | None = None,
        worker: Mapping[str, Any] | None = None,
        limits: Mapping[str, Any] | None = None,
        backend: str | None = None,
        base_dir: str | Path | None = None,
        import_handlers: bool = True,
        workflows: Mapping[str, Any] | None = None,
        schema_draft: str | None = None,
        schedules: Mapping[str, Any] | None = None,
        signals: Mapping[str, Any] | None = None,
    ) -> Declaration:
        """Build a declaration from Python dicts, validated exactly like ``jobs.yaml``.

        A job's ``handler`` may be a callable as well as ``"module:function"``;
        ``payload``/``output`` may be a schema dict, a path (relative to
        ``base_dir``, else the current directory), a :class:`SchemaValidator`, or
        a pydantic model class (or ``"module:Model"``): its ``model_json_schema()``
        validates.
        ``workflows`` is the ``workflows:`` section (docs/WORKFLOWS.md), ``schedules``
        the ``schedules:`` one (docs/SCHEDULES.md), ``signals`` the ``signals:`` one
        (token data schemas, docs/DURABLE.md).
        Errors raise :class:`~dqflow.errors.ConfigError` naming the key.
        """
        return build_declaration(
            jobs,
            defaults=defaults,
            worker=worker,
            limits=limits,
            backend=backend,
            base_dir=base_dir,
            import_handlers=import_handlers,
            workflows=workflows,
            schema_draft=schema_draft,
            schedules=schedules,
            signals=signals,
        )


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


def _data_loc(loc: tuple[Any, ...]) -> Loc:
    return tuple(p for p in loc if p != "[key]")


# --------------------------------------------------------------------------- compiling


@dataclass
class _Context:
    file: str | None
    locator: Locator | None
    base_dir: Path | None
    import_handlers: bool
    check_schemas: bool = True
    schema_draft: str = "2020-12"  # for schemas without $schema
    schema_files: LocalSchemaFiles = field(init=False)

    def __post_init__(self) -> None:
        # `$ref`s may name schema files under the declaration's folder (and, below, under
        # the folder of each schema file the declaration names), never anything else.
        self.schema_files = LocalSchemaFiles([self.folder])

    @property
    def folder(self) -> Path:
        return self.base_dir or Path.cwd()

    @cached_property
    def folder_uri(self) -> str:
        """Where relative ``$ref``s of inline schemas start: the declaration's folder."""
        return self.folder.resolve().as_uri() + "/"

    def problem(self, message: str, loc: Loc) -> ConfigError:
        line = self.locator.line(loc) if self.locator is not None else None
        return ConfigError(message, file=self.file, line=line, key=key_text(loc) or None)


def _pick(name: str, job: RawJob, defaults: RawDefaults) -> Any:
    if name in job.model_fields_set:
        return getattr(job, name)
    return getattr(defaults, name)


def _dead_letter(name: str, job: RawJob, defaults: RawDefaults) -> str | None:
    """The type's dead-letter type; a default never applies to the type it names."""
    if "dead_letter" in job.model_fields_set:
        return job.dead_letter
    return None if defaults.dead_letter == name else defaults.dead_letter


def _unique(
    written: Any, payload: SchemaValidator | None, loc: Loc, ctx: _Context, out: list[ConfigError]
) -> UniqueSpec | None:
    if written is None:
        return None
    try:
        spec = parse_unique(written)
    except ValueError as exc:
        out.append(ctx.problem(str(exc), loc))
        return None
    if payload is not None:
        out.extend(ctx.problem(message, (*loc, "key")) for message in schema_problems(spec, payload.schema))
    return spec


def _retention(*layers: RawRetention) -> Retention:
    values: dict[str, Any] = {}
    for layer in layers:
        for name in layer.model_fields_set - {"events"}:
            values[name] = getattr(layer, name)
    return Retention(**values)


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
    cache: dict[str, SchemaValidator],
    out: list[ConfigError],
) -> SchemaValidator | None:
    """The schema a job type names (read now; checked now, or on first use when ``check_schemas`` is off)."""
    if source is None or isinstance(source, SchemaValidator):
        return source
    if is_model(source) or (isinstance(source, str) and MODEL_REF.match(source)):
        return _model_validator(source, which, loc, ctx, cache, out)
    if isinstance(source, dict):
        what = f"inline {which} schema"
        return _schema_validator(source, what, f"{key_text(loc)} (inline)", ctx.folder_uri, loc, ctx, out)
    written = str(source)
    # Plain strings and normpath, not Path.resolve(): no system call per file (symlinks are
    # resolved where it matters, in LocalSchemaFiles, which decides what a $ref may read).
    path = os.path.normpath(os.path.join(ctx.folder, os.path.expanduser(written)))
    if path in cache:
        return cache[path]
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except FileNotFoundError:
        out.append(ctx.problem(f"{which} schema file {written} not found (looked for {path})", loc))
        return None
    except json.JSONDecodeError as exc:
        out.append(ctx.problem(f"{which} schema file {written} is not valid JSON: {exc}", loc))
        return None
    except (OSError, UnicodeDecodeError) as exc:
        out.append(ctx.problem(f"{which} schema file {written} cannot be read: {exc}", loc))
        return None
    ctx.schema_files.allow(os.path.dirname(path))
    base_uri = file_uri(path)
    validator = _schema_validator(document, f"{which} schema file {written}", path, base_uri, loc, ctx, out)
    if validator is not None:
        cache[path] = validator
    return validator


def _model_validator(
    source: Any, which: str, loc: Loc, ctx: _Context, cache: dict[str, SchemaValidator], out: list[ConfigError]
) -> SchemaValidator | None:
    """The validator of a pydantic model given as a class or as ``module:Model`` (imported now,
    whatever ``import_handlers`` says: validation needs the schema)."""
    ref = source if isinstance(source, str) else model_ref(source)
    if ref in cache:
        return cache[ref]
    try:
        if isinstance(source, str):
            if ctx.base_dir is not None:
                add_import_root(ctx.base_dir)
            source = import_model(source)
        document = model_schema(source)
    except ModelSchemaError as exc:
        out.append(ctx.problem(f"{which} model {ref}: {exc}", loc))
        return None
    validator = _schema_validator(document, f"{which} model {ref}", ref, ctx.folder_uri, loc, ctx, out)
    if validator is not None:
        cache[ref] = validator
    return validator


def _schema_validator(
    document: Any, what: str, name: str, base_uri: str, loc: Loc, ctx: _Context, out: list[ConfigError]
) -> SchemaValidator | None:
    def located(exc: InvalidSchemaError) -> ConfigError:
        return ctx.problem(f"{what} is not a valid JSON Schema: {exc}", loc)

    try:
        validator = SchemaValidator(
            document,
            name=name,
            base_uri=base_uri,
            files=ctx.schema_files,
            lazy=True,
            on_invalid=located,
            draft=ctx.schema_draft,
        )
        if ctx.check_schemas:
            validator.check()
    except InvalidSchemaError as exc:
        out.append(located(exc))
        return None
    except ConfigError as exc:
        out.append(exc)
        return None
    return validator


def _handler(
    written: Any, isolation: str, loc: Loc, ctx: _Context, out: list[ConfigError]
) -> tuple[str, Callable[..., Any] | None]:
    if not isinstance(written, str):
        func: Callable[..., Any] = written
        ref = handler_ref_of(func)
        if isolation == "process":
            why = _not_importable(func, ref)
            if why is not None:
                out.append(
                    ctx.problem(
                        f"handler {ref} cannot run with isolation: process: the child process imports its "
                        f"handler by name, and {why}; define it at the top level of a module",
                        loc,
                    )
                )
        return ref, func
    ref = written
    if not ctx.import_handlers:
        return ref, None
    try:
        return ref, import_handler(ref)
    except HandlerImportError as exc:
        out.append(ctx.problem(f"handler {ref!r} cannot be loaded: {exc}", loc))
        return ref, None


def _not_importable(func: Callable[..., Any], ref: str) -> str | None:
    """Why a child process could not import ``func`` by its name ``ref`` (None when it can)."""
    name = getattr(func, "__qualname__", "")
    if "<lambda>" in name:
        return "a lambda has no importable name"
    if "<locals>" in name:
        return "a function defined inside another function (a closure) cannot be imported"
    if ref.startswith("__main__:"):
        return "a function of the script being run (__main__) is not importable by other processes"
    try:
        found = import_handler(ref)
    except HandlerImportError as exc:
        return f"importing it fails ({exc})"
    if found is not func and getattr(found, "__wrapped__", None) is not func:
        return f"{ref} names a different object"
    return None


def _check_what_is_readable(data: Any, ctx: _Context, problems: list[ConfigError]) -> None:
    """After shape errors, still check the handlers and schemas that are written well enough to check.

    So one run lists a bad key *and* a handler that does not import (each
    problem once: a value the shape check refused is not looked at again).
    """
    jobs = data.get("jobs") if isinstance(data, dict) else None
    if not isinstance(jobs, dict):
        return
    cache: dict[str, SchemaValidator] = {}
    for name, job in jobs.items():
        if not isinstance(job, dict):
            continue
        base: Loc = ("jobs", name)
        handler = job.get("handler")
        if (isinstance(handler, str) and HANDLER_REF.match(handler)) or (handler is not None and callable(handler)):
            isolation = job.get("isolation")
            _handler(handler, isolation if isinstance(isolation, str) else "thread", (*base, "handler"), ctx, problems)
        for which in ("payload", "output"):
            source = job.get(which)
            if isinstance(source, dict) or (isinstance(source, str) and source.strip()):
                _load_schema(source, which, (*base, which), ctx, cache, problems)


def _compile(data: Any, ctx: _Context, path: Path | None) -> Declaration:
    if ctx.import_handlers and ctx.base_dir is not None:
        add_import_root(ctx.base_dir)
    draft = data.get("schema_draft") if isinstance(data, dict) else None
    if isinstance(draft, str) and draft in DRAFTS:
        ctx.schema_draft = draft
    try:
        raw = RawDeclaration.model_validate(data)
    except ValidationError as exc:
        problems = [ctx.problem(describe(err), _data_loc(tuple(err["loc"]))) for err in exc.errors()]
        _check_what_is_readable(data, ctx, problems)
        raise_all(problems)
        raise  # unreachable: _raise always raises

    problems = []
    cache: dict[str, SchemaValidator] = {}
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
        if "events" in job.retention.model_fields_set:
            problems.append(
                ctx.problem(
                    "events retention applies to every job's history: set it under defaults.retention",
                    (*base, "retention", "events"),
                )
            )
        payload = _load_schema(job.payload, "payload", (*base, "payload"), ctx, cache, problems)
        output = _load_schema(job.output, "output", (*base, "output"), ctx, cache, problems)
        handler_ref, handler = _handler(job.handler, job.isolation, (*base, "handler"), ctx, problems)
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
            concurrency=None if job.concurrency is None else job.concurrency.compiled(),
            rate_limit=None if job.rate_limit is None else job.rate_limit.compiled(),
            group_concurrency=_pick("group_concurrency", job, defaults),
            dead_letter=_dead_letter(name, job, defaults),
            retention=_retention(defaults.retention, job.retention),
            unique=_unique(job.unique, payload, (*base, "unique"), ctx, problems),
        )
        for which, limit in (("concurrency", job.concurrency), ("rate_limit", job.rate_limit)):
            if limit is not None:
                problems += check_key_paths(limit.key, payload, (*base, which, "key"), ctx.problem)
    problems += dead_letter_problems(raw, job_types, ctx.problem)
    signals: dict[str, SchemaValidator] = {}
    for name, source in raw.signals.items():
        signal = _load_schema(source, "signal", ("signals", name), ctx, cache, problems)
        if signal is not None:
            signals[name] = signal
    workflows: dict[str, Workflow] = {}
    # Deferred with the schema checks: the type check reads every schema a workflow wires.
    deferred_type_checks: dict[str, TypeCheck] | None = None if ctx.check_schemas else {}
    if raw.workflows is not None:
        # Imported here: dqflow.workflows builds on this package, not the other way round.
        from dqflow.workflows.compile import compile_workflows

        workflows, workflow_problems = compile_workflows(
            raw.workflows,
            job_types,
            problem=ctx.problem,
            load_schema=lambda source, which, loc: _load_schema(source, which, loc, ctx, cache, problems),
            deferred=deferred_type_checks,
        )
        problems += workflow_problems
    schedules: dict[str, Schedule] = {}
    if raw.schedules is not None:
        # Imported here: only a declaration with schedules pays for their shapes (and croniter).
        from dqflow.declaration.schedules import compile_schedules

        schedules, schedule_problems = compile_schedules(
            raw.schedules,
            job_types,
            workflows,
            problem=ctx.problem,
            declared_workflows=frozenset(raw.workflows) if isinstance(raw.workflows, dict) else frozenset(),
        )
        problems += schedule_problems
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
        raise_all(problems)

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
            eager_steps=w.eager_steps,
        ),
        limits=Limits(max_payload_bytes=raw.limits.max_payload_bytes, max_output_bytes=raw.limits.max_output_bytes),
        workflows=workflows,
        schedules=schedules,
        events_retention=defaults.retention.events,
        signals=signals,
        deferred_type_checks=deferred_type_checks or {},
    )


# --------------------------------------------------------------------------- public entry points


def load_declaration(
    path: str | os.PathLike[str], *, import_handlers: bool = True, check_schemas: bool = True
) -> Declaration:
    """Load, check and compile a ``jobs.yaml``.

    Schema paths are relative to the file's folder, which is also put at the
    front of ``sys.path`` so handlers beside it import. With
    ``import_handlers=False`` handler references are checked for shape only and
    ``JobTypeSpec.handler`` is ``None``. With ``check_schemas=False`` schema files
    are read now but checked against their metaschema (and their ``$ref``s
    resolved) only when their job type is first used (:meth:`Declaration.check_schemas`,
    ``Queue.add``, a worker starting): thousands of job types then cost little
    to load. The type check of workflows, which reads their schemas, waits
    likewise for their first use (:meth:`Declaration.check_workflows`,
    ``Queue.start_workflow``, a worker starting); everything else is checked at
    once. Raises ConfigError (file, line, key).
    """
    source = Path(path)
    file = str(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"declaration not found: {source.absolute()}", file=file) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the declaration: {exc}", file=file) from exc
    node, data = parse_yaml(text, file)
    if node is None:
        raise ConfigError("the file is empty: declare at least `jobs:`", file=file, line=1)
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(
            "the top level must be a mapping (backend, defaults, worker, limits, jobs, workflows, schedules), "
            f"not {kind_of(data)}",
            file=file,
            line=node.start_mark.line + 1,
        )
    resolved = source.resolve()
    ctx = _Context(
        file=file,
        locator=Locator(node),
        base_dir=resolved.parent,
        import_handlers=import_handlers,
        check_schemas=check_schemas,
    )
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
    workflows: Mapping[str, Any] | None = None,
    schema_draft: str | None = None,
    schedules: Mapping[str, Any] | None = None,
    signals: Mapping[str, Any] | None = None,
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
    if workflows is not None:
        data["workflows"] = plain(workflows)
    if schedules is not None:
        data["schedules"] = plain(schedules)
    if signals is not None:
        data["signals"] = plain(signals)
    if backend is not None:
        data["backend"] = backend
    if schema_draft is not None:
        data["schema_draft"] = schema_draft
    folder = None if base_dir is None else Path(base_dir).resolve()
    ctx = _Context(file=None, locator=None, base_dir=folder, import_handlers=import_handlers)
    return _compile(data, ctx, None)
