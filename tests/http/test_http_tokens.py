"""``POST /api/tokens/{id}/complete`` and ``GET /api/tokens/{id}`` against a real ``dqflow serve``, on each backend."""

from __future__ import annotations

from helpers import running_worker, wait_for_status, wait_until
from http_server import Server

from dqflow import Queue


def test_complete_a_token_over_http(server: Server, queue: Queue) -> None:
    job_id = queue.add("approve", {})
    with running_worker(queue):
        token_id = str(wait_until(lambda: queue.require_job(job_id).steps.get("dqflow:token:1")).result["token_id"])
        wait_for_status(queue, job_id, "waiting")
        with server.client() as reader, server.writer() as writer:
            shown = reader.get(f"/api/tokens/{token_id}")
            assert shown.status_code == 200 and shown.json()["token"]["status"] == "pending"
            assert shown.json()["token"]["jobId"] == job_id
            job = reader.get(f"/api/jobs/{job_id}").json()["job"]
            assert job["wait"]["kind"] == "token" and job["wait"]["tokenId"] == token_id
            assert reader.post(f"/api/tokens/{token_id}/complete", json={"data": {}}).status_code in (401, 403)
            assert writer.post("/api/tokens/tok_nope/complete", json={"data": 1}).status_code == 404
            refused = writer.post(f"/api/tokens/{token_id}/complete", json={"data": {"approved": 1}})
            assert refused.status_code == 422 and "approved" in refused.text
            done = writer.post(f"/api/tokens/{token_id}/complete", json={"data": {"approved": True}})
            assert done.status_code == 200, done.text
            assert done.json()["token"]["status"] == "completed" and done.json()["token"]["data"] == {"approved": True}
            again = writer.post(f"/api/tokens/{token_id}/complete", json={"data": {"approved": False}})
            assert again.status_code == 409 and "already completed" in again.json()["error"]
        finished = wait_for_status(queue, job_id, "completed")
        with server.client() as reader:
            assert reader.get(f"/api/tokens/{token_id}").json()["token"]["status"] == "completed"

        # a job cancelled while it waits: its token reads as abandoned and refuses data (409)
        cancelled = queue.add("approve", {})
        other = str(wait_until(lambda: queue.require_job(cancelled).steps.get("dqflow:token:1")).result["token_id"])
        wait_for_status(queue, cancelled, "waiting")
        queue.cancel(cancelled)
        with server.client() as reader, server.writer() as writer:
            assert reader.get(f"/api/tokens/{other}").json()["token"]["status"] == "abandoned"
            late = writer.post(f"/api/tokens/{other}/complete", json={"data": {"approved": True}})
            assert late.status_code == 409 and f"its job {cancelled} was cancelled" in late.json()["error"]
    assert finished.output == {"decision": {"approved": True}}
