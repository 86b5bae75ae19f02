"""``GET /api/events`` (SSE) on a real ``dqflow serve``, on each backend: changes stored by a
worker in another process arrive in order, filters apply, ``Last-Event-ID`` resumes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_server import Server, worker

from dqflow import Queue

Event = dict[str, Any]


class Stream:
    """An open SSE response, read line by line (one iterator for its whole life)."""

    def __init__(self, response: httpx.Response) -> None:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        self.lines = response.iter_lines()
        for line in self.lines:  # the server says ": connected" once the client is subscribed
            if line == ": connected":
                break

    def read(self, until: Any, limit: float = 30) -> list[Event]:
        """Parse events until ``until(events)`` is true."""
        events: list[Event] = []
        current: Event = {}
        deadline = time.monotonic() + limit
        for line in self.lines:
            assert time.monotonic() < deadline, f"stream did not deliver in time: {events}"
            if line == "":
                if "event" in current:
                    current["data"] = json.loads(current["data"])
                    events.append(current)
                    if until(events):
                        return events
                current = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                current[name] = value
        raise AssertionError(f"stream ended: {events}")


def _done(job_id: int) -> Any:
    return lambda events: any(e["event"] == "job:completed" and e["data"]["jobId"] == job_id for e in events)


@pytest.fixture
def steps_worker(server: Server, tmp_path: Path) -> Iterator[None]:
    with worker(server.backend, tmp_path / "worker.log", "--job-type", "steps"):
        yield


def test_progress_output_and_completion_stream_in_order(server: Server, queue: Queue, steps_worker: None) -> None:
    other = queue.add("steps", {"steps": 2})
    with server.client() as client, client.stream("GET", "/api/events", params={"jobType": "steps"}) as response:
        stream = Stream(response)
        job_id = queue.add("steps", {"steps": 4, "pause": 0.05})
        events = stream.read(_done(job_id))
    mine = [e for e in events if e["data"]["jobId"] == job_id]
    assert [e["event"] for e in mine] == ["job:processing"] + ["job:progress", "job:output"] * 4 + ["job:completed"]
    assert [e["data"]["progress"] for e in mine if e["event"] == "job:progress"] == [25, 50, 75, 100]
    assert [e["data"]["output"] for e in mine if e["event"] == "job:output"][-1] == {"done": 4}
    assert all(e["data"]["jobType"] == "steps" and e["id"] for e in mine)
    assert mine[0]["data"]["attempt"] == 1 and "workerId" in mine[0]["data"]
    assert {e["data"]["jobId"] for e in events} <= {job_id, other}


def test_filters_by_job_and_type(server: Server, queue: Queue) -> None:
    job_id = queue.add("echo", {"n": 1})
    other = queue.add("echo", {"n": 2})
    with (
        server.client() as client,
        client.stream("GET", "/api/events", params={"jobId": job_id}) as by_id,
        client.stream("GET", "/api/events", params={"jobType": "boom"}) as by_type,
    ):
        id_stream, type_stream = Stream(by_id), Stream(by_type)
        read_events_started = time.monotonic()
        queue.cancel(other)
        queue.cancel(job_id)
        boom = queue.add("boom", {})
        queue.cancel(boom)
        got = id_stream.read(lambda events: len(events) >= 1)
        assert [(e["event"], e["data"]["jobId"]) for e in got] == [("job:cancelled", job_id)]
        assert got[0]["data"]["previousStatus"] == "pending"
        typed = type_stream.read(lambda events: len(events) >= 1)
        assert [(e["event"], e["data"]["jobId"]) for e in typed] == [("job:cancelled", boom)]
        assert time.monotonic() - read_events_started < 10


def test_last_event_id_resumes_without_losing_anything(server: Server, queue: Queue, steps_worker: None) -> None:
    with server.client() as client:
        with client.stream("GET", "/api/events", params={"jobType": "steps"}) as response:
            stream = Stream(response)
            job_id = queue.add("steps", {"steps": 6, "pause": 0.15})
            first = stream.read(lambda events: len(events) >= 3)
        # Disconnected while the worker goes on; reconnect from the last event seen.
        queue.wait(job_id, timeout=30)
        headers = {"Last-Event-ID": first[-1]["id"]}
        with client.stream("GET", "/api/events", params={"jobType": "steps"}, headers=headers) as response:
            rest = Stream(response).read(_done(job_id))
    events = [e for e in first + rest if e["data"]["jobId"] == job_id]
    kinds = [e["event"] for e in events]
    assert kinds == ["job:processing"] + ["job:progress", "job:output"] * 6 + ["job:completed"]
    assert len({e["id"] for e in events}) == len(events)
    # The query parameter does the same (for clients that cannot set the header).
    with (
        server.client() as client,
        client.stream("GET", "/api/events", params={"jobId": job_id, "lastEventId": first[-1]["id"]}) as response,
    ):
        again = Stream(response).read(_done(job_id))
    assert [e["id"] for e in again] == [e["id"] for e in rest if e["data"]["jobId"] == job_id]


def test_bad_resume_ids_filters_and_missing_tokens_are_refused(server: Server) -> None:
    with server.client() as client:
        bad = client.get("/api/events", headers={"Last-Event-ID": "not a cursor"})
        assert bad.status_code == 422 and "Last-Event-ID" in bad.json()["error"]
        assert client.get("/api/events", params={"jobId": "x"}).status_code == 422
    with server.client(token=None) as anonymous:
        assert anonymous.get("/api/events").status_code == 401
