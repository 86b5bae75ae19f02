"""The Typer app, the global options every command takes, and how commands reach the queue."""

from __future__ import annotations

import gc
import inspect
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dqflow.cli._logging import LogFormat, cli_logging

# The declaration and the queue are imported by the commands that use them: `dqflow --help`
# and `dqflow add` start without pydantic models, jsonschema or SQLModel they do not need.
if TYPE_CHECKING:
    from dqflow.declaration import Declaration
    from dqflow.queue import Queue

BACKEND_ENV = "DQFLOW_BACKEND"
CONFIG_ENV = "DQFLOW_CONFIG"  # dqflow.declaration.loader.CONFIG_ENV (a test keeps them equal)

app = typer.Typer(
    name="dqflow",
    help="Run and manage dqflow jobs: job types declared in jobs.yaml, validated payloads and outputs.",
    no_args_is_help=True,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    # Plain click help: rendering it with rich costs ~90 ms on every `--help`.
    rich_markup_mode=None,
)


@dataclass
class GlobalOptions:
    """Options every command accepts (before or after the command name)."""

    config: str | None = None
    backend: str | None = None
    json: bool = False
    verbose: bool = False

    def merged(self, other: GlobalOptions) -> GlobalOptions:
        """``other``'s given values over these."""
        return GlobalOptions(
            config=other.config or self.config,
            backend=other.backend or self.backend,
            json=self.json or other.json,
            verbose=self.verbose or other.verbose,
        )


ConfigOpt = Annotated[
    str | None,
    typer.Option(
        "--config",
        "-c",
        metavar="PATH",
        help=f"The declaration (a jobs.yaml or its folder). Default: ${CONFIG_ENV}, else ./jobs.yaml.",
        show_default=False,
    ),
]
BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend",
        "-b",
        metavar="URL",
        help=f"sqlite:///path, postgresql://... or redis://... Default: ${BACKEND_ENV}, else the YAML's backend.",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Log what dqflow does (to stderr).")]

_GLOBAL_PARAMS = [
    inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ConfigOpt),
    inspect.Parameter("backend", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=BackendOpt),
    inspect.Parameter("json_output", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=JsonOpt),
    inspect.Parameter("verbose", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=VerboseOpt),
]


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"dqflow {version('dqflow')}")
        raise typer.Exit(0)


@app.callback()
def _root(
    config: ConfigOpt = None,
    backend: BackendOpt = None,
    json_output: JsonOpt = False,
    verbose: VerboseOpt = False,
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", is_eager=True, callback=_print_version),
    ] = False,
) -> None:
    """Run and manage dqflow jobs."""
    global _root_options
    _root_options = GlobalOptions(config, backend, json_output, verbose)


def command(
    name: str | None = None, *, group: typer.Typer | None = None, **kwargs: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a command (on ``app``, or on a sub-command ``group``) that also accepts the
    global options after its name.

    The wrapped function reads them with :func:`options`.
    """

    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(func, eval_str=True)

        def wrapper(**params: Any) -> Any:
            given = GlobalOptions(
                params.pop("config"), params.pop("backend"), params.pop("json_output"), params.pop("verbose")
            )
            global _current
            _current = _root_options.merged(given)
            setup_logging(_current.verbose)
            return func(**params)

        wrapper.__name__ = func.__name__
        wrapper.__qualname__ = func.__qualname__
        wrapper.__doc__ = func.__doc__
        wrapper.__module__ = func.__module__
        wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*signature.parameters.values(), *_GLOBAL_PARAMS]
        )
        (group or app).command(name, **kwargs)(wrapper)
        return func

    return register


# The CLI runs one command per invocation: the options live here for its duration.
_root_options = GlobalOptions()
_current = GlobalOptions()


def reset_options() -> None:
    """Forget the previous invocation's options (``run`` calls this first)."""
    global _root_options, _current
    _root_options = GlobalOptions()
    _current = GlobalOptions()


def options() -> GlobalOptions:
    """The global options of the running command."""
    return _current


def setup_logging(
    verbose: bool, *, default_level: int = logging.WARNING, log_format: LogFormat = LogFormat.TEXT
) -> None:
    """Log to stderr, off the caller's thread: DEBUG with ``-v``, else ``default_level`` for dqflow."""
    cli_logging.start(verbose=verbose, default_level=default_level, log_format=log_format)


# -- garbage collection during start-up -----------------------------------------------------

_gc_paused = False


def pause_gc_until_open() -> None:
    """No garbage collection until the command's queue is open (``main`` calls this, not ``run``,
    whose caller owns the process): start-up allocates ~75k objects that live as long as the
    process (modules, classes, the declaration) and little garbage, and collections walked them
    again and again."""
    global _gc_paused
    if gc.isenabled():
        gc.disable()
        _gc_paused = True


def _resume_gc() -> None:
    """Collect again, leaving out what start-up made (as a worker does once started)."""
    global _gc_paused
    if _gc_paused:
        _gc_paused = False
        gc.freeze()
        gc.enable()


# -- reaching the declaration and the backend ---------------------------------------------


def declaration_path() -> Path:
    """The jobs.yaml to load (``--config``, ``$DQFLOW_CONFIG``, ``./jobs.yaml``)."""
    from dqflow.declaration import find_config

    return find_config(options().config)


def load(*, import_handlers: bool) -> Declaration:
    """Load and check the declaration (ConfigError on any problem)."""
    from dqflow.declaration import load_declaration

    # schemas are checked per job type on first use (`run` checks all it runs before starting)
    return load_declaration(declaration_path(), import_handlers=import_handlers, check_schemas=False)


def _declaration_optional() -> bool:
    """True when no jobs.yaml is named or present but a backend is: read-only use needs none."""
    opts = options()
    named = opts.config or os.environ.get(CONFIG_ENV, "").strip()
    has_backend = opts.backend or os.environ.get(BACKEND_ENV, "").strip()
    return not named and bool(has_backend) and not Path("jobs.yaml").is_file()


def backend_url(declaration: Declaration | None) -> str:
    """The backend URL, resolved like ``Queue`` does (flag, environment, YAML, default)."""
    from dqflow.declaration import Declaration
    from dqflow.queue import resolve_backend

    return str(resolve_backend(declaration or Declaration(), options().backend or None))


@contextmanager
def open_queue(*, import_handlers: bool = False, need_declaration: bool = True) -> Iterator[Queue]:
    """Open the queue for this command; closed afterwards.

    Commands that only read or manage jobs (``need_declaration=False``) also work
    with just ``--backend`` where there is no jobs.yaml.
    """
    from dqflow.declaration import Declaration
    from dqflow.queue import Queue

    if not need_declaration and _declaration_optional():
        declaration = Declaration()
    else:
        declaration = load(import_handlers=import_handlers)
    queue = Queue(declaration, backend_url(declaration))
    _resume_gc()
    try:
        yield queue
    finally:
        queue.close()
