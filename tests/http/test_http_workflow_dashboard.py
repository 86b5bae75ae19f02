"""The dashboard's workflow pages in headless Chromium against a real ``dqflow serve`` and worker:
the runs list, a run drawn as a graph of steps coloured by status that updates live, links to
the step jobs, cancel and retry with the write token. Screenshots go to the test's tmp_path."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from backends import backend_url
from http_server import READ_TOKEN, WRITE_TOKEN, Server, serve, worker
from test_http_dashboard import LAPTOP, PHONE, browser  # noqa: F401 - the module's Chromium fixture

from dqflow import Queue, WorkflowStatus

WF_APP = Path(__file__).parent / "app" / "workflows.yaml"


@pytest.fixture
def wf_site(tmp_path: Path) -> Iterator[tuple[Server, Queue]]:
    with (
        backend_url("sqlite", tmp_path) as url,
        serve(url, tmp_path / "serve.log", config=WF_APP) as server,
        Queue.from_yaml(WF_APP, backend=url) as queue,
    ):
        yield server, queue


def _sign_in(page: Any, server: Server, path: str) -> None:
    """Sign in with the read token on ``path``'s sign-in page, then open ``path``."""
    response = page.goto(server.base_url + path)
    assert response.status == 401
    page.fill("input[name=token]", READ_TOKEN)
    page.click("button[type=submit]")
    page.wait_for_selector("table.jobs")
    page.goto(server.base_url + path)


def _statuses(page: Any) -> dict[str, str]:
    nodes = page.locator("svg.graph g.step").all()
    return {node.get_attribute("data-step"): node.get_attribute("data-status") for node in nodes}


def _wait_statuses(page: Any, wanted: dict[str, str], limit: float = 60) -> list[dict[str, str]]:
    """Poll the drawn graph (never reloading the page) until it shows ``wanted``; return what it showed."""
    seen: list[dict[str, str]] = []
    deadline = time.monotonic() + limit
    while True:
        now = _statuses(page)
        if not seen or now != seen[-1]:
            seen.append(now)
        if now == wanted:
            return seen
        assert time.monotonic() < deadline, f"graph states seen: {seen}"
        time.sleep(0.05)


def test_runs_list_and_a_live_run_graph(browser: Any, wf_site: tuple[Server, Queue], tmp_path: Path) -> None:  # noqa: F811
    server, queue = wf_site
    finished = queue.start_workflow("words", {"text": "done already", "pause": 0})
    watched = queue.start_workflow("words", {"text": "one two three four", "pause": 0.6}, tags=["watched"])

    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    _sign_in(page, server, "/workflows")
    assert [r.get_attribute("data-run-id") for r in page.locator("tr[data-run-id]").all()] == [
        str(watched),
        str(finished),
    ]
    page.screenshot(path=tmp_path / "runs.png", full_page=True)

    page.click(f'a[href$="/workflows/runs/{watched}"]')
    page.wait_for_selector("svg.graph")
    assert _statuses(page) == {"split": "running", "count": "waiting", "total": "waiting"}
    assert page.locator("svg.graph path.edge").count() == 2  # split → count → total
    page.wait_for_selector('[data-page="run"][data-live="true"]')  # the event stream is open
    page.screenshot(path=tmp_path / "run-before.png", full_page=True)

    with worker(server.backend, tmp_path / "worker.log", config=WF_APP):
        seen = _wait_statuses(page, {"split": "completed", "count": "completed", "total": "completed"})
        assert {"split": "completed", "count": "running", "total": "waiting"} in seen, seen  # drawn mid-run
        page.screenshot(path=tmp_path / "run-after.png", full_page=True)
        assert page.locator("#run-status").inner_text() == "completed"
        assert '"total": 15' in page.locator("#run-output").inner_text()
        count_node = page.locator('svg.graph g.step[data-step="count"]')
        assert "4/4 jobs done" in (count_node.text_content() or "")

        run = queue.require_workflow(watched)
        assert run.status is WorkflowStatus.COMPLETED
        job_links = page.locator('tr[data-step="count"] .job-links a').all()
        assert [link.inner_text() for link in job_links] == [f"#{i}" for i in run.step("count").job_ids]
        page.click('svg.graph a:has(g[data-step="total"])')
        page.wait_for_url(f"**/jobs/{run.step('total').job_ids[0]}")
        assert page.locator("#job-status").inner_text() == "completed"

        # Cancel a run from its page (the write token is asked for once), then retry it.
        slow = queue.start_workflow("words", {"text": "a b c d e f g h i j k l", "pause": 2})
        page.goto(f"{server.base_url}/workflows/runs/{slow}")
        page.wait_for_function("document.querySelector('g.step[data-step=count]')?.dataset.status === 'running'")
        page.click("#run-cancel-button")
        page.wait_for_selector("#token-dialog[open]")
        page.fill("#token-input", WRITE_TOKEN)
        page.click("#token-save")
        page.wait_for_function("document.getElementById('run-status').textContent === 'cancelled'", timeout=15_000)
        assert queue.require_workflow(slow).status is WorkflowStatus.CANCELLED
        assert _statuses(page)["count"] == "cancelled" and _statuses(page)["total"] == "cancelled"
        page.screenshot(path=tmp_path / "run-cancelled.png", full_page=True)
        page.click("#run-retry-button")
        page.wait_for_function("document.getElementById('run-status').textContent === 'running'", timeout=15_000)
        assert queue.require_workflow(slow).status is WorkflowStatus.RUNNING
        queue.cancel_workflow(slow)
    context.close()


def test_run_pages_fit_a_phone(browser: Any, wf_site: tuple[Server, Queue], tmp_path: Path) -> None:  # noqa: F811
    server, queue = wf_site
    run_id = queue.start_workflow("words", {"text": "tiny phone", "pause": 0})
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    page = context.new_page()
    _sign_in(page, server, "/workflows")
    for path, shot in (("/workflows", "phone-runs.png"), (f"/workflows/runs/{run_id}", "phone-run.png")):
        page.goto(server.base_url + path)
        page.screenshot(path=tmp_path / shot, full_page=True)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} is {overflow}px wider than the phone"
    assert page.locator("svg.graph g.step").count() == 3
    missing = page.goto(f"{server.base_url}/workflows/runs/987654")
    assert missing.status == 404 and "not found" in page.locator("h1").inner_text()
    context.close()
