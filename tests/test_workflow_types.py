"""The pieces under the workflow checker: the reference parser and JSON Schema compatibility."""

from __future__ import annotations

from typing import Any

import pytest

from dqflow.workflows.compat import fits, fits_value
from dqflow.workflows.producers import PathError, walk
from dqflow.workflows.references import (
    EACH,
    Constant,
    Interpolation,
    ListTemplate,
    MapTemplate,
    Ref,
    ReferenceSyntaxError,
    RefTemplate,
    format_path,
    parse_template,
    references,
)
from dqflow.workflows.schema_view import Node

# --------------------------------------------------------------------------- references


def test_parse_every_kind_of_reference() -> None:
    assert parse_template("${input}") == RefTemplate(Ref("input", None, (), "${input}"))
    assert parse_template("${item.a[2]}") == RefTemplate(Ref("item", None, ("a", 2), "${item.a[2]}"))
    assert parse_template("${steps.s1.output.x}") == RefTemplate(Ref("output", "s1", ("x",), "${steps.s1.output.x}"))
    text = '${steps.r.outputs[*]["a b"]}'
    assert parse_template(text) == RefTemplate(Ref("outputs", "r", (EACH, "a b"), text))


def test_parse_mappings_lists_and_interpolation() -> None:
    parsed = parse_template({"a": ["x", "${input.n}"], "b": "n=${input.n}!", "c": 1, "d": "$${input}"})
    n = Ref("input", None, ("n",), "${input.n}")
    assert parsed == MapTemplate(
        (
            ("a", ListTemplate((Constant("x"), RefTemplate(n)))),
            ("b", Interpolation(("n=", n, "!"), "n=${input.n}!")),
            ("c", Constant(1)),
            ("d", Constant("${input}")),
        )
    )
    assert [where for where, _ in references(parsed)] == [("a", 1), ("b",)]
    assert parse_template({"k": [1, {"x": "plain"}]}) == Constant({"k": [1, {"x": "plain"}]})


@pytest.mark.parametrize(
    ("text", "position", "reason"),
    [
        ("${}", 3, "expected input, item or steps (letters, digits, _)"),
        ("${input.}", 9, "expected a field name (letters, digits, _)"),
        ("${input", 8, "missing '}'"),
        ("${input x}", 8, "unexpected ' ': expected '.', '[' or '}'"),
        ("${steps}", 8, "expected '.' and a step name after 'steps'"),
        ("${steps.a.out}", 11, "expected 'output' or 'outputs', got 'out'"),
        ("${input[x]}", 9, 'expected an index, * or a "quoted key" inside [ ]'),
        ("${input[1}", 10, "expected ']' after the index"),
        ('${input["a}', 9, "unterminated quoted key"),
        ("ok ${env.HOME}", 6, "unknown root 'env': a reference starts with input, item or steps"),
    ],
)
def test_syntax_errors_say_where(text: str, position: int, reason: str) -> None:
    with pytest.raises(ReferenceSyntaxError) as info:
        parse_template({"k": [text]})
    assert (info.value.position, info.value.reason) == (position, reason)
    assert str(info.value) == f"invalid reference in {text!r} at position {position}: {reason}"
    assert info.value.path == ("k", 0)  # type: ignore[attr-defined]


def test_format_path() -> None:
    assert format_path(("a", EACH, 2, "b c")) == '$.a[*][2]["b c"]'


# --------------------------------------------------------------------------- compatibility


def check(producer: Any, consumer: Any) -> list[tuple[str, str]]:
    return [(f.level, f.reason) for f in fits(Node.of(producer), Node.of(consumer))]


STRING = {"type": "string"}
NULLABLE_STRING = {"type": ["string", "null"]}
CLOSED = {"additionalProperties": False}
NULL = "null is not allowed"


@pytest.mark.parametrize(
    ("producer", "consumer"),
    [
        (STRING, STRING),
        ({"type": "integer"}, {"type": "number"}),
        (STRING, {}),
        (NULLABLE_STRING, {"anyOf": [STRING, {"type": "null"}]}),
        (NULLABLE_STRING, {"oneOf": [STRING, {"type": "null"}]}),
        ({"anyOf": [STRING, {"type": "null"}]}, NULLABLE_STRING),
        ({"enum": ["a", "b"]}, {"enum": ["a", "b", "c"]}),
        ({"const": 3}, {"type": "integer", "minimum": 1}),
        ({"type": "string", "pattern": "^a"}, {"type": "string", "pattern": "^a"}),
        (
            {
                "type": "object",
                "properties": {"a": STRING, "b": STRING},
                "required": ["a"],
                "additionalProperties": False,
            },
            {"type": "object", "properties": {"a": STRING, "b": NULLABLE_STRING}, "required": ["a"]},
        ),
        ({"type": "array", "items": {"type": "integer"}}, {"type": "array", "items": {"type": "number"}}),
        (
            {"$defs": {"s": STRING}, "type": "array", "items": {"$ref": "#/$defs/s"}},
            {"type": "array", "items": STRING},
        ),
        (
            {"type": "object", "additionalProperties": STRING},
            {"type": "object", "additionalProperties": NULLABLE_STRING},
        ),
    ],
)
def test_links_that_fit(producer: Any, consumer: Any) -> None:
    assert check(producer, consumer) == []


@pytest.mark.parametrize(
    ("producer", "consumer", "finding"),
    [
        (NULLABLE_STRING, STRING, ("error", "null is not allowed")),
        ({"type": "number"}, {"type": "integer"}, ("error", "a number may have a fraction; an integer is required")),
        ({"type": "integer"}, {"enum": ["a"]}, ("error", "integer is not accepted")),
        (STRING, {"enum": ["a"]}, ("error", "any string may come, not only those values")),
        ({"enum": ["a", "z"]}, {"enum": ["a", "b"]}, ("error", "not one of those values")),
        ({"const": 0}, {"type": "integer", "minimum": 1}, ("error", "0 is less than the minimum of 1")),
        ({"type": "boolean"}, {"anyOf": [STRING, {"type": "null"}]}, ("error", "boolean fits no anyOf branch")),
        (
            {"type": "object", "properties": {"a": STRING}, "additionalProperties": False},
            {"type": "object", "properties": {"a": STRING}, "required": ["a"], "additionalProperties": False},
            ("error", "optional there, required here"),
        ),
        (
            {"type": "object", "properties": {"b": STRING}, "required": ["b"], "additionalProperties": False},
            {"type": "object", "properties": {"a": STRING}, "additionalProperties": False},
            ("error", "the key 'b' is not allowed (additionalProperties: false)"),
        ),
        (
            {"type": "object", "properties": {}, "additionalProperties": False},
            {"type": "object", "required": ["a"]},
            ("error", "absent there, required here"),
        ),
        (
            {"type": "array", "items": NULLABLE_STRING},
            {"type": "array", "items": STRING},
            ("error", "null is not allowed"),
        ),
        (STRING, {"type": "string", "format": "email"}, ("warning", 'format: "email" cannot be proven')),
        (
            STRING,
            {"allOf": [STRING, {"minLength": 1}]},
            ("warning", "the checker cannot read $: allOf with several branches"),
        ),
        ({"$ref": "#/nowhere"}, STRING, ("warning", "the checker cannot read $: $ref '#/nowhere' cannot be followed")),
        ({}, STRING, ("warning", "$ declares no type")),
        (
            {"type": "object", "properties": {"a": STRING}, "required": ["a"]},
            {"type": "object", "properties": {"a": STRING}, "additionalProperties": False},
            ("warning", "other keys may come (no additionalProperties: false there), none are allowed here"),
        ),
        (
            {"type": "integer"},
            {"oneOf": [{"type": "integer"}, {"type": "number"}]},
            ("warning", "cannot prove exactly one oneOf branch matches"),
        ),
    ],
)
def test_links_that_do_not_fit_or_cannot_be_proven(producer: Any, consumer: Any, finding: tuple[str, str]) -> None:
    assert check(producer, consumer) == [finding]


def test_findings_name_both_paths_and_types() -> None:
    producer = {"type": "object", "properties": {"x": {"type": "array", "items": NULLABLE_STRING}}, "required": ["x"]}
    consumer = {"type": "object", "properties": {"x": {"type": "array", "items": STRING}}, "required": ["x"]}
    (finding,) = fits(Node.of(producer), Node.of(consumer), "$.out", "$.in")
    assert (finding.producer_path, finding.producer_type, finding.consumer_path, finding.consumer_type) == (
        "$.out.x[*]",
        "string|null",
        "$.in.x[*]",
        "string",
    )


def test_literal_values_are_validated_exactly() -> None:
    consumer = Node.of({"$defs": {"w": {"type": "integer", "maximum": 10}}, "$ref": "#/$defs/w"})
    assert fits_value(10, consumer) == []
    assert [f.reason for f in fits_value(11, consumer)] == ["11 is greater than the maximum of 10"]
    assert [f.reason for f in fits_value("10", consumer)] == ["string is not accepted"]
    assert fits_value(True, Node.of({"enum": [1]}))[0].reason == "boolean is not accepted"
    assert fits_value("x", None) == []


TREE = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {"name": STRING, "left": {"$ref": "#/$defs/node"}, "right": {"$ref": "#/$defs/node"}},
            "required": ["name"],
            "additionalProperties": False,
        }
    },
    "$ref": "#/$defs/node",
}
SELF_UNION = {"$defs": {"t": {"anyOf": [STRING, {"$ref": "#/$defs/t"}]}}, "$ref": "#/$defs/t"}


def test_recursive_schemas_are_compared_without_end() -> None:
    assert check(TREE, TREE) == []
    loose = {**TREE, "$defs": {"node": {**TREE["$defs"]["node"], "properties": {"name": NULLABLE_STRING}}}}
    assert check(TREE, loose) == [
        ("error", "the key 'left' is not allowed (additionalProperties: false)"),
        ("error", "the key 'right' is not allowed (additionalProperties: false)"),
    ]
    assert check(STRING, SELF_UNION) == []
    assert check({"type": "integer"}, SELF_UNION) == [("warning", "cannot prove it fits one anyOf branch")]


def test_walking_a_path_through_the_producer() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": ["object", "null"], "properties": {"b": STRING}, "required": ["b"]},
            "list": {"type": "array", "items": {"type": "object", "properties": {"x": STRING}, "required": ["x"]}},
            "free": {"type": "object"},
            "pat": {"type": "object", "properties": {"k": STRING}, "patternProperties": {"^z": STRING}},
            "map": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
        "required": ["a", "list", "free", "pat", "map"],
    }
    node = Node.of(schema)
    through_null = walk(node, ("a", "b"))
    assert (through_null.path, through_null.may_be_absent) == ("$.a.b", True)
    mapped = walk(node, ("list", EACH, "x"))
    assert (mapped.path, mapped.may_be_absent, mapped.node and mapped.node.schema) == (
        "$.list[*].x",
        False,
        {"type": "array", "items": STRING},
    )
    assert walk(node, ("list", 0, "x")).may_be_absent
    assert walk(node, ("free", "anything")).unknown == "$.free declares no properties"
    assert walk(node, ("pat", "zed")).unknown == "$.pat has patternProperties"
    assert walk(node, ("map", "any")).may_be_absent
    with pytest.raises(PathError, match=r"\$.list is array, not an object"):
        walk(node, ("list", "x"))
    with pytest.raises(PathError, match=r"\$ has no field 'nope' \(fields: a, list, free, pat, map\)"):
        walk(node, ("nope",))
