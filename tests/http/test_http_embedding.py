"""``create_app`` inside a user's own app: a prefix, CORS, the app's own authorization, no tokens."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from http_server import HTTP_APP

from dqflow import Queue
from dqflow.http import Access, create_app


class AppClient:
    """Requests straight into an ASGI app (no server), one event loop per request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __enter__(self) -> AppClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                return await client.request(method, url, **kwargs)

        return asyncio.run(send())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def options(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("OPTIONS", url, **kwargs)


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[Queue]:
    with Queue.from_yaml(HTTP_APP, backend=f"sqlite:///{tmp_path / 'q.db'}", import_handlers=False) as opened:
        yield opened


def test_mounted_under_a_prefix(queue: Queue) -> None:
    main = FastAPI()
    main.mount("/tools/jobs", create_app(queue, write_token="w", tokens_from_env=False))
    job_id = queue.add("echo", {"n": 1})
    with AppClient(main) as client:
        assert client.get(f"/tools/jobs/api/jobs/{job_id}").json()["job"]["id"] == job_id
        assert client.get("/tools/jobs/api/openapi.json").status_code == 200
        cancel = client.post(f"/tools/jobs/api/jobs/{job_id}/cancel", headers={"Authorization": "Bearer w"})
        assert cancel.json() == {"ok": True}


def test_writes_are_refused_when_no_write_token_is_configured(queue: Queue, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DQFLOW_API_TOKEN", raising=False)
    monkeypatch.delenv("DQFLOW_API_READ_TOKEN", raising=False)
    job_id = queue.add("echo", {"n": 1})
    with AppClient(create_app(queue)) as client:
        assert client.get(f"/api/jobs/{job_id}").status_code == 200  # reads are open without a read token
        response = client.post(f"/api/jobs/{job_id}/cancel", headers={"Authorization": "Bearer anything"})
    assert response.status_code == 403 and "DQFLOW_API_TOKEN" in response.json()["error"]
    assert queue.require_job(job_id).status.value == "pending"


def test_tokens_come_from_the_environment(queue: Queue, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DQFLOW_API_TOKEN", "env-write")
    monkeypatch.setenv("DQFLOW_API_READ_TOKEN", "env-read")
    with AppClient(create_app(queue)) as client:
        assert client.get("/api/jobs").status_code == 401
        assert client.get("/api/jobs", headers={"Authorization": "Bearer env-read"}).status_code == 200
        add = {"jobType": "echo", "payload": {"n": 1}}
        assert client.post("/api/jobs", json=add, headers={"Authorization": "Bearer env-write"}).status_code == 201


def test_an_authorize_callable_replaces_tokens(queue: Queue) -> None:
    seen: list[Access] = []

    async def authorize(request: Request, access: Access) -> bool:
        seen.append(access)
        return request.headers.get("x-user") == "admin" or access is Access.READ

    job_id = queue.add("echo", {"n": 1})
    with AppClient(create_app(queue, authorize=authorize, write_token="ignored")) as client:
        assert client.get(f"/api/jobs/{job_id}").status_code == 200
        refused = client.post(f"/api/jobs/{job_id}/cancel")
        assert refused.status_code == 403 and refused.json() == {"error": "not allowed to write"}
        assert client.post(f"/api/jobs/{job_id}/cancel", headers={"x-user": "admin"}).json() == {"ok": True}
    assert seen == [Access.READ, Access.WRITE, Access.WRITE]


def test_cors_is_off_by_default_and_allows_only_configured_origins(queue: Queue) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    with AppClient(create_app(queue, tokens_from_env=False)) as client:
        response = client.get("/api/jobs", headers={"Origin": "https://app.example"})
        assert "access-control-allow-origin" not in response.headers
        assert "access-control-allow-origin" not in client.options("/api/jobs", headers=preflight).headers
    app = create_app(queue, tokens_from_env=False, cors_origins=["https://app.example"])
    with AppClient(app) as client:
        allowed = client.options("/api/jobs", headers=preflight)
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        other = client.get("/api/jobs", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_body_limit_is_configurable(queue: Queue) -> None:
    with AppClient(create_app(queue, write_token="w", max_body_bytes=100, tokens_from_env=False)) as client:
        response = client.post(
            "/api/jobs", json={"jobType": "echo", "payload": {"n": 1, "label": "x" * 200}},
            headers={"Authorization": "Bearer w"},
        )  # fmt: skip
    assert response.status_code == 413 and response.json() == {"error": "request body is over the limit of 100 bytes"}
    assert queue.list_jobs().jobs == []


def test_the_dashboard_links_and_assets_follow_the_mount_prefix(queue: Queue) -> None:
    main = FastAPI()
    main.mount("/ops/q", create_app(queue, tokens_from_env=False))
    job_id = queue.add("echo", {"n": 1})
    with AppClient(main) as client:
        listing = client.get("/ops/q/")
        assert listing.status_code == 200 and f'href="/ops/q/jobs/{job_id}"' in listing.text
        assert 'src="/ops/q/static/dqflow.js"' in listing.text and 'data-base="/ops/q"' in listing.text
        assert client.get("/ops/q/static/dqflow.css").status_code == 200
        job = client.get(f"/ops/q/jobs/{job_id}")
        assert job.status_code == 200 and f"Job #{job_id}" in job.text
        assert client.get("/ops/q/jobs/987654").status_code == 404


def test_a_read_token_puts_the_dashboard_behind_a_sign_in_that_only_grants_reads(queue: Queue) -> None:
    app = create_app(queue, read_token="r", write_token="w", tokens_from_env=False)
    job_id = queue.add("echo", {"n": 1})
    with AppClient(app) as client:
        assert client.get("/").status_code == 401 and "Sign in" in client.get("/").text
        signed = client.post("/login", data={"token": "r"})
        assert signed.status_code == 303 and signed.headers["location"] == "/"
        cookie = signed.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        as_cookie = {"Cookie": "dqflow_token=r"}
        assert client.get("/", headers=as_cookie).status_code == 200
        assert client.get(f"/api/jobs/{job_id}", headers=as_cookie).status_code == 200
        # The cookie never writes, even with the write token in it: a page on another site cannot make us cancel.
        assert client.post(f"/api/jobs/{job_id}/cancel", headers={"Cookie": "dqflow_token=w"}).status_code == 401
        assert client.get("/", headers={"Cookie": "dqflow_token=nope"}).status_code == 401
    assert queue.require_job(job_id).status.value == "pending"


def test_the_dashboard_can_be_left_out(queue: Queue) -> None:
    with AppClient(create_app(queue, dashboard=False, tokens_from_env=False)) as client:
        assert client.get("/").status_code == 404
        assert client.get("/api/jobs").status_code == 200


def test_serve_without_the_http_extra_names_it(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "for name in ('fastapi', 'uvicorn'): sys.modules[name] = None\n"
        "from dqflow.cli import run\n"
        f"sys.exit(run(['serve', '-c', {str(HTTP_APP)!r}, '-b', 'sqlite:///{tmp_path}/q.db']))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done
    assert done.stderr.strip().splitlines() == [
        "error: serve: HTTP support is not installed: pip install 'dqflow[http]'"
    ]
