"""``dqflow check`` with workflows (graph, warnings, errors) and ``dqflow graph NAME``; the example workflow."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from dqflow.cli import run as cli_run
from dqflow.declaration import load_declaration
from dqflow.workflows import SKIPPED, plan_step, ready_steps, resolve_returns

REPO = Path(__file__).resolve().parent.parent

JOBS_YAML = """\
jobs:
  split:
    handler: json:dumps
    payload: {type: object, properties: {text: {type: string}}, required: [text]}
    output: {type: object, properties: {words: {type: array, items: {type: string}}}, required: [words]}
  count:
    handler: json:dumps
    payload: {type: object, properties: {word: {type: string}}, required: [word]}
    output: {type: object, properties: {n: {type: integer}}, required: [n]}
  shout:
    handler: json:dumps
    payload: {type: object, properties: {text: {type: string, pattern: "^[A-Z]+$"}}, required: [text]}
workflows:
  words:
    input: {type: object, properties: {text: {type: string}, loud: {type: boolean}}, required: [text, loud]}
    output: {type: object, properties: {counts: {type: array, items: {type: integer}}}, required: [counts]}
    steps:
      split: {job: split, payload: {text: "${input.text}"}}
      count: {job: count, needs: [split], for_each: "${steps.split.output.words}", payload: {word: "${item}"}}
      shout: {job: shout, needs: [split], if: "${input.loud}", payload: {text: "${input.text}"}}
    returns: {counts: "${steps.count.outputs[*].n}"}
"""

TREE = """\
words
├─ split  split
├─ count  count  for each ${steps.split.output.words}  ← split
├─ shout  shout  if ${input.loud}  ← split
└─ returns  ← count, shout
"""

MERMAID = """\
flowchart TD
    input(["input"])
    step_split["split<br/>split"]
    step_count[["count<br/>count<br/>for each ${steps.split.output.words}"]]
    step_shout["shout<br/>shout<br/>if ${input.loud}"]
    output(["output"])
    input --> step_split
    step_split --> step_count
    step_split --> step_shout
    step_count --> output
    step_shout --> output
"""

WARNING = (
    "workflows.words.steps.shout.payload.text: step 'shout': cannot prove workflow input $.text (string) "
    'fits shout payload $.text (string): pattern: "^[A-Z]+$" cannot be proven; checked when the step runs'
)


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def dq(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    monkeypatch.delenv("DQFLOW_CONFIG", raising=False)
    monkeypatch.delenv("DQFLOW_BACKEND", raising=False)

    def call(*args: str) -> Result:
        capsys.readouterr()
        code = cli_run(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return call


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "jobs.yaml"
    path.write_text(JOBS_YAML)
    return str(path)


def test_check_prints_each_workflow_graph_and_its_warnings(dq: Callable[..., Result], config: str) -> None:
    result = dq("check", "--config", config)
    assert result.code == 0, result.err
    assert TREE in result.out
    assert f"\nwarning: {config}:20: {WARNING}\n" in result.out
    assert "3 job types; 1 workflow; backend" in result.out


def test_check_json_has_the_workflows(dq: Callable[..., Result], config: str) -> None:
    document = dq("check", "--config", config, "--json").json()
    (words,) = document["workflows"]
    assert words["name"] == "words"
    assert [(s["name"], s["job"], s["needs"], s["for_each"], s["if"], s["may_skip"]) for s in words["steps"]] == [
        ("split", "split", [], None, None, False),
        ("count", "count", ["split"], "${steps.split.output.words}", None, False),
        ("shout", "shout", ["split"], None, "${input.loud}", True),
    ]
    assert words["warnings"] == [
        {
            "file": config,
            "line": 20,
            "key": "workflows.words.steps.shout.payload.text",
            "message": WARNING.split(": ", 1)[1],
        }
    ]


def test_check_fails_on_a_miswired_workflow_with_file_line_and_key(
    dq: Callable[..., Result], config: str, tmp_path: Path
) -> None:
    Path(config).write_text(JOBS_YAML.replace("${steps.count.outputs[*].n}", "${steps.count.outputs[*].m}"))
    result = dq("check", "--config", config)
    assert result.code == 1
    assert result.err == (
        f"error: {config}:21: workflows.words.returns.counts: returns: ${{steps.count.outputs[*].m}}: "
        "step 'count' (count) outputs $[*] has no field 'm' (fields: n)\n"
    )
    document = dq("check", "--config", config, "--json").json()
    assert document["ok"] is False
    assert document["problems"][0]["key"] == "workflows.words.returns.counts"


def test_graph_prints_mermaid(dq: Callable[..., Result], config: str) -> None:
    result = dq("graph", "words", "--config", config)
    assert (result.code, result.out, result.err) == (0, MERMAID, "")


def test_graph_json(dq: Callable[..., Result], config: str) -> None:
    document = dq("graph", "words", "--config", config, "--json").json()
    assert document["mermaid"] == MERMAID
    assert [step["name"] for step in document["steps"]] == ["split", "count", "shout"]
    assert document["has_returns"] is True


def test_graph_of_an_unknown_workflow(dq: Callable[..., Result], config: str) -> None:
    result = dq("graph", "nope", "--config", config)
    assert (result.code, result.out) == (1, "")
    assert result.err == "error: unknown workflow 'nope' (declared: words)\n"


def test_graph_escapes_what_mermaid_would_read(dq: Callable[..., Result], tmp_path: Path) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text(
        JOBS_YAML.replace('for_each: "${steps.split.output.words}"', "for_each: '${steps.split.output[\"words\"]}'")
    )
    result = dq("graph", "words", "--config", str(path))
    assert result.code == 0, result.err
    assert 'for each ${steps.split.output[#quot;words#quot;]}"]]' in result.out


# -- the example project's workflow --------------------------------------------------------


def test_example_workflow_is_proven_without_warnings(
    dq: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    document = dq("check", "--json").json()
    assert document["ok"] is True
    (flow,) = document["workflows"]
    assert flow["name"] == "publish_album" and flow["warnings"] == []
    assert dq("graph", "publish_album").out.startswith("flowchart TD\n")


def _schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((REPO / "schemas" / name).read_text())
    return loaded


@pytest.mark.parametrize("publish", [True, False])
def test_example_workflow_resolves_through_its_real_handlers(publish: bool) -> None:
    """Drive publish_album by hand (resolver + handlers + schemas): what the runtime will do."""
    declaration = load_declaration(REPO / "jobs.yaml")
    flow = declaration.workflows["publish_album"]
    given = {"albumId": "summer", "width": 800, "publish": publish}
    flow.input_schema.validate(given)
    results: dict[str, Any] = {}
    while ready := ready_steps(flow, results):
        for name in ready:
            plan = plan_step(flow, name, given, results)
            if plan.skipped:
                results[name] = SKIPPED
                continue
            spec = declaration.job_type(flow.steps[name].job)
            outputs = []
            for payload in plan.payloads:
                jsonschema.validate(payload, _schema(f"{spec.name}.payload.json"))
                assert spec.handler is not None
                outputs.append(spec.handler(payload))
                jsonschema.validate(outputs[-1], _schema(f"{spec.name}.output.json"))
            results[name] = outputs if flow.steps[name].fans_out else outputs[0]
    output = resolve_returns(flow, given, results)
    assert flow.output_schema is not None and flow.output_schema.errors(output) == []
    assert output["resized"] == [f"https://cdn.example.com/800/summer-{n}.jpg" for n in (1, 2, 3)]
    assert output["bytes"] == [96000] * 3
    assert output["pageUrl"] == ("https://albums.example.com/summer" if publish else None)
    assert (results["publish"] is SKIPPED) is not publish
