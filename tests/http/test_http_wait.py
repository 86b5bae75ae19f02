"""``GET /api/jobs/{id}?wait=...`` long-polls while a real worker process runs the job, on each backend."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from http_server import Server, worker

from dqflow import Queue


@pytest.fixture
def steps_worker(server: Server, tmp_path: Path) -> Iterator[None]:
    with worker(server.backend, tmp_path / "worker.log", "--job-type", "steps"):
        yield


def test_long_poll_answers_when_the_job_finishes(server: Server, queue: Queue, steps_worker: None) -> None:
    job_id = queue.add("steps", {"steps": 5, "pause": 0.1})
    with server.client() as client:
        started = time.monotonic()
        job = client.get(f"/api/jobs/{job_id}", params={"wait": "30s"}).json()["job"]
    assert time.monotonic() - started < 20
    assert job["status"] == "completed" and job["output"] == {"done": 5} and job["progress"] == 100


def test_long_poll_ends_with_the_current_state_when_the_wait_is_over(server: Server, queue: Queue) -> None:
    job_id = queue.add("echo", {"n": 1})  # no worker runs echo here
    with server.client() as client:
        started = time.monotonic()
        response = client.get(f"/api/jobs/{job_id}", params={"wait": "300ms"})
        elapsed = time.monotonic() - started
        assert response.status_code == 200 and response.json()["job"]["status"] == "pending"
        assert 0.3 <= elapsed < 3
        assert client.get(f"/api/jobs/{job_id}", params={"wait": "0.2"}).json()["job"]["status"] == "pending"
        missing = client.get("/api/jobs/987654321", params={"wait": "5s"})
        assert (missing.status_code, missing.json()) == (404, {"error": "Job not found"})
        for bad in ("soon", "61s", "-1s", "1e400"):
            refused = client.get(f"/api/jobs/{job_id}", params={"wait": bad})
            assert refused.status_code == 422 and "query.wait" in refused.json()["error"], bad
