"""The ``dqflow`` command line: a thin shell over the Python API.

Every command takes ``--config``, ``--backend``, ``--json`` and ``-v``. Exit
codes: 0 success, 1 bad input or a failed operation (one line on stderr:
``error: <what and where>``), 2 a usage error, 130 interrupted.
"""

from __future__ import annotations

import copy
import gc
import importlib
import json
import logging
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import typer

from dqflow.cli._app import app, pause_gc_until_open, reset_options
from dqflow.cli._logging import cli_logging
from dqflow.errors import ConfigError, DqflowError

__all__ = ["COMMAND_MODULES", "app", "main", "run"]

COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "check": ("check",),
    "cleanup": ("cleanup",),
    "codegen": ("codegen",),
    "jobs": ("add", "show", "list", "events", "cancel", "retry", "edit"),
    "migrate": ("migrate",),
    "operators": ("stats", "health"),
    "schedules": ("schedules",),
    "serve": ("serve",),
    "tokens": ("token",),
    "worker": ("run",),
    "workflows": ("graph", "workflow"),
}
"""The modules of ``dqflow.cli`` that register commands, in the order ``--help`` lists them, and the
top-level names each registers. A run imports only the modules whose names its arguments contain, and
typer builds the options of the commands named alone (``dqflow add`` does not pay for ``serve``, nor
for ``list``); help, ``--version``, completion and an unknown command import and build every one."""
HELP_OPTIONS = frozenset({"--help", "-h"})

# Newer typer vendors click: take its exception classes from wherever typer's come from.
_click: Any = sys.modules[typer.BadParameter.__module__]

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def one_line(exc: BaseException | str) -> str:
    """The error's message on one line (a declaration with several problems: the first and a count)."""
    text = str(exc).strip() or type(exc).__name__
    lines = text.splitlines()
    if len(lines) > 1:
        more = len(lines) - 1
        extra = f" (and {more} more problem{'s' if more > 1 else ''}: run `dqflow check`)"
        return lines[0] + (
            extra if isinstance(exc, ConfigError) else " " + " ".join(line.strip() for line in lines[1:])
        )
    return text


def _fail(message: str, code: int, exc: BaseException | None = None, *, as_json: bool = False) -> int:
    """Write the one error line on stderr (under ``--json``: one JSON object) and return ``code``."""
    if as_json:
        document: dict[str, Any] = {"error": message, "type": _error_type(exc, code), "exit_code": code}
        if isinstance(exc, ConfigError):
            document.update(file=exc.file, line=exc.line, key=exc.key)
        sys.stderr.write(json.dumps(document, ensure_ascii=False) + "\n")
    else:
        sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    return code


def _error_type(exc: BaseException | None, code: int) -> str:
    if code == EXIT_USAGE:
        return "usage"
    if code == EXIT_INTERRUPTED:
        return "interrupted"
    return type(exc).__name__ if exc is not None else "error"


def _wants_json(args: Sequence[str]) -> bool:
    """``--json`` given anywhere before ``--`` (known even when parsing failed)."""
    for arg in args:
        if arg == "--":
            return False
        if arg == "--json":
            return True
    return False


def _usage(exc: _click.UsageError) -> str:
    ctx = exc.ctx
    where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    return one_line(exc.format_message()) + where


def run(args: Sequence[str] | None = None) -> int:
    """Run the CLI with ``args`` (default: ``sys.argv[1:]``); return the exit code."""
    reset_options()
    try:
        return _run(args)
    finally:
        cli_logging.stop()


def register_commands(args: Iterable[str] = ()) -> None:
    """Import the command modules ``args`` name (all of them when they name none, or ask for help)."""
    given = set(args)
    wanted = [module for module, names in COMMAND_MODULES.items() if not given.isdisjoint(names)]
    if not wanted or not given.isdisjoint(HELP_OPTIONS):
        wanted = list(COMMAND_MODULES)
    for module in wanted:
        importlib.import_module(f"dqflow.cli.{module}")
    # One process may run several commands (tests, embedding): list them in one order however they came.
    order = {f"dqflow.cli.{module}": index for index, module in enumerate(COMMAND_MODULES)}

    def place(callback: Any) -> int:
        return order[getattr(callback, "__module__", "")]

    app.registered_commands.sort(key=lambda info: place(info.callback))
    app.registered_groups.sort(
        key=lambda info: place(info.typer_instance.registered_commands[0].callback) if info.typer_instance else 0
    )


def click_command(args: Sequence[str]) -> Any:
    """``app`` as a click group with the registered top-level commands ``args`` names (every one
    when it names none, or asks for help) and every group (``workflow``, ``token``): typer builds
    the options of each command it is given."""
    given = set(args)
    named = [info for info in app.registered_commands if info.name in given]
    if not named or not given.isdisjoint(HELP_OPTIONS):
        return typer.main.get_command(app)
    only_named = copy.copy(app)  # the app's other commands stay registered for later runs
    only_named.registered_commands = named
    return typer.main.get_command(only_named)


def _run(args: Sequence[str] | None) -> int:
    argv = list(args) if args is not None else sys.argv[1:]
    as_json = _wants_json(argv)
    register_commands(argv)
    command = click_command(argv)
    try:
        result = command.main(args=argv, prog_name="dqflow", standalone_mode=False)
    except _click.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `dqflow`: the help, as click shows it
            exc.show()
            return EXIT_USAGE
        return _fail(_usage(exc), EXIT_USAGE, exc, as_json=as_json)
    except _click.ClickException as exc:
        return _fail(one_line(exc.format_message()), exc.exit_code or EXIT_ERROR, exc, as_json=as_json)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt) as exc:
        return _fail("interrupted", EXIT_INTERRUPTED, exc, as_json=as_json)
    except DqflowError as exc:
        _debug(exc)
        return _fail(one_line(exc), EXIT_ERROR, exc, as_json=as_json)
    except (ValueError, TypeError, OSError) as exc:
        _debug(exc)
        return _fail(one_line(exc), EXIT_ERROR, exc, as_json=as_json)
    except Exception as exc:  # a bug: still one line, the traceback with -v
        _debug(exc)
        message = f"unexpected {type(exc).__name__}: {one_line(exc)} (run with -v for the traceback)"
        return _fail(message, EXIT_ERROR, exc, as_json=as_json)
    return result if isinstance(result, int) else 0


def _debug(exc: BaseException) -> None:
    if logging.getLogger("dqflow").isEnabledFor(logging.DEBUG):
        logging.getLogger("dqflow.cli").debug("traceback", exc_info=exc)


def main() -> None:
    """Console-script entry point (``dqflow``)."""
    pause_gc_until_open()
    code = run()
    # The interpreter's last collections would walk every object left, for nothing: the process ends.
    gc.freeze()
    sys.exit(code)
