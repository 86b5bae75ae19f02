"""The workflow planner alone: CPU per call of what a backend runs when a step job ends.

``WorkflowRuntime.job_ended`` then ``Advance.steps_json`` (with placeholders, as Redis
and PostgreSQL write) for a linear run (a → b → c) and a fan-out of 100, from a run
state decoded from its stored text (``state_from_fields``) or kept from the advance
that wrote it (``Advance.written_state``), plus the decode itself. No storage: the
jobs.yaml of ``workflow_steps.py``, an in-memory queue for the step job factory.

    PYTHONPATH=. .venv/bin/python benchmarks/workflow_planner.py [--repeat 7] [case ...]

Prints the best of ``--repeat`` ``time.process_time`` loops per case, in µs per call.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from workflow_steps import JOBS_YAML

from dqflow import Queue, WorkflowStatus
from dqflow.storage.workflows import Advance, JobEnd, RunState, state_from_fields
from dqflow.workflows.runtime import WorkflowRuntime, initial_steps


def _stored(state: RunState, advance: Advance, text: str, kept: bool) -> RunState:
    """The run's next state: kept from its advance, or decoded from the text written."""
    if kept:
        if not hasattr(advance, "written_state"):  # a tree from before step texts (to compare with)
            steps = advance.steps
            return RunState(state.id, state.name, advance.status, state.input, state.tags, steps, state.version + 1)
        return advance.written_state(state)
    fields = {"id": state.id, "name": state.name, "status": advance.status.value, "input": json.dumps(state.input)}
    return state_from_fields({**fields, "tags": "[]", "steps": text, "version": state.version + 1})


def _moved(runtime: WorkflowRuntime, state: RunState, advance: Advance, kept: bool) -> tuple[RunState, list[int]]:
    first = 100 * (state.version + 1)
    ids = list(range(first, first + len(advance.new_jobs)))
    return _stored(state, advance, advance.steps_json(ids), kept), ids


def _cases(runtime: WorkflowRuntime, kept: bool) -> dict[str, Callable[[], Any]]:
    """name → one call; the states are built by running the workflows' first steps."""

    def start(name: str, run_input: Any) -> tuple[RunState, list[int]]:
        state = RunState(7, name, WorkflowStatus.RUNNING, run_input, [], initial_steps(runtime.workflow(name)), 1)
        return _moved(runtime, state, runtime.start(state), kept)

    def ended(state: RunState, ends: list[JobEnd]) -> Callable[[], Any]:
        def call() -> None:
            advance = runtime.job_ended(state, ends)
            advance.steps_json(range(-1, -len(advance.new_jobs) - 1, -1))

        return call

    a, (a_id,) = start("linear3", {"n": 1})
    end_a = [JobEnd(a_id, "a", None, "completed", {"n": 1})]
    b, (b_id,) = _moved(runtime, a, runtime.job_ended(a, end_a), kept)
    end_b = [JobEnd(b_id, "b", None, "completed", {"n": 1})]
    c, (c_id,) = _moved(runtime, b, runtime.job_ended(b, end_b), kept)
    fan, fan_ids = start("fan100", {"items": list(range(100))})
    for index in range(50):
        end = [JobEnd(fan_ids[index], "each", index, "completed", {"n": index})]
        fan, _ = _moved(runtime, fan, runtime.job_ended(fan, end), kept)
    text = json.dumps(b.steps, separators=(",", ":"))
    fields = {"id": "7", "name": "linear3", "status": "running", "input": '{"n":1}', "tags": "[]", "version": "3"}
    return {
        "linear a ended (b planned)": ended(a, end_a),
        "linear b ended (c planned)": ended(b, end_b),
        "linear c ended (run done)": ended(c, [JobEnd(c_id, "c", None, "completed", {"n": 1})]),
        "fan-out 1 of 100 ended": ended(fan, [JobEnd(fan_ids[50], "each", 50, "completed", {"n": 50})]),
        "decode a linear run": lambda: state_from_fields({**fields, "steps": text}),
    }


def _per_call(call: Callable[[], Any], repeat: int) -> float:
    """Best µs per call over ``repeat`` loops of about 50 ms."""
    count = 1
    while True:
        started = time.process_time()
        for _ in range(count):
            call()
        if time.process_time() - started > 0.05:
            break
        count *= 2
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        for _ in range(count):
            call()
        best = min(best, time.process_time() - started)
    return best / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="Loops per case (the best is printed).")
    parser.add_argument("cases", nargs="*", help="Cases whose name contains one of these (default: all).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "jobs.yaml").write_text(JOBS_YAML)
        with Queue.from_yaml(Path(folder) / "jobs.yaml", backend="sqlite:///:memory:") as queue:
            runtime = queue._runtime()
            gc.freeze()
            for kept in (False, True):
                for name, call in _cases(runtime, kept).items():
                    if args.cases and not any(part in name for part in args.cases):
                        continue
                    if kept and name.startswith("decode"):
                        continue
                    state = "kept" if kept else "read"
                    print(f"{name:28} {state:5} {_per_call(call, args.repeat):8.2f} µs", flush=True)


if __name__ == "__main__":
    main()
