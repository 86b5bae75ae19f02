"""The dashboard in headless Chromium (Debian's ``chromium``) against a real ``dqflow serve`` and worker.

Screenshots go to the test's tmp_path (laptop and phone sizes).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from backends import IN_CI, backend_url
from http_server import HTTP_APP, READ_TOKEN, WRITE_TOKEN, Server, serve, worker

from dqflow import JobStatus, Queue, Worker

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LAPTOP = {"width": 1366, "height": 850}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Server, Queue]]:
    with (
        backend_url("sqlite", tmp_path) as url,
        serve(url, tmp_path / "serve.log") as server,
        Queue.from_yaml(HTTP_APP, backend=url) as queue,
    ):
        yield server, queue


def _sign_in(page: Any, server: Server) -> None:
    response = page.goto(server.base_url + "/")
    assert response.status == 401 and page.locator("h1").inner_text() == "Sign in"
    page.fill("input[name=token]", "not-the-token")
    page.click("button[type=submit]")
    assert page.locator("p.error").is_visible()
    page.fill("input[name=token]", READ_TOKEN)
    page.click("button[type=submit]")
    page.wait_for_selector("table.jobs")


def _progress_of(page: Any) -> int:
    return int(page.get_attribute(".progress-row .progress", "aria-valuenow"))


def test_list_open_watch_progress_cancel_and_retry(browser: Any, site: tuple[Server, Queue], tmp_path: Path) -> None:
    server, queue = site
    done = queue.add("echo", {"n": 1}, tags=["fast"])
    failed = queue.add("boom", {"why": "on purpose"})
    drain = threading.Thread(target=Worker(queue, drain=True).run)  # Playwright holds this thread's event loop
    drain.start()
    drain.join(timeout=60)
    watched = queue.add("steps", {"steps": 25, "pause": 0.2})
    stuck = queue.add("steps", {"steps": 1000, "pause": 0.05}, priority=-1)

    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    _sign_in(page, server)

    # The list: counts per status, filters, links.
    assert page.locator('[data-count="all"]').inner_text() == "4"
    assert page.locator('[data-count="completed"]').inner_text() == "1"
    assert page.locator('[data-count="failed"]').inner_text() == "1"
    assert page.locator('[data-count="pending"]').inner_text() == "2"
    assert page.locator("tr[data-job-id]").count() == 4
    page.screenshot(path=tmp_path / "list.png", full_page=True)
    page.click(".tab-failed")
    page.wait_for_url("**/?status=failed*")
    assert [r.get_attribute("data-job-id") for r in page.locator("tr[data-job-id]").all()] == [str(failed)]
    page.goto(server.base_url + "/")
    page.select_option("select[name=type]", "echo")
    page.click(".filters button[type=submit]")
    page.wait_for_url("**type=echo*")
    assert [r.get_attribute("data-job-id") for r in page.locator("tr[data-job-id]").all()] == [str(done)]

    # A finished job's page: output, error history.
    page.goto(f"{server.base_url}/jobs/{failed}")
    assert page.locator("#job-status").inner_text() == "failed"
    assert "boom: on purpose" in page.locator("#job-errors").inner_text()
    assert '"why": "on purpose"' in page.locator("#job-payload").inner_text()
    assert page.locator("#retry-button").is_visible() and not page.locator("#cancel-button").is_visible()

    # Open the running job and watch its progress bar move while a worker process runs it.
    page.goto(f"{server.base_url}/jobs/{watched}")
    assert page.locator("#job-status").inner_text() == "pending"
    page.wait_for_selector('[data-page="job"][data-live="true"]')  # the event stream is open
    seen: list[int] = []
    with worker(server.backend, tmp_path / "worker.log", "--concurrency", "2"):
        deadline = time.monotonic() + 60
        while page.locator("#job-status").inner_text() != "completed":
            assert time.monotonic() < deadline, f"progress seen: {seen}"
            value = _progress_of(page)
            if not seen or value != seen[-1]:
                seen.append(value)
            if len(seen) == 3:
                page.screenshot(path=tmp_path / "progress.png", full_page=True)
            time.sleep(0.1)
        assert _progress_of(page) == 100
        assert '"done": 25' in page.locator("#job-output").inner_text()
        moving = [v for v in seen if 0 < v < 100]
        assert len(moving) >= 3 and moving == sorted(moving), seen
        assert [e.inner_text() for e in page.locator("#job-events .badge").all()] == [
            "added",
            "processing",
            "completed",
        ]

        # Cancel the other job while it runs: the token is asked for once.
        page.goto(f"{server.base_url}/jobs/{stuck}")
        page.wait_for_function("document.getElementById('job-status').textContent === 'processing'", timeout=30_000)
        page.click("#cancel-button")
        page.wait_for_selector("#token-dialog[open]")
        page.fill("#token-input", WRITE_TOKEN)
        page.click("#token-save")
        page.wait_for_function("document.getElementById('job-status').textContent === 'cancelled'", timeout=15_000)
        assert queue.require_job(stuck).status is JobStatus.CANCELLED
        assert page.locator("#flash").inner_text() == "Cancelled."
        assert page.evaluate("sessionStorage.getItem('dqflow-write-token')") == WRITE_TOKEN
        page.screenshot(path=tmp_path / "cancelled.png", full_page=True)

        # Retry uses the kept token (no dialog) and the worker picks the job up again.
        page.click("#retry-button")
        page.wait_for_function(
            "['pending', 'processing'].includes(document.getElementById('job-status').textContent)", timeout=15_000
        )
        assert not page.locator("#token-dialog[open]").count()
        assert queue.require_job(stuck).status in (JobStatus.PENDING, JobStatus.PROCESSING)
        queue.cancel(stuck)
    context.close()


def test_a_wrong_write_token_is_refused_and_forgotten(browser: Any, site: tuple[Server, Queue]) -> None:
    server, queue = site
    job_id = queue.add("echo", {"n": 1})
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    _sign_in(page, server)
    page.goto(f"{server.base_url}/jobs/{job_id}")
    page.click("#cancel-button")
    page.fill("#token-input", READ_TOKEN)
    page.click("#token-save")
    page.wait_for_selector("#flash.error")
    assert page.locator("#flash").inner_text() == "this token may not write"
    assert page.evaluate("sessionStorage.getItem('dqflow-write-token')") is None
    assert queue.require_job(job_id).status is JobStatus.PENDING
    context.close()


def test_pages_fit_a_phone(browser: Any, site: tuple[Server, Queue], tmp_path: Path) -> None:
    server, queue = site
    job_id = queue.add("steps", {"steps": 3}, tags=["mobile", "check"])
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    page = context.new_page()
    _sign_in(page, server)
    for path, shot in (("/", "phone-list.png"), (f"/jobs/{job_id}", "phone-job.png")):
        page.goto(server.base_url + path)
        page.screenshot(path=tmp_path / shot, full_page=True)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} is {overflow}px wider than the phone"
    assert page.locator("#cancel-button").is_visible()
    context.close()
