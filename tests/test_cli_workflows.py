"""``dqflow workflow start|show|list|cancel|retry`` and ``dqflow add --depends-on``, through the real CLI.

Runs are drained by ``dqflow run --drain`` (in-process, like the other CLI tests);
one test runs the CLI as real processes end to end.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_support import Result, dqflow_process, one_line_error
from helpers import running_worker

from dqflow import Queue

HANDLERS = '''
"""Handlers for the workflow CLI tests."""
import os


def split(payload):
    return {"words": payload["text"].split()}


def count(payload):
    return {"word": payload["word"], "n": len(payload["word"])}


def total(payload):
    if payload.get("flaky") and not os.path.exists(payload["flaky"]):
        open(payload["flaky"], "w").close()
        raise RuntimeError("flaky: fails the first time")
    return {"total": sum(payload["ns"]), "note": payload.get("note", "")}
'''

JOBS_YAML = """
defaults: {{max_attempts: 1, timeout: 30s, retry: {{delay: 100ms}}}}
jobs:
  split:
    handler: {module}:split
    payload: {{type: object, properties: {{text: {{type: string}}}}, required: [text]}}
    output: {{type: object, properties: {{words: {{type: array, items: {{type: string}}}}}}, required: [words]}}
  count:
    handler: {module}:count
    payload: {{type: object, properties: {{word: {{type: string}}}}, required: [word]}}
    output: {{type: object, properties: {{n: {{type: integer}}, word: {{type: string}}}}, required: [n, word]}}
  total:
    handler: {module}:total
    payload:
      type: object
      properties: {{ns: {{type: array, items: {{type: integer}}}}, flaky: {{type: string}}, note: {{type: string}}}}
      required: [ns]
    output: {{type: object, properties: {{total: {{type: integer}}, note: {{type: string}}}}, required: [total, note]}}
workflows:
  words:
    input:
      type: object
      properties: {{text: {{type: string}}, flaky: {{type: string}}, note: {{type: string}}}}
      required: [text, flaky, note]
      additionalProperties: false
    output: {{type: object, properties: {{total: {{type: integer}}}}, required: [total]}}
    steps:
      split: {{job: split, payload: {{text: "${{input.text}}"}}}}
      count: {{job: count, needs: [split], for_each: "${{steps.split.output.words}}", payload: {{word: "${{item}}"}}}}
      total:
        job: total
        needs: [count]
        payload: {{ns: "${{steps.count.outputs[*].n}}", flaky: "${{input.flaky}}", note: "${{input.note}}"}}
    returns: {{total: "${{steps.total.output.total}}"}}
"""


@pytest.fixture
def wf_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str) -> Iterator[Path]:
    """A project with the ``words`` workflow, on each backend, as the working directory."""
    module = f"wf_cli_handlers_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(HANDLERS)
    (tmp_path / "jobs.yaml").write_text(JOBS_YAML.format(module=module))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("DQFLOW_CONFIG", raising=False)
    monkeypatch.setenv("DQFLOW_BACKEND", backend)
    yield tmp_path


def _input(text: str = "a bb ccc", *, flaky: str = "", note: str = "") -> str:
    return json.dumps({"text": text, "flaky": flaky, "note": note})


def _start(dq: Callable[..., Result], payload: str) -> int:
    started = dq("workflow", "start", "words", "--input", payload)
    assert started.code == 0, started.err
    return int(started.out.strip())


def _drain(dq: Callable[..., Result]) -> None:
    """One ``dqflow run --drain``: it runs every step its own completions make ready."""
    result = dq("run", "--drain")
    assert result.code == 0, result.err


def _run_json(dq: Callable[..., Result], run_id: int) -> dict[str, Any]:
    shown = dq("workflow", "show", str(run_id), "--json")
    assert shown.code == 0, shown.err
    document: dict[str, Any] = shown.json()
    return document


def test_start_drain_show_and_list(wf_project: Path, dq: Callable[..., Result]) -> None:
    run_id = _start(dq, _input())
    before = _run_json(dq, run_id)
    assert before["id"] == run_id and before["name"] == "words" and before["status"] == "running"
    assert [s["name"] for s in before["steps"]] == ["split", "count", "total"]

    _drain(dq)
    after = _run_json(dq, run_id)
    assert after["status"] == "completed"
    assert after["output"] == {"total": 6}
    steps = {s["name"]: s for s in after["steps"]}
    assert {s["status"] for s in steps.values()} == {"completed"}
    assert len(steps["count"]["job_ids"]) == 3  # one job per word: the fan-out
    assert [o["n"] for o in steps["count"]["outputs"]] == [1, 2, 3]  # in element order
    assert steps["total"]["output"] == {"total": 6, "note": ""}

    tree = dq("workflow", "show", str(run_id))
    assert tree.code == 0, tree.err
    assert f"run {run_id}" in tree.out and "words" in tree.out and "completed" in tree.out
    for name in ("split", "count", "total"):
        assert name in tree.out
    assert "(3/3 done)" in tree.out  # the fan-out's progress
    assert '{"total": 6}' in tree.out  # the run's output
    for job_id in steps["count"]["job_ids"]:
        assert str(job_id) in tree.out

    second = _start(dq, _input("x"))
    listed = dq("workflow", "list", "--json")
    assert listed.code == 0, listed.err
    assert [r["id"] for r in listed.json()["runs"]] == [second, run_id]  # newest first
    completed = dq("workflow", "list", "--status", "completed", "--json").json()["runs"]
    assert [r["id"] for r in completed] == [run_id]
    assert dq("workflow", "list", "--name", "nope", "--json").json()["runs"] == []
    page = dq("workflow", "list", "--limit", "1", "--json").json()
    assert [r["id"] for r in page["runs"]] == [second] and page["next_cursor"] is not None
    rest = dq("workflow", "list", "--cursor", str(page["next_cursor"]), "--json").json()
    assert [r["id"] for r in rest["runs"]] == [run_id]
    table = dq("workflow", "list")
    assert table.code == 0 and "words" in table.out and "running" in table.out and "3/3" in table.out


def test_values_print_as_text_never_markup(wf_project: Path, dq: Callable[..., Result]) -> None:
    run_id = _start(dq, _input("[bold]x[/bold] [red]y", note="[link=http://evil]z[/link]"))
    _drain(dq)
    shown = dq("workflow", "show", str(run_id))
    assert shown.code == 0, shown.err
    assert "[bold]x[/bold]" in shown.out and "[link=http://evil]z[/link]" in shown.out


def test_cancel_then_retry(wf_project: Path, dq: Callable[..., Result]) -> None:
    run_id = _start(dq, _input())
    cancelled = dq("workflow", "cancel", str(run_id), "--json")
    assert cancelled.code == 0, cancelled.err
    assert cancelled.json()["status"] == "cancelled"
    assert {s["status"] for s in cancelled.json()["steps"]} <= {"cancelled"}
    text = dq("workflow", "cancel", str(run_id))
    assert text.code == 1 or "cancelled" in text.out  # a second cancel: refused or a no-op, never a traceback
    assert "Traceback" not in text.err


def test_failed_run_retried_completes(wf_project: Path, dq: Callable[..., Result]) -> None:
    marker = wf_project / "failed-once"
    run_id = _start(dq, _input(flaky=str(marker)))
    _drain(dq)
    failed = _run_json(dq, run_id)
    assert failed["status"] == "failed"
    assert {s["name"]: s["status"] for s in failed["steps"]} == {
        "split": "completed",
        "count": "completed",
        "total": "failed",
    }
    shown = dq("workflow", "show", str(run_id))
    assert "failed" in shown.out and "flaky: fails the first time" in shown.out

    retried = dq("workflow", "retry", str(run_id))
    assert retried.code == 0, retried.err
    assert f"run {run_id} running again: running" in retried.out
    _drain(dq)
    done = _run_json(dq, run_id)
    assert done["status"] == "completed" and done["output"] == {"total": 6}


def test_errors_are_one_line(wf_project: Path, dq: Callable[..., Result]) -> None:
    unknown = one_line_error(dq("workflow", "start", "nope", "--input", "{}"))
    assert "unknown workflow 'nope'" in unknown and "words" in unknown
    bad_json = one_line_error(dq("workflow", "start", "words", "--input", "{nope"), code=2)
    assert "--input" in bad_json and "not valid JSON" in bad_json
    schema = one_line_error(dq("workflow", "start", "words", "--input", json.dumps({"text": 5})))
    assert "$.text" in schema or "text" in schema
    extra = one_line_error(dq("workflow", "start", "words", "--input", json.dumps({**json.loads(_input()), "x": 1})))
    assert "x" in extra
    assert dq("workflow", "list", "--json").json()["runs"] == []  # nothing stored
    for command in ("show", "cancel", "retry"):
        missing = one_line_error(dq("workflow", command, "424242"))
        assert "424242" in missing
    as_json = dq("workflow", "show", "424242", "--json")
    assert as_json.code == 1 and json.loads(as_json.err)["error"]
    usage = one_line_error(dq("workflow", "show", "0"), code=2)
    assert "RUN" in usage or "0" in usage


def test_add_depends_on(wf_project: Path, dq: Callable[..., Result]) -> None:
    first = dq("add", "split", "--payload", '{"text": "a b"}')
    second = dq("add", "split", "--payload", '{"text": "c"}')
    assert first.code == 0 and second.code == 0
    a, b = int(first.out), int(second.out)
    dependent = dq("add", "count", "--payload", '{"word": "w"}', "--depends-on", str(a), "--depends-on", str(b))
    assert dependent.code == 0, dependent.err
    held = dq("show", dependent.out.strip(), "--json").json()
    assert held["status"] == "waiting"
    _drain(dq)
    assert dq("show", dependent.out.strip(), "--json").json()["status"] == "completed"
    missing = one_line_error(dq("add", "count", "--payload", '{"word": "w"}', "--depends-on", "999999"))
    assert "999999" in missing
    assert one_line_error(dq("add", "count", "--depends-on", "0"), code=2)


def test_real_processes_end_to_end(wf_project: Path, backend: str) -> None:
    env = {"DQFLOW_BACKEND": backend}
    started = dqflow_process("workflow", "start", "words", "--input", _input("one two"), cwd=wf_project, **env)
    assert started.code == 0, started.err
    run_id = started.out.strip()
    assert dqflow_process("run", "--drain", cwd=wf_project, **env).code == 0
    shown = dqflow_process("workflow", "show", run_id, cwd=wf_project, **env)
    assert shown.code == 0, shown.err
    assert "completed" in shown.out and "(2/2 done)" in shown.out


def test_start_wait_prints_the_output_or_the_end(wf_project: Path, dq: Callable[..., Result], backend: str) -> None:
    timed_out = one_line_error(
        dq("workflow", "start", "words", "--input", _input(), "--wait", "--wait-timeout", "0.3s")
    )
    assert "did not finish within 0.3 s (still running)" in timed_out
    refused = one_line_error(dq("workflow", "start", "words", "--input", _input(), "--wait-timeout", "1s"), code=2)
    assert "--wait-timeout needs --wait" in refused
    with Queue.from_yaml(wf_project / "jobs.yaml", backend) as queue, running_worker(queue, concurrency=4):
        done = dq("workflow", "start", "words", "--input", _input("a bb"), "--wait", "--wait-timeout", "30s")
        assert done.code == 0, done.err
        assert json.loads(done.out) == {"total": 3}
        as_json = dq("workflow", "start", "words", "--input", _input("ccc"), "--wait", "--json").json()
        assert as_json["status"] == "completed" and as_json["output"] == {"total": 3}
        failed = dq("workflow", "start", "words", "--input", _input(flaky=str(wf_project / "f")), "--wait")
        assert failed.code == 1 and failed.out == ""
        assert "(words) failed" in failed.err and "flaky: fails the first time" in failed.err, failed.err
