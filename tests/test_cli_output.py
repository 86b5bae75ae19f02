"""What the CLI prints: job data as text (never rich markup), tables that fit 80 columns,
JSON errors under ``--json``, shell completion."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_support import Result, dqflow_process, subprocess_env

MARKUP_TAGS = ["[/]", "[bold red]x[/bold red]", "[link=http://x]y"]
MARKUP_ERROR = "cannot open [/var/data/in.csv] or [bold]this[/bold]"


def test_markup_in_job_data_prints_literally(project: Path, dq: Callable[..., Result]) -> None:
    tags = [arg for tag in MARKUP_TAGS for arg in ("-t", tag)]
    job_id = dq("add", "boom", "-p", f'{{"why": "{MARKUP_ERROR}", "note": "[red]n[/]"}}', *tags).out.strip()
    assert dq("run", "--drain").code == 0
    for args in (["show", job_id], ["show", job_id, "--events"], ["events", job_id], ["list"]):
        result = dq(*args)
        assert result.code == 0, (args, result.err)
        flat = " ".join(result.out.split())  # tables may wrap long cells
        if args[0] != "events":
            for tag in MARKUP_TAGS:
                assert tag in flat, (args, tag, result.out)
        if args[0] != "list":
            assert MARKUP_ERROR in flat.replace("\\", ""), (args, result.out)
    assert "[red]n[/]" in dq("show", job_id).out


@pytest.mark.parametrize("columns", ["80", "100", "200"])
def test_list_keeps_job_type_and_status_whole(
    project: Path, dq: Callable[..., Result], monkeypatch: pytest.MonkeyPatch, columns: str
) -> None:
    monkeypatch.setenv("COLUMNS", columns)
    expected: dict[str, tuple[str, str]] = {}
    for job_type, payload, status in (
        ("steps", '{"steps": 2}', "completed"),
        ("boom", "{}", "failed"),
        ("ok", '{"n": 1}', "cancelled"),
    ):
        job_id = dq("add", job_type, "-p", payload, "-t", "a-rather-long-tag-name", "-t", "reports").out.strip()
        expected[job_id] = (job_type, status)
    dq("cancel", next(i for i, (_, s) in expected.items() if s == "cancelled"))
    assert dq("run", "--drain").code == 0
    later = dq("add", "ok", "-p", '{"n": 2}', "--delay", "1h", "-t", "x").out.strip()
    expected[later] = ("ok", "pending")
    listed = dq("list")
    assert listed.code == 0, listed.err
    lines = listed.out.splitlines()
    assert all(len(line) <= int(columns) for line in lines), listed.out
    rows = {line.split()[0]: line.split() for line in lines if line.split() and line.split()[0].isdigit()}
    for job_id, (job_type, status) in expected.items():
        assert rows[job_id][1:3] == [job_type, status], listed.out
    assert "run at" in lines[0]  # a job waits for a later time


def test_json_errors_on_stderr(project: Path, dq: Callable[..., Result]) -> None:
    for args, code, kind in (
        (["show", "999", "--json"], 1, "JobNotFoundError"),
        (["--json", "add", "nope"], 1, "UnknownJobTypeError"),
        (["--json", "add", "ok", "-p", "{"], 2, "usage"),
        (["--json", "lst"], 2, "usage"),
        (["list", "--json", "--status", "done"], 2, "usage"),
    ):
        result = dq(*args)
        assert result.code == code and result.out == "", (args, result)
        lines = result.err.splitlines()
        assert len(lines) == 1, result.err
        document = json.loads(lines[0])
        assert document["type"] == kind and document["exit_code"] == code and document["error"], document
    missing = json.loads(dq("--json", "-c", "nothere.yaml", "add", "ok").err)
    assert missing["type"] == "ConfigError" and missing["file"] == "nothere.yaml"
    assert dq("show", "999").err == "error: no job with id 999\n"
    assert dq("add", "ok", "-p", '{"n": 1}', "--", "--json").code == 2  # after --, --json is an argument


def under_bash(command: str, cwd: Path, **env: str) -> Result:
    """``python -m dqflow ...`` started by bash (typer completes for the shell it runs under).

    The ``; exit`` keeps bash from replacing itself with python (as it does for one command), so
    bash is python's parent process, whatever started pytest (typer looks for the shell there)."""
    done = subprocess.run(
        ["bash", "-c", f'{sys.executable} -m dqflow {command}; exit "$?"'],
        cwd=cwd,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def test_shell_completion(project: Path) -> None:
    script = under_bash("--show-completion", cwd=project)
    assert script.code == 0 and "_DQFLOW_COMPLETE=complete_bash" in script.out, script
    env = {"_DQFLOW_COMPLETE": "complete_bash", "COMP_WORDS": "dqflow li", "COMP_CWORD": "1"}
    assert dqflow_process(cwd=project, **env).out.split() == ["list"]
    env = {"_DQFLOW_COMPLETE": "complete_bash", "COMP_WORDS": "dqflow list --status c", "COMP_CWORD": "3"}
    assert dqflow_process(cwd=project, **env).out.split() == ["completed", "cancelled"]
    home = project / "home"
    home.mkdir()
    installed = under_bash("--install-completion", cwd=project, HOME=str(home))
    assert installed.code == 0, installed
    assert "dqflow" in (home / ".bashrc").read_text()
