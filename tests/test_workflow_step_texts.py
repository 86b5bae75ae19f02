"""Step texts: an advance writes the steps it left alone as the text they were read or written
as, and encodes only the ones it changed; the result is the text of encoding every step."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import make_queue
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dqflow import Queue, WorkflowStatus
from dqflow.storage.workflows import (
    Advance,
    JobEnd,
    NewWorkflowRun,
    RunState,
    _encode_steps,
    batch_steps_json,
    decode_steps,
    encode_step,
    planned_starts,
    state_from_fields,
)
from dqflow.workflows.runtime import initial_steps

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=20,
    )
)
def test_a_step_is_encoded_as_the_steps_encoder_encodes_it(value: Any) -> None:
    assert encode_step(value) == _encode_steps(value)  # NaN and Infinity too, as the step state always allowed


@st.composite
def _step(draw: st.DrawFn, name: str) -> dict[str, Any]:
    count = draw(st.integers(0, 4))
    fans_out = draw(st.booleans())
    return {
        "name": name,
        "job": draw(st.text(max_size=6)),
        "status": draw(st.sampled_from(["waiting", "running", "completed", "skipped", "failed", "cancelled"])),
        "job_ids": draw(st.lists(st.integers(1, 2**40), min_size=count, max_size=count)),
        "done": draw(st.lists(st.booleans(), min_size=count, max_size=count)),
        "output": None if fans_out else draw(_json),
        "outputs": draw(st.lists(_json, min_size=count, max_size=count)) if fans_out else None,
        "skipped_reason": draw(st.none() | st.text(max_size=10)),
        "error": draw(st.none() | st.text(max_size=10)),
        "started_at": draw(st.none() | st.just("2026-12-02T10:00:00.000001+00:00")),
        "completed_at": None,
    }


@st.composite
def _steps(draw: st.DrawFn) -> list[dict[str, Any]]:
    names = draw(st.lists(st.from_regex(r"[a-z_][a-z0-9_]{0,5}", fullmatch=True), min_size=1, max_size=5, unique=True))
    return [draw(_step(name)) for name in names]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_steps())
def test_a_stored_step_state_decodes_with_each_steps_text(steps: list[dict[str, Any]]) -> None:
    text = _encode_steps(steps)
    decoded, texts = decode_steps(text)
    assert decoded == json.loads(text) and texts is not None
    assert texts == [encode_step(step) for step in decoded] and f"[{','.join(t for t in texts if t)}]" == text
    spaced = json.dumps(steps, ensure_ascii=False)  # not as dqflow writes it: read as json.loads reads it
    decoded, texts = decode_steps(spaced)
    assert decoded == json.loads(spaced)
    assert texts is None or [json.loads(t) for t in texts if t] == decoded  # each step's text as stored


@pytest.mark.parametrize("text", ["[]", " []", "[{}] ", "[{},{}]x", "[{}}", '[{"a":1},2]', "[{},]"])
def test_a_step_state_not_in_dqflows_form_decodes_as_json_loads_does(text: str) -> None:
    try:
        expected: Any = json.loads(text)
    except ValueError as exc:
        with pytest.raises(type(exc)):
            decode_steps(text)
        return
    assert decode_steps(text)[0] == expected


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_steps(), st.data())
def test_spliced_steps_json_is_the_text_of_every_step_encoded(steps: list[dict[str, Any]], data: st.DataObject) -> None:
    stored = _encode_steps(steps)
    fields = {"id": 1, "name": "w", "status": "running", "input": "{}", "tags": "[]", "steps": stored, "version": 3}
    state = state_from_fields(fields)
    assert state.step_texts is not None
    edited = sorted(data.draw(st.sets(st.integers(0, len(steps) - 1))))
    new_steps = list(state.steps)
    texts: list[str | None] = list(state.step_texts)
    placeholders = 0
    for index in edited:  # a changed step is a new dict (the state's steps are never changed in place)
        changed = data.draw(_step(steps[index]["name"]))
        if data.draw(st.booleans()) and changed["job_ids"]:  # planned by this advance: placeholders
            count = len(changed["job_ids"])
            changed["job_ids"] = list(range(-placeholders - 1, -placeholders - count - 1, -1))
            placeholders += count
        new_steps[index] = changed
        texts[index] = None
    advance = Advance(
        WorkflowStatus.RUNNING, new_steps, new_jobs=[None] * placeholders, edited=tuple(edited), step_texts=texts
    )  # type: ignore[list-item]
    new_ids = list(range(1000, 1000 + placeholders))
    partial = advance.edited_steps_json(new_ids)
    whole = advance.steps_json(new_ids)
    assert whole == _encode_steps(advance.steps) and json.loads(whole) == advance.steps
    if partial is not None:
        assert partial == [(index, encode_step(advance.steps[index])) for index in edited]
    assert all(i > 0 for step in advance.steps for i in step["job_ids"])
    assert state.steps == json.loads(stored)  # the state read is left alone


# -- through the runtime: runs moved from states read, and from states kept as written --------------

JOBS: dict[str, dict[str, Any]] = {"double": {"handler": lambda payload: payload}}
WORKFLOWS: dict[str, Any] = {
    "linear": {
        "input": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
        "steps": {
            "a": {"job": "double", "payload": {"n": "${input.n}"}},
            "b": {"job": "double", "needs": ["a"], "payload": {"n": "${steps.a.output.n}"}},
            "c": {"job": "double", "needs": ["b"], "payload": {"n": "${steps.b.output.n}"}},
        },
        "returns": {"n": "${steps.c.output.n}"},
    },
    "fan": {
        "input": {"type": "object", "properties": {"items": {"type": "array"}}, "required": ["items"]},
        "steps": {
            "each": {"job": "double", "for_each": "${input.items}", "payload": {"n": "${item}"}},
            "join": {"job": "double", "needs": ["each"], "payload": {"n": 0}},
        },
    },
}


@pytest.fixture(scope="module")
def queue() -> Iterator[Queue]:
    with make_queue("sqlite:///:memory:", JOBS, workflows=WORKFLOWS) as made:
        yield made


def _drive(queue: Queue, name: str, run_input: Any, way: str) -> RunState:
    """Start a run and complete its jobs one by one, each step text checked against the whole encode;
    ``way``: the next state decoded from the text written, kept with real ids (SQLite), or kept
    after placeholders were written and the ids filled in afterwards (Redis)."""
    runtime = queue._runtime()
    workflow = runtime.workflow(name)
    state = RunState(5, name, WorkflowStatus.RUNNING, run_input, [], initial_steps(workflow), 1)
    advance = runtime.start(state)
    next_id = 100
    while True:
        count = len(advance.new_jobs)
        ids = list(range(next_id, next_id + count))
        next_id += count
        if way == "placeholders":
            text = advance.steps_json(list(range(-1, -count - 1, -1)))
            assert text == _encode_steps(advance.steps)
            state = advance.written_state(state, ids)
        else:
            text = advance.steps_json(ids)
            assert text == _encode_steps(advance.steps)
            if way == "decoded":
                fields = {"id": 5, "name": name, "status": advance.status.value, "input": json.dumps(run_input)}
                state = state_from_fields({**fields, "tags": "[]", "steps": text, "version": state.version + 1})
            else:
                state = advance.written_state(state)
        assert state.step_texts is not None and len(state.step_texts) == len(state.steps)
        for step, known in zip(state.steps, state.step_texts, strict=True):
            assert known is None or known == encode_step(step)
        running = [(step, i) for step in state.steps for i, job_id in enumerate(step["job_ids"]) if not step["done"][i]]
        if state.status is not WorkflowStatus.RUNNING or not running:
            return state
        step, index = running[0]
        item = index if step["outputs"] is not None else None
        end = JobEnd(step["job_ids"][index], step["name"], item, "completed", {"n": index})
        advance = runtime.job_ended(state, [end])


@pytest.mark.parametrize("way", ["decoded", "kept", "placeholders"])
def test_runs_move_to_the_same_step_texts_however_their_state_was_kept(queue: Queue, way: str) -> None:
    linear = _drive(queue, "linear", {"n": 1}, way)
    assert linear.status is WorkflowStatus.COMPLETED and [s["status"] for s in linear.steps] == ["completed"] * 3
    fan = _drive(queue, "fan", {"items": list(range(5))}, way)
    assert fan.status is WorkflowStatus.COMPLETED and fan.steps[0]["outputs"] == [{"n": i} for i in range(5)]


def test_a_batch_of_starts_writes_each_runs_steps_as_encoded(queue: Queue) -> None:
    runtime = queue._runtime()
    shared = initial_steps(runtime.workflow("linear"))  # one step state for the batch, as start_workflows gives
    runs = [NewWorkflowRun("linear", json.dumps({"n": n}), shared) for n in range(3)]
    runs.append(NewWorkflowRun("fan", '{"items":[1,2]}', initial_steps(runtime.workflow("fan"))))
    advances = planned_starts(runs, runtime.start)
    for text, advance in zip(batch_steps_json(advances), advances, strict=True):
        assert json.loads(text) == advance.steps and text == _encode_steps(advance.steps)
    assert [len(advance.new_jobs) for advance in advances] == [1, 1, 1, 2]
    assert shared == initial_steps(runtime.workflow("linear"))  # left alone
