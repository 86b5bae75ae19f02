"""The pure resolver the workflow runtime calls: ready steps, payloads, skips, the run's output."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from dqflow.declaration import Declaration
from dqflow.workflows import SKIPPED, ResolutionError, StepPlan, Workflow, plan_step, ready_steps, resolve_returns

ANY_OBJECT: dict[str, Any] = {"type": "object"}


def workflow(steps: dict[str, Any], *, returns: Any = None, input_schema: Any = None) -> Workflow:
    """A workflow ``w`` over job types without schemas (so the load-time checks stay out of the way)."""
    jobs = {name: {"handler": "m:f"} for name in ("a", "b", "c")}
    body: dict[str, Any] = {"input": input_schema or ANY_OBJECT, "steps": steps}
    if returns is not None:
        body["returns"] = returns
    return Declaration.build(jobs, workflows={"w": body}, import_handlers=False).workflows["w"]


DIAMOND = {
    "top": {"job": "a", "payload": {"id": "${input.id}"}},
    "left": {"job": "b", "needs": ["top"], "payload": {"v": "${steps.top.output.v}"}},
    "right": {"job": "b", "needs": ["top"], "payload": {"v": "${steps.top.output.v}"}},
    "bottom": {
        "job": "c",
        "needs": ["left", "right"],
        "payload": {"sum": ["${steps.left.output}", "${steps.right.output}"]},
    },
}


def test_ready_steps_follow_needs() -> None:
    flow = workflow(DIAMOND)
    assert ready_steps(flow, {}) == ["top"]
    assert ready_steps(flow, {"top": {"v": 1}}) == ["left", "right"]
    assert ready_steps(flow, {"top": {"v": 1}, "left": {}}) == ["right"]
    assert ready_steps(flow, {"top": {"v": 1}, "left": {}, "right": {}}) == ["bottom"]
    assert ready_steps(flow, {key: {} for key in flow.steps}) == []


def test_a_single_reference_keeps_its_json_type() -> None:
    flow = workflow(
        {"s": {"job": "a", "payload": {"n": "${input.n}", "o": "${input.o}", "l": "${input.l}", "z": "${input.z}"}}}
    )
    given = {"n": 3, "o": {"k": [1, 2]}, "l": [True, None], "z": None}
    assert plan_step(flow, "s", given, {}) == StepPlan(
        "s", ({"n": 3, "o": {"k": [1, 2]}, "l": [True, None], "z": None},)
    )


def test_interpolation_renders_strings_as_is_and_the_rest_as_compact_json() -> None:
    text = "${input.s}|${input.n}|${input.f}|${input.b}|${input.z}|${input.l}|${input.o}|$${input.s}"
    flow = workflow({"s": {"job": "a", "payload": {"t": text}}})
    given = {"s": "hé", "n": 3, "f": 2.5, "b": True, "z": None, "l": ["a", 1], "o": {"k": "v"}}
    (payload,) = plan_step(flow, "s", given, {}).payloads
    assert payload == {"t": 'hé|3|2.5|true|null|["a",1]|{"k":"v"}|${input.s}'}


def test_paths_read_keys_indexes_and_quoted_keys() -> None:
    flow = workflow({"s": {"job": "a", "payload": {"x": '${input.a[1]["odd key"].b}', "y": "${input.a[0]}"}}})
    (payload,) = plan_step(flow, "s", {"a": [7, {"odd key": {"b": "deep"}}]}, {}).payloads
    assert payload == {"x": "deep", "y": 7}


def test_a_missing_value_leaves_its_key_out() -> None:
    flow = workflow(
        {"s": {"job": "a", "payload": {"kept": "${input.a}", "gone": "${input.nope}", "far": "${input.a[9]}"}}}
    )
    assert plan_step(flow, "s", {"a": [1]}, {}).payloads == ({"kept": [1]},)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("${input.nope}", "workflow 'w', step 's': payload ${input.nope} has no value"),
        (["${input.nope}"], "workflow 'w', step 's': list element [0] ${input.nope} has no value"),
        ({"t": "x-${input.nope}"}, "workflow 'w', step 's': ${input.nope} has no value to interpolate"),
        ({"t": "${input.l[*].k}"}, "workflow 'w', step 's': ${input.l[*].k}: element 1 has no value there"),
    ],
)
def test_a_missing_value_anywhere_else_is_a_resolution_error(payload: Any, message: str) -> None:
    flow = workflow({"s": {"job": "a", "payload": payload}})
    with pytest.raises(ResolutionError) as info:
        plan_step(flow, "s", {"l": [{"k": 1}, {}]}, {})
    assert str(info.value) == message
    assert (info.value.workflow, info.value.step) == ("w", "s")


FAN = {
    "fetch": {"job": "a", "payload": {}},
    "resize": {
        "job": "b",
        "needs": ["fetch"],
        "for_each": "${steps.fetch.output.images}",
        "payload": {"url": "${item.url}", "n": "${input.n}", "album": "${steps.fetch.output.id}"},
    },
    "publish": {"job": "c", "needs": ["resize"], "payload": {"urls": "${steps.resize.outputs[*].url}"}},
}


def test_fan_out_gives_one_payload_per_element_in_order() -> None:
    flow = workflow(FAN)
    fetched = {"id": "al", "images": [{"url": "u1"}, {"url": "u2"}, {"url": "u3"}]}
    plan = plan_step(flow, "resize", {"n": 1}, {"fetch": fetched})
    assert plan.payloads == tuple({"url": f"u{i}", "n": 1, "album": "al"} for i in (1, 2, 3))
    assert not plan.skipped


def test_fan_out_over_an_empty_array_plans_no_job() -> None:
    plan = plan_step(workflow(FAN), "resize", {}, {"fetch": {"images": []}})
    assert plan == StepPlan("resize", ())


def test_fan_in_reads_the_outputs_in_element_order() -> None:
    results = {"fetch": {}, "resize": [{"url": "r1"}, {"url": "r2"}]}
    assert plan_step(workflow(FAN), "publish", {}, results).payloads == ({"urls": ["r1", "r2"]},)
    assert plan_step(workflow(FAN), "publish", {}, {"fetch": {}, "resize": []}).payloads == ({"urls": []},)


def test_for_each_over_something_else_is_a_resolution_error() -> None:
    with pytest.raises(
        ResolutionError, match=r"for_each \$\{steps.fetch.output.images\} gave \{\"a\":1\}, not an array"
    ):
        plan_step(workflow(FAN), "resize", {}, {"fetch": {"images": {"a": 1}}})
    with pytest.raises(ResolutionError, match=r"gave nothing, not an array"):
        plan_step(workflow(FAN), "resize", {}, {"fetch": {}})


IF = {
    "first": {"job": "a", "if": "${input.go}", "payload": {}},
    "second": {"job": "b", "needs": ["first"], "payload": {"v": "${steps.first.output.v}"}},
    "other": {"job": "c", "payload": {}},
    "last": {"job": "c", "needs": ["second", "other"], "payload": {}},
}


def test_if_false_skips_the_step_and_everything_that_needs_it() -> None:
    flow = workflow(IF, returns={"v": "${steps.second.output.v}", "o": "${steps.other.output}"})
    assert plan_step(flow, "first", {"go": False}, {}) == StepPlan("first", skip_reason="if ${input.go} is false")
    results: dict[str, Any] = {"first": SKIPPED}
    assert plan_step(flow, "second", {"go": False}, results).skip_reason == "needs 'first', which was skipped"
    results.update(second=SKIPPED, other={"o": 1})
    assert plan_step(flow, "last", {"go": False}, results).skipped
    results["last"] = SKIPPED
    assert resolve_returns(flow, {"go": False}, results) == {"v": None, "o": {"o": 1}}


def test_if_true_runs_the_step() -> None:
    flow = workflow(IF)
    assert plan_step(flow, "first", {"go": True}, {}) == StepPlan("first", ({},))
    assert plan_step(flow, "second", {"go": True}, {"first": {"v": 2}}).payloads == ({"v": 2},)


def test_if_that_is_not_a_boolean_at_run_time_is_a_resolution_error() -> None:
    with pytest.raises(ResolutionError, match=r"if gave \"yes\", not true or false"):
        plan_step(workflow(IF), "first", {"go": "yes"}, {})


def test_a_null_output_is_not_a_skip() -> None:
    flow = workflow({"a": {"job": "a", "payload": {}}}, returns={"out": "${steps.a.output}"})
    assert resolve_returns(flow, {}, {"a": None}) == {"out": None}
    flow = workflow({"a": {"job": "a", "payload": {}}, "b": {"job": "b", "needs": ["a"], "payload": {}}})
    assert plan_step(flow, "b", {}, {"a": None}).payloads == ({},)


def test_returns_without_returns_is_none_and_needs_every_step_over() -> None:
    flow = workflow(DIAMOND)
    assert resolve_returns(flow, {}, {key: {} for key in flow.steps}) is None
    flow = workflow(DIAMOND, returns="${steps.bottom.output}")
    with pytest.raises(ValueError, match="not over: right, bottom not finished"):
        resolve_returns(flow, {}, {"top": {}, "left": {}})
    assert resolve_returns(flow, {}, {**{key: {} for key in flow.steps}, "bottom": {"x": 1}}) == {"x": 1}


def test_a_step_whose_needs_are_not_over_is_refused() -> None:
    with pytest.raises(ValueError, match="step 'bottom' is not ready: right not over yet"):
        plan_step(workflow(DIAMOND), "bottom", {}, {"top": {}, "left": {}})


def test_literal_values_are_fresh_copies_each_time() -> None:
    flow = workflow({"s": {"job": "a", "payload": {"list": [1, 2], "deep": {"k": ["v"]}, "ref": "${input.x}"}}})
    (first,) = plan_step(flow, "s", {"x": 1}, {}).payloads
    first["list"].append(3)
    first["deep"]["k"].clear()
    (second,) = plan_step(flow, "s", {"x": 1}, {}).payloads
    assert second == {"list": [1, 2], "deep": {"k": ["v"]}, "ref": 1}


def test_the_diamond_end_to_end() -> None:
    flow = workflow(DIAMOND, returns={"all": "${steps.bottom.output.sum}"})
    results: dict[str, Any] = {}
    given = {"id": "x"}
    payloads: dict[str, Any] = {}
    while ready := ready_steps(flow, results):
        for name in ready:
            (payloads[name],) = plan_step(flow, name, given, results).payloads
            results[name] = {"v": name} if name == "top" else {"sum": payloads[name].get("sum"), "from": name}
    assert payloads == {
        "top": {"id": "x"},
        "left": {"v": "top"},
        "right": {"v": "top"},
        "bottom": {"sum": [{"sum": None, "from": "left"}, {"sum": None, "from": "right"}]},
    }
    assert resolve_returns(flow, given, results) == {"all": payloads["bottom"]["sum"]}


@pytest.mark.parametrize("module", ["dqflow.workflows", "dqflow.workflows.compat", "dqflow.workflows.resolver"])
def test_the_runtime_can_import_workflows_first(module: str) -> None:
    """No import cycle with the declaration package, whichever a fresh interpreter imports first."""
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
