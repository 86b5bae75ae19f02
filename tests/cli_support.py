"""What the CLI tests share: a project folder, the in-process ``dq`` runner, real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dqflow.cli import run as cli_run

REPO = Path(__file__).resolve().parent.parent

HANDLERS = '''
"""Handlers for the CLI tests."""


def ok(payload, ctx):
    return {"n": payload["n"], "ok": True}


def steps(payload, ctx):
    for i in range(payload["steps"]):
        ctx.set_progress(round((i + 1) / payload["steps"] * 100))
        ctx.set_output({"done": i + 1})


def boom(payload):
    raise RuntimeError("boom: " + payload.get("why", "no reason"))
'''

JOBS_YAML = """
backend: sqlite:///.dqflow/queue.db
defaults: {{max_attempts: 1, timeout: 30s, retry: {{delay: 100ms}}}}
worker: {{poll_interval: 100ms}}
jobs:
  ok:
    handler: {module}:ok
    payload: schemas/ok.payload.json
    output: schemas/ok.output.json
    tags: [fast]
  steps:
    handler: {module}:steps
    payload:
      type: object
      properties: {{steps: {{type: integer, minimum: 1}}}}
      required: [steps]
    output: {{type: object, required: [done]}}
  boom:
    handler: {module}:boom
    payload: {{type: object}}
"""

OK_PAYLOAD = {
    "type": "object",
    "properties": {"n": {"type": "integer"}},
    "required": ["n"],
    "additionalProperties": False,
}
OK_OUTPUT = {"type": "object", "required": ["n", "ok"], "properties": {"ok": {"const": True}}}


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder (jobs.yaml, schemas, handlers) as the working directory."""
    module = f"cli_test_handlers_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(HANDLERS)
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "ok.payload.json").write_text(json.dumps(OK_PAYLOAD))
    (tmp_path / "schemas" / "ok.output.json").write_text(json.dumps(OK_OUTPUT))
    (tmp_path / "jobs.yaml").write_text(JOBS_YAML.format(module=module))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DQFLOW_CONFIG", raising=False)
    monkeypatch.delenv("DQFLOW_BACKEND", raising=False)
    return tmp_path


@pytest.fixture
def dq(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run the CLI in-process: ``dq("add", "ok", ...)`` → exit code, stdout, stderr."""

    def call(*args: str) -> Result:
        capsys.readouterr()
        code = cli_run(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return call


def one_line_error(result: Result, code: int = 1) -> str:
    """Assert a failure with exactly one ``error: ...`` line on stderr; return that line."""
    assert result.code == code, (result.code, result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: "), result.err
    assert "Traceback" not in result.err
    return lines[0]


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DQFLOW_CONFIG", "DQFLOW_BACKEND")}
    env.update(extra)
    return env


def dqflow_process(*args: str, cwd: Path, timeout: float = 60, **env: str) -> Result:
    """``python -m dqflow ARGS`` in a real process."""
    done = subprocess.run(
        [sys.executable, "-m", "dqflow", *args],
        cwd=cwd,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(done.returncode, done.stdout, done.stderr)
