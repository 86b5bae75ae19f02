"""The compiled mappings (resolver.planner) give what reading the templates gives: same value or same error.

``_Reading`` below is the resolver's former template walk, kept as the reference:
every template, input, results and ``for_each`` element drawn must resolve to the
same value (same JSON types, same key order) or fail with the same error.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dqflow.declaration.schemas import SchemaValidator
from dqflow.workflows import SKIPPED, ResolutionError, StepPlan, Workflow, WorkflowStep
from dqflow.workflows.references import (
    Constant,
    Each,
    Interpolation,
    MapTemplate,
    PathPart,
    Ref,
    RefTemplate,
    Template,
    parse_template,
    render,
)
from dqflow.workflows.resolver import planner

_MISSING = object()
_NO_ITEM = object()


class _Reading:
    """Evaluates templates for one step (or for ``returns`` when ``step`` is None) by walking them."""

    def __init__(
        self, workflow: str, step: str | None, workflow_input: Any, results: Mapping[str, Any], item: Any = _NO_ITEM
    ) -> None:
        self.workflow, self.step, self.input, self.results, self.item = workflow, step, workflow_input, results, item

    def error(self, message: str) -> ResolutionError:
        return ResolutionError(self.workflow, self.step, message)

    def evaluate(self, template: Template, what: str) -> Any:
        value = self.value(template)
        if value is _MISSING:
            assert isinstance(template, RefTemplate)
            raise self.error(f"{what} {template.ref} has no value")
        return value

    def value(self, template: Template) -> Any:
        if isinstance(template, Constant):
            return copy.deepcopy(template.value) if isinstance(template.value, (dict, list)) else template.value
        if isinstance(template, RefTemplate):
            return self.lookup(template.ref)
        if isinstance(template, Interpolation):
            return "".join(part if isinstance(part, str) else self.rendered(part) for part in template.parts)
        if isinstance(template, MapTemplate):
            built = {key: self.value(item) for key, item in template.items}
            return {key: value for key, value in built.items() if value is not _MISSING}
        elements = []
        for index, element in enumerate(template.items):
            value = self.value(element)
            if value is _MISSING:
                raise self.error(f"list element [{index}] {_text(element)} has no value")
            elements.append(value)
        return elements

    def rendered(self, ref: Ref) -> str:
        value = self.lookup(ref)
        if value is _MISSING:
            raise self.error(f"{ref} has no value to interpolate")
        return render(value)

    def lookup(self, ref: Ref) -> Any:
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
        return self.walk(start, ref.path, ref)

    def walk(self, value: Any, path: tuple[PathPart, ...], ref: Ref) -> Any:
        for index, part in enumerate(path):
            if isinstance(part, Each):
                if not isinstance(value, list):
                    return _MISSING
                mapped = [self.walk(element, path[index + 1 :], ref) for element in value]
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


def _text(template: Template) -> str:
    if isinstance(template, RefTemplate):
        return template.ref.text
    return render(template.value) if isinstance(template, Constant) else "(condition)"


def _shown(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _read_plan(workflow: Workflow, name: str, workflow_input: Any, results: Mapping[str, Any]) -> StepPlan:
    """``plan_step`` as the template walk does it."""
    step = workflow.steps[name]
    waiting = [need for need in step.needs if need not in results]
    if waiting:
        raise ValueError(f"step {name!r} is not ready: {', '.join(waiting)} not over yet")
    for need in step.needs:
        if results[need] is SKIPPED:
            return StepPlan(name, skip_reason=f"needs {need!r}, which was skipped")
    reading = _Reading(workflow.name, name, workflow_input, results)
    if step.condition is not None:
        condition = reading.evaluate(step.condition, "if")
        if not isinstance(condition, bool):
            raise reading.error(f"if gave {_shown(condition)}, not true or false")
        if not condition:
            return StepPlan(name, skip_reason=f"if {_text(step.condition)} is false")
    if step.for_each is None:
        return StepPlan(name, (reading.evaluate(step.payload, "payload"),))
    items = reading.lookup(step.for_each)
    if not isinstance(items, list):
        shown = "nothing" if items is _MISSING else _shown(items)
        raise reading.error(f"for_each {step.for_each} gave {shown}, not an array")
    payloads = (
        _Reading(workflow.name, name, workflow_input, results, item).evaluate(step.payload, "payload") for item in items
    )
    return StepPlan(name, tuple(payloads))


def _read_returns(workflow: Workflow, workflow_input: Any, results: Mapping[str, Any]) -> Any:
    assert workflow.returns is not None
    return _Reading(workflow.name, None, workflow_input, results).evaluate(workflow.returns, "returns")


def _workflow(payload: Any, *, for_each: str | None = None, condition: Any = None) -> Workflow:
    """Steps ``p``, ``q`` (no needs) and ``s`` (needs ``p``) built directly, so no load-time check refuses
    a mapping: ``s`` runs ``payload``, which is also the workflow's ``returns``."""

    def step(name: str, needs: tuple[str, ...], mapping: Any = None) -> WorkflowStep:
        ref = None if for_each is None or name != "s" else parse_template(for_each)
        assert ref is None or isinstance(ref, RefTemplate)
        return WorkflowStep(
            name=name,
            job="j",
            needs=needs,
            upstream=frozenset(needs),
            payload=parse_template(mapping if mapping is not None else {}),
            for_each=None if ref is None else ref.ref,
            condition=None if condition is None or name != "s" else parse_template(condition),
        )

    steps = {"p": step("p", ()), "q": step("q", ()), "s": step("s", ("p",), payload)}
    return Workflow(
        name="w",
        input_schema=SchemaValidator({}),
        steps=steps,
        returns=parse_template(payload),
        dependents={"p": ("s",), "q": (), "s": ()},
    )


def _outcome(resolve: Callable[..., Any], *args: Any) -> tuple[str, str]:
    """What ``resolve(*args)`` gives: its value (repr: JSON types and key order count) or its error."""
    try:
        return "value", repr(resolve(*args))
    except (ResolutionError, ValueError, TypeError) as exc:
        return type(exc).__name__, str(exc)


PAYLOADS: list[Any] = [
    "${input}",
    "${input.a}",
    "${input.a.b}",
    "${input.l[0]}",
    "${input.l[2].a}",
    '${input["odd key"]}',
    '${input.l[1]["odd key"][0]}',
    "${input.l[*]}",
    "${input.l[*].a}",
    "${input.l[*].l[*].a}",
    "${input.l[1].l[*]}",
    "${item}",
    "${item.a}",
    "${item[0]}",
    "${steps.p.output}",
    "${steps.p.output.a}",
    "${steps.p.outputs[*].a}",
    "${steps.q.output.a}",
    "x-${input.a}-${steps.p.output.b}",
    "$${input.a} and ${input.n}",
    "${input.a}${item}",
    ["${input.a}", "${input.b}"],
    ["${input.a}", 2, ["${item}"], {"k": "${input.nope}"}],
    {"k": "${input.a}", "m": "${steps.p.output.a}", "c": 1, "d": {"e": "${item.a}"}, "l": ["${input.a}", 2]},
    {"k": "${input.nope}", "z": "lit", "q": "${steps.q.output}"},
    {1: "${input.a}", "1": "${input.b}", "x": "${input.n}"},
    {"const": {"x": [1, 2]}, "n": "${input.n}"},
    {"list": [1, {"k": ["v"]}]},
    5,
    None,
    True,
    "plain text",
]
CONDITIONS: list[Any] = [None, "${input.a}", "${input.n}", "${steps.p.output.b}", "x${input.a}", True, False, {"k": 1}]
FOR_EACH: list[str | None] = [None, "${input.l}", "${steps.p.output}", "${steps.p.output.l[*].a}", "${item}"]

KEYS = st.sampled_from(["a", "b", "l", "n", "odd key"])
SCALARS = st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from([0.5, "s", "", "é"])
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4))
RESULT = VALUES | st.just(SKIPPED)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    payload=st.sampled_from(PAYLOADS),
    condition=st.sampled_from(CONDITIONS),
    for_each=st.sampled_from(FOR_EACH),
    workflow_input=VALUES,
    results=st.dictionaries(st.sampled_from(["p", "q"]), RESULT),
)
def test_compiled_plans_and_returns_match_the_template_walk(
    payload: Any, condition: Any, for_each: str | None, workflow_input: Any, results: dict[str, Any]
) -> None:
    flow = _workflow(payload, for_each=for_each, condition=condition)
    expected = _outcome(_read_plan, flow, "s", workflow_input, results)
    for copy_constants in (True, False):
        assert _outcome(planner(flow, copy_constants=copy_constants).plan, "s", workflow_input, results) == expected
    over = {"p": {"a": 1}, "q": None, "s": {"o": 1}, **results}
    assert _outcome(planner(flow).returns, workflow_input, over) == _outcome(_read_returns, flow, workflow_input, over)


ELEMENTS = [{"a": 1, "l": [{"a": 2}, {"a": 3}, {"a": 4}]}, [7, 8], {"l": []}, {"a": None, "l": [{"b": 1}]}]
STATES: list[tuple[Any, dict[str, Any]]] = [
    (
        {"a": "x", "b": [1], "n": 2, "odd key": {"k": 1}, "l": ELEMENTS},
        {"p": {"a": True, "b": None, "l": [{"a": 1}, {"a": 2}, {"a": 3}]}, "q": [{"a": 3}]},
    ),
    ({"a": 1.5, "n": None, "l": [{"a": 1, "l": [{"a": 2}, {"a": 5}, {"a": 6}]}, {"odd key": [0]}]}, {"p": [1, 2, 3]}),
    ({"a": "é", "l": [{"a": [1]}, {"a": {"k": "v"}}, {"a": None}]}, {"p": SKIPPED, "q": SKIPPED}),
    ([1, 2], {"p": None, "q": {"a": 0}}),
    ({}, {}),
]


@pytest.mark.parametrize(("workflow_input", "results"), STATES)
@pytest.mark.parametrize("for_each", FOR_EACH)
@pytest.mark.parametrize("condition", CONDITIONS)
def test_every_mapping_matches_on_these_run_states(
    workflow_input: Any, results: dict[str, Any], for_each: str | None, condition: Any
) -> None:
    for payload in PAYLOADS:
        flow = _workflow(payload, for_each=for_each, condition=condition)
        expected = _outcome(_read_plan, flow, "s", workflow_input, results)
        for copy_constants in (True, False):
            compiled = planner(flow, copy_constants=copy_constants)
            assert _outcome(compiled.plan, "s", workflow_input, results) == expected, payload
        over = {"p": {"a": 1}, "q": None, "s": {"o": 1}, **results}
        expected = _outcome(_read_returns, flow, workflow_input, over)
        assert _outcome(planner(flow).returns, workflow_input, over) == expected, payload


def test_shared_constants_are_the_written_ones_and_copies_are_fresh() -> None:
    flow = _workflow({"list": [1, {"k": ["v"]}]})
    (shared,) = planner(flow, copy_constants=False).plan("s", {}, {"p": {}}).payloads
    (fresh,) = planner(flow).plan("s", {}, {"p": {}}).payloads
    assert shared == fresh == {"list": [1, {"k": ["v"]}]}
    constant = flow.steps["s"].payload
    assert isinstance(constant, Constant)
    assert shared is constant.value
    assert fresh is not constant.value and fresh["list"] is not constant.value["list"]


def test_a_workflow_is_compiled_once() -> None:
    flow = _workflow("${input}")
    assert planner(flow) is planner(flow)
    assert planner(flow, copy_constants=False) is planner(flow, copy_constants=False)
    assert planner(flow) is not planner(flow, copy_constants=False)
