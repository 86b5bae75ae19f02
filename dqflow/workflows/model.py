"""Workflows' two shapes: the raw ``workflows:`` section as written, and the compiled graph.

``RawWorkflow``/``RawStep`` mirror the YAML strictly (unknown keys refused).
:class:`Workflow` and :class:`WorkflowStep` are what the rest of dqflow uses:
steps in topological order with their upstream sets, every mapping parsed
into templates once, and the checker's warnings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from dqflow.declaration.model import JOB_TYPE_NAME
from dqflow.declaration.schemas import SchemaValidator
from dqflow.workflows.references import Ref, Template

__all__ = [
    "STEP_NAME",
    "WORKFLOW_NAME",
    "CheckWarning",
    "RawStep",
    "RawWorkflow",
    "Workflow",
    "WorkflowStep",
]

STEP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
WORKFLOW_NAME = JOB_TYPE_NAME  # workflows are named like job types


# --------------------------------------------------------------------------- compiled shapes


@dataclass(frozen=True, slots=True)
class CheckWarning:
    """Something the checker could not prove; the value is validated when the step runs."""

    message: str
    file: str | None = None
    line: int | None = None
    key: str | None = None

    def __str__(self) -> str:
        where = self.file or ""
        if self.file and self.line is not None:
            where = f"{self.file}:{self.line}"
        if self.key:
            where = f"{where}: {self.key}" if where else self.key
        return f"{where}: {self.message}" if where else self.message


@dataclass(frozen=True, slots=True)
class WorkflowStep:
    """One step: the job it runs and how its payload is made.

    ``upstream`` holds every step it needs, directly or not; ``may_skip`` is
    true when it or one of them has an ``if`` (so it can end up skipped).
    """

    name: str
    job: str
    needs: tuple[str, ...]
    upstream: frozenset[str]
    payload: Template
    for_each: Ref | None = None
    condition: Template | None = None
    may_skip: bool = False
    description: str | None = None

    @property
    def fans_out(self) -> bool:
        """True for a ``for_each`` step: one job per element, ``outputs`` in element order."""
        return self.for_each is not None


@dataclass(frozen=True, slots=True)
class Workflow:
    """A checked workflow: steps in topological order (``needs`` first)."""

    name: str
    input_schema: SchemaValidator
    steps: Mapping[str, WorkflowStep]
    output_schema: SchemaValidator | None = None
    returns: Template | None = None
    description: str | None = None
    warnings: tuple[CheckWarning, ...] = ()
    dependents: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    compiled: dict[bool, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    """The resolver's compiled mappings, made on first use (``dqflow.workflows.resolver.planner``)."""

    @property
    def order(self) -> tuple[str, ...]:
        """Step names, every step after all the steps it needs."""
        return tuple(self.steps)

    @property
    def roots(self) -> tuple[str, ...]:
        """The steps that need none: ready as soon as a run starts."""
        return tuple(name for name, step in self.steps.items() if not step.needs)


# --------------------------------------------------------------------------- raw YAML shapes


def _step_name(value: str) -> str:
    if not STEP_NAME.match(value):
        raise ValueError(f"invalid step name {value!r}: start with a letter or _, then letters, digits or _")
    return value


def _schema_source(value: Any) -> Any:
    if isinstance(value, (dict, SchemaValidator)):
        return value
    if isinstance(value, str) and value.strip():
        return value
    raise ValueError("expected a schema file path or an inline schema mapping")


StepName = Annotated[str, AfterValidator(_step_name)]
SchemaSource = Annotated[Any, BeforeValidator(_schema_source)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, arbitrary_types_allowed=True)


class RawStep(_Strict):
    job: str
    needs: list[StepName] = Field(default_factory=list)
    for_each: Any = None
    if_: Any = Field(default=None, alias="if")
    payload: Any = Field(default_factory=dict)
    description: str | None = None


class RawWorkflow(_Strict):
    description: str | None = None
    input: SchemaSource
    output: SchemaSource | None = None
    steps: Annotated[dict[StepName, RawStep], Field(min_length=1)]
    returns: Any = None
