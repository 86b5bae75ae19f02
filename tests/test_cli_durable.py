"""The CLI for durable handlers: `show` lists steps and the current wait, `token complete` / `token show`,
`retry --reset-steps`."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_support import Result, one_line_error
from helpers import running_worker, wait_for_status, wait_until

from dqflow import Queue

HANDLERS = """
def approve(payload, ctx):
    quote = ctx.step("quote", lambda: {"price": 42})
    token = ctx.create_token(timeout=60, schema="approval")
    decision = ctx.wait_for_token(token)
    if not decision["approved"]:
        raise RuntimeError("refused")
    return {"price": quote["price"]}
"""

JOBS_YAML = """
backend: sqlite:///.dqflow/queue.db
defaults: {{max_attempts: 1}}
worker: {{poll_interval: 100ms, heartbeat: 500ms, lease: 30s}}
signals:
  approval: {{type: object, required: [approved], properties: {{approved: {{type: boolean}}}}}}
jobs:
  approve:
    handler: {module}:approve
"""


@pytest.fixture
def durable_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    module = f"cli_durable_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(HANDLERS)
    (tmp_path / "jobs.yaml").write_text(JOBS_YAML.format(module=module))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DQFLOW_CONFIG", raising=False)
    monkeypatch.delenv("DQFLOW_BACKEND", raising=False)
    return tmp_path


def test_show_token_complete_and_retry_reset_steps(durable_project: Path, dq: Callable[..., Result]) -> None:
    queue = Queue.from_yaml(durable_project / "jobs.yaml")
    job_id = int(dq("add", "approve").out.strip())
    with running_worker(queue):
        wait_for_status(queue, job_id, "waiting", timeout=60)
        token_id = str(queue.require_job(job_id).steps["dqflow:token:1"].result["token_id"])
        shown = dq("show", str(job_id))
        assert shown.code == 0, shown.err
        for text in ("waiting", "steps", "quote", '{"price": 42}', f"token {token_id}", "times out"):
            assert text in shown.out, text
        document = dq("show", str(job_id), "--json").json()
        assert document["steps"]["quote"]["result"] == {"price": 42}
        assert document["wait"] == {"kind": "token", "until": document["wait"]["until"], "token_id": token_id}

        refused = dq("token", "complete", token_id, "--data", '{"approved": "yes"}')
        assert "data of token" in one_line_error(refused) and "approved" in refused.err
        assert dq("token", "show", token_id, "--json").json()["status"] == "pending"

        done = dq("token", "complete", token_id, "--data", '{"approved": false}', "--json")
        assert done.code == 0, done.err
        assert done.json()["status"] == "completed" and done.json()["data"] == {"approved": False}
        # the in-process worker logs the job's failure: wait for it, so that its log line
        # does not land in the stderr of the next command (the CLI logs from the root logger)
        failed = wait_for_status(queue, job_id, "failed", timeout=60)
        assert failed.error_history[-1]["error"].endswith("refused")
        again = dq("token", "complete", token_id, "--data", '{"approved": true}')
        assert "already completed" in one_line_error(again)
        assert "not found" in one_line_error(dq("token", "complete", "tok_missing"))

        retried = dq("retry", str(job_id), "--reset-steps", "--json")
        assert retried.code == 0 and retried.json()["steps"] == {}
        wait_until(lambda: "dqflow:token:1" in queue.require_job(job_id).steps, timeout=60)
        assert queue.require_job(job_id).steps["dqflow:token:1"].result["token_id"] != token_id

        # cancelled while it waits: its token is abandoned, and late data is refused
        new_token = str(queue.require_job(job_id).steps["dqflow:token:1"].result["token_id"])
        wait_for_status(queue, job_id, "waiting", timeout=60)
        assert dq("cancel", str(job_id)).code == 0
        assert dq("token", "show", new_token, "--json").json()["status"] == "abandoned"
        assert "abandoned" in dq("token", "show", new_token).out
        late = dq("token", "complete", new_token, "--data", '{"approved": true}')
        assert late.code == 1 and f"its job {job_id} was cancelled" in one_line_error(late)
    queue.close()
