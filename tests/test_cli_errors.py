"""Errors the CLI reports: option values that do not parse are usage errors (exit 2, naming the
option); a backend that cannot be reached says why at once (exit 1)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from cli_support import Result, one_line_error

HUGE = "99999999999999999999999"


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--timeout", "nan"], "--timeout"),
        (["--timeout", "inf"], "--timeout"),
        (["--timeout", "1e300"], "--timeout"),
        (["--timeout", "99999999999999999999d"], "--timeout"),
        (["--delay", "inf"], "--delay"),
        (["--delay", "1e12"], "--delay"),
        (["--priority", HUGE], "--priority"),
        (["--priority", str(2**31)], "--priority"),
        (["--max-attempts", "3000000000"], "--max-attempts"),
    ],
)
def test_add_values_out_of_range_are_usage_errors(
    project: Path, dq: Callable[..., Result], args: list[str], option: str
) -> None:
    line = one_line_error(dq("add", "ok", "-p", '{"n": 1}', *args), code=2)
    assert option in line and "unexpected" not in line
    assert dq("list", "--json").json()["jobs"] == []


def test_deeply_nested_payload_is_a_usage_error(project: Path, dq: Callable[..., Result]) -> None:
    deep = "[" * 5000 + "]" * 5000
    (project / "deep.json").write_text(deep)
    for value in (deep, "@deep.json"):
        line = one_line_error(dq("add", "boom", "-p", value), code=2)
        assert "--payload" in line and "nested too deeply" in line
    line = one_line_error(dq("edit", "1", "-p", deep), code=2)
    assert "nested too deeply" in line


def test_huge_ids_and_cursors_are_usage_errors_on_every_backend(
    project: Path, dq: Callable[..., Result], backend: str
) -> None:
    for args in (
        ["show", HUGE],
        ["events", HUGE],
        ["cancel", HUGE],
        ["retry", HUGE],
        ["edit", HUGE, "--priority", "1"],
        ["list", "--cursor", HUGE],
    ):
        line = one_line_error(dq(*args, "--backend", backend), code=2)
        assert "unexpected" not in line and ("'ID'" in line or "'--cursor'" in line), line
    largest = str(2**63 - 1)
    assert one_line_error(dq("show", largest, "--backend", backend)) == f"error: no job with id {largest}"
    assert dq("list", "--cursor", largest, "--backend", backend, "--json").json()["jobs"] == []


def test_deep_payload_that_was_accepted_prints_as_json(project: Path, dq: Callable[..., Result]) -> None:
    from dqflow.bounds import MAX_JSON_DEPTH

    value: object = True
    for _ in range(MAX_JSON_DEPTH):  # as deep as a payload may be
        value = {"a": value}
    added = dq("add", "boom", "-p", json.dumps(value))
    assert added.code == 0, added.err
    job_id = added.out.strip()
    assert dq("show", job_id, "--json").json()["payload"] == value
    assert dq("list", "--json").json()["jobs"][0]["payload"] == value


@pytest.mark.parametrize(
    ("change", "cause"),
    [
        ({"path": "/dqflow_no_such_database"}, 'database "dqflow_no_such_database" does not exist'),
        ({"user": "dqflow_no_such_user"}, 'role "dqflow_no_such_user" does not exist'),
        ({"port": 1}, "Connection refused"),
        ({"query": "sslmode=bogus"}, 'invalid sslmode value: "bogus"'),
    ],
)
def test_postgres_connection_errors_say_their_cause_at_once(
    project: Path, dq: Callable[..., Result], change: dict[str, Any], cause: str
) -> None:
    from backends import pg_test_database

    parts = urlsplit(pg_test_database())
    user = change.get("user", parts.username)
    port = change.get("port", parts.port or 5432)
    netloc = f"{user}@{parts.hostname}:{port}"
    url = urlunsplit(("postgresql", netloc, change.get("path", parts.path), change.get("query", ""), ""))
    for args in (["list"], ["add", "ok", "-p", '{"n": 1}'], ["migrate", "--status"]):
        started = time.monotonic()
        line = one_line_error(dq(*args, "--backend", url))
        elapsed = time.monotonic() - started
        assert f"cannot connect to PostgreSQL at {url}" in line and cause in line, line
        assert "did not answer" not in line
        assert elapsed < 3, (args, elapsed)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://me:s3cret@127.0.0.1:1/db", "postgresql://me:***@127.0.0.1:1/db"),
        ("postgresql://127.0.0.1:1/db?user=me&password=s3cret", "postgresql://127.0.0.1:1/db?user=me&password=***"),
        ("redis://:s3cret@127.0.0.1:1/0", "redis://:***@127.0.0.1:1/0"),
        ("redis://me:s3cret@127.0.0.1:1/0?prefix=x", "redis://me:***@127.0.0.1:1/0?prefix=x"),
    ],
)
def test_backend_passwords_are_never_shown(project: Path, dq: Callable[..., Result], url: str, shown: str) -> None:
    checked = dq("check", "--json", "--backend", url)
    assert checked.json()["backend"] == shown
    line = one_line_error(dq("list", "--backend", url))
    assert "s3cret" not in line and shown in line, line
    assert "s3cret" not in dq("migrate", "--json", "--backend", url).out + checked.out
