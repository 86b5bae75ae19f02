"""The ``dqflow`` command line, driven as a user would: arguments in, exit code and output out.

Most tests call ``dqflow.cli.run(args)`` in-process (the same code path as the
console script, error handling included); the worker and ``python -m dqflow``
tests run real subprocesses.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cli_support import REPO, Result, dqflow_process, one_line_error, subprocess_env

# -- help and global options ------------------------------------------------------------


def test_help_lists_every_command(dq: Callable[..., Result]) -> None:
    result = dq("--help")
    assert result.code == 0
    for name in ("run", "add", "show", "list", "events", "cancel", "retry", "edit", "check", "migrate"):
        assert name in result.out


def test_version(dq: Callable[..., Result]) -> None:
    result = dq("--version")
    assert result.code == 0
    assert result.out.startswith("dqflow ")


def test_unknown_command_is_a_usage_error(dq: Callable[..., Result]) -> None:
    line = one_line_error(dq("lst"), code=2)
    assert "No such command 'lst'" in line


def test_global_options_before_or_after_the_command(project: Path, dq: Callable[..., Result]) -> None:
    job_id = dq("add", "ok", "--payload", '{"n": 1}').out.strip()
    after = dq("show", job_id, "--json")
    before = dq("--json", "show", job_id)
    assert after.code == before.code == 0
    assert after.json()["id"] == before.json()["id"] == int(job_id)


def test_backend_option_and_environment(project: Path, dq: Callable[..., Result], tmp_path: Path) -> None:
    other = f"sqlite:///{tmp_path / 'other.db'}"
    job_id = dq("add", "ok", "-p", '{"n": 1}', "--backend", other).out.strip()
    assert dq("show", job_id, "--backend", other).code == 0
    one_line_error(dq("show", job_id))  # not in the YAML's database
    os.environ["DQFLOW_BACKEND"] = other
    try:
        assert dq("show", job_id).code == 0
    finally:
        del os.environ["DQFLOW_BACKEND"]


def test_read_commands_work_without_a_declaration(
    project: Path, dq: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{project / '.dqflow' / 'queue.db'}"
    job_id = dq("add", "ok", "-p", '{"n": 5}').out.strip()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert dq("show", job_id, "--backend", url, "--json").json()["payload"] == {"n": 5}
    assert dq("list", "--backend", url, "--json").json()["jobs"][0]["id"] == int(job_id)
    line = one_line_error(dq("list"))
    assert "declaration not found" in line and "jobs.yaml" in line


# -- check ------------------------------------------------------------------------------


def test_check_good_declaration(project: Path, dq: Callable[..., Result]) -> None:
    result = dq("check")
    assert result.code == 0, result.err
    for name in ("ok", "steps", "boom", "schemas/ok.payload.json", "fast"):
        assert name in result.out
    document = dq("check", "--json").json()
    assert document["ok"] is True
    assert [row["name"] for row in document["job_types"]] == ["ok", "steps", "boom"]
    assert document["job_types"][0]["output_schema"] == "schemas/ok.output.json"


def test_check_does_not_touch_the_backend(project: Path, dq: Callable[..., Result]) -> None:
    result = dq("check", "--backend", "redis://127.0.0.1:1/0")
    assert result.code == 0, result.err
    assert not (project / ".dqflow").exists()


@pytest.mark.parametrize(
    ("yaml_text", "line", "key", "words"),
    [
        ("jobs:\n  a:\n    handler: json:dumps\n    retyr: {}\n", 4, "jobs.a.retyr", "unknown key 'retyr'"),
        ("jobs:\n  a:\n    handler: json:dumps\n    timeout: 5 minutes\n", 4, "jobs.a.timeout", "invalid duration"),
        ("jobs:\n  a:\n    handler: nosuchmodule_xyz:f\n", 3, "jobs.a.handler", "nosuchmodule_xyz"),
        (
            "jobs:\n  a:\n    handler: json:dumps\n    payload: schemas/missing.json\n",
            4,
            "jobs.a.payload",
            "not found",
        ),
        (
            "jobs:\n  a:\n    handler: json:dumps\n    output: {type: 12}\n",
            4,
            "jobs.a.output",
            "not a valid JSON Schema",
        ),
    ],
    ids=["unknown-key", "bad-duration", "handler-import", "missing-schema", "invalid-schema"],
)
def test_bad_declaration_names_file_line_and_key(
    tmp_path: Path,
    dq: Callable[..., Result],
    monkeypatch: pytest.MonkeyPatch,
    yaml_text: str,
    line: int,
    key: str,
    words: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "jobs.yaml").write_text(yaml_text)
    # `add` only needs the schemas: handlers are imported by `check` and `run` (the worker side).
    commands = [["check"], ["run", "--drain"]] + ([] if key.endswith("handler") else [["add", "a"]])
    for args in commands:
        message = one_line_error(dq(*args))
        assert f"jobs.yaml:{line}: {key}:" in message, message
        assert words in message


def test_check_lists_every_problem(tmp_path: Path, dq: Callable[..., Result]) -> None:
    text = "jobs:\n  a:\n    handler: no_such_module_here:f\n    timeout: soon\n    retyr: {}\n"
    (tmp_path / "jobs.yaml").write_text(text)
    result = dq("check", "--config", str(tmp_path / "jobs.yaml"))
    assert result.code == 1
    lines = result.err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("error: ") for line in lines)
    assert ":3: jobs.a.handler:" in lines[0] and "no_such_module_here" in lines[0]
    assert ":4: jobs.a.timeout:" in lines[1] and ":5: jobs.a.retyr:" in lines[2]
    other = one_line_error(dq("add", "a", "--config", str(tmp_path)))
    assert "(and 1 more problem: run `dqflow check`)" in other  # add does not import handlers
    document = dq("check", "--config", str(tmp_path), "--json").json()
    assert document["ok"] is False
    assert [p["key"] for p in document["problems"]] == ["jobs.a.handler", "jobs.a.timeout", "jobs.a.retyr"]


def test_missing_declaration(tmp_path: Path, dq: Callable[..., Result], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DQFLOW_CONFIG", raising=False)
    monkeypatch.delenv("DQFLOW_BACKEND", raising=False)
    assert "declaration not found" in one_line_error(dq("check"))
    assert "nowhere.yaml" in one_line_error(dq("check", "--config", "nowhere.yaml"))
    monkeypatch.setenv("DQFLOW_CONFIG", str(tmp_path / "env.yaml"))
    assert "env.yaml ($DQFLOW_CONFIG" in one_line_error(dq("check"))


# -- add ----------------------------------------------------------------------------------


def test_add_prints_the_id_and_stores_the_options(project: Path, dq: Callable[..., Result]) -> None:
    result = dq(
        "add",
        "ok",
        "--payload",
        '{"n": 7}',
        "--priority",
        "4",
        "--tag",
        "x",
        "--tag",
        "y",
        "--max-attempts",
        "5",
        "--timeout",
        "45s",
        "--run-at",
        "2030-01-02T03:04:05Z",
        "--idempotency-key",
        "k1",
    )
    assert result.code == 0, result.err
    job_id = int(result.out.strip())
    job = dq("show", str(job_id), "--json").json()
    assert job["payload"] == {"n": 7}
    assert job["status"] == "pending"
    assert job["priority"] == 4
    assert job["tags"] == ["x", "y"]
    assert job["max_attempts"] == 5
    assert job["timeout_ms"] == 45_000
    assert job["run_at"].startswith("2030-01-02T03:04:05")
    assert job["idempotency_key"] == "k1"
    again = dq("add", "ok", "--payload", '{"n": 8}', "--idempotency-key", "k1", "--json")
    assert again.json() == {"id": job_id, "job_type": "ok"}


def test_add_group(project: Path, dq: Callable[..., Result]) -> None:
    config = project / "jobs.yaml"
    config.write_text(config.read_text().replace("    tags: [fast]\n", "    tags: [fast]\n    group_concurrency: 2\n"))
    job_id = dq("add", "ok", "-p", '{"n": 1}', "--group", "tenant-7").out.strip()
    job = dq("show", job_id, "--json").json()
    assert (job["concurrency_key"], job["concurrency_limit"]) == ("group:tenant-7", 2)
    line = one_line_error(dq("add", "boom", "--group", "tenant-7"))
    assert "group='tenant-7' needs a limit" in line


def test_add_payload_from_file_and_stdin(
    project: Path, dq: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "p.json").write_text('{"n": 3}')
    from_file = dq("add", "ok", "--payload", "@p.json").out.strip()
    assert dq("show", from_file, "--json").json()["payload"] == {"n": 3}
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO('{"n": 4}'))
    from_stdin = dq("add", "ok", "--payload", "-").out.strip()
    assert dq("show", from_stdin, "--json").json()["payload"] == {"n": 4}


def test_add_delay(project: Path, dq: Callable[..., Result]) -> None:
    job_id = dq("add", "ok", "-p", '{"n": 1}', "--delay", "1h").out.strip()
    job = dq("show", job_id, "--json").json()
    assert job["run_at"] > job["created_at"]
    line = one_line_error(dq("add", "ok", "-p", "{}", "--delay", "5 minutes"), code=2)
    assert "--delay" in line and "invalid duration" in line
    line = one_line_error(dq("add", "ok", "-p", '{"n": 1}', "--delay", "5m", "--run-at", "2030-01-01"), code=2)
    assert "not both" in line


def test_add_payload_failing_its_schema_names_the_field(project: Path, dq: Callable[..., Result]) -> None:
    line = one_line_error(dq("add", "ok", "--payload", '{"n": "seven"}'))
    assert "payload of ok" in line and "$.n" in line and "'seven' is not of type 'integer'" in line
    line = one_line_error(dq("add", "ok", "--payload", '{"n": 1, "extra": true}'))
    assert "extra" in line
    assert dq("list", "--json").json()["jobs"] == []  # nothing stored


def test_add_payload_that_is_not_json(project: Path, dq: Callable[..., Result]) -> None:
    line = one_line_error(dq("add", "ok", "--payload", "{n: 1}"), code=2)
    assert "--payload" in line and "not valid JSON" in line
    line = one_line_error(dq("add", "ok", "--payload", "NaN"), code=2)
    assert "NaN is not JSON" in line
    line = one_line_error(dq("add", "ok", "--payload", "@missing.json"), code=2)
    assert "cannot read missing.json" in line


def test_add_unknown_job_type(project: Path, dq: Callable[..., Result]) -> None:
    line = one_line_error(dq("add", "nope", "--payload", "{}"))
    assert "unknown job type 'nope'" in line and "declared: boom, ok, steps" in line


def test_add_bad_option_values_are_usage_errors(project: Path, dq: Callable[..., Result]) -> None:
    assert "--max-attempts" in one_line_error(dq("add", "ok", "-p", '{"n":1}', "--max-attempts", "0"), code=2)
    assert "--priority" in one_line_error(dq("add", "ok", "-p", '{"n":1}', "--priority", "high"), code=2)
    assert "--run-at" in one_line_error(dq("add", "ok", "-p", '{"n":1}', "--run-at", "tomorrow"), code=2)
    assert "--timeout" in one_line_error(dq("add", "ok", "-p", '{"n":1}', "--timeout", "forever"), code=2)


# -- show, events, list ---------------------------------------------------------------------


def test_unknown_id_everywhere(project: Path, dq: Callable[..., Result]) -> None:
    for args in (
        ["show", "999"],
        ["events", "999"],
        ["cancel", "999"],
        ["retry", "999"],
        ["edit", "999", "--priority", "1"],
    ):
        assert one_line_error(dq(*args)) == "error: no job with id 999", args


def test_show_table_and_events(project: Path, dq: Callable[..., Result]) -> None:
    job_id = dq("add", "ok", "-p", '{"n": 2}', "-t", "blue").out.strip()
    shown = dq("show", job_id)
    assert shown.code == 0
    for text in (f"job {job_id}", "pending", "ok", "blue", '"n": 2', "output", "null"):
        assert text in shown.out
    with_events = dq("show", job_id, "--events")
    assert "events" in with_events.out and "added" in with_events.out
    document = dq("show", job_id, "--events", "--json").json()
    assert [e["event_type"] for e in document["events"]] == ["added"]
    events = dq("events", job_id, "--json").json()
    assert events[0]["event_type"] == "added" and events[0]["job_id"] == int(job_id)
    assert "added" in dq("events", job_id).out


def test_list_filters_and_paging(project: Path, dq: Callable[..., Result]) -> None:
    ids = [int(dq("add", "ok", "-p", json.dumps({"n": i}), "-t", f"t{i % 2}", "-t", "all").out) for i in range(5)]
    ids.append(int(dq("add", "boom", "-p", "{}", "-t", "t0").out))
    dq("cancel", str(ids[0]))

    def listed(*args: str) -> list[int]:
        result = dq("list", "--json", *args)
        assert result.code == 0, result.err
        return [job["id"] for job in result.json()["jobs"]]

    assert listed() == sorted(ids, reverse=True)
    assert listed("--job-type", "boom") == [ids[5]]
    assert listed("--status", "cancelled") == [ids[0]]
    assert listed("--status", "cancelled", "--status", "pending") == sorted(ids, reverse=True)
    assert listed("--tag", "t1") == [ids[3], ids[1]]
    assert listed("--tag", "t0", "--tag", "all") == [ids[4], ids[2], ids[0]]
    assert listed("--tag", "t0", "--tag", "t1", "--tag-mode", "any") == sorted(ids, reverse=True)
    assert listed("--tag", "all", "--tag-mode", "none") == [ids[5]]
    assert listed("--tag", "t0", "--tag-mode", "exact") == [ids[5]]
    first = dq("list", "--json", "--limit", "4").json()
    assert [j["id"] for j in first["jobs"]] == sorted(ids, reverse=True)[:4]
    rest = listed("--limit", "4", "--cursor", str(first["next_cursor"]))
    assert rest == sorted(ids, reverse=True)[4:]
    table = dq("list", "--limit", "2")
    assert "more: dqflow list --cursor" in table.out and "job type" in table.out
    assert "--status" in one_line_error(dq("list", "--status", "done"), code=2)
    assert "--tag-mode" in one_line_error(dq("list", "--tag-mode", "some"), code=2)


def test_list_empty(project: Path, dq: Callable[..., Result]) -> None:
    assert "no jobs match" in dq("list").out
    assert dq("list", "--json").json() == {"jobs": [], "next_cursor": None}


# -- cancel, retry, edit ----------------------------------------------------------------------


def test_cancel_retry_edit(project: Path, dq: Callable[..., Result]) -> None:
    job_id = dq("add", "ok", "-p", '{"n": 1}').out.strip()
    edited = dq("edit", job_id, "--priority", "8", "--payload", '{"n": 2}', "--tag", "new", "--json").json()
    assert (edited["priority"], edited["payload"], edited["tags"]) == (8, {"n": 2}, ["new"])
    line = one_line_error(dq("edit", job_id, "--payload", '{"n": "x"}'))
    assert "$.n" in line
    assert "nothing to change" in one_line_error(dq("edit", job_id), code=2)
    cancelled = dq("cancel", job_id)
    assert cancelled.code == 0 and "cancelled" in cancelled.out
    assert dq("show", job_id, "--json").json()["status"] == "cancelled"
    assert "pending" in one_line_error(dq("edit", job_id, "--priority", "1"))
    retried = dq("retry", job_id, "--json").json()
    assert retried["status"] == "pending"
    events = [e["event_type"] for e in dq("events", job_id, "--json").json()]
    assert events == ["added", "edited", "cancelled", "retried"]


def test_cancel_completed_job_and_retry_pending_job_are_refused(project: Path, dq: Callable[..., Result]) -> None:
    job_id = dq("add", "ok", "-p", '{"n": 1}').out.strip()
    line = one_line_error(dq("retry", job_id))
    assert f"job {job_id}" in line and "pending" in line
    assert dq("run", "--drain").code == 0
    assert dq("show", job_id, "--json").json()["status"] == "completed"
    line = one_line_error(dq("cancel", job_id))
    assert f"job {job_id} is completed" in line


# -- run ----------------------------------------------------------------------------------------


def test_run_drain_in_process_with_failure_history(project: Path, dq: Callable[..., Result]) -> None:
    ok = dq("add", "ok", "-p", '{"n": 3}').out.strip()
    boom = dq("add", "boom", "-p", '{"why": "disk full"}').out.strip()
    result = dq("run", "--drain", "--concurrency", "2", "--json")
    assert result.code == 0, result.err
    summary = result.json()
    assert summary["completed"] == 1 and summary["failed"] == 1
    assert dq("show", ok, "--json").json()["output"] == {"n": 3, "ok": True}
    failed = dq("show", boom, "--json").json()
    assert failed["status"] == "failed" and failed["failure_reason"] == "handler_error"
    assert "boom: disk full" in failed["error_history"][0]["error"]
    table = dq("show", boom)
    assert "error history" in table.out and "handler_error" in table.out and "boom: disk full" in table.out


def test_run_job_type_filter(project: Path, dq: Callable[..., Result]) -> None:
    ok = dq("add", "ok", "-p", '{"n": 3}').out.strip()
    boom = dq("add", "boom", "-p", "{}").out.strip()
    assert dq("run", "--drain", "--job-type", "ok").code == 0
    assert dq("show", ok, "--json").json()["status"] == "completed"
    assert dq("show", boom, "--json").json()["status"] == "pending"
    line = one_line_error(dq("run", "--drain", "--job-type", "nope"))
    assert "unknown job type 'nope'" in line
    assert "--lease" in one_line_error(dq("run", "--drain", "--lease", "long"), code=2)


def test_add_run_show_with_real_processes(project: Path, backend: str) -> None:
    """``add`` and ``run --drain`` as separate processes on every backend; ``show`` sees the results."""
    env = {"DQFLOW_BACKEND": backend}
    ids = []
    for args in (["ok", "-p", '{"n": 41}'], ["steps", "-p", '{"steps": 4}'], ["ok", "-p", '{"n": 42}']):
        added = dqflow_process("add", *args, cwd=project, **env)
        assert added.code == 0, added.err
        ids.append(added.out.strip())
    ran = dqflow_process("run", "--drain", "--concurrency", "4", cwd=project, timeout=120, **env)
    assert ran.code == 0, ran.err
    assert "drained" in ran.out
    shown = [json.loads(dqflow_process("show", i, "--json", cwd=project, **env).out) for i in ids]
    assert [job["status"] for job in shown] == ["completed"] * 3
    assert shown[0]["output"] == {"n": 41, "ok": True}
    assert shown[1]["progress"] == 100 and shown[1]["output"] == {"done": 4}
    assert shown[2]["output"] == {"n": 42, "ok": True}
    table = dqflow_process("show", ids[1], cwd=project, **env)
    assert "completed" in table.out and "100%" in table.out and '"done": 4' in table.out


def test_run_stops_on_sigterm(project: Path) -> None:
    """A continuous worker exits 0 on SIGTERM."""
    import signal
    import time

    log = project / "worker.log"
    with open(log, "w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dqflow", "-v", "run"],
            cwd=project,
            env=subprocess_env(),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
        )
    try:
        deadline = time.monotonic() + 60
        while "started" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = log.read_text()
    assert proc.returncode == 0, err
    assert "Traceback" not in err


# -- backends that do not answer, migrate ---------------------------------------------------------


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "postgresql://postgres@127.0.0.1:1/none?connect_timeout=1"])
def test_backend_that_does_not_answer(project: Path, url: str) -> None:
    result = dqflow_process("list", "--backend", url, cwd=project, timeout=120)
    line = one_line_error(result)
    assert "127.0.0.1:1" in line


def test_migrate_on_sqlite_and_redis_needs_nothing(project: Path, dq: Callable[..., Result]) -> None:
    result = dq("migrate")
    assert result.code == 0 and "SQLite needs no migrations" in result.out
    document = dq("migrate", "--backend", "redis://127.0.0.1:6379/0", "--json").json()
    assert document["needed"] is False


def test_migrate_postgres(project: Path, dq: Callable[..., Result]) -> None:
    import psycopg
    from backends import pg_test_database

    schema = f"cli_{uuid.uuid4().hex[:10]}"
    url = f"{pg_test_database()}?schema={schema}"
    try:
        status = dq("migrate", "--status", "--backend", url, "--json").json()
        assert status["migrations"] and all(m["applied_at"] is None for m in status["migrations"])
        sql = dq("migrate", "--sql", "--backend", url)
        assert sql.code == 0 and "CREATE TABLE" in sql.out
        line = one_line_error(dq("list", "--backend", url))
        assert "dqflow migrate" in line
        gc.collect()  # a connection pool left open by the failed command would complain here
        applied = dq("migrate", "--backend", url, "--json").json()
        assert applied["applied"] == [m["name"] for m in status["migrations"]]
        assert "up to date" in dq("migrate", "--backend", url).out
        assert dq("migrate", "--sql", "--backend", url).out.strip() == "-- up to date: nothing to apply"
        job_id = dq("add", "ok", "-p", '{"n": 1}', "--backend", url).out.strip()
        assert dq("show", job_id, "--backend", url, "--json").json()["status"] == "pending"
    finally:
        with psycopg.connect(pg_test_database(), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_python_dash_m_dqflow(tmp_path: Path) -> None:
    result = dqflow_process("--help", cwd=tmp_path)
    assert result.code == 0 and "migrate" in result.out
    result = dqflow_process("show", "1", cwd=tmp_path)
    line = one_line_error(result)
    assert "declaration not found" in line


@pytest.fixture(autouse=True)
def _no_leftover_env() -> Iterator[None]:
    yield
    os.environ.pop("DQFLOW_BACKEND", None)


def test_example_project_check(dq: Callable[..., Result], monkeypatch: pytest.MonkeyPatch) -> None:
    """The repository's own jobs.yaml passes ``dqflow check``."""
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("DQFLOW_CONFIG", raising=False)
    result = dq("check", "--json")
    assert result.code == 0, result.err
    names = {row["name"] for row in result.json()["job_types"]}
    assert names == {
        "generate_report",
        "process_images",
        "send_welcome_email",
        "fetch_album",
        "resize_image",
        "publish_page",
    }
