"""The declaration layer: strict jobs.yaml loading with file/line/key errors."""

from __future__ import annotations

import json
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dqflow.declaration import (
    Declaration,
    DeclarationError,
    JobTypeSpec,
    Limits,
    RetryPolicy,
    SchemaValidator,
    WorkerSettings,
    find_config,
    load_declaration,
)
from dqflow.declaration.schemas import InvalidSchemaError
from dqflow.errors import ConfigError, PayloadValidationError, UnknownJobTypeError

PAYLOAD_SCHEMA = {
    "type": "object",
    "properties": {"reportId": {"type": "string"}, "images": {"type": "array", "items": {"type": "string"}}},
    "required": ["reportId"],
    "additionalProperties": False,
}
OUTPUT_SCHEMA = {"type": "object", "properties": {"url": {"type": "string"}}, "required": ["url"]}


@pytest.fixture(autouse=True)
def _restore_imports() -> Iterator[None]:
    """Loading puts the YAML's folder on sys.path and imports modules: undo both."""
    path_before = list(sys.path)
    modules_before = set(sys.modules)
    yield
    sys.path[:] = path_before
    for name in set(sys.modules) - modules_before:
        del sys.modules[name]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder with a handler package (unique name) and two schema files."""
    return tmp_path


def unique_package(folder: Path, body: str = "") -> str:
    """Create ``pkg_<hex>/reports.py`` in ``folder``; return the package name."""
    name = f"pkg_{uuid.uuid4().hex[:12]}"
    pkg = folder / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "reports.py").write_text(
        textwrap.dedent(
            """
            def generate_report(payload, ctx=None):
                return {"url": "https://example.test/" + payload["reportId"]}

            async def send_email(payload, ctx=None):
                return None

            NOT_CALLABLE = 42
            """
        )
        + body
    )
    return name


def write_schemas(folder: Path) -> None:
    (folder / "schemas").mkdir(exist_ok=True)
    (folder / "schemas" / "report.payload.json").write_text(json.dumps(PAYLOAD_SCHEMA))
    (folder / "schemas" / "report.output.json").write_text(json.dumps(OUTPUT_SCHEMA))


def write_yaml(folder: Path, text: str, name: str = "jobs.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def load_error(path: Path, *, import_handlers: bool = True) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_declaration(path, import_handlers=import_handlers)
    return info.value


# --------------------------------------------------------------------------- a good file


def test_good_file_loads_with_merged_values(project: Path) -> None:
    pkg = unique_package(project)
    write_schemas(project)
    path = write_yaml(
        project,
        f"""
        backend: sqlite:///.dqflow/queue.db
        defaults:
          max_attempts: 5
          timeout: 5m
          retry: {{delay: 10s, backoff: exponential, max_delay: 10m, jitter: true}}
          priority: 1
          tags: [default-tag]
        worker:
          concurrency: 4
          lease: 45s
          heartbeat: 500ms
          poll_interval: 2
          shutdown_grace: 1m
          eager_steps: false
        limits:
          max_payload_bytes: 2048
          max_output_bytes: 4096
        jobs:
          generate_report:
            handler: {pkg}.reports:generate_report
            payload: schemas/report.payload.json
            output: schemas/report.output.json
            description: Builds a report
            priority: 5
            tags: [reports, pdf, reports]
            retry: {{delay: 30s, backoff: fixed}}
          send_email:
            handler: {pkg}.reports:send_email
            payload:
              type: object
              properties: {{to: {{type: string, format: email}}}}
              required: [to]
            timeout: null
            max_attempts: 1
            isolation: process
        """,
    )
    decl = load_declaration(path)
    assert isinstance(decl, Declaration)
    assert decl.path == path.resolve()
    assert decl.base_dir == project.resolve()
    assert decl.backend == "sqlite:///.dqflow/queue.db"
    assert decl.worker == WorkerSettings(
        concurrency=4,
        batch_size=4,
        lease=45.0,
        heartbeat=0.5,
        poll_interval=2.0,
        shutdown_grace=60.0,
        eager_steps=False,
    )
    assert decl.limits == Limits(max_payload_bytes=2048, max_output_bytes=4096)
    assert list(decl.job_types) == ["generate_report", "send_email"]

    report = decl.job_types["generate_report"]
    assert isinstance(report, JobTypeSpec)
    assert report.name == "generate_report"
    assert report.handler_ref == f"{pkg}.reports:generate_report"
    assert report.handler is not None
    assert report.handler({"reportId": "r1"}) == {"url": "https://example.test/r1"}
    assert report.description == "Builds a report"
    assert report.max_attempts == 5  # from defaults
    assert report.timeout == 300.0  # from defaults
    assert report.priority == 5  # overridden
    assert report.tags == ("reports", "pdf")  # overrides defaults.tags, duplicates dropped
    # retry merges key by key: delay and backoff from the job, the rest from defaults
    assert report.retry == RetryPolicy(delay=30.0, backoff="fixed", max_delay=600.0, jitter=True)
    assert report.isolation == "thread"
    assert report.payload_schema is not None and report.payload_schema.schema == PAYLOAD_SCHEMA
    assert report.output_schema is not None and report.output_schema.schema == OUTPUT_SCHEMA

    email = decl.job_types["send_email"]
    assert email.timeout is None  # null overrides the default 5m
    assert email.max_attempts == 1
    assert email.priority == 1
    assert email.tags == ("default-tag",)
    assert email.isolation == "process"
    assert email.output_schema is None
    assert email.payload_schema is not None
    assert email.payload_schema.errors({"to": "not-an-email"}) == ["$.to: 'not-an-email' is not a 'email'"]
    assert decl.job_type("send_email") is email


def test_minimal_file_gets_builtin_defaults(project: Path) -> None:
    path = write_yaml(project, "jobs:\n  ping:\n    handler: somewhere.else:ping\n")
    decl = load_declaration(path, import_handlers=False)
    spec = decl.job_types["ping"]
    assert spec.handler is None and spec.handler_ref == "somewhere.else:ping"
    assert spec.payload_schema is None and spec.output_schema is None
    assert (spec.max_attempts, spec.timeout, spec.priority, spec.tags) == (3, None, 0, ())
    assert spec.retry == RetryPolicy(delay=10.0, backoff="exponential", max_delay=600.0, jitter=True)
    assert decl.backend is None
    assert decl.worker == WorkerSettings()
    assert decl.worker.batch_size == decl.worker.concurrency == 8
    assert decl.limits == Limits(1_048_576, 1_048_576)


def test_empty_sections_mean_defaults(project: Path) -> None:
    path = write_yaml(project, "defaults:\nworker:\nlimits:\njobs:\n  ping: {handler: a.b:c}\n")
    decl = load_declaration(path, import_handlers=False)
    assert decl.worker == WorkerSettings()


def test_yaml_anchors_and_merge_keys(project: Path) -> None:
    path = write_yaml(
        project,
        """
        jobs:
          a: &base {handler: m.x:a, priority: 2, tags: [t]}
          b:
            <<: *base
            handler: m.x:b
        """,
    )
    decl = load_declaration(path, import_handlers=False)
    assert decl.job_types["b"].handler_ref == "m.x:b"
    assert decl.job_types["b"].priority == 2


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("12", 12.0),
        ("1.5", 1.5),
    ],
)
def test_durations(project: Path, written: str, seconds: float) -> None:
    path = write_yaml(project, f"jobs:\n  a:\n    handler: m:f\n    timeout: {written}\n")
    assert load_declaration(path, import_handlers=False).job_types["a"].timeout == seconds


# --------------------------------------------------------------------------- bad inputs: file, line, key


BAD_CASES: list[tuple[str, str, int, str, str]] = [
    # id, yaml, line, key, text in the message
    (
        "unknown top-level key",
        "jobs:\n  a: {handler: m:f}\nworkers:\n  concurrency: 2\n",
        3,
        "workers",
        "unknown key 'workers'; did you mean 'worker'?",
    ),
    (
        "unknown job key",
        "jobs:\n  a:\n    handler: m:f\n    retires: 3\n",
        4,
        "jobs.a.retires",
        "unknown key 'retires'; did you mean 'retry'?",
    ),
    (
        "unknown retry key in defaults",
        "defaults:\n  retry:\n    delay: 1s\n    factor: 2\njobs:\n  a: {handler: m:f}\n",
        4,
        "defaults.retry.factor",
        "unknown key 'factor'",
    ),
    (
        "unknown worker key",
        "worker:\n  threads: 3\njobs:\n  a: {handler: m:f}\n",
        2,
        "worker.threads",
        "allowed: concurrency, batch_size",
    ),
    (
        "string for int",
        "jobs:\n  a:\n    handler: m:f\n    max_attempts: '3'\n",
        4,
        "jobs.a.max_attempts",
        "expected an integer, got a string ('3')",
    ),
    (
        "bool for int",
        "jobs:\n  a:\n    handler: m:f\n    priority: yes\n",
        4,
        "jobs.a.priority",
        "expected an integer, got a boolean",
    ),
    (
        "max_attempts zero",
        "jobs:\n  a:\n    handler: m:f\n    max_attempts: 0\n",
        4,
        "jobs.a.max_attempts",
        "max_attempts must be between 1 and 2,147,483,647, got 0",
    ),
    (
        "bad duration",
        "defaults:\n  timeout: 5 minutes\njobs:\n  a: {handler: m:f}\n",
        2,
        "defaults.timeout",
        "invalid duration '5 minutes'",
    ),
    (
        "bad duration in retry",
        "jobs:\n  a:\n    handler: m:f\n    retry:\n      delay: soon\n",
        5,
        "jobs.a.retry.delay",
        "invalid duration 'soon'",
    ),
    (
        "negative lease",
        "worker:\n  lease: -5\njobs:\n  a: {handler: m:f}\n",
        2,
        "worker.lease",
        "must not be negative",
    ),
    (
        "zero timeout",
        "jobs:\n  a:\n    handler: m:f\n    timeout: 0s\n",
        4,
        "jobs.a.timeout",
        "greater than 0",
    ),
    (
        "bad backoff",
        "jobs:\n  a:\n    handler: m:f\n    retry: {backoff: linear}\n",
        4,
        "jobs.a.retry.backoff",
        "'fixed' or 'exponential'",
    ),
    (
        "bad isolation",
        "jobs:\n  a:\n    handler: m:f\n    isolation: fork\n",
        4,
        "jobs.a.isolation",
        "'thread' or 'process'",
    ),
    (
        "empty tag",
        "jobs:\n  a:\n    handler: m:f\n    tags:\n      - ok\n      - ''\n",
        6,
        "jobs.a.tags[1]",
        "non-empty string",
    ),
    (
        "tags not a list",
        "jobs:\n  a:\n    handler: m:f\n    tags: reports\n",
        4,
        "jobs.a.tags",
        "expected a list, got a string",
    ),
    (
        "bad job type name",
        "jobs:\n  a: {handler: m:f}\n  9 lives: {handler: m:f}\n",
        3,
        "jobs.9 lives",
        "invalid job type name '9 lives'",
    ),
    ("jobs missing", "backend: sqlite:///x.db\n", 1, "jobs", "missing required key 'jobs'"),
    ("jobs empty", "backend: sqlite:///x.db\njobs: {}\n", 2, "jobs", "no job types declared"),
    ("jobs null", "jobs:\n", 1, "jobs", "expected a mapping, got null"),
    ("job not a mapping", "jobs:\n  a: m:f\n", 2, "jobs.a", "expected a mapping, got a string"),
    (
        "handler missing",
        "jobs:\n  a:\n    priority: 1\n",
        2,
        "jobs.a.handler",
        "missing required key 'handler'",
    ),
    (
        "handler not module:function",
        "jobs:\n  a:\n    handler: just_a_function\n",
        3,
        "jobs.a.handler",
        "must look like module:function",
    ),
    ("handler not a string", "jobs:\n  a:\n    handler: 12\n", 3, "jobs.a.handler", "got an integer"),
    (
        "payload wrong type",
        "jobs:\n  a:\n    handler: m:f\n    payload: [1, 2]\n",
        4,
        "jobs.a.payload",
        "expected a schema file path or an inline schema mapping (or a module:Model reference;",
    ),
    (
        "duplicate key",
        "jobs:\n  a:\n    handler: m:f\n    priority: 1\n    priority: 2\n",
        5,
        "jobs.a.priority",
        "duplicate key 'priority' (first written on line 4)",
    ),
    (
        "heartbeat not shorter than lease",
        "worker:\n  lease: 5s\n  heartbeat: 10s\njobs:\n  a: {handler: m:f}\n",
        3,
        "worker.heartbeat",
        "heartbeat (10s) must be shorter than lease (5s)",
    ),
    (
        "batch_size zero",
        "worker:\n  batch_size: 0\njobs:\n  a: {handler: m:f}\n",
        2,
        "worker.batch_size",
        "greater than or equal to 1",
    ),
    (
        "huge priority",
        "jobs:\n  a:\n    handler: m:f\n    priority: 99999999999999999999999\n",
        4,
        "jobs.a.priority",
        "priority must be between -2,147,483,648 and 2,147,483,647",
    ),
    (
        "priority just over int32",
        "defaults:\n  priority: 2147483648\njobs:\n  a: {handler: m:f}\n",
        2,
        "defaults.priority",
        "priority must be between -2,147,483,648 and 2,147,483,647, got 2,147,483,648",
    ),
    (
        "huge max_attempts",
        "jobs:\n  a:\n    handler: m:f\n    max_attempts: 3000000000\n",
        4,
        "jobs.a.max_attempts",
        "max_attempts must be between 1 and 2,147,483,647",
    ),
    (
        "huge timeout",
        "jobs:\n  a:\n    handler: m:f\n    timeout: 99999999999999999999d\n",
        4,
        "jobs.a.timeout",
        "duration '99999999999999999999d' is too long: at most 365 days",
    ),
    (
        "timeout over a year",
        "defaults:\n  timeout: 366d\njobs:\n  a: {handler: m:f}\n",
        2,
        "defaults.timeout",
        "is too long: at most 365 days",
    ),
    (
        "retry delay over a year",
        "jobs:\n  a:\n    handler: m:f\n    retry: {delay: 400d}\n",
        4,
        "jobs.a.retry.delay",
        "is too long: at most 365 days",
    ),
    (
        "huge lease",
        "worker:\n  lease: .inf\njobs:\n  a: {handler: m:f}\n",
        2,
        "worker.lease",
        "must be finite",
    ),
    (
        "concurrency of a million",
        "worker:\n  concurrency: 1000000\njobs:\n  a: {handler: m:f}\n",
        2,
        "worker.concurrency",
        "less than or equal to 1000",
    ),
    (
        "timeout zero",
        "jobs:\n  a:\n    handler: m:f\n    timeout: 0\n",
        4,
        "jobs.a.timeout",
        "must be greater than 0 (use null for none)",
    ),
    (
        "payload limit over 64 MiB",
        "limits:\n  max_payload_bytes: 1000000000\njobs:\n  a: {handler: m:f}\n",
        2,
        "limits.max_payload_bytes",
        "less than or equal to 67108864",
    ),
    ("backend not a URL", "backend: queue.db\njobs:\n  a: {handler: m:f}\n", 1, "backend", "is not a URL"),
    (
        "max_delay below delay",
        "jobs:\n  a:\n    handler: m:f\n    retry: {delay: 1m, max_delay: 10s}\n",
        4,
        "jobs.a.retry",
        "retry.max_delay (10s) is shorter than retry.delay (60s)",
    ),
    (
        "limits wrong type",
        "limits:\n  max_payload_bytes: 1MB\njobs:\n  a: {handler: m:f}\n",
        2,
        "limits.max_payload_bytes",
        "expected an integer",
    ),
]


@pytest.mark.parametrize(("text", "line", "key", "message"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_bad_input_names_file_line_and_key(project: Path, text: str, line: int, key: str, message: str) -> None:
    path = write_yaml(project, text)
    error = load_error(path, import_handlers=False)
    assert error.file == str(path)
    assert error.line == line
    assert error.key == key
    assert message in str(error)
    assert str(error).startswith(f"{path}:{line}: {key}: ")


def test_several_errors_are_listed_one_per_line(project: Path) -> None:
    path = write_yaml(
        project,
        """
        defaults:
          timeout: forever
        jobs:
          a:
            handler: m:f
            max_attempts: 0
          b:
            handler: m:f
            colour: blue
        """,
    )
    error = load_error(path, import_handlers=False)
    assert isinstance(error, DeclarationError)
    assert [(p.line, p.key) for p in error.problems] == [
        (2, "defaults.timeout"),
        (6, "jobs.a.max_attempts"),
        (9, "jobs.b.colour"),
    ]
    assert (error.line, error.key) == (2, "defaults.timeout")
    lines = str(error).splitlines()
    assert len(lines) == 3
    assert lines[1].startswith(f"{path}:6: jobs.a.max_attempts: ")
    assert lines[2].startswith(f"{path}:9: jobs.b.colour: unknown key 'colour'")


def test_yaml_syntax_error_has_line(project: Path) -> None:
    path = write_yaml(project, "jobs:\n  a:\n    handler: m:f\n   priority: [1, 2\n")
    error = load_error(path)
    assert error.file == str(path)
    assert error.line == 4
    assert "invalid YAML" in str(error)


def test_truncated_file(project: Path) -> None:
    path = project / "jobs.yaml"
    path.write_text('jobs:\n  a:\n    handler: m:f\n    description: "unfinished')
    error = load_error(path)
    assert error.line == 4
    assert "invalid YAML" in str(error) and "jobs.yaml:4" in str(error)


@pytest.mark.parametrize("text", ["", "# only a comment\n", "\n\n"])
def test_empty_file(project: Path, text: str) -> None:
    path = project / "jobs.yaml"
    path.write_text(text)
    error = load_error(path)
    assert (error.file, error.line) == (str(path), 1)
    assert "empty" in str(error)


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "a list"), ("just text\n", "a string")])
def test_top_level_not_a_mapping(project: Path, text: str, kind: str) -> None:
    path = write_yaml(project, text)
    error = load_error(path)
    assert error.line == 1
    expected = (
        f"the top level must be a mapping (backend, defaults, worker, limits, jobs, workflows, schedules), not {kind}"
    )
    assert expected in str(error)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="declaration not found") as info:
        load_declaration("/nonexistent/dir/jobs.yaml")
    assert info.value.file == "/nonexistent/dir/jobs.yaml"


# --------------------------------------------------------------------------- schemas


def test_schema_paths_are_relative_to_the_yaml(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sub = project / "conf"
    sub.mkdir()
    write_schemas(sub)
    path = write_yaml(
        sub,
        "jobs:\n  a:\n    handler: m:f\n    payload: schemas/report.payload.json\n"
        "  b:\n    handler: m:f\n    payload: ./schemas/report.payload.json\n",
    )
    monkeypatch.chdir(project)  # the current directory must not matter
    decl = load_declaration(path, import_handlers=False)
    a, b = decl.job_types["a"].payload_schema, decl.job_types["b"].payload_schema
    assert a is not None and a.schema == PAYLOAD_SCHEMA
    assert a is b  # compiled once per file


def test_schema_file_missing(project: Path) -> None:
    path = write_yaml(project, "jobs:\n  a:\n    handler: m:f\n    output: schemas/nope.json\n")
    error = load_error(path, import_handlers=False)
    assert (error.file, error.line, error.key) == (str(path), 4, "jobs.a.output")
    assert "output schema file schemas/nope.json not found" in str(error)


def test_schema_file_not_json(project: Path) -> None:
    (project / "bad.json").write_text('{"type": "object",\n  "properties": }')
    path = write_yaml(project, "jobs:\n  a:\n    handler: m:f\n\n    payload: bad.json\n")
    error = load_error(path, import_handlers=False)
    assert (error.line, error.key) == (5, "jobs.a.payload")
    assert "payload schema file bad.json is not valid JSON" in str(error)
    assert "line 2" in str(error)  # where in the schema file


def test_schema_file_not_a_valid_schema(project: Path) -> None:
    (project / "weird.json").write_text(json.dumps({"type": "objekt"}))
    path = write_yaml(project, "jobs:\n  a:\n    handler: m:f\n    payload: weird.json\n")
    error = load_error(path, import_handlers=False)
    assert (error.line, error.key) == (4, "jobs.a.payload")
    assert "payload schema file weird.json is not a valid JSON Schema" in str(error)
    assert "objekt" in str(error)


def test_inline_schema_invalid(project: Path) -> None:
    path = write_yaml(
        project,
        "jobs:\n  a:\n    handler: m:f\n    payload:\n      type: object\n      required: reportId\n",
    )
    error = load_error(path, import_handlers=False)
    assert (error.line, error.key) == (4, "jobs.a.payload")
    assert "inline payload schema is not a valid JSON Schema: $.required:" in str(error)


def test_inline_schema_works(project: Path) -> None:
    path = write_yaml(
        project,
        """
        jobs:
          a:
            handler: m:f
            payload:
              type: object
              properties:
                n: {type: integer, minimum: 1}
              required: [n]
        """,
    )
    schema = load_declaration(path, import_handlers=False).job_types["a"].payload_schema
    assert schema is not None
    assert schema.errors({"n": 3}) == []
    assert schema.errors({"n": 0}) == ["$.n: 0 is less than the minimum of 1"]


# --------------------------------------------------------------------------- handlers


def test_handler_imports_from_the_yaml_folder(project: Path) -> None:
    """The brief's own example: `examples.reports:generate_report` beside jobs.yaml."""
    examples = project / "examples"
    examples.mkdir()
    (examples / "__init__.py").write_text("")
    (examples / "reports.py").write_text("def generate_report(payload, ctx=None):\n    return {'ok': True}\n")
    sys.modules.pop("examples", None)
    sys.modules.pop("examples.reports", None)
    path = write_yaml(project, "jobs:\n  generate_report:\n    handler: examples.reports:generate_report\n")
    decl = load_declaration(path)
    handler = decl.job_types["generate_report"].handler
    assert handler is not None and handler({}) == {"ok": True}
    assert sys.path[0] == str(project.resolve())
    load_declaration(path)
    assert sys.path.count(str(project.resolve())) == 1  # inserted once


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("{pkg}.missing:f", "cannot import module '{pkg}.missing': No module named '{pkg}.missing'"),
        ("{pkg}.reports:nope", "'{pkg}.reports' has no attribute 'nope'"),
        ("{pkg}.reports:NOT_CALLABLE", "is not callable (it is a int)"),
        ("{pkg}.broken:f", "importing module '{pkg}.broken' failed: ZeroDivisionError"),
        ("{pkg}.needs_dep:f", "No module named 'surely_not_installed_dep'"),
    ],
)
def test_handler_that_does_not_load(project: Path, ref: str, message: str) -> None:
    pkg = unique_package(project)
    (project / pkg / "broken.py").write_text("x = 1 / 0\n")
    (project / pkg / "needs_dep.py").write_text("import surely_not_installed_dep\n")
    ref = ref.format(pkg=pkg)
    path = write_yaml(project, f"jobs:\n  a:\n    priority: 1\n    handler: {ref}\n")
    error = load_error(path)
    assert (error.file, error.line, error.key) == (str(path), 4, "jobs.a.handler")
    assert f"handler '{ref}' cannot be loaded" in str(error)
    assert message.format(pkg=pkg) in str(error)


def test_import_handlers_false_skips_imports(project: Path) -> None:
    path = write_yaml(project, "jobs:\n  a:\n    handler: not_a_module_anywhere:f\n")
    assert load_declaration(path, import_handlers=False).job_types["a"].handler is None


# --------------------------------------------------------------------------- find_config


def test_find_config(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DQFLOW_CONFIG", raising=False)
    monkeypatch.chdir(project)
    with pytest.raises(ConfigError, match=r"tried jobs\.yaml") as info:
        find_config(None)
    assert info.value.file == "jobs.yaml"
    assert "DQFLOW_CONFIG" in str(info.value)

    default = write_yaml(project, "jobs: {a: {handler: m:f}}\n")
    assert find_config(None) == Path("jobs.yaml")
    assert find_config(None).resolve() == default.resolve()

    other = write_yaml(project, "jobs: {a: {handler: m:f}}\n", name="other.yaml")
    monkeypatch.setenv("DQFLOW_CONFIG", str(other))
    assert find_config(None) == other
    assert find_config(str(default)) == default  # explicit wins over the environment
    assert find_config(str(project)) == project / "jobs.yaml"  # a folder means its jobs.yaml

    monkeypatch.setenv("DQFLOW_CONFIG", str(project / "gone.yaml"))
    with pytest.raises(ConfigError, match=r"gone\.yaml \(\$DQFLOW_CONFIG"):
        find_config(None)
    with pytest.raises(ConfigError, match=r"missing\.yaml \(given path"):
        find_config(str(project / "missing.yaml"))


# --------------------------------------------------------------------------- Declaration.build


def test_build_in_code_with_callable_and_inline_schema() -> None:
    def handle(payload: dict[str, Any], ctx: Any = None) -> dict[str, Any]:
        return {"url": payload["reportId"]}

    decl = Declaration.build(
        {
            "report": {
                "handler": handle,
                "payload": PAYLOAD_SCHEMA,
                "output": SchemaValidator(OUTPUT_SCHEMA),
                "tags": ("a", "b"),
                "retry": {"delay": "1s"},
            }
        },
        defaults={"timeout": "30s", "retry": {"backoff": "fixed"}},
        worker={"concurrency": 2, "batch_size": 10},
        limits={"max_output_bytes": 10},
        backend="redis://localhost:6379/0",
    )
    spec = decl.job_types["report"]
    assert decl.path is None and decl.backend == "redis://localhost:6379/0"
    assert spec.handler is handle
    assert spec.handler_ref.endswith(":test_build_in_code_with_callable_and_inline_schema.<locals>.handle")
    assert spec.timeout == 30.0 and spec.tags == ("a", "b")
    assert spec.retry == RetryPolicy(delay=1.0, backoff="fixed", max_delay=600.0, jitter=True)
    assert spec.payload_schema is not None and spec.payload_schema.errors({"reportId": "x"}) == []
    assert spec.output_schema is not None and spec.output_schema.errors({}) == ["$: 'url' is a required property"]
    assert decl.worker.concurrency == 2 and decl.worker.batch_size == 10
    assert decl.limits == Limits(max_payload_bytes=1_048_576, max_output_bytes=10)


def test_build_validates_like_yaml() -> None:
    with pytest.raises(ConfigError) as info:
        Declaration.build({"a": {"handler": "m:f", "timeout": "5 minutes"}}, import_handlers=False)
    assert (info.value.file, info.value.line, info.value.key) == (None, None, "jobs.a.timeout")
    assert str(info.value).startswith("jobs.a.timeout: invalid duration '5 minutes'")
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        Declaration.build({"a": {"handler": "m:f"}}, worker={"colour": 1}, import_handlers=False)
    with pytest.raises(ConfigError, match="no job types declared"):
        Declaration.build({})


def test_build_with_string_handler_and_base_dir(project: Path) -> None:
    pkg = unique_package(project)
    write_schemas(project)
    decl = Declaration.build(
        {"r": {"handler": f"{pkg}.reports:generate_report", "payload": "schemas/report.payload.json"}},
        base_dir=project,
    )
    spec = decl.job_types["r"]
    assert spec.handler is not None and spec.handler({"reportId": "z"}) == {"url": "https://example.test/z"}
    assert spec.payload_schema is not None and spec.payload_schema.schema == PAYLOAD_SCHEMA


def test_unknown_job_type() -> None:
    decl = Declaration.build({"a": {"handler": "m:f"}}, import_handlers=False)
    with pytest.raises(UnknownJobTypeError, match="unknown job type 'b' \\(declared: a\\)"):
        decl.job_type("b")


# --------------------------------------------------------------------------- SchemaValidator


def test_schema_validator_lists_every_problem_with_its_path() -> None:
    validator = SchemaValidator(PAYLOAD_SCHEMA)
    assert validator.is_valid({"reportId": "r"})
    assert validator.errors({"reportId": "r", "images": ["a"]}) == []
    assert validator.errors({"images": ["a", "b", 5, None], "extra": 1}) == [
        "$: 'reportId' is a required property",
        "$: Additional properties are not allowed ('extra' was unexpected)",
        "$.images[2]: 5 is not of type 'string'",
        "$.images[3]: None is not of type 'string'",
    ]
    assert validator.errors("nope") == ["$: 'nope' is not of type 'object'"]


def test_schema_validator_odd_keys_and_any_of() -> None:
    validator = SchemaValidator(
        {
            "type": "object",
            "properties": {
                "a b": {"type": "integer"},
                "when": {"type": "string", "format": "date"},
                "choice": {"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 2}]},
            },
        }
    )
    assert validator.errors({"a b": "x"}) == ["$[\"a b\"]: 'x' is not of type 'integer'"]
    assert validator.errors({"when": "2024-13-45"}) == ["$.when: '2024-13-45' is not a 'date'"]
    [message] = validator.errors({"choice": "long"})
    assert message.startswith("$.choice: 'long' is not valid under any of the given schemas (closest: ")


def test_schema_validator_rejects_bad_schemas() -> None:
    with pytest.raises(InvalidSchemaError, match=r"\$\.properties\.a\.type: 'integr' is not valid"):
        SchemaValidator({"properties": {"a": {"type": "integr"}}})
    with pytest.raises(InvalidSchemaError, match="unknown \\$schema"):
        SchemaValidator({"$schema": "https://example.com/not-a-dialect"})
    with pytest.raises(InvalidSchemaError, match="object or a boolean"):
        SchemaValidator([1, 2])  # type: ignore[arg-type]


def test_schema_validator_dialect_from_schema_keyword() -> None:
    draft7 = SchemaValidator({"$schema": "http://json-schema.org/draft-07/schema#", "items": [{"type": "string"}]})
    assert draft7.errors([1]) == ["$[0]: 1 is not of type 'string'"]


def test_schema_validator_validate_raises_typed_error() -> None:
    validator = SchemaValidator(PAYLOAD_SCHEMA)
    validator.validate({"reportId": "x"}, PayloadValidationError, "payload")
    with pytest.raises(PayloadValidationError) as info:
        validator.validate({}, PayloadValidationError, "payload of generate_report")
    assert info.value.errors == ["$: 'reportId' is a required property"]
    assert str(info.value) == "payload of generate_report: $: 'reportId' is a required property"


# --------------------------------------------------------------------------- retry policy


def test_retry_delay_for() -> None:
    policy = RetryPolicy(delay=10.0, backoff="exponential", max_delay=60.0, jitter=False)
    assert [policy.delay_for(n) for n in (1, 2, 3, 4, 50)] == [10.0, 20.0, 40.0, 60.0, 60.0]
    assert RetryPolicy(delay=5.0, backoff="fixed", jitter=False).delay_for(7) == 5.0
    jittered = RetryPolicy(delay=10.0, max_delay=None, jitter=True)
    assert jittered.delay_for(2, rand=lambda: 0.0) == 10.0
    assert jittered.delay_for(2, rand=lambda: 1.0) == 20.0


# --------------------------------------------------------------------------- $ref between schema files


def write_ref_schemas(folder: Path) -> None:
    (folder / "schemas" / "defs").mkdir(parents=True, exist_ok=True)
    (folder / "schemas" / "defs" / "common.json").write_text(
        json.dumps({"$defs": {"id": {"type": "string", "minLength": 2}, "ids": {"items": {"$ref": "#/$defs/id"}}}})
    )
    (folder / "schemas" / "payload.json").write_text(
        json.dumps(
            {
                "type": "object",
                "properties": {
                    "id": {"$ref": "defs/common.json#/$defs/id"},
                    "more": {"$ref": "defs/common.json#/$defs/ids"},
                },
                "required": ["id"],
            }
        )
    )


def test_ref_to_another_schema_file_resolves_relative_to_the_referring_file(project: Path) -> None:
    write_ref_schemas(project)
    path = write_yaml(
        project,
        """
        jobs:
          a:
            handler: m:f
            payload: schemas/payload.json
          b:
            handler: m:f
            payload: {$ref: "schemas/defs/common.json#/$defs/id"}
        """,
    )
    declaration = load_declaration(path, import_handlers=False)
    a = declaration.job_types["a"].payload_schema
    b = declaration.job_types["b"].payload_schema
    assert a is not None and b is not None
    assert a.errors({"id": "ok", "more": ["xy"]}) == []
    assert a.errors({"id": "x"}) == ["$.id: 'x' is too short"]
    assert a.errors({"id": "ok", "more": ["y"]}) == ["$.more[0]: 'y' is too short"]
    assert b.errors("ok") == [] and b.errors("x") == ["$: 'x' is too short"]


@pytest.mark.parametrize(
    ("ref", "reason"),
    [
        ("#/definitions/nope", "nothing is at '/definitions/nope'"),
        ("https://example.com/schemas/x.json", "remote schemas are never fetched"),
        ("http://127.0.0.1:9/x.json#/a", "remote schemas are never fetched"),
        ("nothere.json", "not found"),
        ("defs/common.json#/$defs/nope", "nothing is at '/$defs/nope'"),
        ("../../outside.json", "is outside the project"),
        ("#nope", "no anchor 'nope'"),
    ],
)
def test_ref_that_cannot_resolve_is_refused_at_load(project: Path, ref: str, reason: str) -> None:
    write_ref_schemas(project)
    (project.parent / "outside.json").write_text("{}")
    (project / "schemas" / "bad.json").write_text(json.dumps({"properties": {"x": {"$ref": ref}}}))
    path = write_yaml(project, "jobs:\n  a:\n    handler: m:f\n\n    output: schemas/bad.json\n")
    error = load_error(path, import_handlers=False)
    assert (error.file, error.line, error.key) == (str(path), 5, "jobs.a.output")
    assert f"$.properties.x.$ref: {ref!r} cannot be resolved" in str(error)
    assert reason in str(error)


def test_broken_ref_inside_a_referenced_file_is_refused(project: Path) -> None:
    write_ref_schemas(project)
    (project / "schemas" / "defs" / "broken.json").write_text(json.dumps({"$ref": "common.json#/$defs/missing"}))
    path = write_yaml(project, "jobs:\n  a:\n    handler: m:f\n    payload: {$ref: schemas/defs/broken.json}\n")
    error = load_error(path, import_handlers=False)
    assert (error.line, error.key) == (4, "jobs.a.payload")
    assert "'common.json#/$defs/missing' cannot be resolved" in str(error)
    assert "broken.json" in str(error)


def test_schema_validator_without_files_refuses_file_refs() -> None:
    with pytest.raises(InvalidSchemaError, match="no folder to read other schema files from"):
        SchemaValidator({"$ref": "other.json"})
    assert SchemaValidator({"$defs": {"a": {"type": "integer"}}, "$ref": "#/$defs/a"}).errors(1) == []


# --------------------------------------------------------------------------- aliases, keys, bounded messages


def alias_bomb(levels: int, width: int = 9) -> str:
    lines = ['a0: &a0 ["lol"]']
    for level in range(1, levels + 1):
        refs = ", ".join([f"*a{level - 1}"] * width)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + f"\njobs:\n  t:\n    handler: m:f\n    tags: *a{levels}\n"


@pytest.mark.parametrize("levels", [7, 9])
def test_alias_bomb_is_refused_quickly_with_a_short_message(project: Path, levels: int) -> None:
    path = write_yaml(project, alias_bomb(levels))
    assert path.stat().st_size < 600
    error = load_error(path, import_handlers=False)
    assert "aliases (*name) would expand the declaration by" in str(error)
    assert "refusing to expand it" in str(error)
    assert len(str(error)) < 300


def test_modest_aliases_are_fine(project: Path) -> None:
    path = write_yaml(project, alias_bomb(3) + "    priority: 1\n")
    error = load_error(path, import_handlers=False)  # expands (729 nodes), then fails on what it says
    assert isinstance(error, DeclarationError)
    assert any((p.key or "").startswith("jobs.t.tags[0]") for p in error.problems)
    assert "would expand" not in str(error)


def test_alias_that_contains_itself_is_refused(project: Path) -> None:
    path = write_yaml(project, "x: &x [1, *x]\njobs:\n  t: {handler: m:f, tags: *x}\n")
    error = load_error(path, import_handlers=False)
    assert (error.line, "cycle") == (1, "cycle") and "cycle" in str(error)


def test_every_message_is_bounded(project: Path) -> None:
    huge = "x" * 200_000
    path = write_yaml(project, f"jobs:\n  t:\n    handler: m:f\n    priority: {huge}\n    tags: [{huge}, {{}}]\n")
    error = load_error(path, import_handlers=False)
    assert isinstance(error, DeclarationError)
    for problem in error.problems:
        assert len(str(problem)) < 1200, str(problem)[:200]
    assert "…" in str(error)


@pytest.mark.parametrize("key", ["on", "yes", "off", "1", "null", "~", "true"])
def test_yaml_11_words_as_keys_keep_their_name_and_line(project: Path, key: str) -> None:
    path = write_yaml(project, f"jobs:\n  ok: {{handler: m:f}}\n  {key}:\n    handler: m:f\n    colour: blue\n")
    error = load_error(path, import_handlers=False)
    problems = error.problems if isinstance(error, DeclarationError) else [error]
    assert (5, f"jobs.{key}.colour") in [(p.line, p.key) for p in problems], str(error)


def test_a_job_type_called_on_is_a_job_type(project: Path) -> None:
    path = write_yaml(project, "jobs:\n  on: {handler: m:f}\n  off: {handler: m:g}\n")
    assert sorted(load_declaration(path, import_handlers=False).job_types) == ["off", "on"]


def test_validation_messages_are_bounded() -> None:
    validator = SchemaValidator({"type": "array", "items": {"type": "integer"}})
    with pytest.raises(PayloadValidationError) as info:
        validator.validate(["x" * 1_000_000] * 500, PayloadValidationError, "payload of t")
    assert len(info.value.errors) == 51
    assert info.value.errors[-1] == "… and 450 more"
    assert all(len(message) <= 1000 for message in info.value.errors)
    assert len(str(info.value)) < 60_000


# --------------------------------------------------------------------------- isolated handlers must import


def top_level_handler(payload: Any) -> None:
    return None


def make_closure() -> Any:
    secret = 42

    def closure(payload: Any) -> int:
        return secret

    return closure


@pytest.mark.parametrize(
    ("handler", "why"),
    [
        (make_closure(), "a function defined inside another function (a closure) cannot be imported"),
        (lambda payload: None, "a lambda has no importable name"),
    ],
    ids=["closure", "lambda"],
)
def test_isolated_handler_that_a_child_cannot_import_is_refused(handler: Any, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        Declaration.build({"ok": {"handler": top_level_handler}, "t": {"handler": handler, "isolation": "process"}})
    assert info.value.key == "jobs.t.handler"
    assert "cannot run with isolation: process" in str(info.value) and why in str(info.value)


def test_isolated_top_level_handler_and_threaded_closure_are_fine() -> None:
    declaration = Declaration.build(
        {
            "isolated": {"handler": top_level_handler, "isolation": "process"},
            "threaded": {"handler": make_closure()},
        }
    )
    assert declaration.job_types["isolated"].handler is top_level_handler


def test_every_problem_is_listed_shape_errors_handlers_and_schemas(project: Path) -> None:
    pkg = unique_package(project)
    path = write_yaml(
        project,
        f"""
        jobs:
          a:
            handler: {pkg}.reports:nope
            priority: high
          b:
            handler: {pkg}.reports:generate_report
            payload: schemas/missing.json
            colour: blue
          c:
            handler: {pkg}.missing:f
            output: {{type: objekt}}
        """,
    )
    error = load_error(path)
    assert isinstance(error, DeclarationError)
    assert [(p.line, p.key) for p in error.problems] == [
        (3, "jobs.a.handler"),
        (4, "jobs.a.priority"),
        (7, "jobs.b.payload"),
        (8, "jobs.b.colour"),
        (10, "jobs.c.handler"),
        (11, "jobs.c.output"),
    ]
    assert "has no attribute 'nope'" in str(error)
    assert "schemas/missing.json not found" in str(error)


def test_model_does_not_import_the_loader() -> None:
    """No import circle: the loader builds Declarations from the model, never the other way round."""
    import dqflow.declaration.model as model

    source = Path(model.__file__).read_text()
    assert "import build_declaration" not in source and "from dqflow.declaration.loader" not in source
    assert Declaration.__module__ == "dqflow.declaration.loader"


# --------------------------------------------------------------------------- schemas checked on first use


def test_deferred_schema_checks_run_on_first_use_with_file_line_and_key(project: Path, tmp_path: Path) -> None:
    from dqflow import Queue, Worker

    write_schemas(project)
    (project / "weird.json").write_text(json.dumps({"type": "objekt"}))
    path = write_yaml(
        project,
        """
        jobs:
          good:
            handler: json:dumps
            payload: schemas/report.payload.json
          bad:
            handler: json:dumps
            output: weird.json
        """,
    )
    with pytest.raises(ConfigError):
        load_declaration(path)  # checked at once by default (what `dqflow check` does)
    declaration = load_declaration(path, check_schemas=False)
    declaration.check_schemas(["good"])
    with pytest.raises(ConfigError) as info:
        declaration.check_schemas()
    assert (info.value.file, info.value.line, info.value.key) == (str(path), 7, "jobs.bad.output")
    assert "output schema file weird.json is not a valid JSON Schema" in str(info.value)

    queue = Queue(load_declaration(path, check_schemas=False), f"sqlite:///{tmp_path / 'q.db'}")
    try:
        assert queue.add("good", {"reportId": "r"}) > 0
        with pytest.raises(ConfigError, match=r"jobs\.bad\.output: output schema file weird\.json"):
            queue.add("bad", {})
        with pytest.raises(ConfigError, match=r"jobs\.bad\.output"):
            Worker(queue, drain=True)  # a worker checks the schemas of its job types before it starts
        Worker(queue, job_types=["good"], drain=True).run()
        assert [job.status.value for job in queue.list_jobs().jobs] == ["completed"]
    finally:
        queue.close()
