"""``signals:`` in jobs.yaml: the JSON Schemas of wait-token data (docs/DURABLE.md), loaded like payload schemas."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from dqflow.declaration import Declaration, load_declaration
from dqflow.errors import ConfigError, PayloadValidationError


def _write(folder: Path, text: str) -> Path:
    path = folder / "jobs.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def test_signals_from_a_file_and_inline(tmp_path: Path) -> None:
    (tmp_path / "approval.json").write_text(json.dumps({"type": "object", "required": ["approved"]}))
    path = _write(
        tmp_path,
        """
        signals:
          approval: approval.json
          amount: {type: integer, minimum: 0}
        jobs:
          t: {handler: 'os:getcwd'}
        """,
    )
    declaration = load_declaration(path)
    assert set(declaration.signals) == {"approval", "amount"}
    declaration.signals["amount"].validate(3, PayloadValidationError)
    with pytest.raises(PayloadValidationError):
        declaration.signals["approval"].validate({}, PayloadValidationError)


@pytest.mark.parametrize(
    ("signals", "message"),
    [
        ("  approval: missing.json\n", "signal schema file missing.json not found"),
        ("  approval: {type: nonsense}\n", "not a valid JSON Schema"),
        ("  'bad name!': {type: object}\n", "signals"),
    ],
)
def test_a_bad_signal_names_its_key(tmp_path: Path, signals: str, message: str) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text("signals:\n" + signals + "jobs:\n  t: {handler: 'os:getcwd'}\n")
    with pytest.raises(ConfigError) as info:
        load_declaration(path)
    assert message in str(info.value) and "signals" in str(info.value)


def test_signals_in_code() -> None:
    declaration = Declaration.build({"t": {"handler": "os:getcwd"}}, signals={"ok": {"type": "boolean"}})
    assert list(declaration.signals) == ["ok"]
