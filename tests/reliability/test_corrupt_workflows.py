"""Any workflow declaration, however wrong, gives a ConfigError or a checked workflow, never a crash.

Workflows are built from pieces that are each plausible (references that parse
or not, to steps that exist or not, schemas that fit or not), and the resolver
is run on the ones that load: it plans payloads or raises ResolutionError.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dqflow.declaration import Declaration
from dqflow.errors import ConfigError
from dqflow.workflows import SKIPPED, ResolutionError, plan_step, ready_steps, resolve_returns

pytestmark = pytest.mark.reliability

TEXT = {"type": "string"}
ITEMS = {"type": "array", "items": {"type": "object", "properties": {"u": TEXT}, "required": ["u"]}}
SCHEMAS = [
    None,
    True,
    {},
    TEXT,
    {"type": ["string", "null"]},
    {"type": "integer", "maximum": 3},
    {"enum": ["a", "b"]},
    {"type": "object", "properties": {"s": TEXT, "n": {"type": "integer"}, "l": ITEMS}, "required": ["s", "l"]},
    {"type": "object", "properties": {"s": TEXT}, "additionalProperties": False},
    {"anyOf": [TEXT, {"type": "object", "properties": {"s": TEXT}}]},
    {"$defs": {"x": TEXT}, "type": "object", "properties": {"s": {"$ref": "#/$defs/x"}}},
    {"allOf": [TEXT, {"minLength": 1}]},
    ITEMS,
]
STEPS = ["a", "b", "c"]
REFS = [
    "${input}",
    "${input.s}",
    "${input.l}",
    "${input.l[*].u}",
    "${input.l[0]}",
    "${item}",
    "${item.u}",
    "${steps.a.output}",
    "${steps.a.output.s}",
    "${steps.b.outputs}",
    "${steps.b.outputs[*].s}",
    "${steps.c.output.l}",
    "${steps.zz.output}",
    "${steps.a}",
    "${nope}",
    "x-${input.s}-${steps.a.output.n}",
    "$${input}",
    "${input.s",
    '${input["s"]}',
]

KEYS = ["s", "n", "l", "x"]
values = st.recursive(
    st.sampled_from([*REFS, 1, 3, True, None, "text"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["s", "n", "l", "x"]), inner, max_size=3)
    ),
    max_leaves=6,
)
steps = st.dictionaries(
    st.sampled_from(STEPS),
    st.fixed_dictionaries(
        {"job": st.sampled_from(["j1", "j2", "j3", "nope"])},
        optional={
            "needs": st.lists(st.sampled_from([*STEPS, "zz"]), max_size=3),
            "for_each": st.sampled_from([*REFS, 5]),
            "if": st.sampled_from([*REFS, True, False, "yes"]),
            "payload": values,
            "bogus": st.just(1),
        },
    ),
    min_size=1,
    max_size=3,
)
workflows = st.fixed_dictionaries(
    {"input": st.sampled_from([s for s in SCHEMAS if s is not None]), "steps": steps},
    optional={"output": st.sampled_from([s for s in SCHEMAS if s is not None]), "returns": values},
)
jobs = st.fixed_dictionaries(
    {
        name: st.fixed_dictionaries({"payload": st.sampled_from(SCHEMAS), "output": st.sampled_from(SCHEMAS)})
        for name in ("j1", "j2", "j3")
    }
)
inputs = st.sampled_from(
    [{}, {"s": "x", "l": [{"u": "1"}, {"u": "2"}]}, {"s": 1, "l": 5}, {"l": [{}, {"u": "y"}]}, None]
)
outputs = st.sampled_from([{"s": "o", "n": 1, "l": [{"u": "v"}]}, None, [], [{"s": "p"}], "plain", SKIPPED])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(job_schemas=jobs, workflow=workflows, given_input=inputs, produced=outputs)
def test_any_workflow_is_checked_or_refused_and_resolves_or_says_why(
    job_schemas: dict[str, dict[str, Any]], workflow: dict[str, Any], given_input: Any, produced: Any
) -> None:
    declared = {
        name: {"handler": "m:f", **{key: value for key, value in schemas.items() if value is not None}}
        for name, schemas in job_schemas.items()
    }
    try:
        declaration = Declaration.build(declared, workflows={"w": workflow}, import_handlers=False)
    except ConfigError as exc:
        assert str(exc).startswith("workflows.w") or str(exc).startswith("jobs."), str(exc)
        return
    flow = declaration.workflows["w"]
    results: dict[str, Any] = {}
    while ready := ready_steps(flow, results):
        for name in ready:
            try:
                plan = plan_step(flow, name, given_input, results)
            except ResolutionError:
                results[name] = SKIPPED  # the runtime fails the step; carry on to exercise the rest
                continue
            if plan.skipped:
                results[name] = SKIPPED
            else:
                results[name] = [produced] * len(plan.payloads) if flow.steps[name].fans_out else produced
    with contextlib.suppress(ResolutionError):
        resolve_returns(flow, given_input, results)


@st.composite
def wired(draw: st.DrawFn) -> dict[str, Any]:
    """A workflow whose graph is sound (needs point back), over job types without schemas."""
    steps: dict[str, Any] = {}
    for index, name in enumerate(STEPS):
        needs = draw(st.lists(st.sampled_from(STEPS[:index]), unique=True)) if index else []
        step: dict[str, Any] = {"job": "j1", "needs": needs}
        if draw(st.booleans()):
            step["for_each"] = draw(st.sampled_from(["${input.l}", "${input.s}", "${steps.a.output.l}"]))
        if draw(st.booleans()):
            step["if"] = draw(st.sampled_from(["${input.flag}", "${steps.a.output.n}", True, False]))
        step["payload"] = draw(values)
        steps[name] = step
    return {"input": {}, "steps": steps, "returns": draw(values)}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workflow=wired(), given_input=inputs, produced=outputs)
def test_the_resolver_plans_or_says_why_on_any_data(workflow: dict[str, Any], given_input: Any, produced: Any) -> None:
    jobs = {"j1": {"handler": "m:f"}}
    try:
        flow = Declaration.build(jobs, workflows={"w": workflow}, import_handlers=False).workflows["w"]
    except ConfigError as exc:  # references the graph rules refuse (item outside for_each, not upstream, ...)
        assert str(exc).startswith("workflows.w"), str(exc)
        return
    results: dict[str, Any] = {}
    while ready := ready_steps(flow, results):
        for name in ready:
            try:
                plan = plan_step(flow, name, given_input, results)
            except ResolutionError:
                results[name] = SKIPPED
                continue
            fan = [produced] * len(plan.payloads)
            results[name] = SKIPPED if plan.skipped else fan if flow.steps[name].fans_out else produced
    with contextlib.suppress(ResolutionError):
        resolve_returns(flow, given_input, results)
