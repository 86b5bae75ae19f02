"""``dqflow check``: does a handler's pydantic payload model accept every payload the job type declares?

A handler whose payload parameter is annotated with a model gets the payload parsed
into it. Each declared payload schema is compared with the model's JSON Schema by
the workflow checker's ``fits`` (dqflow/workflows/compat.py): an error is a payload
that passes the declared schema yet the model refuses (the job would fail at run
time); a warning is a difference the checker cannot decide, or a model on a job
type with no payload schema (nothing is checked when a job is added).
"""

from __future__ import annotations

import contextlib
import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dqflow.declaration.models import model_ref, model_schema
from dqflow.errors import ConfigError
from dqflow.workflows.model import CheckWarning

if TYPE_CHECKING:
    from dqflow.declaration import Declaration, JobTypeSpec

Loc = tuple[str | int, ...]


def check_handler_models(declaration: Declaration, config: Path | None) -> tuple[list[ConfigError], list[CheckWarning]]:
    """Problems (a model refuses declared payloads) and warnings, located in ``config`` when given."""
    from dqflow.worker.handlers import inspect_handler

    lines = _Lines(config)
    problems: list[ConfigError] = []
    warnings: list[CheckWarning] = []
    for name, spec in declaration.job_types.items():
        if spec.handler is None:
            continue
        model = inspect_handler(spec.handler).payload_model
        if model is None:
            continue
        where = f"handler {spec.handler_ref} ({_source(spec.handler)}) takes {model_ref(model)}"
        if spec.payload_schema is None:
            message = f"{where}, but no payload schema is declared: payloads are not checked when added"
            warnings.append(lines.warning(f"{message}; declare `payload: {model_ref(model)}`", ("jobs", name)))
            continue
        for finding in _findings(spec, model):
            text = (
                f"{where}: declared payload {finding.producer_path} ({finding.producer_type}) does not fit"
                f" the model's {finding.consumer_path} ({finding.consumer_type}): {finding.reason}"
            )
            loc: Loc = ("jobs", name, "payload")
            if finding.level == "error":
                problems.append(lines.problem(text, loc))
            else:
                warnings.append(lines.warning(text, loc))
    return problems, warnings


def _findings(spec: JobTypeSpec, model: Any) -> list[Any]:
    from dqflow.workflows.compat import fits
    from dqflow.workflows.schema_view import Node

    assert spec.payload_schema is not None
    spec.payload_schema.check()
    return fits(Node.of_validator(spec.payload_schema), Node.of(model_schema(model)))


def _source(func: Any) -> str:
    """``path/to/module.py:42`` of a function (relative to the working directory when under it)."""
    try:
        target = inspect.unwrap(func)
        file = inspect.getsourcefile(target) or "?"
        line = inspect.getsourcelines(target)[1]
    except (OSError, TypeError):
        return "source unknown"
    with contextlib.suppress(ValueError):  # outside the working directory: the whole path
        file = str(Path(file).resolve().relative_to(Path.cwd()))
    return f"{file}:{line}"


class _Lines:
    """Locations in the declaration file (re-read: the compiled declaration keeps no lines)."""

    def __init__(self, config: Path | None) -> None:
        self.file = None if config is None else str(config)
        self._locator: Any = None
        if config is not None:
            from dqflow.declaration.yaml_source import Locator, parse_yaml

            node, _ = parse_yaml(config.read_text(encoding="utf-8"), str(config))
            self._locator = None if node is None else Locator(node)

    def _where(self, loc: Loc) -> tuple[int | None, str]:
        line = None if self._locator is None else self._locator.line(loc)
        return line, ".".join(str(part) for part in loc)

    def problem(self, message: str, loc: Loc) -> ConfigError:
        line, key = self._where(loc)
        return ConfigError(message, file=self.file, line=line, key=key)

    def warning(self, message: str, loc: Loc) -> CheckWarning:
        line, key = self._where(loc)
        return CheckWarning(message, file=self.file, line=line, key=key)
