"""The pure half of running a workflow: which steps are ready, their payloads, the run's output.

The runtime keeps, per run, the workflow input and a ``results`` mapping of
the steps that are over: step name → its output (a ``for_each`` step: the list
of its jobs' outputs, in element order), or :data:`SKIPPED`. Everything here is
a function of those: no storage, no clock, no I/O.

* :func:`ready_steps` — the steps whose ``needs`` are all over and that have
  not been planned yet.
* :func:`plan_step` — one step's :class:`StepPlan`: skipped (and why), or the
  payloads of its jobs (one; or one per ``for_each`` element, maybe none).
* :func:`resolve_returns` — the run's output from ``returns`` (a reference to
  a skipped step is ``null``).

How references read values: ``.field`` on an object and ``[n]`` on an array
give the value or *nothing* (a missing key, an index past the end, stepping
into anything else). A mapping key whose value is nothing is left out (so an
optional field stays absent); nothing anywhere else — the whole payload, a
list element, an interpolation, ``for_each``, ``if``, one element under
``[*]`` — is a :class:`ResolutionError`. The checker rules these out at load
time whenever the schemas allow it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dqflow.errors import PayloadValidationError
from dqflow.workflows.model import Workflow, WorkflowStep
from dqflow.workflows.references import (
    Constant,
    Each,
    Interpolation,
    MapTemplate,
    PathPart,
    Ref,
    RefTemplate,
    Template,
    render,
)

__all__ = ["SKIPPED", "ResolutionError", "Skipped", "StepPlan", "plan_step", "ready_steps", "resolve_returns"]


class Skipped:
    """The result of a step that did not run (its ``if`` was false, or a step it needs was skipped)."""

    _instance: Skipped | None = None

    def __new__(cls) -> Skipped:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "SKIPPED"


SKIPPED = Skipped()
"""Put this in ``results`` for a skipped step (``None`` is a real output: a handler may store null)."""


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


_MISSING = _Missing()


class ResolutionError(PayloadValidationError):
    """A mapping could not be evaluated (a value is missing or of the wrong type).

    The runtime fails the step with reason ``invalid_payload``. ``step`` is
    ``None`` for ``returns``.
    """

    def __init__(self, workflow: str, step: str | None, message: str) -> None:
        self.workflow = workflow
        self.step = step
        where = f"workflow {workflow!r}, " + (f"step {step!r}" if step is not None else "returns")
        super().__init__(where, [message])


@dataclass(frozen=True, slots=True)
class StepPlan:
    """What to do with a ready step: skip it (``skip_reason``), or enqueue one job per payload.

    A plain step has one payload; a ``for_each`` step one per element, in
    element order (none for an empty array: the step is complete at once with
    ``outputs == []``).
    """

    step: str
    payloads: tuple[Any, ...] = ()
    skip_reason: str | None = None

    @property
    def skipped(self) -> bool:
        """True when the step does not run (its result is :data:`SKIPPED`)."""
        return self.skip_reason is not None


def ready_steps(workflow: Workflow, results: Mapping[str, Any]) -> list[str]:
    """Steps not in ``results`` whose ``needs`` all are, in topological order."""
    return [
        name
        for name, step in workflow.steps.items()
        if name not in results and all(need in results for need in step.needs)
    ]


def plan_step(workflow: Workflow, name: str, workflow_input: Any, results: Mapping[str, Any]) -> StepPlan:
    """Skip ``name`` or resolve its payload(s); ResolutionError when a value is missing or mistyped.

    ``results`` must hold every step ``name`` needs (ValueError otherwise).
    """
    step = workflow.steps[name]
    waiting = [need for need in step.needs if need not in results]
    if waiting:
        raise ValueError(f"step {name!r} is not ready: {', '.join(waiting)} not over yet")
    for need in step.needs:
        if results[need] is SKIPPED:
            return StepPlan(name, skip_reason=f"needs {need!r}, which was skipped")
    scope = _Scope(workflow, step, workflow_input, results)
    if step.condition is not None:
        condition = scope.evaluate(step.condition, "if")
        if not isinstance(condition, bool):
            raise scope.error(f"if gave {_shown(condition)}, not true or false")
        if not condition:
            return StepPlan(name, skip_reason=f"if {_text(step.condition)} is false")
    if step.for_each is None:
        return StepPlan(name, (scope.evaluate(step.payload, "payload"),))
    items = scope.lookup(step.for_each)
    if not isinstance(items, list):
        shown = "nothing" if items is _MISSING else _shown(items)
        raise scope.error(f"for_each {step.for_each} gave {shown}, not an array")
    return StepPlan(name, tuple(scope.with_item(item).evaluate(step.payload, "payload") for item in items))


def resolve_returns(workflow: Workflow, workflow_input: Any, results: Mapping[str, Any]) -> Any:
    """The run's output: ``returns`` evaluated once every step is over (None without ``returns``)."""
    if workflow.returns is None:
        return None
    over = [name for name in workflow.steps if name not in results]
    if over:
        raise ValueError(f"workflow {workflow.name!r} is not over: {', '.join(over)} not finished")
    return _Scope(workflow, None, workflow_input, results).evaluate(workflow.returns, "returns")


def _shown(value: Any) -> str:
    """A value in a message: compact JSON, cut short."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _text(template: Template) -> str:
    if isinstance(template, RefTemplate):
        return template.ref.text
    return render(template.value) if isinstance(template, Constant) else "(condition)"


_NO_ITEM = object()


class _Scope:
    """Evaluates templates for one step (or for ``returns`` when ``step`` is None)."""

    def __init__(
        self,
        workflow: Workflow,
        step: WorkflowStep | None,
        workflow_input: Any,
        results: Mapping[str, Any],
        item: Any = _NO_ITEM,
    ) -> None:
        self.workflow = workflow
        self.step = step
        self.input = workflow_input
        self.results = results
        self.item = item

    def with_item(self, item: Any) -> _Scope:
        return _Scope(self.workflow, self.step, self.input, self.results, item)

    def error(self, message: str) -> ResolutionError:
        return ResolutionError(self.workflow.name, None if self.step is None else self.step.name, message)

    def evaluate(self, template: Template, what: str) -> Any:
        value = self._value(template)
        if value is _MISSING:
            assert isinstance(template, RefTemplate)
            raise self.error(f"{what} {template.ref} has no value")
        return value

    def _value(self, template: Template) -> Any:
        if isinstance(template, Constant):
            return copy.deepcopy(template.value) if isinstance(template.value, (dict, list)) else template.value
        if isinstance(template, RefTemplate):
            return self.lookup(template.ref)
        if isinstance(template, Interpolation):
            return "".join(part if isinstance(part, str) else self._rendered(part) for part in template.parts)
        if isinstance(template, MapTemplate):
            built = {key: self._value(item) for key, item in template.items}
            return {key: value for key, value in built.items() if value is not _MISSING}
        elements = []
        for index, element in enumerate(template.items):
            value = self._value(element)
            if value is _MISSING:
                raise self.error(f"list element [{index}] {_text(element)} has no value")
            elements.append(value)
        return elements

    def _rendered(self, ref: Ref) -> str:
        value = self.lookup(ref)
        if value is _MISSING:
            raise self.error(f"{ref} has no value to interpolate")
        return render(value)

    def lookup(self, ref: Ref) -> Any:
        """The value ``ref`` reads, or ``_MISSING``; a skipped step reads as null (only in returns)."""
        if ref.kind == "input":
            start = self.input
        elif ref.kind == "item":
            if self.item is _NO_ITEM:
                raise self.error(f"{ref}: item is only defined in a for_each step")
            start = self.item
        else:
            assert ref.step is not None
            if ref.step not in self.results:
                raise self.error(f"{ref}: step {ref.step!r} has not finished")
            start = self.results[ref.step]
            if start is SKIPPED:
                if self.step is not None:
                    raise self.error(f"{ref}: step {ref.step!r} was skipped")
                return None
        return self._walk(start, ref.path, ref)

    def _walk(self, value: Any, path: tuple[PathPart, ...], ref: Ref) -> Any:
        for index, part in enumerate(path):
            if isinstance(part, Each):
                if not isinstance(value, list):
                    return _MISSING
                mapped = [self._walk(element, path[index + 1 :], ref) for element in value]
                if any(element is _MISSING for element in mapped):
                    raise self.error(f"{ref}: element {mapped.index(_MISSING)} has no value there")
                return mapped
            if isinstance(part, int):
                value = value[part] if isinstance(value, list) and part < len(value) else _MISSING
            else:
                value = value.get(part, _MISSING) if isinstance(value, dict) else _MISSING
            if value is _MISSING:
                return _MISSING
        return value
