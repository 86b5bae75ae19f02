"""The worker's logs under ``dqflow run``: bounded, written off the event loop, text or JSON lines."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from cli_support import dqflow_process

HUGE_ERROR_HANDLER = """
def huge(payload):
    raise ValueError("cannot parse " + "x" * payload["size"])
"""

JOBS_YAML = """
backend: sqlite:///.dqflow/queue.db
defaults: {max_attempts: 2, retry: {delay: 0s}}
jobs:
  huge:
    handler: huge_error_handler:huge
    payload: {type: object}
"""


@pytest.fixture
def huge_project(tmp_path: Path) -> Path:
    (tmp_path / "huge_error_handler.py").write_text(HUGE_ERROR_HANDLER)
    (tmp_path / "jobs.yaml").write_text(JOBS_YAML)
    return tmp_path


def test_a_200kb_error_message_is_logged_cut_and_quickly(huge_project: Path) -> None:
    added = dqflow_process("add", "huge", "-p", '{"size": 200000}', cwd=huge_project)
    assert added.code == 0, added.err
    started = time.monotonic()
    result = dqflow_process("run", "--drain", cwd=huge_project, timeout=60)
    elapsed = time.monotonic() - started
    assert result.code == 0, result.err
    assert "2 failed attempts" in result.out
    assert elapsed < 15, elapsed  # rich wrapping the whole line took minutes
    failures = [
        line
        for line in result.err.splitlines()
        if "failed, will retry: handler_error" in line or "failed for good: handler_error" in line
    ]
    assert len(failures) == 2, result.err[:2000]
    for line in failures:
        assert "cannot parse xxx" in line and "more characters)" in line
        assert len(line) < 2500


def test_log_format_json_writes_one_object_per_line(huge_project: Path) -> None:
    dqflow_process("add", "huge", "-p", '{"size": 10}', cwd=huge_project)
    result = dqflow_process("run", "--drain", "--log-format", "json", cwd=huge_project)
    assert result.code == 0, result.err
    records = [json.loads(line) for line in result.err.splitlines()]
    assert records and all(set(r) >= {"time", "level", "logger", "message"} for r in records)
    assert any(r["level"] == "warning" and "will retry: handler_error" in r["message"] for r in records)
    assert any(r["level"] == "error" and "failed for good: handler_error" in r["message"] for r in records)
    assert records[0]["logger"] == "dqflow.worker" and records[0]["time"].endswith("+00:00")


def test_log_format_must_be_text_or_json(huge_project: Path) -> None:
    result = dqflow_process("run", "--drain", "--log-format", "xml", cwd=huge_project)
    assert result.code == 2 and "--log-format" in result.err
