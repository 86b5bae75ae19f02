"""The dashboard: server-rendered pages (Jinja2) with a little vanilla JS for live updates and writes.

Pages read through the same ``Queue`` as the API and need read access like it;
when a read token is configured, a sign-in form stores it in an HttpOnly cookie
that grants reads only. Cancel and retry are sent by the page's script with the
write token, which the user enters once and the browser keeps in sessionStorage.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from dqflow.http.auth import READ_COOKIE, Access, Unauthorized, check_access
from dqflow.http.jobs import MAX_ID, queue_of
from dqflow.record import JobRecord, JobStatus

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
PAGE_SIZE = 50
FINISHED = {JobStatus.COMPLETED.value, JobStatus.FAILED.value, JobStatus.CANCELLED.value}

templates = Jinja2Templates(directory=str(HERE / "templates"))

router = APIRouter(include_in_schema=False)


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


def _when(value: datetime | str | None) -> str:
    """``2026-12-01 21:28:25Z``: to the second, in UTC (error history times arrive as text)."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
    else:
        moment = value
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


templates.env.filters["pretty"] = _pretty
templates.env.filters["when"] = _when


def _base(request: Request) -> str:
    """Where the app is mounted ("" at the root): every link starts with it."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    context.update(base=_base(request), title=request.app.title, statuses=[s.value for s in JobStatus])
    return templates.TemplateResponse(request, name, context, status_code=status_code)


async def _readable(request: Request) -> HTMLResponse | None:
    """None when the request may read; else the sign-in page."""
    try:
        await check_access(request, Access.READ)
    except Unauthorized:
        return _page(request, "login.html", status_code=401, failed=bool(request.cookies.get(READ_COOKIE)))
    return None


@router.get("/", response_class=HTMLResponse)
async def jobs_page(
    request: Request,
    status: Annotated[str | None, Query(max_length=20)] = None,
    job_type: Annotated[str | None, Query(alias="type", max_length=200)] = None,
    tag: Annotated[str | None, Query(max_length=200)] = None,
    cursor: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> Response:
    """Jobs by status with counts, filters and paging."""
    if (refused := await _readable(request)) is not None:
        return refused
    queue = queue_of(request)
    status = status if status in {s.value for s in JobStatus} else None
    job_type = job_type or None
    tag = (tag or "").strip() or None

    def read() -> tuple[dict[tuple[str, JobStatus], int], list[JobRecord], int | None]:
        page = queue.list_jobs(
            status=status, job_type=job_type, tags=[tag] if tag else None, limit=PAGE_SIZE, cursor=cursor
        )
        return queue.count_jobs(), page.jobs, page.next_cursor

    counts, jobs, next_cursor = await run_in_threadpool(read)
    by_status = {s.value: 0 for s in JobStatus}
    for (counted_type, counted_status), count in counts.items():
        if job_type is None or counted_type == job_type:
            by_status[counted_status.value] += count
    job_types = sorted(set(queue.declaration.job_types) | {t for t, _ in counts})
    return _page(
        request,
        "jobs.html",
        jobs=jobs,
        counts=by_status,
        total=sum(by_status.values()),
        job_types=job_types,
        selected_status=status,
        selected_type=job_type,
        selected_tag=tag,
        cursor=cursor,
        next_cursor=next_cursor,
    )


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
async def job_page(request: Request, job_id: int) -> Response:
    """One job: payload, progress, output, errors and events, kept up to date by the page's script."""
    if (refused := await _readable(request)) is not None:
        return refused
    queue = queue_of(request)
    job = await run_in_threadpool(queue.get_job, job_id) if 1 <= job_id <= MAX_ID else None
    if job is None:
        return _page(request, "missing.html", status_code=404, job_id=job_id)
    events = await run_in_threadpool(queue.get_events, job_id)
    return _page(request, "job.html", job=job, events=events, finished=job.status.value in FINISHED)


@router.post("/login")
async def sign_in(request: Request) -> Response:
    """Keep a read token in an HttpOnly cookie (reads only: writes always need the header)."""
    form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=5)
    token = (form.get("token") or [""])[0].strip()
    base = _base(request)
    if not token:
        return _page(request, "login.html", status_code=400, failed=True)
    response = RedirectResponse(f"{base}/", status_code=303)
    response.set_cookie(
        READ_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=f"{base}/",
    )
    return response
