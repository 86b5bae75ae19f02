# ruff: noqa: E501  (the exact messages are the specification: one line each, as printed)
"""The static workflow checker, table-driven: each miswired declaration gives one exact error.

Every case is a workflow ``w`` written under the same job types (``BASE``) and,
unless it says otherwise, the same workflow input (``INPUT``). Lines in the
table count from the case's first line (``steps:``); the test adds the lines
before it. Well-wired workflows load with no error and no warning; what the
checker cannot decide loads with a warning.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dqflow.declaration import Declaration, DeclarationError, load_declaration
from dqflow.errors import ConfigError

BASE = """\
jobs:
  fetch_album:
    handler: m:f
    payload:
      type: object
      properties: {albumId: {type: string}}
      required: [albumId]
      additionalProperties: false
    output:
      type: object
      properties:
        title: {type: [string, "null"]}
        cover: {type: string}
        count: {type: integer}
        ratio: {type: number}
        label: {type: string}
        images:
          type: array
          items:
            type: object
            properties: {url: {type: string}, width: {type: integer, maximum: 4000}, alt: {type: string}}
            required: [url, width]
        done: {type: boolean}
      required: [title, count, ratio, label, images, done]
  resize_image:
    handler: m:f
    payload:
      type: object
      properties:
        url: {type: string}
        width: {type: integer, maximum: 4000}
        mode: {enum: [fit, fill]}
      required: [url, width]
      additionalProperties: false
    output:
      type: object
      properties: {url: {type: string}, bytes: {type: integer}}
      required: [url, bytes]
  publish_album:
    handler: m:f
    payload:
      type: object
      properties:
        albumId: {type: string}
        title: {type: string}
        urls: {type: array, items: {type: string}}
      required: [albumId, urls]
      additionalProperties: false
    output:
      type: object
      properties: {count: {type: integer}, page: {type: string}}
      required: [count, page]
  notify:
    handler: m:f
    payload: {type: object, properties: {text: {type: string}}, required: [text]}
  untyped:
    handler: m:f
  shout:
    handler: m:f
    payload: {type: object, properties: {text: {type: string, pattern: "^[A-Z]+$"}}, required: [text]}
  strict:
    handler: m:f
    payload: {type: object, properties: {text: {allOf: [{type: string}, {minLength: 1}]}}, required: [text]}
workflows:
  w:
"""

INPUT = """\
    input:
      type: object
      properties:
        albumId: {type: string}
        publish: {type: boolean}
        width: {type: integer}
        note: {type: string}
        flag: {type: boolean}
        maybe: {type: [boolean, "null"]}
        mode: {enum: [fit, fill]}
      required: [albumId, publish, width, maybe]
"""


def declare(tmp_path: Path, case: str, *, with_input: bool = True) -> tuple[Path, int]:
    """Write jobs.yaml with workflow ``w`` = ``case``; the path and the line before the case's first."""
    text = BASE + (INPUT if with_input else "")
    offset = text.count("\n")
    path = tmp_path / "jobs.yaml"
    path.write_text(text + textwrap.indent(textwrap.dedent(case).lstrip("\n"), "    "))
    return path, offset


def miswired(name: str, case: str, line: int, key: str, message: str, *, with_input: bool = True) -> Any:
    return pytest.param(case, line, key, message, with_input, id=name)


MISWIRED = [
    miswired(
        "unknown job",
        """
        steps:
          a: {job: fetch_albm, payload: {albumId: "${input.albumId}"}}
        """,
        2,
        "workflows.w.steps.a.job",
        "unknown job 'fetch_albm'; did you mean 'fetch_album'? (declared: fetch_album, notify, publish_album, resize_image, shout, strict, untyped)",
    ),
    miswired(
        "needs unknown step",
        """
        steps:
          a: {job: fetch_album, needs: [nope], payload: {albumId: "${input.albumId}"}}
        """,
        2,
        "workflows.w.steps.a.needs[0]",
        "needs unknown step 'nope' (steps: a)",
    ),
    miswired(
        "needs itself",
        """
        steps:
          a: {job: fetch_album, needs: [a], payload: {albumId: "${input.albumId}"}}
        """,
        2,
        "workflows.w.steps.a.needs[0]",
        "step 'a' needs itself",
    ),
    miswired(
        "needs listed twice",
        """
        steps:
          a: {job: fetch_album, payload: {albumId: "${input.albumId}"}}
          b: {job: fetch_album, needs: [a, a], payload: {albumId: "${input.albumId}"}}
        """,
        3,
        "workflows.w.steps.b.needs[1]",
        "step 'a' is listed twice",
    ),
    miswired(
        "cycle",
        """
        steps:
          a: {job: fetch_album, needs: [c], payload: {albumId: "${input.albumId}"}}
          b: {job: fetch_album, needs: [a], payload: {albumId: "${input.albumId}"}}
          c: {job: fetch_album, needs: [b], payload: {albumId: "${input.albumId}"}}
        """,
        2,
        "workflows.w.steps.a.needs",
        "steps form a cycle through needs: a → c → b → a",
    ),
    miswired(
        "reference to an unknown step",
        """
        steps:
          a: {job: notify, payload: {text: "${steps.fetch.output.cover}"}}
        """,
        2,
        "workflows.w.steps.a.payload.text",
        "${steps.fetch.output.cover}: no step 'fetch' in this workflow (steps: a)",
    ),
    miswired(
        "reference to a step not upstream",
        """
        steps:
          fetch: {job: fetch_album, payload: {albumId: "${input.albumId}"}}
          other: {job: fetch_album, payload: {albumId: "${input.albumId}"}}
          say: {job: notify, needs: [other], payload: {text: "${steps.fetch.output.label}"}}
        """,
        4,
        "workflows.w.steps.say.payload.text",
        "${steps.fetch.output.label}: step 'say' reads step 'fetch', which is not upstream of it; add it to needs",
    ),
    miswired(
        "item outside for_each",
        """
        steps:
          a: {job: notify, payload: {text: "${item.url}"}}
        """,
        2,
        "workflows.w.steps.a.payload.text",
        "${item.url}: item is only defined in the payload of a for_each step, not here",
    ),
    miswired(
        "item in the if of a for_each step",
        """
        steps:
          fetch: {job: fetch_album, payload: {albumId: "${input.albumId}"}}
          resize:
            job: resize_image
            needs: [fetch]
            for_each: "${steps.fetch.output.images}"
            if: "${item.ok}"
            payload: {url: "${item.url}", width: 10}
        """,
        7,
        "workflows.w.steps.resize.if",
        "${item.ok}: item is only defined in the payload of a for_each step, not in for_each and if",
    ),
    miswired(
        "output of a fan-out step",
        """
        steps:
          fetch: {job: fetch_album, payload: {albumId: "${input.albumId}"}}
          resize: {job: resize_image, needs: [fetch], for_each: "${steps.fetch.output.images}", payload: {url: "${item.url}", width: 10}}
          say: {job: notify, needs: [resize], payload: {text: "${steps.resize.output.url}"}}
        """,
        4,
        "workflows.w.steps.say.payload.text",
        "${steps.resize.output.url}: step 'resize' fans out (for_each); read its outputs: ${steps.resize.outputs}",
    ),
    miswired(
        "outputs of a plain step",
        """
        steps:
          fetch: {job: fetch_album, payload: {albumId: "${input.albumId}"}}
          say: {job: notify, needs: [fetch], payload: {text: "${steps.fetch.outputs[0].label}"}}
        """,
        3,
        "workflows.w.steps.say.payload.text",
        "${steps.fetch.outputs[0].label}: step 'fetch' does not fan out; read its output: ${steps.fetch.output}",
    ),
    miswired(
        "syntax: step without output",
        """
        steps:
          fetch: {job: fetch_album, payload: {albumId: "${steps.fetch}"}}
        """,
        2,
        "workflows.w.steps.fetch.payload.albumId",
        "invalid reference in '${steps.fetch}' at position 14: expected '.output' or '.outputs' after 'steps.fetch'",
    ),
    miswired(
        "syntax: unclosed reference",
        """
        steps:
          fetch: {job: fetch_album, payload: {albumId: "id-${input.albumId"}}
        """,
        2,
        "workflows.w.steps.fetch.payload.albumId",
        "invalid reference in 'id-${input.albumId' at position 19: missing '}'",
    ),
    miswired(
        "syntax: unknown root",
        """
        steps:
          fetch: {job: fetch_album, payload: {albumId: "${inputs.albumId}"}}
        """,
        2,
        "workflows.w.steps.fetch.payload.albumId",
        "invalid reference in '${inputs.albumId}' at position 3: unknown root 'inputs': a reference starts with input, item or steps",
    ),
    miswired(
        "unknown step key",
        """
        steps:
          fetch: {job: fetch_album, need: [], payload: {albumId: "${input.albumId}"}}
        """,
        2,
        "workflows.w.steps.fetch.need",
        "unknown key 'need'; did you mean 'needs'? (allowed: job, needs, for_each, if, payload, description)",
    ),
    miswired(
        "unknown workflow key",
        """
        retruns: {}
        steps:
          fetch: {job: fetch_album, payload: {albumId: "${input.albumId}"}}
        """,
        1,
        "workflows.w.retruns",
        "unknown key 'retruns'; did you mean 'returns'? (allowed: description, input, output, steps, returns)",
    ),
    miswired(
        "path the producer does not have",
        """
        steps:
          fetch: {job: fetch_album, payload: {albumId: "${input.albumId}"}}
          say: {job: notify, needs: [fetch], payload: {text: "${steps.fetch.output.titel}"}}
        """,
        3,
        "workflows.w.steps.say.payload.text",
        "step 'say': ${steps.fetch.output.titel}: step 'fetch' (fetch_album) output $ has no field 'titel' (fields: title, cover, count, ratio, label, images, done)",
    ),
    miswired(
        "path into a string",
        """
        steps:
          fetch: {job: fetch_album, payload: {albumId: "${input.albumId.id}"}}
        """,
        2,
        "workflows.w.steps.fetch.payload.albumId",
        "step 'fetch': ${input.albumId.id}: workflow input $.albumId is string, not an object",
    ),
    miswired(
        "string|null into a required string",
        """
        steps:
          fetch: {job: fetch_album, payload: {albumId: "${input.albumId}"}}
          say: {job: notify, needs: [fetch], payload: {text: "${steps.fetch.output.title}"}}
        """,
        3,
        "workflows.w.steps.say.payload.text",
        "step 'say': step 'fetch' (fetch_album) output $.title (string|null) cannot fill notify payload $.text (string): null is not allowed",
    ),
    miswired(
        "number into an enum of strings",
        """
        steps:
          fetch: {job: fetch_album, payload: {albumId: "${input.albumId}"}}
          resize: {job: resize_image, needs: [fetch], payload: {url: "${steps.fetch.output.label}", width: 10, mode: "${input.width}"}}
        """,
        3,
        "workflows.w.steps.resize.payload.mode",
        'step \'resize\': workflow input $.width (integer) cannot fill resize_image payload $.mode (one of "fit", "fill"): integer is not accepted',
    ),
    miswired(
        "any string into an enum",
        """
        steps:
          fetch: {job: fetch_album, payload: {albumId: "${input.albumId}"}}
          resize: {job: resize_image, needs: [fetch], payload: {url: "${steps.fetch.output.label}", width: 10, mode: "${input.albumId}"}}
        """,
        3,
        "workflows.w.steps.resize.payload.mode",
        'step \'resize\': workflow input $.albumId (string) cannot fill resize_image payload $.mode (one of "fit", "fill"): any string may come, not only those values',
    ),
    miswired(
        "literal outside the enum",
        """
        steps:
          fetch: {job: fetch_album, payload: {albumId: "${input.albumId}"}}
          resize: {job: resize_image, needs: [fetch], payload: {url: "${steps.fetch.output.label}", width: 10, mode: stretch}}
        """,
        3,
        "workflows.w.steps.resize.payload.mode",
        'step \'resize\': the value "stretch" cannot fill resize_image payload $.mode (one of "fit", "fill"): not one of those values',
    ),
    miswired(
        "optional output field into a required payload field",
        """
        steps:
          fetch: {job: fetch_album, payload: {albumId: "${input.albumId}"}}
          say: {job: notify, needs: [fetch], payload: {text: "${steps.fetch.output.cover}"}}
        """,
        3,
        "workflows.w.steps.say.payload.text",
        "step 'say': step 'fetch' (fetch_album) output $.cover (string) may be absent, but notify payload $.text is required",
    ),
    miswired(
        "key forbidden by additionalProperties false",
        """
        steps:
          fetch: {job: fetch_album, payload: {albumId: "${input.albumId}", force: true}}
        """,
        2,
        "workflows.w.steps.fetch.payload.force",
        "step 'fetch': fetch_album payload $ does not allow the key 'force' (additionalProperties: false)",
    ),
    miswired(
        "required payload field left unmapped",
        """
        steps:
          fetch: {job: fetch_album, payload: {albumId: "${input.albumId}"}}
          resize: {job: resize_image, needs: [fetch], payload: {url: "${steps.fetch.output.label}"}}
        """,
        3,
        "workflows.w.steps.resize.payload",
        "step 'resize': required resize_image payload $.width is not mapped",
    ),
    miswired(
        "for_each over a non-array",
        """
        steps:
          fetch: {job: fetch_album, payload: {albumId: "${input.albumId}"}}
          resize: {job: resize_image, needs: [fetch], for_each: "${steps.fetch.output.count}", payload: {url: "${item}", width: 10}}
        """,
        3,
        "workflows.w.steps.resize.for_each",
        "step 'resize': for_each needs an array, but step 'fetch' (fetch_album) output $.count is integer",
    ),
    miswired(
        "for_each not a single reference",
        """
        steps:
          fetch: {job: fetch_album, payload: {albumId: "${input.albumId}"}}
          resize: {job: resize_image, needs: [fetch], for_each: "x${steps.fetch.output.images}", payload: {url: "${item}", width: 10}}
        """,
        3,
        "workflows.w.steps.resize.for_each",
        "step 'resize': for_each must be exactly one reference to an array, like \"${input.items}\"",
    ),
    miswired(
        "if on a non-boolean",
        """
        steps:
          fetch: {job: fetch_album, if: "${input.albumId}", payload: {albumId: "${input.albumId}"}}
        """,
        2,
        "workflows.w.steps.fetch.if",
        "step 'fetch': if needs a boolean, but workflow input $.albumId is string",
    ),
    miswired(
        "if on an optional boolean",
        """
        steps:
          fetch: {job: fetch_album, if: "${input.flag}", payload: {albumId: "${input.albumId}"}}
        """,
        2,
        "workflows.w.steps.fetch.if",
        "step 'fetch': if needs a value, but workflow input $.flag (boolean) may be absent",
    ),
    miswired(
        "if on a nullable boolean",
        """
        steps:
          fetch: {job: fetch_album, if: "${input.maybe}", payload: {albumId: "${input.albumId}"}}
        """,
        2,
        "workflows.w.steps.fetch.if",
        "step 'fetch': if needs a boolean, but workflow input $.maybe is boolean|null",
    ),
    miswired(
        "if that is not a boolean literal",
        """
        steps:
          fetch: {job: fetch_album, if: "yes", payload: {albumId: "${input.albumId}"}}
        """,
        2,
        "workflows.w.steps.fetch.if",
        "step 'fetch': if must be true, false or one reference to a boolean, not \"yes\"",
    ),
    miswired(
        "skipped step into a required returns field",
        """
        output: {type: object, properties: {count: {type: integer}}, required: [count]}
        steps:
          fetch: {job: fetch_album, if: "${input.publish}", payload: {albumId: "${input.albumId}"}}
        returns: {count: "${steps.fetch.output.count}"}
        """,
        4,
        "workflows.w.returns.count",
        "returns: step 'fetch' may be skipped (an if on it or upstream), then ${steps.fetch.output.count} is null, but workflow output $.count (integer) does not allow null",
    ),
    miswired(
        "downstream of an if into returns",
        """
        output: {type: object, properties: {urls: {type: array, items: {type: string}}}, required: [urls]}
        steps:
          fetch: {job: fetch_album, if: "${input.publish}", payload: {albumId: "${input.albumId}"}}
          resize: {job: resize_image, needs: [fetch], for_each: "${steps.fetch.output.images}", payload: {url: "${item.url}", width: "${item.width}"}}
        returns: {urls: "${steps.resize.outputs[*].url}"}
        """,
        5,
        "workflows.w.returns.urls",
        "returns: step 'resize' may be skipped (an if on it or upstream), then ${steps.resize.outputs[*].url} is null, but workflow output $.urls (array) does not allow null",
    ),
    miswired(
        "returns missing with an output schema",
        """
        output: {type: object}
        steps:
          fetch: {job: fetch_album, payload: {albumId: "${input.albumId}"}}
        """,
        1,
        "workflows.w.output",
        "the workflow declares an output schema but no returns",
    ),
    miswired(
        "returns of the wrong type",
        """
        output: {type: object, properties: {count: {type: string}}, required: [count]}
        steps:
          fetch: {job: fetch_album, payload: {albumId: "${input.albumId}"}}
        returns: {count: "${steps.fetch.output.count}"}
        """,
        4,
        "workflows.w.returns.count",
        "returns: step 'fetch' (fetch_album) output $.count (integer) cannot fill workflow output $.count (string): integer is not accepted",
    ),
    miswired(
        "literal over the maximum",
        """
        steps:
          fetch: {job: fetch_album, payload: {albumId: "${input.albumId}"}}
          resize: {job: resize_image, needs: [fetch], for_each: "${steps.fetch.output.images}", payload: {url: "${item.url}", width: 5000}}
        """,
        3,
        "workflows.w.steps.resize.payload.width",
        "step 'resize': the value 5000 cannot fill resize_image payload $.width (integer): 5000 is greater than the maximum of 4000",
    ),
    miswired(
        "number into an integer",
        """
        steps:
          fetch: {job: fetch_album, payload: {albumId: "${input.albumId}"}}
          resize: {job: resize_image, needs: [fetch], payload: {url: "${steps.fetch.output.label}", width: "${steps.fetch.output.ratio}"}}
        """,
        3,
        "workflows.w.steps.resize.payload.width",
        "step 'resize': step 'fetch' (fetch_album) output $.ratio (number) cannot fill resize_image payload $.width (integer): a number may have a fraction; an integer is required",
    ),
    miswired(
        "fan-in over a field absent in some elements",
        """
        steps:
          fetch: {job: fetch_album, payload: {albumId: "${input.albumId}"}}
          publish: {job: publish_album, needs: [fetch], payload: {albumId: "${input.albumId}", urls: "${steps.fetch.output.images[*].alt}"}}
        """,
        3,
        "workflows.w.steps.publish.payload.urls",
        "step 'publish': ${steps.fetch.output.images[*].alt}: step 'fetch' (fetch_album) output $.images[*].alt may be absent in some elements; [*] needs it in every one",
    ),
    miswired(
        "interpolating an optional value",
        """
        steps:
          say: {job: notify, payload: {text: "note: ${input.note}"}}
        """,
        2,
        "workflows.w.steps.say.payload.text",
        "step 'say': ${input.note} is interpolated, but workflow input $.note (string) may be absent",
    ),
    miswired(
        "a list where the payload wants an object",
        """
        steps:
          say: {job: notify, payload: ["${input.albumId}"]}
        """,
        2,
        "workflows.w.steps.say.payload",
        "step 'say': a list cannot fill notify payload $ (object)",
    ),
    miswired(
        "item path the element does not have",
        """
        steps:
          fetch: {job: fetch_album, payload: {albumId: "${input.albumId}"}}
          resize: {job: resize_image, needs: [fetch], for_each: "${steps.fetch.output.images}", payload: {url: "${item.link}", width: 10}}
        """,
        3,
        "workflows.w.steps.resize.payload.url",
        "step 'resize': ${item.link}: step 'fetch' (fetch_album) output $.images[*] has no field 'link' (fields: url, width, alt)",
    ),
    miswired(
        "invalid step name",
        """
        steps:
          bad-name: {job: fetch_album, payload: {albumId: "${input.albumId}"}}
        """,
        2,
        "workflows.w.steps.bad-name",
        "invalid step name 'bad-name': start with a letter or _, then letters, digits or _",
    ),
    miswired(
        "boolean into a string list element",
        """
        steps:
          publish: {job: publish_album, payload: {albumId: "${input.albumId}", urls: ["${input.publish}"]}}
        """,
        2,
        "workflows.w.steps.publish.payload.urls[0]",
        "step 'publish': workflow input $.publish (boolean) cannot fill publish_album payload $.urls[0] (string): boolean is not accepted",
    ),
    miswired(
        "fan-in of objects into a list of strings",
        """
        steps:
          fetch: {job: fetch_album, payload: {albumId: "${input.albumId}"}}
          resize: {job: resize_image, needs: [fetch], for_each: "${steps.fetch.output.images}", payload: {url: "${item.url}", width: "${item.width}"}}
          publish: {job: publish_album, needs: [resize], payload: {albumId: "${input.albumId}", urls: "${steps.resize.outputs}"}}
        """,
        4,
        "workflows.w.steps.publish.payload.urls",
        "step 'publish': step 'resize' (resize_image) outputs $[*] (object) cannot fill publish_album payload $.urls[*] (string): object is not accepted",
    ),
    miswired(
        "missing input",
        """
        steps:
          fetch: {job: fetch_album, payload: {albumId: x}}
        """,
        0,
        "workflows.w.input",
        "missing required key 'input'",
        with_input=False,
    ),
]


@pytest.mark.parametrize(("case", "line", "key", "message", "with_input"), MISWIRED)
def test_miswired_workflow_gives_the_exact_error(
    tmp_path: Path, case: str, line: int, key: str, message: str, with_input: bool
) -> None:
    path, offset = declare(tmp_path, case, with_input=with_input)
    with pytest.raises(ConfigError) as info:
        load_declaration(path, import_handlers=False)
    error = info.value
    assert not isinstance(error, DeclarationError), [str(p) for p in error.problems]
    assert (error.reason, error.key, error.line) == (message, key, offset + line)
    assert str(error) == f"{path}:{offset + line}: {key}: {message}"


@pytest.mark.parametrize(("case", "line", "key", "message", "with_input"), MISWIRED)
def test_a_deferred_type_check_gives_the_same_error_on_first_use(
    tmp_path: Path, case: str, line: int, key: str, message: str, with_input: bool
) -> None:
    """Loading with ``check_schemas=False`` (the CLI, ``Queue.from_yaml``) defers only the type
    check: shape and graph errors still stop the load, and a type error is the same error, at
    the same line and key, when the workflow is first used."""
    path, offset = declare(tmp_path, case, with_input=with_input)
    try:
        declaration = load_declaration(path, import_handlers=False, check_schemas=False)
    except ConfigError as error:  # a shape or graph error: found at load, as before
        assert not isinstance(error, DeclarationError), [str(p) for p in error.problems]
        assert str(error) == f"{path}:{offset + line}: {key}: {message}"
        return
    assert set(declaration.deferred_type_checks) == {"w"}
    with pytest.raises(ConfigError) as info:
        declaration.check_workflows()
    assert not isinstance(info.value, DeclarationError), [str(p) for p in info.value.problems]
    assert str(info.value) == f"{path}:{offset + line}: {key}: {message}"
    with pytest.raises(ConfigError, match="^" + re.escape(str(info.value)) + "$"):
        declaration.check_workflows(["w"])  # still not checked: it fails again, the same way


WELL_WIRED = {
    "linear": """
        steps:
          fetch: {job: fetch_album, payload: {albumId: "${input.albumId}"}}
          say: {job: notify, needs: [fetch], payload: {text: "${steps.fetch.output.label}"}}
        """,
    "diamond": """
        steps:
          fetch: {job: fetch_album, payload: {albumId: "${input.albumId}"}}
          left: {job: notify, needs: [fetch], payload: {text: "${steps.fetch.output.label}"}}
          right: {job: resize_image, needs: [fetch], payload: {url: "${steps.fetch.output.label}", width: 640, mode: fit}}
          join:
            job: publish_album
            needs: [left, right]
            payload: {albumId: "${input.albumId}", urls: ["${steps.right.output.url}", "${steps.fetch.output.label}"]}
        """,
    "fan-out and fan-in": """
        output:
          type: object
          properties: {urls: {type: array, items: {type: string}}, sizes: {type: array}, page: {type: [string, "null"]}}
          required: [urls, sizes, page]
          additionalProperties: false
        steps:
          fetch: {job: fetch_album, payload: {albumId: "${input.albumId}"}}
          resize:
            job: resize_image
            needs: [fetch]
            for_each: "${steps.fetch.output.images}"
            payload: {url: "${item.url}", width: "${item.width}"}
          publish:
            job: publish_album
            needs: [resize]
            if: "${input.publish}"
            payload: {albumId: "id-${input.albumId}", urls: "${steps.resize.outputs[*].url}", title: "${steps.fetch.output.title} (${input.width}px)"}
        returns:
          urls: "${steps.resize.outputs[*].url}"
          sizes: "${steps.resize.outputs[*].bytes}"
          page: "${steps.publish.output.page}"
        """,
    "if with literals and optional fields": """
        steps:
          fetch: {job: fetch_album, if: true, payload: {albumId: "${input.albumId}"}}
          resize:
            job: resize_image
            needs: [fetch]
            if: "${steps.fetch.output.done}"
            for_each: "${steps.fetch.output.images}"
            payload: {url: "${item.url}", width: 800, mode: "${input.mode}"}
          say: {job: notify, needs: [resize], payload: {text: "$${not a reference} ${steps.resize.outputs}"}}
        """,
}


@pytest.mark.parametrize("case", WELL_WIRED.values(), ids=WELL_WIRED.keys())
def test_well_wired_workflows_load_without_warnings(tmp_path: Path, case: str) -> None:
    path, _ = declare(tmp_path, case)
    workflow = load_declaration(path, import_handlers=False).workflows["w"]
    assert [str(warning) for warning in workflow.warnings] == []


UNPROVABLE = {
    "producer without an output schema": (
        """
        steps:
          a: {job: untyped, payload: {}}
          say: {job: notify, needs: [a], payload: {text: "${steps.a.output.text}"}}
        """,
        3,
        "workflows.w.steps.say.payload.text",
        "step 'say': cannot check step 'a' (untyped) output $.text: job untyped declares no output schema; checked when the step runs",
    ),
    "consumer pattern": (
        """
        steps:
          say: {job: shout, payload: {text: "${input.albumId}"}}
        """,
        2,
        "workflows.w.steps.say.payload.text",
        "step 'say': cannot prove workflow input $.albumId (string) fits shout payload $.text (string): pattern: \"^[A-Z]+$\" cannot be proven; checked when the step runs",
    ),
    "consumer allOf": (
        """
        steps:
          say: {job: strict, payload: {text: "${input.albumId}"}}
        """,
        2,
        "workflows.w.steps.say.payload.text",
        "step 'say': cannot prove workflow input $.albumId (string) fits strict payload $.text (unknown): the checker cannot read $.text: allOf with several branches; checked when the step runs",
    ),
}


@pytest.mark.parametrize(("case", "line", "key", "message"), UNPROVABLE.values(), ids=UNPROVABLE.keys())
def test_what_the_checker_cannot_decide_is_a_warning(
    tmp_path: Path, case: str, line: int, key: str, message: str
) -> None:
    path, offset = declare(tmp_path, case)
    workflow = load_declaration(path, import_handlers=False).workflows["w"]
    assert [(w.line, w.key, w.message) for w in workflow.warnings] == [(offset + line, key, message)]
    assert str(workflow.warnings[0]) == f"{path}:{offset + line}: {key}: {message}"


@pytest.mark.parametrize(("case", "line", "key", "message"), UNPROVABLE.values(), ids=UNPROVABLE.keys())
def test_a_deferred_type_check_gives_the_same_warnings(
    tmp_path: Path, case: str, line: int, key: str, message: str
) -> None:
    path, offset = declare(tmp_path, case)
    declaration = load_declaration(path, import_handlers=False, check_schemas=False)
    assert declaration.workflows["w"].warnings == ()  # not type-checked yet
    declaration.check_workflows()
    assert [(w.line, w.key, w.message) for w in declaration.workflows["w"].warnings] == [(offset + line, key, message)]
    assert declaration.deferred_type_checks == {}


def test_every_problem_is_listed_in_one_error(tmp_path: Path) -> None:
    path, offset = declare(
        tmp_path,
        """
        steps:
          a: {job: nope, payload: {}}
          b: {job: notify, payload: {text: "${steps.zz.output}"}}
        """,
    )
    with pytest.raises(DeclarationError) as info:
        load_declaration(path, import_handlers=False)
    assert [(p.line, p.key) for p in info.value.problems] == [
        (offset + 2, "workflows.w.steps.a.job"),
        (offset + 3, "workflows.w.steps.b.payload.text"),
    ]


def test_the_compiled_graph(tmp_path: Path) -> None:
    path, _ = declare(tmp_path, WELL_WIRED["diamond"])
    workflow = load_declaration(path, import_handlers=False).workflows["w"]
    assert workflow.order == ("fetch", "left", "right", "join")
    assert workflow.roots == ("fetch",)
    assert workflow.steps["join"].upstream == {"fetch", "left", "right"}
    assert workflow.steps["join"].needs == ("left", "right")
    assert dict(workflow.dependents) == {"fetch": ("left", "right"), "left": ("join",), "right": ("join",), "join": ()}
    assert not any(step.may_skip for step in workflow.steps.values())


def test_steps_downstream_of_an_if_may_be_skipped(tmp_path: Path) -> None:
    path, _ = declare(tmp_path, WELL_WIRED["fan-out and fan-in"])
    workflow = load_declaration(path, import_handlers=False).workflows["w"]
    assert {name: step.may_skip for name, step in workflow.steps.items()} == {
        "fetch": False,
        "resize": False,
        "publish": True,
    }
    assert workflow.steps["resize"].fans_out and not workflow.steps["publish"].fans_out


def test_workflows_in_code_are_checked_like_yaml() -> None:
    jobs = {
        "double": {
            "handler": "m:f",
            "payload": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
            "output": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
        }
    }
    good = {
        "twice": {
            "input": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
            "steps": {
                "a": {"job": "double", "payload": {"n": "${input.n}"}},
                "b": {"job": "double", "needs": ["a"], "payload": {"n": "${steps.a.output.n}"}},
            },
        }
    }
    declaration = Declaration.build(jobs, workflows=good, import_handlers=False)
    assert declaration.workflows["twice"].order == ("a", "b")
    bad = {"twice": {**good["twice"], "steps": {"a": {"job": "double", "payload": {"n": "${input.m}"}}}}}
    with pytest.raises(ConfigError) as info:
        Declaration.build(jobs, workflows=bad, import_handlers=False)
    assert info.value.key == "workflows.twice.steps.a.payload.n"
    assert info.value.reason == "step 'a': ${input.m}: workflow input $ has no field 'm' (fields: n)"


def test_schema_files_are_relative_to_jobs_yaml(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "in.json").write_text(
        '{"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}'
    )
    path = tmp_path / "jobs.yaml"
    path.write_text(
        BASE
        + "    input: schemas/in.json\n    output: schemas/missing.json\n"
        + "    steps:\n      say: {job: notify, payload: {text: '${input.text}'}}\n    returns: {}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_declaration(path, import_handlers=False)
    assert info.value.key == "workflows.w.output"
    assert info.value.reason.startswith("output schema file schemas/missing.json not found")


@pytest.mark.parametrize(
    ("workflows", "key", "message"),
    [
        ("workflows: []\n", "workflows", "expected a mapping of workflow names to workflows"),
        ("workflows:\n  w:\n", "workflows.w", "expected a mapping, got null"),
        ("workflows:\n  w: {input: {}, steps: {}}\n", "workflows.w.steps", "must not be empty"),
        (
            "workflows:\n  w: {input: 12, steps: {s: {job: a}}}\n",
            "workflows.w.input",
            "expected a schema file path or an inline schema mapping",
        ),
        ("workflows:\n  w: {input: {}, steps: {s: null}}\n", "workflows.w.steps.s", "expected a mapping, got null"),
        (
            "workflows:\n  w: {input: {}, steps: {s: {job: a, needs: s}}}\n",
            "workflows.w.steps.s.needs",
            "expected a list, got a string",
        ),
        (
            "workflows:\n  w: {input: {}, steps: {s: {job: 5}}}\n",
            "workflows.w.steps.s.job",
            "expected a string, got an integer",
        ),
        (
            "workflows:\n  9: {input: {}, steps: {s: {job: a}}}\n",
            "workflows.9",
            "invalid workflow name '9': start with a letter or _, then letters, digits, _ . : -",
        ),
        (
            "workflows:\n  w: {input: {}, steps: {s: {job: a, for_each: 3}}}\n",
            "workflows.w.steps.s.for_each",
            "step 's': for_each must be exactly one reference to an array, like \"${input.items}\"",
        ),
        (
            "workflows:\n  w: {input: {}, steps: {s: {job: a, if: {x: 1}}}}\n",
            "workflows.w.steps.s.if",
            "step 's': if must be true, false or one reference to a boolean, not {\"x\": 1}",
        ),
        (
            "workflows:\n  w: {input: {}, steps: {s: {job: a, payload: 5}}}\n",
            "workflows.w.steps.s.payload",
            "step 's': the value 5 cannot fill a payload $ (object): integer is not accepted",
        ),
        (
            "workflows:\n  w: {input: {type: nope}, steps: {s: {job: a}}}\n",
            "workflows.w.input",
            "inline input schema is not a valid JSON Schema: $.type: 'nope' is not valid under any of the given schemas",
        ),
    ],
)
def test_a_bad_shape_is_an_error_too(tmp_path: Path, workflows: str, key: str, message: str) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text("jobs:\n  a:\n    handler: m:f\n    payload: {type: object}\n" + workflows)
    with pytest.raises(ConfigError) as info:
        load_declaration(path, import_handlers=False)
    assert (info.value.key, info.value.reason) == (key, message)
    assert info.value.line in (5, 6)  # the `workflows:` line, or the line of the workflow


def test_refs_to_other_schema_files_are_followed(tmp_path: Path) -> None:
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    image = {"type": "object", "properties": {"url": {"type": "string"}}, "required": ["url"]}
    (schemas / "common.json").write_text(json.dumps({"$defs": {"image": image, "maybe": {"type": ["string", "null"]}}}))
    (schemas / "album.json").write_text(
        json.dumps(
            {
                "type": "object",
                "properties": {"images": {"type": "array", "items": {"$ref": "common.json#/$defs/image"}}},
                "required": ["images"],
            }
        )
    )
    (schemas / "resize.json").write_text(
        json.dumps(
            {
                "type": "object",
                "properties": {"url": {"$ref": "common.json#/$defs/image/properties/url"}, "alt": {"type": "string"}},
                "required": ["url"],
            }
        )
    )
    base = (
        "jobs:\n"
        "  fetch: {handler: m:f, payload: {type: object}, output: schemas/album.json}\n"
        "  resize: {handler: m:f, payload: schemas/resize.json}\n"
        "workflows:\n"
        "  w:\n"
        "    input: {type: object, properties: {alt: {$ref: 'schemas/common.json#/$defs/maybe'}}, required: [alt]}\n"
        "    steps:\n"
        "      fetch: {job: fetch}\n"
        "      resize: {job: resize, needs: [fetch], for_each: '${steps.fetch.output.images}', payload: PAYLOAD}\n"
    )
    path = tmp_path / "jobs.yaml"
    path.write_text(base.replace("PAYLOAD", "{url: '${item.url}'}"))
    assert load_declaration(path, import_handlers=False).workflows["w"].warnings == ()
    path.write_text(base.replace("PAYLOAD", "{url: '${item.url}', alt: '${input.alt}'}"))
    with pytest.raises(ConfigError) as info:
        load_declaration(path, import_handlers=False)
    assert info.value.reason == (
        "step 'resize': workflow input $.alt (string|null) cannot fill resize payload $.alt (string): null is not allowed"
    )


def test_a_queue_loaded_lazily_checks_a_workflow_when_it_is_first_used(tmp_path: Path) -> None:
    """``Queue.from_yaml`` defers the type check: a plain job is added, but starting the
    miswired workflow, or a worker starting, reports the error first."""
    from dqflow import Queue, Worker
    from dqflow.enums import JobStatus

    path, offset = declare(
        tmp_path,
        """
        steps:
          say: {job: notify, payload: {text: "${input.width}"}}
        """,
    )
    path.write_text(path.read_text().replace("handler: m:f", "handler: json:dumps"))  # a worker needs handlers
    with Queue.from_yaml(path, f"sqlite:///{tmp_path / 'q.db'}") as queue:
        assert queue.add("notify", {"text": "hi"}) > 0
        where = f"{path}:{offset + 2}: workflows.w.steps.say.payload.text: "
        with pytest.raises(ConfigError, match="^" + re.escape(where)):
            queue.start_workflow("w", {"albumId": "a", "publish": True, "width": 3, "maybe": None})
        with pytest.raises(ConfigError, match="^" + re.escape(where)):
            Worker(queue, job_types=["notify"], drain=True)
        assert queue.count_jobs() == {("notify", JobStatus.PENDING): 1}  # nothing was started
