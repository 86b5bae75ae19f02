"""One meaning of valid: the fast path (fastjsonschema) and the full validator (jsonschema) agree.

Hypothesis generates schemas from the keywords both paths implement and JSON
values to try them on; every value gets the same verdict from both. Formats,
exact ``multipleOf`` and the declared draft are checked on both paths too.
The schemas themselves get one verdict as well: the quick metaschema check
(``dqflow.declaration.metaschema``, no jsonschema loaded) and jsonschema's agree.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dqflow.declaration import SchemaValidator, load_declaration
from dqflow.declaration.metaschema import KNOWN_DIALECTS, dialect_of, surely_valid
from dqflow.declaration.schemas import DRAFTS, InvalidSchemaError
from dqflow.errors import ConfigError

# --------------------------------------------------------------------------- generated agreement

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
    | st.sampled_from(["", "a", "ab", "abc", "2024-01-31", "2024-01-31T10:00:00Z", "x@y.z", "::1", "1.2.3.4"])
    | st.sampled_from(["https://x.test/a", "not a uri", "12345678-1234-5678-1234-567812345678", "héllo"])
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3),
    max_leaves=8,
)
TYPES = st.sampled_from(["null", "boolean", "integer", "number", "string", "array", "object"])
FORMATS = st.sampled_from(["uri", "email", "date-time", "date", "uuid", "ipv4", "ipv6", "regex"])


def leaf_schemas() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.fixed_dictionaries({"type": TYPES | st.lists(TYPES, min_size=1, max_size=3, unique=True)}),
        st.fixed_dictionaries({"minimum": st.integers(-5, 5)}),
        st.fixed_dictionaries({"maximum": st.integers(-5, 5), "exclusiveMaximum": st.integers(-5, 5)}),
        st.fixed_dictionaries({"minLength": st.integers(0, 3), "maxLength": st.integers(0, 4)}),
        st.fixed_dictionaries({"pattern": st.sampled_from(["^a", "b$", "[0-9]", "^$"])}),
        st.fixed_dictionaries({"format": FORMATS}),
        st.fixed_dictionaries({"enum": st.lists(JSON_SCALARS, min_size=1, max_size=3)}),
        st.fixed_dictionaries({"const": JSON_VALUES}),
        st.fixed_dictionaries({"minItems": st.integers(0, 3), "uniqueItems": st.booleans()}),
        st.fixed_dictionaries({"required": st.lists(st.sampled_from(["a", "b"]), max_size=2, unique=True)}),
        st.fixed_dictionaries({"minProperties": st.integers(0, 2), "maxProperties": st.integers(0, 3)}),
        st.fixed_dictionaries({"default": JSON_SCALARS}),  # an annotation: the fast path must not fill it in
    )


SCHEMAS = st.recursive(
    leaf_schemas(),
    lambda inner: st.one_of(
        st.fixed_dictionaries({"properties": st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2)}),
        st.fixed_dictionaries({"additionalProperties": inner}),
        st.fixed_dictionaries({"items": inner}),
        st.fixed_dictionaries({"contains": inner}),
        st.fixed_dictionaries({"anyOf": st.lists(inner, min_size=1, max_size=3)}),
        st.fixed_dictionaries({"allOf": st.lists(inner, min_size=1, max_size=3)}),
        st.fixed_dictionaries({"oneOf": st.lists(inner, min_size=1, max_size=3)}),
        st.fixed_dictionaries({"not": inner}),
        st.fixed_dictionaries({"if": inner, "then": inner, "else": inner}),
        st.builds(lambda a, b: {**a, **b}, inner, inner),
    ),
    max_leaves=5,
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=SCHEMAS, values=st.lists(JSON_VALUES, min_size=1, max_size=6))
@example(schema={"allOf": [{"properties": {"a": {"default": 1}}}, {"required": ["a"]}]}, values=[{}])
def test_fast_and_full_validators_give_one_verdict(schema: dict[str, Any], values: list[Any]) -> None:
    validator = SchemaValidator(schema)
    fast = validator._fast_validator()  # as is_valid (and so add) uses it
    full = validator._full_validator()
    if fast is None:
        return
    for value in values:
        before = json.dumps(value)
        try:
            fast(value)
            fast_ok = True
        except Exception:
            fast_ok = False
        assert json.dumps(value) == before, (schema, value)  # the value is looked at, never changed
        assert fast_ok == full.is_valid(value), (schema, value)


# --------------------------------------------------------------------------- formats, multipleOf, drafts

REF_WRAPPED = {"$defs": {}, "allOf": [{"$ref": "#/$defs/x"}]}


def both_paths(schema: dict[str, Any]) -> list[SchemaValidator]:
    """The schema as it is (fast path) and behind a $ref (full validator only)."""
    fast = SchemaValidator(schema)
    assert fast._fast_validator() is not None or "multipleOf" in str(schema)
    slow = SchemaValidator({"$defs": {"x": schema}, "$ref": "#/$defs/x"})
    assert slow._fast_validator() is None
    return [fast, slow]


@pytest.mark.parametrize(
    ("fmt", "good", "bad"),
    [
        ("uri", "https://example.test/r/1", "not a uri"),
        ("email", "someone@example.test", "nope"),
        ("date-time", "2024-01-31T10:00:00Z", "yesterday-ish"),
        ("date", "2024-01-31", "2024-13-01"),
        ("uuid", "12345678-1234-5678-1234-567812345678", "1234"),
        ("ipv4", "192.0.2.1", "192.0.2"),
        ("ipv6", "2001:db8::1", "2001:db8::g"),
    ],
)
def test_formats_are_enforced_on_every_path(fmt: str, good: str, bad: str) -> None:
    for validator in both_paths({"type": "object", "properties": {"v": {"type": "string", "format": fmt}}}):
        assert validator.errors({"v": good}) == []
        assert validator.errors({"v": bad}) == [f"$.v: {bad!r} is not a {fmt!r}"]


def test_multiple_of_is_exact_on_every_path() -> None:
    for schema in ({"multipleOf": 0.01}, {"type": "number", "multipleOf": 0.01}):
        for validator in both_paths(schema):
            assert [validator.is_valid(v) for v in (0.07, 19.99, 0.1, 7, 0)] == [True] * 5
            assert validator.errors(0.071) == ["$: 0.071 is not a multiple of 0.01"]
    by_three = SchemaValidator({"multipleOf": 3})
    assert not by_three.is_valid(1e17)  # 10**17 is not a multiple of 3, though 1e17 / 3 is a whole float
    assert by_three.is_valid(3e17) and by_three.is_valid(9)


def test_draft_04_exclusive_minimum_is_read_as_draft_04() -> None:
    schema = {"$schema": "http://json-schema.org/draft-04/schema#", "minimum": 10, "exclusiveMinimum": True}
    for validator in (
        SchemaValidator(schema),
        SchemaValidator({**schema, "not": {"$ref": "#/definitions/n"}, "definitions": {"n": {"type": "null"}}}),
    ):
        assert not validator.is_valid(10) and validator.is_valid(10.5)
    assert not SchemaValidator({"minimum": 10, "exclusiveMinimum": True}, draft="draft-04").is_valid(10)


def test_the_declaration_names_the_draft(tmp_path: Path) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text(
        textwrap.dedent(
            """
            schema_draft: draft-04
            jobs:
              t:
                handler: json:dumps
                payload: {minimum: 10, exclusiveMinimum: true}
            """
        )
    )
    schema = load_declaration(path).job_types["t"].payload_schema
    assert schema is not None and not schema.is_valid(10) and schema.is_valid(11)
    path.write_text("schema_draft: draft-5\njobs:\n  t: {handler: json:dumps}\n")
    with pytest.raises(ConfigError) as info:
        load_declaration(path)
    assert (info.value.line, info.value.key) == (1, "schema_draft")


def test_errors_name_only_the_wrong_field() -> None:
    validator = SchemaValidator(
        {
            "type": "object",
            "properties": {"price": {"type": "number", "multipleOf": 0.01}, "url": {"format": "uri"}},
            "required": ["price"],
        }
    )
    assert validator.errors({"price": 19.99, "url": "https://x.test"}) == []
    assert validator.errors({"price": 19.991, "url": "https://x.test"}) == ["$.price: 19.991 is not a multiple of 0.01"]


# --------------------------------------------------------------------------- the schema's own check

ODD_VALUES = st.sampled_from([None, True, False, 0, -1, 1, 1.0, 2.5, -0.5, float("nan"), float("inf"), "", "a", [], {}])
REGEXES = st.sampled_from(["^a", "b$", "[", "(?P<x>a)", "a{2,1}", "\\d+", "(?i)x"])
NAMES = st.sampled_from(["a", "b", "format", "type"])
ENUM_ITEMS = st.lists(st.sampled_from([1, 1.0, True, False, 0, "a", "b", None, [1], {"a": 1}]), max_size=3)


def keyword_values(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """One keyword with a value its metaschema may accept or refuse (and a few keywords left to jsonschema)."""
    count = st.integers(-1, 3) | ODD_VALUES
    number = st.integers(-3, 3) | ODD_VALUES
    subschema = inner | ODD_VALUES
    return st.one_of(
        st.dictionaries(
            st.sampled_from(["title", "description", "$comment", "format"]), st.text(max_size=2), min_size=1, max_size=2
        ),
        st.dictionaries(st.sampled_from(["title", "format", "contentEncoding"]), ODD_VALUES, min_size=1, max_size=1),
        st.fixed_dictionaries({"default": ODD_VALUES, "const": ODD_VALUES, "examples": ODD_VALUES | ENUM_ITEMS}),
        st.dictionaries(
            st.sampled_from(["readOnly", "writeOnly", "deprecated", "uniqueItems"]), ODD_VALUES, max_size=2
        ),
        st.fixed_dictionaries({"type": TYPES | st.lists(TYPES | ODD_VALUES, max_size=3) | ODD_VALUES}),
        st.fixed_dictionaries({"enum": ENUM_ITEMS | ODD_VALUES}),
        st.dictionaries(st.sampled_from(["multipleOf", "minimum", "maximum"]), number, min_size=1, max_size=2),
        st.dictionaries(
            st.sampled_from(["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"]), number, max_size=3
        ),
        st.dictionaries(st.sampled_from(["minLength", "maxItems", "minProperties", "maxLength"]), count, max_size=2),
        st.fixed_dictionaries({"pattern": REGEXES | ODD_VALUES}),
        st.fixed_dictionaries({"required": st.lists(NAMES | ODD_VALUES, max_size=3) | ODD_VALUES}),
        st.fixed_dictionaries({"properties": st.dictionaries(NAMES, subschema, max_size=2) | ODD_VALUES}),
        st.fixed_dictionaries({"patternProperties": st.dictionaries(REGEXES, subschema, max_size=2)}),
        st.dictionaries(
            st.sampled_from(["additionalProperties", "items", "contains", "propertyNames", "not", "if", "then"]),
            subschema,
            min_size=1,
            max_size=2,
        ),
        st.dictionaries(
            st.sampled_from(["allOf", "anyOf", "oneOf"]), st.lists(subschema, max_size=2) | ODD_VALUES, max_size=1
        ),
        st.fixed_dictionaries({"items": st.lists(inner, max_size=2)}),  # the array form: jsonschema's call
        st.dictionaries(
            st.sampled_from(["$id", "$anchor", "$schema", "unknownKeyword"]), st.just("x"), min_size=1, max_size=1
        ),
    )


ANY_SCHEMAS = st.recursive(
    st.builds(dict) | st.booleans(),
    lambda inner: st.builds(
        lambda parts: {k: v for part in parts for k, v in part.items()},
        st.lists(keyword_values(inner), min_size=1, max_size=3),
    ),
    max_leaves=6,
)
DIALECTS = st.sampled_from([*KNOWN_DIALECTS, *(uri.rstrip("#") for uri in KNOWN_DIALECTS), "https://x.test/s"])


def refusal(check: Callable[[], None]) -> str | None:
    """The message a schema check gives, None when it passes."""
    try:
        check()
    except InvalidSchemaError as exc:
        return str(exc)
    return None


# Where the drafts' metaschemas differ, or a value is one step from valid.
EDGES = [
    {"required": []},
    {"enum": []},
    {"enum": [1, 1.0]},
    {"enum": [1, True, "1"]},
    {"exclusiveMinimum": True},
    {"exclusiveMaximum": False, "maximum": 3},
    {"exclusiveMinimum": 2},
    {"minLength": 1.0},
    {"maxItems": True},
    {"items": True},
    {"not": False},
    {"additionalProperties": False},
    {"properties": {"a": True}},
    {"type": []},
    {"type": ["string", "string"]},
    {"pattern": "["},
    {"patternProperties": {"[": {}}},
    {"multipleOf": 0},
    {"const": 1, "examples": [1]},
    True,
]


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=ANY_SCHEMAS, draft=st.sampled_from(list(DRAFTS)), dialect=st.none() | DIALECTS)
def test_the_quick_metaschema_check_agrees_with_jsonschema(schema: Any, draft: str, dialect: str | None) -> None:
    """Without jsonschema, a schema is accepted only when jsonschema's metaschema check accepts it;
    any other schema gets jsonschema's own verdict and message."""
    assert_one_verdict(schema, draft, dialect)


@pytest.mark.parametrize("draft", list(DRAFTS))
@pytest.mark.parametrize("schema", EDGES, ids=str)
def test_the_quick_metaschema_check_agrees_on_the_edges(schema: Any, draft: str) -> None:
    assert_one_verdict(schema, draft, None)


def assert_one_verdict(schema: Any, draft: str, dialect: str | None) -> None:
    """The quick check and jsonschema's give ``schema`` (read as ``draft``, or ``dialect`` when given) one verdict."""
    if dialect is not None and isinstance(schema, dict):
        schema = {"$schema": dialect, **schema}
    full = refusal(SchemaValidator(schema, draft=draft, lazy=True)._check_with_jsonschema)
    assert refusal(SchemaValidator(schema, draft=draft, lazy=True).check) == full, schema
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    for known in KNOWN_DIALECTS:  # whatever dialect it is asked about, True is jsonschema's verdict too
        if surely_valid(schema, known):
            try:
                validator_for({"$schema": known}).check_schema(schema)
            except SchemaError as exc:
                raise AssertionError((known, schema)) from exc


def test_the_quick_check_knows_the_example_schemas_and_every_draft() -> None:
    """The example project's schemas without $ref pass without jsonschema; each known dialect is
    read as jsonschema reads it."""
    from jsonschema.validators import validator_for

    assert set(KNOWN_DIALECTS) == set(DRAFTS.values())
    for uri in KNOWN_DIALECTS:
        cls = validator_for({"$schema": uri})
        assert cls.META_SCHEMA.get("$schema") == uri == dialect_of({"$schema": uri.rstrip("#")}, "")
    files = sorted((Path(__file__).resolve().parent.parent / "schemas").glob("*.json"))
    plain = [json.loads(path.read_text()) for path in files if "$ref" not in path.read_text()]
    assert len(plain) >= 10
    assert all(surely_valid(schema, dialect_of(schema, DRAFTS["2020-12"]) or "") for schema in plain)


def test_a_property_named_id_is_not_an_id() -> None:
    """``_check_refs`` walks every mapping, property maps too: a property called ``id`` (draft 4)
    or ``$id`` beside a ``$ref`` is a property, not the schema's identifier."""
    draft4 = {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "properties": {"id": {"type": "string"}, "r": {"$ref": "#/definitions/n"}},
        "definitions": {"n": {"type": "integer"}},
    }
    later = {"properties": {"$id": {"type": "string"}, "r": {"$ref": "#/$defs/n"}}, "$defs": {"n": {"type": "integer"}}}
    for schema in (draft4, later):
        assert SchemaValidator(schema).errors({"id": "x", "$id": "y", "r": "z"}) == [
            "$.r: 'z' is not of type 'integer'"
        ]
