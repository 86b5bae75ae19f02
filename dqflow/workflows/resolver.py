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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dqflow.errors import PayloadValidationError
from dqflow.workflows.model import Workflow, WorkflowStep
from dqflow.workflows.references import (
    Constant,
    Each,
    Interpolation,
    ListTemplate,
    MapTemplate,
    PathPart,
    Ref,
    RefTemplate,
    Template,
    render,
)

__all__ = [
    "SKIPPED",
    "ResolutionError",
    "Skipped",
    "StepPlan",
    "WorkflowPlanner",
    "plan_step",
    "planner",
    "ready_steps",
    "resolve_returns",
]


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
    return planner(workflow).ready(results)


def plan_step(workflow: Workflow, name: str, workflow_input: Any, results: Mapping[str, Any]) -> StepPlan:
    """Skip ``name`` or resolve its payload(s); ResolutionError when a value is missing or mistyped.

    ``results`` must hold every step ``name`` needs (ValueError otherwise).
    Each payload is a fresh value: its constants are copies.
    """
    return planner(workflow).plan(name, workflow_input, results)


def resolve_returns(workflow: Workflow, workflow_input: Any, results: Mapping[str, Any]) -> Any:
    """The run's output: ``returns`` evaluated once every step is over (None without ``returns``)."""
    return planner(workflow).returns(workflow_input, results)


def planner(workflow: Workflow, *, copy_constants: bool = True) -> WorkflowPlanner:
    """``workflow``'s mappings compiled into Python closures, once per workflow (on first use).

    ``copy_constants=False`` shares the arrays and objects written in the mappings
    between payloads: for a caller that never changes a payload (the runtime).
    """
    compiled = workflow.compiled.get(copy_constants)
    if compiled is None:
        compiled = workflow.compiled[copy_constants] = WorkflowPlanner(workflow, copy_constants)
    return compiled


def _shown(value: Any) -> str:
    """A value in a message: compact JSON, cut short."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _text(template: Template) -> str:
    if isinstance(template, RefTemplate):
        return template.ref.text
    return render(template.value) if isinstance(template, Constant) else "(condition)"


# --------------------------------------------------------------------------- compiled mappings

_NO_ITEM = object()
_ABSENT = object()

Evaluator = Callable[[Any, Mapping[str, Any], Any], Any]
"""A compiled template: (workflow input, results, the ``for_each`` element or ``_NO_ITEM``) → its
value, or ``_MISSING`` (only a string that is exactly one reference gives nothing)."""

Walker = Callable[[Any], Any]
"""A compiled path: the value it reads from a start value, or ``_MISSING``."""


class WorkflowPlanner:
    """A workflow's ``if``, ``for_each``, payloads and ``returns`` compiled once, with its graph.

    Same values and errors as reading the templates (module docstring); see :func:`planner`.
    """

    __slots__ = ("_order", "_position", "_returns", "_steps", "dependents", "workflow")

    def __init__(self, workflow: Workflow, copy_constants: bool) -> None:
        self.workflow = workflow
        self.dependents = workflow.dependents
        self._steps = {name: _StepPlanner(workflow, step, copy_constants) for name, step in workflow.steps.items()}
        self._order = tuple((name, step.needs) for name, step in workflow.steps.items())
        self._position = {name: index for index, name in enumerate(workflow.steps)}
        self._returns: Evaluator | None = None
        if workflow.returns is not None:
            self._returns = _top(workflow.returns, "returns", _Where(workflow.name, None), copy_constants)

    def ready(self, results: Mapping[str, Any], among: Iterable[str] | None = None) -> list[str]:
        """Steps not in ``results`` whose ``needs`` all are, in topological order (only those in
        ``among`` when given)."""
        if among is None:
            order: Iterable[tuple[str, tuple[str, ...]]] = self._order
        else:
            order = [self._order[index] for index in sorted({self._position[name] for name in among})]
        ready = []
        for name, needs in order:
            if name in results:
                continue
            for need in needs:
                if need not in results:
                    break
            else:
                ready.append(name)
        return ready

    def plan(self, name: str, workflow_input: Any, results: Mapping[str, Any]) -> StepPlan:
        """:func:`plan_step` for step ``name``."""
        payloads, skip_reason = self._steps[name].resolve(workflow_input, results)
        return StepPlan(name, payloads, skip_reason)

    def resolve(self, name: str, workflow_input: Any, results: Mapping[str, Any]) -> tuple[tuple[Any, ...], str | None]:
        """:meth:`plan` as ``(payloads, skip_reason)``."""
        return self._steps[name].resolve(workflow_input, results)

    def returns(self, workflow_input: Any, results: Mapping[str, Any]) -> Any:
        """:func:`resolve_returns`."""
        if self._returns is None:
            return None
        over = [name for name in self._steps if name not in results]
        if over:
            raise ValueError(f"workflow {self.workflow.name!r} is not over: {', '.join(over)} not finished")
        return self._returns(workflow_input, results, _NO_ITEM)


class _StepPlanner:
    """One step's ``plan_step``: its ``if``, ``for_each`` and payload compiled."""

    __slots__ = ("_condition", "_for_each", "_for_each_text", "_needs", "_payload", "_step", "_where")

    def __init__(self, workflow: Workflow, step: WorkflowStep, copy_constants: bool) -> None:
        self._step = step
        self._needs = step.needs
        self._where = where = _Where(workflow.name, step.name)
        self._payload = _top(step.payload, "payload", where, copy_constants)
        self._condition = None if step.condition is None else _top(step.condition, "if", where, copy_constants)
        self._for_each = None if step.for_each is None else _reader(step.for_each, where)
        self._for_each_text = str(step.for_each)

    def resolve(self, workflow_input: Any, results: Mapping[str, Any]) -> tuple[tuple[Any, ...], str | None]:
        """The step's payloads and no skip reason, or no payload and why it is skipped."""
        needs = self._needs
        for need in needs:
            if need not in results:
                waiting = [need for need in needs if need not in results]
                raise ValueError(f"step {self._step.name!r} is not ready: {', '.join(waiting)} not over yet")
        for need in needs:
            if results[need] is SKIPPED:
                return (), f"needs {need!r}, which was skipped"
        if self._condition is not None:
            condition = self._condition(workflow_input, results, _NO_ITEM)
            if not isinstance(condition, bool):
                raise self._where.error(f"if gave {_shown(condition)}, not true or false")
            if not condition:
                assert self._step.condition is not None
                return (), f"if {_text(self._step.condition)} is false"
        payload = self._payload
        if self._for_each is None:
            return (payload(workflow_input, results, _NO_ITEM),), None
        items = self._for_each(workflow_input, results, _NO_ITEM)
        if not isinstance(items, list):
            shown = "nothing" if items is _MISSING else _shown(items)
            raise self._where.error(f"for_each {self._for_each_text} gave {shown}, not an array")
        return tuple([payload(workflow_input, results, item) for item in items]), None


class _Where:
    """Whose templates are compiled: a step's, or ``returns`` (``step`` None)."""

    __slots__ = ("step", "workflow")

    def __init__(self, workflow: str, step: str | None) -> None:
        self.workflow = workflow
        self.step = step

    def error(self, message: str) -> ResolutionError:
        return ResolutionError(self.workflow, self.step, message)


def _top(template: Template, what: str, where: _Where, copy_constants: bool) -> Evaluator:
    """``template`` as a whole mapping (``payload``, ``if``, ``returns``): nothing is an error."""
    evaluate = _compile(template, where, copy_constants)
    if not isinstance(template, RefTemplate):
        return evaluate  # only a single reference gives nothing
    message = f"{what} {template.ref} has no value"

    def whole(workflow_input: Any, results: Mapping[str, Any], item: Any) -> Any:
        value = evaluate(workflow_input, results, item)
        if value is _MISSING:
            raise where.error(message)
        return value

    return whole


def _compile(template: Template, where: _Where, copy_constants: bool) -> Evaluator:
    if isinstance(template, Constant):
        return _constant(template.value, copy_constants)
    if isinstance(template, RefTemplate):
        return _reader(template.ref, where)
    if isinstance(template, Interpolation):
        return _interpolation(template, where)
    if isinstance(template, MapTemplate):
        return _mapping(template, where, copy_constants)
    return _list(template, where, copy_constants)


def _constant(value: Any, copy_constants: bool) -> Evaluator:
    if copy_constants and isinstance(value, (dict, list)):
        return lambda workflow_input, results, item: copy.deepcopy(value)
    return lambda workflow_input, results, item: value


def _interpolation(template: Interpolation, where: _Where) -> Evaluator:
    parts = tuple(
        (part, None) if isinstance(part, str) else (f"{part} has no value to interpolate", _reader(part, where))
        for part in template.parts
    )

    def interpolate(workflow_input: Any, results: Mapping[str, Any], item: Any) -> str:
        texts = []
        for text, read in parts:
            if read is None:
                texts.append(text)
                continue
            value = read(workflow_input, results, item)
            if value is _MISSING:
                raise where.error(text)
            texts.append(value if isinstance(value, str) else render(value))
        return "".join(texts)

    return interpolate


def _mapping(template: MapTemplate, where: _Where, copy_constants: bool) -> Evaluator:
    items = tuple((key, _compile(item, where, copy_constants)) for key, item in template.items)
    if len({key for key, _ in items}) < len(items):  # a key written twice (1 and "1"): the last one counts

        def last_wins(workflow_input: Any, results: Mapping[str, Any], item: Any) -> dict[str, Any]:
            built = {key: evaluate(workflow_input, results, item) for key, evaluate in items}
            return {key: value for key, value in built.items() if value is not _MISSING}

        return last_wins

    def mapping(workflow_input: Any, results: Mapping[str, Any], item: Any) -> dict[str, Any]:
        built = {}
        for key, evaluate in items:
            value = evaluate(workflow_input, results, item)
            if value is not _MISSING:
                built[key] = value
        return built

    return mapping


def _list(template: ListTemplate, where: _Where, copy_constants: bool) -> Evaluator:
    elements = tuple(
        (_compile(element, where, copy_constants), f"list element [{index}] {_text(element)} has no value")
        if isinstance(element, RefTemplate)  # the one kind of element that may give nothing
        else (_compile(element, where, copy_constants), "")
        for index, element in enumerate(template.items)
    )

    def listed(workflow_input: Any, results: Mapping[str, Any], item: Any) -> list[Any]:
        values = []
        for evaluate, missing in elements:
            value = evaluate(workflow_input, results, item)
            if value is _MISSING:
                raise where.error(missing)
            values.append(value)
        return values

    return listed


def _reader(ref: Ref, where: _Where) -> Evaluator:
    """The value ``ref`` reads, or ``_MISSING``; a skipped step reads as null (only in returns)."""
    walk = _walker(ref.path, ref, where)
    if ref.kind == "input":
        if walk is None:
            return lambda workflow_input, results, item: workflow_input
        return lambda workflow_input, results, item: walk(workflow_input)
    if ref.kind == "item":
        no_item = f"{ref}: item is only defined in a for_each step"

        def read_item(workflow_input: Any, results: Mapping[str, Any], item: Any) -> Any:
            if item is _NO_ITEM:
                raise where.error(no_item)
            return item if walk is None else walk(item)

        return read_item
    name = ref.step
    assert name is not None
    not_finished = f"{ref}: step {name!r} has not finished"
    skipped = f"{ref}: step {name!r} was skipped" if where.step is not None else None

    def read_step(workflow_input: Any, results: Mapping[str, Any], item: Any) -> Any:
        start = results.get(name, _ABSENT)
        if start is _ABSENT:
            raise where.error(not_finished)
        if start is SKIPPED:
            if skipped is not None:
                raise where.error(skipped)
            return None
        return start if walk is None else walk(start)

    return read_step


def _walker(path: tuple[PathPart, ...], ref: Ref, where: _Where) -> Walker | None:
    """``path`` compiled (None for an empty one): ``.key`` and ``[n]`` give the value or nothing;
    ``[*]`` maps the rest of the path over an array, nothing there an error."""
    for index, part in enumerate(path):
        if isinstance(part, Each):
            return _each(path[:index], path[index + 1 :], ref, where)
    if not path:
        return None
    if len(path) == 1 and isinstance(path[0], str):
        key = path[0]
        return lambda value: value.get(key, _MISSING) if isinstance(value, dict) else _MISSING
    steps: tuple[tuple[Any, bool], ...] = tuple((part, isinstance(part, int)) for part in path)

    def walk(value: Any) -> Any:
        for part, is_index in steps:
            if is_index:
                value = value[part] if isinstance(value, list) and part < len(value) else _MISSING
            else:
                value = value.get(part, _MISSING) if isinstance(value, dict) else _MISSING
            if value is _MISSING:
                return _MISSING
        return value

    return walk


def _each(head: tuple[PathPart, ...], rest: tuple[PathPart, ...], ref: Ref, where: _Where) -> Walker:
    before = _walker(head, ref, where)
    after = _walker(rest, ref, where)

    def each(value: Any) -> Any:
        if before is not None:
            value = before(value)
        if not isinstance(value, list):
            return _MISSING
        mapped = list(value) if after is None else [after(element) for element in value]
        if any(element is _MISSING for element in mapped):
            raise where.error(f"{ref}: element {mapped.index(_MISSING)} has no value there")
        return mapped

    return each
