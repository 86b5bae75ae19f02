"""``dqflow check`` compares a handler's pydantic payload model with the declared payload schema."""

from __future__ import annotations

import json
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_support import Result

HANDLERS = """
from pydantic import BaseModel


class Strict(BaseModel):
    title: str
    seats: int


class Loose(BaseModel):
    title: str
    seats: int | None = None


class Shouting(BaseModel):
    title: str
    code: str


def book_strict(payload: Strict) -> None:
    return None


def book_loose(payload: Loose) -> None:
    return None


def book_untyped(payload: Shouting) -> None:
    return None
"""

SCHEMA = """{{type: object, properties: {{title: {{type: string}}, seats: {seats}}}, required: {required}}}"""


def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: str) -> Path:
    module = f"booking_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(HANDLERS)
    (tmp_path / "jobs.yaml").write_text("jobs:\n" + textwrap.indent(jobs.replace("MOD", module), "  "))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DQFLOW_CONFIG", raising=False)
    return tmp_path


def test_a_model_that_fits_the_schema_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dq: Callable[..., Result]
) -> None:
    payload = SCHEMA.format(seats="{type: integer}", required="[title, seats]")
    project(tmp_path, monkeypatch, f"strict:\n  handler: MOD:book_strict\n  payload: {payload}\n")
    result = dq("check", "--json")
    assert result.code == 0, result.err
    assert result.json()["warnings"] == []


def test_fields_the_model_cannot_take_are_reported_with_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dq: Callable[..., Result]
) -> None:
    payload = SCHEMA.format(seats="{type: [integer, 'null']}", required="[title]")
    project(tmp_path, monkeypatch, f"strict:\n  handler: MOD:book_strict\n  payload: {payload}\n")
    result = dq("check")
    assert result.code == 1
    lines = result.err.strip().splitlines()
    assert len(lines) == 2, result.err  # seats may be null, and may be missing: two findings
    for line in lines:
        assert line.startswith("error: jobs.yaml:4: jobs.strict.payload: handler booking_")
        assert ":book_strict (booking_" in line and ".py:20) takes booking_" in line and ":Strict" in line
    assert any("$.seats" in line and "null" in line for line in lines), result.err
    assert any("required" in line for line in lines), result.err
    as_json = dq("check", "--json").json()
    assert as_json["ok"] is False and [p["line"] for p in as_json["problems"]] == [4, 4]


def test_a_looser_model_passes_and_a_model_without_a_schema_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dq: Callable[..., Result]
) -> None:
    payload = SCHEMA.format(seats="{type: integer}", required="[title]")
    jobs = f"loose:\n  handler: MOD:book_loose\n  payload: {payload}\nfree:\n  handler: MOD:book_untyped\n"
    project(tmp_path, monkeypatch, jobs)
    result = dq("check", "--json")
    assert result.code == 0, result.err
    [warning] = result.json()["warnings"]
    assert warning["line"] == 5 and warning["key"] == "jobs.free"
    assert "no payload schema is declared" in warning["message"] and ":Shouting`" in warning["message"]
    text = dq("check")
    assert "warning: jobs.yaml:5: jobs.free: handler " in text.out


def test_the_example_project_checks_clean(dq: Callable[..., Result], monkeypatch: pytest.MonkeyPatch) -> None:
    repo = Path(__file__).resolve().parent.parent
    monkeypatch.chdir(repo)
    result = dq("check", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["warnings"] == []  # send_welcome_email's WelcomeEmail fits its schema
