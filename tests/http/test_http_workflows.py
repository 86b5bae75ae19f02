"""The workflow routes (``/api/workflows``) and the ``runId`` event filter on a real ``dqflow serve``,
on each backend, with step jobs run by a real ``dqflow run`` worker process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from backends import BACKEND_KINDS, backend_url
from http_server import READ_TOKEN, Server, serve, worker
from test_http_events import Stream

WF_APP = Path(__file__).parent / "app" / "workflows.yaml"
FINISHED = {"completed", "failed", "cancelled"}


@pytest.fixture(scope="module", params=BACKEND_KINDS)
def wf_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``dqflow serve`` over the workflow test app, with read and write tokens, on each backend."""
    folder = tmp_path_factory.mktemp(f"serve-wf-{request.param}")
    with backend_url(request.param, folder) as url, serve(url, folder / "serve.log", config=WF_APP) as running:
        yield running


@pytest.fixture
def wf_worker(wf_server: Server, tmp_path: Path) -> Iterator[None]:
    with worker(wf_server.backend, tmp_path / "worker.log", config=WF_APP):
        yield


def _start(server: Server, text: str = "a bb ccc", pause: float = 0, **extra: Any) -> dict[str, Any]:
    with server.writer() as client:
        response = client.post("/api/workflows/words/runs", json={"input": {"text": text, "pause": pause}, **extra})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _run(server: Server, run_id: int) -> dict[str, Any]:
    with server.client() as client:
        response = client.get(f"/api/workflows/runs/{run_id}")
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()["run"]
    return run


def _finished(server: Server, run_id: int, limit: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + limit
    while True:
        run = _run(server, run_id)
        if run["status"] in FINISHED:
            return run
        assert time.monotonic() < deadline, f"run {run_id} did not finish in {limit} s: {run}"
        time.sleep(0.05)


def test_start_read_and_complete_a_run(wf_server: Server, wf_worker: None) -> None:
    started = _start(wf_server, tags=["http"], idempotencyKey=f"k-{time.monotonic_ns()}")
    run_id = started["id"]
    run = started["run"]
    assert run["id"] == run_id and run["name"] == "words" and run["status"] == "running"
    assert run["input"] == {"text": "a bb ccc", "pause": 0} and run["tags"] == ["http"]
    assert [(s["name"], s["job"]) for s in run["steps"]] == [("split", "split"), ("count", "count"), ("total", "total")]
    for key in ("idempotencyKey", "failureReason", "createdAt", "completedAt"):
        assert key in run
    for key in ("jobIds", "skippedReason", "startedAt", "completedAt", "outputs"):
        assert key in run["steps"][0]

    with wf_server.client() as client:  # long-poll: answers once the run has finished
        done = client.get(f"/api/workflows/runs/{run_id}", params={"wait": "30s"}).json()["run"]
    assert done["status"] == "completed", done
    assert done["output"] == {"total": 6}
    assert done["completedAt"] is not None
    steps = {s["name"]: s for s in done["steps"]}
    assert {s["status"] for s in steps.values()} == {"completed"}
    assert len(steps["count"]["jobIds"]) == 3
    assert steps["count"]["outputs"] == [{"word": w, "n": len(w)} for w in ("a", "bb", "ccc")]
    assert steps["total"]["output"] == {"total": 6}
    with wf_server.client() as client:  # the step jobs are ordinary jobs, showing their run, step and item
        job = client.get(f"/api/jobs/{steps['total']['jobIds'][0]}").json()["job"]
        counts = [client.get(f"/api/jobs/{job_id}").json()["job"] for job_id in steps["count"]["jobIds"]]
    assert job["jobType"] == "total" and job["status"] == "completed" and job["output"] == {"total": 6}
    assert (job["workflowRunId"], job["workflowStep"], job["workflowItem"]) == (run_id, "total", None)
    assert [(c["workflowRunId"], c["workflowStep"], c["workflowItem"]) for c in counts] == [
        (run_id, "count", 0),
        (run_id, "count", 1),
        (run_id, "count", 2),
    ]


def test_a_plain_job_shows_no_workflow(wf_server: Server) -> None:
    with wf_server.writer() as client:
        added = client.post("/api/jobs", json={"jobType": "total", "payload": {"ns": []}})
        assert added.status_code == 201, added.text
        job = client.get(f"/api/jobs/{added.json()['id']}").json()["job"]
    assert (job["workflowRunId"], job["workflowStep"], job["workflowItem"]) == (None, None, None)


def test_idempotency_key_returns_the_same_run(wf_server: Server) -> None:
    key = f"same-{time.monotonic_ns()}"
    first = _start(wf_server, idempotencyKey=key)
    second = _start(wf_server, text="other", idempotencyKey=key)
    assert second["id"] == first["id"] and second["run"]["input"] == first["run"]["input"]


def test_bad_input_is_422_with_the_schema_path_and_nothing_stored(wf_server: Server) -> None:
    with wf_server.client() as reader:
        before = len(reader.get("/api/workflows/runs", params={"limit": 1000}).json()["runs"])
    with wf_server.writer() as client:
        wrong_type = client.post("/api/workflows/words/runs", json={"input": {"text": 5, "pause": 0}})
        assert wrong_type.status_code == 422, wrong_type.text
        assert "$.text" in [d["path"] for d in wrong_type.json()["details"]]
        missing = client.post("/api/workflows/words/runs", json={"input": {"text": "x"}})
        assert missing.status_code == 422 and "pause" in missing.json()["error"]
        extra = client.post("/api/workflows/words/runs", json={"input": {"text": "x", "pause": 0, "zz": 1}})
        assert extra.status_code == 422 and "zz" in extra.json()["error"]
        unknown_key = client.post("/api/workflows/words/runs", json={"input": {}, "nope": 1})
        assert unknown_key.status_code == 422 and unknown_key.json()["details"][0]["path"] == "body.nope"
        malformed = client.post(
            "/api/workflows/words/runs", content=b"{nope", headers={"Content-Type": "application/json"}
        )
        assert malformed.status_code == 400 and "malformed JSON" in malformed.json()["error"]
        unknown = client.post("/api/workflows/nope/runs", json={"input": {}})
        assert unknown.status_code == 404 and "unknown workflow 'nope'" in unknown.json()["error"]
    with wf_server.client() as reader:
        assert len(reader.get("/api/workflows/runs", params={"limit": 1000}).json()["runs"]) == before


def test_unknown_and_bad_run_ids(wf_server: Server) -> None:
    with wf_server.client() as client:
        missing = client.get("/api/workflows/runs/987654321")
        assert missing.status_code == 404 and missing.json() == {"error": "Workflow run not found"}
        for bad in ("0", "-1", "abc", str(2**63)):
            assert client.get(f"/api/workflows/runs/{bad}").status_code == 422
        waited = client.get("/api/workflows/runs/987654321", params={"wait": "5s"})
        assert waited.status_code == 404 and waited.json() == {"error": "Workflow run not found"}
    run_id = _start(wf_server)["id"]  # no worker runs it: the wait ends with the run as it is
    with wf_server.client() as client:
        started = time.monotonic()
        running = client.get(f"/api/workflows/runs/{run_id}", params={"wait": "300ms"})
        assert running.status_code == 200 and running.json()["run"]["status"] == "running"
        assert 0.3 <= time.monotonic() - started < 3
        for bad in ("soon", "61s", "-1s"):
            refused = client.get(f"/api/workflows/runs/{run_id}", params={"wait": bad})
            assert refused.status_code == 422 and "query.wait" in refused.json()["error"], bad
    with wf_server.writer() as client:
        for action in ("cancel", "retry"):
            response = client.post(f"/api/workflows/runs/987654321/{action}")
            assert response.status_code == 404 and response.json() == {"error": "Workflow run not found"}


def test_auth(wf_server: Server) -> None:
    body = {"input": {"text": "x", "pause": 0}}
    with wf_server.client(token=None) as anonymous:
        assert anonymous.post("/api/workflows/words/runs", json=body).status_code == 401
        assert anonymous.get("/api/workflows/runs").status_code == 401
    with wf_server.client(READ_TOKEN) as reader:
        assert reader.post("/api/workflows/words/runs", json=body).status_code == 403
        assert reader.get("/api/workflows/runs").status_code == 200
    with wf_server.client("wrong-token") as wrong:
        assert wrong.post("/api/workflows/words/runs", json=body).status_code in (401, 403)
    run_id = _start(wf_server)["id"]
    with wf_server.client(READ_TOKEN) as reader:
        assert reader.post(f"/api/workflows/runs/{run_id}/cancel").status_code == 403
    assert _run(wf_server, run_id)["status"] == "running"


def test_list_filters_and_pages(wf_server: Server) -> None:
    ids = [_start(wf_server, text=f"w{i}")["id"] for i in range(3)]
    with wf_server.writer() as client:
        assert client.post(f"/api/workflows/runs/{ids[0]}/cancel").status_code == 200
    with wf_server.client() as client:
        page = client.get("/api/workflows/runs", params={"name": "words", "limit": 2}).json()
        assert [r["id"] for r in page["runs"]] == [ids[2], ids[1]] and page["hasMore"] is True
        rest = client.get("/api/workflows/runs", params={"limit": 1, "cursor": page["nextCursor"]}).json()
        assert [r["id"] for r in rest["runs"]] == [ids[0]]
        cancelled = client.get("/api/workflows/runs", params={"status": "cancelled"}).json()["runs"]
        assert ids[0] in [r["id"] for r in cancelled] and {r["status"] for r in cancelled} == {"cancelled"}
        both = client.get("/api/workflows/runs", params={"status": "cancelled,running", "limit": 1000}).json()
        assert set(ids) <= {r["id"] for r in both["runs"]}
        assert client.get("/api/workflows/runs", params={"name": "nope"}).json() == {
            "runs": [],
            "hasMore": False,
            "nextCursor": None,
        }
        bad = client.get("/api/workflows/runs", params={"status": "bogus"})
        assert bad.status_code == 422 and "bogus" in bad.json()["error"]
        assert client.get("/api/workflows/runs", params={"limit": 0}).status_code == 422


def test_cancel_and_retry(wf_server: Server, tmp_path: Path) -> None:
    run_id = _start(wf_server, text="slow words here", pause=0.2)["id"]
    with wf_server.writer() as client:
        cancelled = client.post(f"/api/workflows/runs/{run_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["run"]["status"] == "cancelled"
        again = client.post(f"/api/workflows/runs/{run_id}/cancel")
        assert again.status_code == 409 and again.json()["error"]
        retried = client.post(f"/api/workflows/runs/{run_id}/retry")
        assert retried.status_code == 200, retried.text
        assert retried.json()["run"]["status"] == "running"
        not_failed = client.post(f"/api/workflows/runs/{run_id}/retry")
        assert not_failed.status_code == 409
    with worker(wf_server.backend, tmp_path / "worker.log", config=WF_APP):
        done = _finished(wf_server, run_id)
    assert done["status"] == "completed" and done["output"] == {"total": 13}


def test_events_filtered_by_run(wf_server: Server, tmp_path: Path) -> None:
    """``/api/events?runId=`` streams the step jobs of that run only, from a worker in another process."""
    with (
        httpx.Client(base_url=wf_server.base_url, headers={"Authorization": f"Bearer {READ_TOKEN}"}) as client,
        client.stream("GET", "/api/events", params={"runId": 0}) as refused,
    ):
        assert refused.status_code == 422
    watched = _start(wf_server, text="one two three")["id"]
    other = _start(wf_server, text="four five")["id"]
    collected: list[dict[str, Any]] = []
    with (
        httpx.Client(
            base_url=wf_server.base_url, headers={"Authorization": f"Bearer {READ_TOKEN}"}, timeout=60
        ) as client,
        client.stream("GET", "/api/events", params={"runId": watched}) as response,
    ):
        stream = Stream(response)
        finished = threading.Event()

        def run_worker() -> None:
            with worker(wf_server.backend, tmp_path / "worker.log", config=WF_APP):
                _finished(wf_server, watched)
                _finished(wf_server, other)
                finished.wait(60)

        thread = threading.Thread(target=run_worker)
        thread.start()
        try:
            completed = lambda events: sum(e["event"] == "job:completed" for e in events) >= 5  # noqa: E731
            collected = stream.read(completed, limit=60)
        finally:
            finished.set()
            thread.join(90)
    run = _run(wf_server, watched)
    own_jobs = {job_id for step in run["steps"] for job_id in step["jobIds"]}
    assert len(own_jobs) == 5  # split, three counts, total
    assert {e["data"]["jobId"] for e in collected} <= own_jobs
    assert {e["data"]["runId"] for e in collected} == {watched}
    assert {e["data"]["jobId"] for e in collected if e["event"] == "job:completed"} == own_jobs
    other_jobs = {job_id for step in _finished(wf_server, other)["steps"] for job_id in step["jobIds"]}
    assert not other_jobs & {e["data"]["jobId"] for e in collected}


def test_openapi_describes_the_workflow_routes(wf_server: Server) -> None:
    with wf_server.client() as client:
        paths = client.get("/api/openapi.json").json()["paths"]
    assert set(paths["/api/workflows/{name}/runs"]) == {"post"}
    assert set(paths["/api/workflows/runs"]) == {"get"}
    assert set(paths["/api/workflows/runs/{run_id}"]) == {"get"}
    assert set(paths["/api/workflows/runs/{run_id}/cancel"]) == {"post"}
    assert set(paths["/api/workflows/runs/{run_id}/retry"]) == {"post"}
