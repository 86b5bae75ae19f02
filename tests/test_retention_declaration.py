"""``retention`` in ``defaults`` and per job type: merged key by key, refused with file, line and key when wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from dqflow.declaration import DeclarationError, load_declaration
from dqflow.declaration.model import Retention
from dqflow.errors import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "retention_decl_svc.py").write_text("def run(payload):\n    return None\n")
    path = tmp_path / "jobs.yaml"
    path.write_text(text)
    return path


def test_defaults_and_types_merge_key_by_key(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """\
defaults:
  retention: {completed: 7d, failed: 30d, events: 2d}
jobs:
  a: {handler: 'retention_decl_svc:run'}
  b: {handler: 'retention_decl_svc:run', retention: {completed: 1h, cancelled: 2d}}
  c: {handler: 'retention_decl_svc:run', retention: {completed: null}}
""",
    )
    declaration = load_declaration(path)
    types = declaration.job_types
    assert declaration.events_retention == 2 * 86400
    assert types["a"].retention == Retention(completed=7 * 86400, failed=30 * 86400)
    assert types["b"].retention == Retention(completed=3600, failed=30 * 86400, cancelled=2 * 86400)
    assert types["c"].retention == Retention(failed=30 * 86400)
    assert types["c"].retention.windows() == {"failed": 30 * 86400}


def test_bad_retention_is_refused_with_line_and_key(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """\
defaults:
  retention: {completed: soon}
jobs:
  a:
    handler: 'retention_decl_svc:run'
    retention: {pending: 1d, failed: 0s}
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_declaration(path)
    assert isinstance(caught.value, DeclarationError)
    found = {p.key: (p.line, p.reason) for p in caught.value.problems}
    assert found["defaults.retention.completed"][0] == 2
    assert found["jobs.a.retention.pending"][0] == 6
    assert "unknown key 'pending'" in found["jobs.a.retention.pending"][1]
    assert "completed, failed, cancelled" in found["jobs.a.retention.pending"][1]
    assert "greater than 0" in found["jobs.a.retention.failed"][1]


def test_events_retention_belongs_to_the_defaults(tmp_path: Path) -> None:
    path = _write(tmp_path, "jobs:\n  a:\n    handler: 'retention_decl_svc:run'\n    retention: {events: 1d}\n")
    with pytest.raises(ConfigError) as caught:
        load_declaration(path)
    assert (caught.value.line, caught.value.key) == (4, "jobs.a.retention.events")
    assert "set it under defaults.retention" in str(caught.value)
