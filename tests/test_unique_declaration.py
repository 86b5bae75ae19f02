"""``unique:`` of a job type: refused with file, line and key when wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from dqflow.declaration import DeclarationError, load_declaration
from dqflow.errors import ConfigError


def test_bad_unique_declarations_are_located(tmp_path: Path) -> None:
    (tmp_path / "unique_decl_svc.py").write_text("def run(payload):\n    return None\n")
    path = tmp_path / "jobs.yaml"
    path.write_text(
        """\
jobs:
  a:
    handler: 'unique_decl_svc:run'
    payload: {type: object, properties: {customer: {type: object, properties: {id: {type: integer}}}}}
    unique: {key: "${payload.customer.idd}"}
  b:
    handler: 'unique_decl_svc:run'
    unique: {key: "${input.x}", for: 0s}
  c:
    handler: 'unique_decl_svc:run'
    unique: {while: [pending, done]}
"""
    )
    with pytest.raises(ConfigError) as caught:
        load_declaration(path)
    assert isinstance(caught.value, DeclarationError)
    found = {(p.line, p.key): p.reason for p in caught.value.problems}
    assert "payload.customer.idd is not in the payload schema (declared: id)" in found[(5, "jobs.a.unique.key")]
    assert "is not a payload path" in found[(8, "jobs.b.unique")]
    assert "unknown state" in found[(11, "jobs.c.unique")]
