"""jobs.yaml flow control: ``concurrency``, ``rate_limit``, ``group_concurrency``, ``dead_letter``.

Good settings compile; each bad one is refused at load with its file, line and key.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dqflow.declaration import load_declaration
from dqflow.declaration.flow import KeyTemplate
from dqflow.errors import ConfigError

PAYLOAD = """
    payload:
      type: object
      properties:
        customer: {type: string}
        region: {type: object, properties: {code: {type: integer}}, required: [code]}
        note: {type: string}
        tags: {type: array}
      required: [customer, region, tags]
"""


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "jobs.yaml"
    path.write_text(body)
    return path


def _job(extra: str, *, payload: str = PAYLOAD, head: str = "") -> str:
    return f"{head}jobs:\n  send:\n    handler: app:send\n{payload.strip(chr(10))}\n{extra}"


def _error(tmp_path: Path, body: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_declaration(_write(tmp_path, body), import_handlers=False)
    return info.value


def test_flow_settings_compile(tmp_path: Path) -> None:
    body = _job(
        '    concurrency: {limit: 2, key: "eu-${payload.region.code}/${payload.customer}"}\n'
        "    rate_limit: {limit: 100, per: 1m}\n"
        "    group_concurrency: 3\n"
        "  dlq:\n    handler: app:dlq\n",
        head="defaults:\n  dead_letter: dlq\n",
    )
    declaration = load_declaration(_write(tmp_path, body), import_handlers=False)
    send = declaration.job_types["send"]
    assert send.concurrency is not None and send.concurrency.limit == 2
    assert send.concurrency.key_of({"customer": "acme", "region": {"code": 7}}, "send") == "send:eu-7/acme"
    assert send.rate_limit is not None and send.rate_limit.window_ms == 60_000 and send.rate_limit.key is None
    assert send.rate_limit.key_of({}, "send") == "send"
    assert send.group_concurrency == 3
    assert send.dead_letter == "dlq"
    assert declaration.job_types["dlq"].dead_letter is None  # a default never names the type itself


@pytest.mark.parametrize(
    ("extra", "line", "key", "message"),
    [
        (
            '    concurrency: {limit: 2, key: "${payload.missing}"}\n',
            12,
            "jobs.send.concurrency.key",
            "payload.missing cannot exist: $ has no field 'missing'",
        ),
        (
            '    concurrency: {limit: 2, key: "${payload.region}"}\n',
            12,
            "jobs.send.concurrency.key",
            "payload.region is object, not a string, number or boolean",
        ),
        (
            '    rate_limit: {limit: 5, per: 1s, key: "${payload.note}"}\n',
            12,
            "jobs.send.rate_limit.key",
            "payload.note may be absent; make it required",
        ),
        (
            '    concurrency: {limit: 2, key: "${payload.tags}"}\n',
            12,
            "jobs.send.concurrency.key",
            "not a string, number or boolean",
        ),
        (
            '    concurrency: {limit: 2, key: "${input.customer}"}\n',
            12,
            "jobs.send.concurrency.key",
            "is not a payload field reference",
        ),
        ("    concurrency: {limit: 0}\n", 12, "jobs.send.concurrency.limit", "greater than or equal to 1"),
        ("    rate_limit: {limit: 5}\n", 12, "jobs.send.rate_limit.per", "required"),
        ("    concurrency: {limit: 2, keys: x}\n", 12, "jobs.send.concurrency.keys", ""),
    ],
)
def test_bad_flow_settings_name_file_line_and_key(
    tmp_path: Path, extra: str, line: int, key: str, message: str
) -> None:
    error = _error(tmp_path, _job(extra))
    assert error.line == line and error.key == key, str(error)
    assert message in str(error)


def test_a_key_needs_a_payload_schema(tmp_path: Path) -> None:
    body = 'jobs:\n  send:\n    handler: app:send\n    concurrency: {limit: 1, key: "${payload.a}"}\n'
    error = _error(tmp_path, body)
    assert "declares no payload schema" in str(error) and error.line == 4


def test_a_dead_letter_type_must_accept_the_envelope(tmp_path: Path) -> None:
    body = _job(
        "    dead_letter: dlq\n"
        "  dlq:\n    handler: app:dlq\n"
        "    payload: {type: object, properties: {original_id: {type: string}}}\n"
    )
    error = _error(tmp_path, body)
    assert error.key == "jobs.send.dead_letter" and error.line == 12
    assert "cannot take the dead-letter envelope" in str(error) and "$.original_id" in str(error)


def test_a_dead_letter_type_that_requires_other_fields_is_refused(tmp_path: Path) -> None:
    body = _job(
        "  dlq:\n    handler: app:dlq\n    payload: {type: object, required: [ticket]}\n",
        head="defaults:\n  dead_letter: dlq\n",
    )
    error = _error(tmp_path, body)
    assert error.key == "defaults.dead_letter" and "required here at $.ticket" in str(error)


def test_a_dead_letter_type_may_declare_the_envelope_schema_itself(tmp_path: Path) -> None:
    envelope = Path(__file__).parent.parent / "dqflow" / "schemas" / "dead_letter.json"
    body = _job(f"    dead_letter: dlq\n  dlq:\n    handler: app:dlq\n    payload: {envelope}\n")
    declaration = load_declaration(_write(tmp_path, body), import_handlers=False)
    assert declaration.job_types["send"].dead_letter == "dlq"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("jobs:\n  a:\n    handler: app:a\n    dead_letter: a\n", "a -> a"),
        (
            "jobs:\n  a:\n    handler: app:a\n    dead_letter: b\n  b:\n    handler: app:b\n    dead_letter: a\n",
            "a -> b -> a",
        ),
        ("jobs:\n  a:\n    handler: app:a\n    dead_letter: nope\n", "'nope', which is not declared"),
    ],
)
def test_dead_letter_loops_and_unknown_types_are_refused(tmp_path: Path, body: str, message: str) -> None:
    error = _error(tmp_path, body)
    assert message in str(error) and error.line == 4


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("${payload.a}", (("a",),)),
        ("x-${ payload.a.b }-y", ("x-", ("a", "b"), "-y")),
        ("fixed", ("fixed",)),
    ],
)
def test_key_templates_parse(text: str, parts: tuple[object, ...]) -> None:
    assert KeyTemplate.parse(text).parts == parts


@pytest.mark.parametrize("text", ["${payload}", "${payload.a[0]}", "${payload.a", "${steps.x.output}"])
def test_bad_key_templates_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="key"):
        KeyTemplate.parse(text)
