"""The example project (jobs.yaml, schemas/, examples/) end to end, as a newcomer runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

REPO = Path(__file__).resolve().parent.parent


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((REPO / "schemas" / name).read_text())
    return loaded


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DQFLOW_CONFIG", "DQFLOW_BACKEND")}
    env.update(extra)
    return env


def test_demo_completes_every_job_with_the_declared_outputs(backend: str) -> None:
    done = subprocess.run(
        [sys.executable, "examples/demo.py", "--json", "--backend", backend],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    jobs = {job["id"]: job for job in result["jobs"]}
    assert [job["status"] for job in jobs.values()] == ["completed"] * 4
    for job in jobs.values():
        jsonschema.validate(job["output"], schema(f"{job['job_type']}.output.json"))
        jsonschema.validate(job["payload"], schema(f"{job['job_type']}.payload.json"))
        assert job["error_history"] == []

    reports = [job for job in jobs.values() if job["job_type"] == "generate_report"]
    assert {job["output"]["url"] for job in reports} == {
        "https://reports.example.com/q3-sales.pdf",
        "https://reports.example.com/q3-costs.csv",
    }
    (images,) = [job for job in jobs.values() if job["job_type"] == "process_images"]
    assert images["progress"] == 100
    assert images["output"] == {
        "processedUrls": [f"https://cdn.example.com/resized/{name}.png" for name in ("cat", "dog", "owl", "fox")]
    }
    (email,) = [job for job in jobs.values() if job["job_type"] == "send_welcome_email"]
    assert email["output"]["sentTo"] == "ada@example.com"

    assert "payload of generate_report" in result["refused"] and "$.reportId" in result["refused"]


def test_publish_album_runs_end_to_end(backend: str) -> None:
    """The example workflow on each backend: fan-out over the fetched images, fan-in into one page."""
    sys.path.insert(0, str(REPO))
    try:
        from dqflow import Queue, Worker, WorkflowStatus

        with Queue.from_yaml(REPO / "jobs.yaml", backend) as queue:
            published = queue.start_workflow("publish_album", {"albumId": "a1", "width": 640, "publish": True})
            skipped = queue.start_workflow("publish_album", {"albumId": "a2", "width": 320, "publish": False})
            Worker(queue, drain=True).run()
            run = queue.require_workflow(published)
            assert run.status is WorkflowStatus.COMPLETED, (run.failure_reason, run.error)
            jsonschema.validate(run.output, schema("publish_album.output.json"))
            urls = [f"https://cdn.example.com/640/a1-{n}.jpg" for n in (1, 2, 3)]
            assert run.output == {"resized": urls, "bytes": [640 * 120] * 3, "pageUrl": "https://albums.example.com/a1"}
            assert len(run.step("resize").job_ids) == 3
            assert run.step("publish").output == {"pageUrl": "https://albums.example.com/a1", "imageCount": 3}
            other = queue.require_workflow(skipped)
            assert other.status is WorkflowStatus.COMPLETED
            assert other.step("publish").status.value == "skipped" and other.output["pageUrl"] is None
    finally:
        sys.path.remove(str(REPO))


def test_handlers_follow_the_seed_semantics(tmp_path: Path) -> None:
    """process_images stores output with set_output (its return value is None); the others return it."""
    sys.path.insert(0, str(REPO))
    try:
        from dqflow import Queue, Worker
        from examples.handlers import ReportOutput, WelcomeEmail

        with Queue.from_yaml(REPO / "jobs.yaml", f"sqlite:///{tmp_path / 'q.db'}") as queue:
            outputs: list[Any] = []
            queue.on("job:output", lambda event: outputs.append(event["output"]))
            images = queue.add("process_images", {"images": ["a.png", "b.png"]})
            report = queue.add("generate_report", {"reportId": "r1"})
            email = queue.add("send_welcome_email", WelcomeEmail(to="bo@example.com", name="Bo"))
            Worker(queue, drain=True).run()
            assert outputs[:2] == [
                {"processedUrls": ["https://cdn.example.com/resized/a.png"]},
                {
                    "processedUrls": [
                        "https://cdn.example.com/resized/a.png",
                        "https://cdn.example.com/resized/b.png",
                    ]
                },
            ]
            assert queue.require_job(images).output == outputs[1]
            typed = queue.require_job(report).output_as(ReportOutput)
            assert typed.url == "https://reports.example.com/r1.pdf"
            assert queue.require_job(email).output["sentTo"] == "bo@example.com"
    finally:
        sys.path.remove(str(REPO))


@pytest.mark.slow
def test_scripts_example(tmp_path: Path) -> None:
    """The README's first command, on the venv running these tests (pip install -e is a no-op here)."""
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "example")],
        cwd=REPO,
        env=clean_env(DQFLOW_VENV=sys.prefix),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "OK" in done.stdout  # dqflow check
    assert "publish_album\n├─ fetch" in done.stdout and "flowchart TD" in done.stdout  # the workflow, checked and drawn
    assert done.stdout.count("completed") >= 5  # the demo's four jobs and the CLI's one
    assert "$.reportId" in done.stderr  # the refused payloads
    assert "processedUrls" in done.stdout
    # the workflow run: started, drained, shown as a tree of completed steps with the run's output
    tree = done.stdout[done.stdout.index("$ dqflow workflow show") :]
    assert "publish_album  completed" in tree
    for step in ("fetch  completed  job", "resize  completed  jobs", "(3/3 done)", "publish  completed  job"):
        assert step in tree
    assert '"pageUrl": "https://albums.example.com/summer"' in tree
