"""The HTTP API against a real ``dqflow serve`` process, on each backend: routes, shapes, auth, bad input."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx
import pytest
from http_server import READ_TOKEN, WRITE_TOKEN, Server

from dqflow import JobStatus, Queue, Worker

JOB_KEYS = {
    "id", "jobType", "status", "payload", "output", "progress", "attempts", "maxAttempts", "priority", "tags",
    "failureReason", "errorHistory", "createdAt", "startedAt", "completedAt", "updatedAt", "runAt",
}  # fmt: skip


def _iso(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, value
    return parsed


def _count(queue: Queue) -> int:
    return len(queue.list_jobs(limit=10_000).jobs)


def test_get_job_has_dataqueue_shape(server: Server, queue: Queue) -> None:
    job_id = queue.add("echo", {"n": 1}, tags=["a"], priority=3)
    with server.client() as client:
        response = client.get(f"/api/jobs/{job_id}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    job = response.json()["job"]
    assert job.keys() >= JOB_KEYS
    assert "leaseToken" not in job
    assert job["id"] == job_id and job["jobType"] == "echo" and job["status"] == "pending"
    assert job["payload"] == {"n": 1} and job["tags"] == ["a"] and job["priority"] == 3
    assert job["output"] is None and job["progress"] is None and job["attempts"] == 0
    assert job["startedAt"] is None and job["errorHistory"] == []
    assert _iso(job["createdAt"]) <= _iso(job["updatedAt"])


def test_finished_jobs_show_output_progress_and_errors(server: Server, queue: Queue) -> None:
    done = queue.add("steps", {"steps": 4})
    failed = queue.add("boom", {"why": "because"})
    Worker(queue, drain=True, job_types=["steps", "boom"]).run()
    with server.client() as client:
        job = client.get(f"/api/jobs/{done}").json()["job"]
        assert job["status"] == "completed" and job["output"] == {"done": 4} and job["progress"] == 100
        assert _iso(job["startedAt"]) <= _iso(job["completedAt"])
        job = client.get(f"/api/jobs/{failed}").json()["job"]
    assert job["status"] == "failed" and job["failureReason"] == "handler_error"
    assert len(job["errorHistory"]) == 1 and "boom: because" in job["errorHistory"][0]["error"]


def test_unknown_job_is_404_job_not_found(server: Server) -> None:
    with server.client() as client:
        for path in ("/api/jobs/987654321", "/api/jobs/987654321/events"):
            response = client.get(path)
            assert (response.status_code, response.json()) == (404, {"error": "Job not found"})
    with server.writer() as client:
        for action in ("cancel", "retry"):
            response = client.post(f"/api/jobs/987654321/{action}")
            assert (response.status_code, response.json()) == (404, {"error": "Job not found"})


@pytest.mark.parametrize("bad_id", ["abc", "0", "-1", "1.5", "99999999999999999999", "1%00"])
def test_bad_ids_are_refused_with_a_json_error(server: Server, bad_id: str) -> None:
    with server.client() as client:
        response = client.get(f"/api/jobs/{bad_id}")
    assert response.status_code == 422
    body = response.json()
    assert "job_id" in body["error"] and body["details"][0]["path"] == "path.job_id"


def test_list_filters_and_pages(server: Server, queue: Queue) -> None:
    tag = f"list-{id(queue)}"
    ids = [queue.add("echo", {"n": i}, tags=[tag, "even" if i % 2 == 0 else "odd"]) for i in range(5)]
    queue.cancel(ids[0])
    with server.client() as client:
        page = client.get("/api/jobs", params={"tags": tag, "limit": 2}).json()
        assert [j["id"] for j in page["jobs"]] == [ids[4], ids[3]]
        assert page["hasMore"] is True and page["nextCursor"] == ids[3]
        page2 = client.get("/api/jobs", params={"tags": tag, "limit": 2, "cursor": page["nextCursor"]}).json()
        assert [j["id"] for j in page2["jobs"]] == [ids[2], ids[1]]
        by_offset = client.get("/api/jobs", params={"tags": tag, "limit": 2, "offset": 2}).json()
        assert [j["id"] for j in by_offset["jobs"]] == [ids[2], ids[1]] and by_offset["hasMore"] is True
        last = client.get("/api/jobs", params={"tags": tag, "limit": 2, "offset": 4}).json()
        assert [j["id"] for j in last["jobs"]] == [ids[0]]
        assert last["hasMore"] is False and last["nextCursor"] is None
        cancelled = client.get("/api/jobs", params={"tags": tag, "status": "cancelled"}).json()
        assert [j["id"] for j in cancelled["jobs"]] == [ids[0]]
        both = client.get("/api/jobs", params=[("tags", tag), ("status", "pending,cancelled")]).json()
        assert len(both["jobs"]) == 5
        odd = client.get("/api/jobs", params={"tags": f"{tag},odd", "jobType": "echo"}).json()
        assert [j["id"] for j in odd["jobs"]] == [ids[3], ids[1]]
        any_mode = client.get("/api/jobs", params={"tags": "odd,even", "tagMode": "any", "limit": 1000}).json()
        assert set(ids) <= {j["id"] for j in any_mode["jobs"]}
        none = client.get("/api/jobs", params={"jobType": "steps", "tags": tag}).json()
        assert none == {"jobs": [], "hasMore": False, "nextCursor": None}


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"status": "bogus"}, "unknown status 'bogus'"),
        ({"tagMode": "some"}, "tag_mode"),
        ({"limit": "0"}, "query.limit"),
        ({"limit": "1001"}, "query.limit"),
        ({"offset": "-1"}, "query.offset"),
        ({"cursor": "x"}, "query.cursor"),
        ({"jobType": "a\x00b"}, "NUL"),
    ],
)
def test_list_refuses_bad_filters(server: Server, params: dict[str, str], words: str) -> None:
    with server.client() as client:
        response = client.get("/api/jobs", params=params)
    assert response.status_code == 422
    assert words in response.json()["error"]


def test_events_oldest_first(server: Server, queue: Queue) -> None:
    job_id = queue.add("echo", {"n": 1})
    queue.cancel(job_id)
    with server.client() as client:
        events = client.get(f"/api/jobs/{job_id}/events").json()["events"]
    assert [e["eventType"] for e in events] == ["added", "cancelled"]
    assert all(e["jobId"] == job_id and _iso(e["createdAt"]) for e in events)


def test_cancel_and_retry(server: Server, queue: Queue) -> None:
    job_id = queue.add("echo", {"n": 1})
    with server.writer() as client:
        response = client.post(f"/api/jobs/{job_id}/cancel")
        assert (response.status_code, response.json()) == (200, {"ok": True})
        assert queue.require_job(job_id).status is JobStatus.CANCELLED
        again = client.post(f"/api/jobs/{job_id}/cancel")
        assert again.status_code == 409 and "cancel" in again.json()["error"]
        assert client.post(f"/api/jobs/{job_id}/retry").json() == {"ok": True}
        assert queue.require_job(job_id).status is JobStatus.PENDING
        conflict = client.post(f"/api/jobs/{job_id}/retry")
    assert conflict.status_code == 409 and "error" in conflict.json()
    assert queue.require_job(job_id).status is JobStatus.PENDING


def test_add_job(server: Server, queue: Queue) -> None:
    body = {"jobType": "echo", "payload": {"n": 7}, "priority": 4, "tags": ["x"], "maxAttempts": 2,
            "timeoutMs": 1500, "delay": "1h", "idempotencyKey": f"k-{id(queue)}"}  # fmt: skip
    with server.writer() as client:
        response = client.post("/api/jobs", json=body)
        assert response.status_code == 201, response.text
        created = response.json()
        again = client.post("/api/jobs", json=body).json()
    assert again["id"] == created["id"]
    job = queue.require_job(created["id"])
    assert created["job"]["id"] == job.id and job.payload == {"n": 7} and job.priority == 4
    assert job.tags == ["x"] and job.max_attempts == 2 and job.timeout_ms == 1500
    assert (job.run_at - job.created_at).total_seconds() > 3500


def test_add_job_in_a_group(server: Server, queue: Queue) -> None:
    with server.writer() as client:
        response = client.post("/api/jobs", json={"jobType": "echo", "payload": {"n": 1}, "group": {"id": "t-9"}})
        assert response.status_code == 201, response.text
        tier = client.post("/api/jobs", json={"jobType": "echo", "payload": {"n": 1}, "group": {"id": "t", "tier": 1}})
        assert tier.status_code == 422, tier.text
    job = queue.require_job(response.json()["id"])
    assert (job.concurrency_key, job.concurrency_limit) == ("group:t-9", 2)


def test_add_job_with_invalid_payload_is_422_with_path_and_nothing_stored(server: Server, queue: Queue) -> None:
    before = _count(queue)
    with server.writer() as client:
        response = client.post("/api/jobs", json={"jobType": "echo", "payload": {"n": "seven"}})
        extra = client.post("/api/jobs", json={"jobType": "steps", "payload": {"steps": 0}})
    assert response.status_code == 422
    body = response.json()
    assert body["details"] == [{"path": "$.n", "message": "'seven' is not of type 'integer'"}]
    assert "payload of echo" in body["error"]
    assert extra.status_code == 422 and extra.json()["details"][0]["path"] == "$.steps"
    assert _count(queue) == before


BAD_BODIES: list[tuple[str, Any, int, str]] = [
    ("malformed JSON", b'{"jobType": "echo", "payload": {', 400, "malformed JSON"),
    ("not an object", b"[1, 2]", 422, "body"),
    ("wrong type", {"jobType": 5, "payload": {"n": 1}}, 422, "body.jobType"),
    ("missing job type", {"payload": {"n": 1}}, 422, "body.jobType"),
    ("unknown field", {"jobType": "echo", "payload": {"n": 1}, "colour": "red"}, 422, "body.colour"),
    ("unknown job type", {"jobType": "nope", "payload": {}}, 422, "unknown job type 'nope'"),
    ("bad delay", {"jobType": "echo", "payload": {"n": 1}, "delay": "soon"}, 422, "delay"),
    ("bad tags", {"jobType": "echo", "payload": {"n": 1}, "tags": [""]}, 422, "tag"),
    ("NaN", b'{"jobType": "echo", "payload": {"n": NaN}}', 422, "payload"),
    ("payload over the declared limit", {"jobType": "boom", "payload": {"x": "y" * 30_000}}, 413, "limit"),
    ("body over the server limit", {"jobType": "boom", "payload": {"x": "y" * 200_000}}, 413, "request body"),
]


@pytest.mark.parametrize(("what", "body", "status", "words"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_bodies_are_4xx_json_and_change_nothing(
    server: Server, queue: Queue, what: str, body: Any, status: int, words: str
) -> None:
    before = _count(queue)
    with server.writer() as client:
        if isinstance(body, bytes):
            response = client.post("/api/jobs", content=body, headers={"Content-Type": "application/json"})
        else:
            response = client.post("/api/jobs", json=body)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]
    assert _count(queue) == before


def test_a_streamed_body_over_the_limit_is_413(server: Server, queue: Queue) -> None:
    before = _count(queue)

    def chunks() -> Any:
        yield b'{"jobType": "boom", "payload": {"x": "'
        for _ in range(100):
            yield b"y" * 10_000
        yield b'"}}'

    with server.writer() as client:
        response = client.post("/api/jobs", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "request body" in response.json()["error"]
    assert _count(queue) == before


def test_auth(server: Server, queue: Queue) -> None:
    job_id = queue.add("echo", {"n": 1})
    add = {"jobType": "echo", "payload": {"n": 1}}
    with server.client(token=None) as anonymous:
        response = anonymous.get(f"/api/jobs/{job_id}")
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
        assert "read token" in response.json()["error"]
        assert anonymous.post(f"/api/jobs/{job_id}/cancel").status_code == 401
        assert anonymous.post("/api/jobs", json=add).status_code == 401
        basic = anonymous.get(f"/api/jobs/{job_id}", headers={"Authorization": f"Basic {READ_TOKEN}"})
        assert basic.status_code == 401
    with server.client(token="wrong-" + READ_TOKEN) as wrong:
        assert wrong.get(f"/api/jobs/{job_id}").status_code == 401
        assert wrong.get("/api/jobs").status_code == 401
        assert wrong.post(f"/api/jobs/{job_id}/cancel").status_code == 403
    with server.client(token=READ_TOKEN) as reader:
        assert reader.get(f"/api/jobs/{job_id}").status_code == 200
        for response in (
            reader.post(f"/api/jobs/{job_id}/cancel"),
            reader.post(f"/api/jobs/{job_id}/retry"),
            reader.post("/api/jobs", json=add),
        ):
            assert response.status_code == 403 and response.json() == {"error": "this token may not write"}
    with server.client(token=WRITE_TOKEN) as writer:
        assert writer.get(f"/api/jobs/{job_id}").status_code == 200
    assert queue.require_job(job_id).status is JobStatus.PENDING
    assert _count(queue) >= 1


def test_unknown_routes_and_methods_are_json(server: Server) -> None:
    with server.client() as client:
        missing = client.get("/api/nope")
        assert missing.status_code == 404 and "no route" in missing.json()["error"]
        wrong_method = client.delete("/api/jobs/1")
    assert wrong_method.status_code == 405 and wrong_method.json() == {"error": "Method Not Allowed"}


def test_openapi_describes_every_route(server: Server) -> None:
    with server.client(token=None) as client:
        spec = client.get("/api/openapi.json").json()
    paths = spec["paths"]
    assert {"/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/events", "/api/jobs/{job_id}/cancel",
            "/api/jobs/{job_id}/retry"} <= paths.keys()  # fmt: skip
    assert "AddJobRequest" in spec["components"]["schemas"]
    assert "jobType" in spec["components"]["schemas"]["Job"]["properties"]


def test_payloads_outputs_and_tokens_never_reach_the_log(server: Server, queue: Queue) -> None:
    secret = f"secret-{id(queue)}"
    with server.writer() as client:
        created = client.post("/api/jobs", json={"jobType": "boom", "payload": {"why": secret}}).json()
        client.post("/api/jobs", json={"jobType": "echo", "payload": {"n": secret}})
        client.post(
            "/api/jobs", content=b'{"jobType": "' + secret.encode(), headers={"Content-Type": "application/json"}
        )
        client.get(f"/api/jobs/{created['id']}")
    log = server.log_text()
    assert "POST /api/jobs" in log  # the access log is there, its bodies are not
    assert secret not in log and WRITE_TOKEN not in log and READ_TOKEN not in log


def test_json_error_shape_for_every_status(server: Server) -> None:
    with server.client(token=None) as client:
        for response in (client.get("/api/jobs"), client.get("/api/jobs/abc")):
            assert set(json.loads(response.text)) <= {"error", "details"}
            assert response.headers["content-type"] == "application/json"
    assert isinstance(httpx.__version__, str)
