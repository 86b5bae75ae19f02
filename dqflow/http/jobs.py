"""The dataqueue-compatible job routes under ``/api/jobs``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, status
from starlette.concurrency import run_in_threadpool

from dqflow.durations import parse_duration
from dqflow.errors import JobNotFoundError, WaitTimeoutError
from dqflow.http.auth import require_read, require_write
from dqflow.http.errors import InvalidInput
from dqflow.http.models import (
    AddJobRequest,
    AddJobResponse,
    ErrorResponse,
    Event,
    EventsResponse,
    Job,
    JobListResponse,
    JobResponse,
    OkResponse,
)
from dqflow.queue import Queue
from dqflow.storage import JobPage

MAX_ID = 2**63 - 1
MAX_LIST_LIMIT = 1000
MAX_OFFSET = 10_000 - MAX_LIST_LIMIT - 1  # offset + limit + 1 rows fit in one storage page

MAX_WAIT_S = 60.0
"""Longest long-poll: a client that went away holds a waiter this long at most."""
WaitQuery = Annotated[
    str | None,
    Query(
        max_length=20,
        description=f"Long-poll: answer once it has finished or after this long (`30s`, at most "
        f"{MAX_WAIT_S:g} s), whichever comes first.",
    ),
]

JobId = Annotated[int, Path(ge=1, le=MAX_ID, description="The job's id.")]

ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 409, 413, 422)}

router = APIRouter(prefix="/api/jobs", tags=["jobs"], responses=ERRORS)  # type: ignore[arg-type]


def queue_of(request: Request) -> Queue:
    """The queue the app serves."""
    queue: Queue = request.app.state.dqflow.queue
    return queue


def _split_list(values: list[str] | None) -> list[str]:
    """``?status=a,b&status=c`` → ``[a, b, c]``."""
    return [part for value in values or () for part in value.split(",") if part]


@router.get("", response_model=JobListResponse, dependencies=[Depends(require_read)])
def list_jobs(
    request: Request,
    status_: Annotated[
        list[str] | None, Query(alias="status", description="pending, processing, ... (comma-separated or repeated)")
    ] = None,
    job_type: Annotated[str | None, Query(alias="jobType", max_length=200)] = None,
    tags: Annotated[list[str] | None, Query(description="Comma-separated or repeated.")] = None,
    tag_mode: Annotated[str, Query(alias="tagMode", description="all, any, none or exact.")] = "all",
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Skip this many (use cursor for deep pages).")] = 0,
    cursor: Annotated[int | None, Query(ge=1, le=MAX_ID, description="A page's nextCursor.")] = None,
) -> JobListResponse:
    """Jobs matching every filter, newest first."""
    try:
        page: JobPage = queue_of(request).list_jobs(
            status=_split_list(status_) or None,
            job_type=job_type or None,
            tags=_split_list(tags),
            tag_mode=tag_mode,
            limit=offset + limit,
            cursor=cursor,
        )
    except (ValueError, TypeError) as exc:
        raise InvalidInput(str(exc)) from None
    jobs = page.jobs[offset:]
    has_more = page.next_cursor is not None
    return JobListResponse(
        jobs=[Job.of(job) for job in jobs],
        has_more=has_more,
        next_cursor=jobs[-1].id if has_more and jobs else None,
    )


@router.post(
    "", response_model=AddJobResponse, status_code=status.HTTP_201_CREATED, dependencies=[Depends(require_write)]
)
def add_job(request: Request, body: AddJobRequest) -> AddJobResponse:
    """Add a job. The payload must match the job type's schema (422 names the field; nothing is stored)."""
    queue = queue_of(request)
    options = body.model_dump(exclude_unset=True, exclude={"job_type", "payload", "timeout_ms", "group"})
    if body.group is not None:
        options["group"] = body.group.id
    if "timeout_ms" in body.model_fields_set:
        options["timeout"] = None if body.timeout_ms is None else body.timeout_ms / 1000
    try:
        job_id = queue.add(body.job_type, body.payload, **options)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(str(exc)) from None
    return AddJobResponse(id=job_id, job=Job.of(queue.require_job(job_id)))


@router.get("/{job_id}", response_model=JobResponse, dependencies=[Depends(require_read)])
async def get_job(
    request: Request,
    job_id: JobId,
    wait: WaitQuery = None,
) -> JobResponse:
    """One job (``{"job": {...}}``, dataqueue's shape); 404 ``{"error": "Job not found"}``."""
    queue = queue_of(request)
    if wait is None:
        return JobResponse(job=Job.of(await run_in_threadpool(queue.require_job, job_id)))
    seconds = wait_seconds(wait)
    try:
        record = await queue.wait_async(job_id, timeout=seconds)
    except WaitTimeoutError:
        record = await run_in_threadpool(queue.require_job, job_id)
    return JobResponse(job=Job.of(record))


def wait_seconds(text: str) -> float:
    """A long-poll's ``wait`` query value in seconds (``30s``, ``1.5``); 422 outside 0..``MAX_WAIT_S``."""
    try:
        seconds = float(text) if text.replace(".", "", 1).isdigit() else parse_duration(text)
    except ValueError as exc:
        raise InvalidInput(f"query.wait: {exc}") from None
    if not 0 <= seconds <= MAX_WAIT_S:
        raise InvalidInput(f"query.wait: must be between 0 and {MAX_WAIT_S:g} s, got {text!r}")
    return seconds


@router.get("/{job_id}/events", response_model=EventsResponse, dependencies=[Depends(require_read)])
def get_events(request: Request, job_id: JobId) -> EventsResponse:
    """The job's persisted history, oldest first."""
    queue = queue_of(request)
    events = queue.get_events(job_id)
    if not events and queue.get_job(job_id) is None:
        raise JobNotFoundError(job_id)
    return EventsResponse(events=[Event.of(event) for event in events])


@router.post("/{job_id}/cancel", response_model=OkResponse, dependencies=[Depends(require_write)])
def cancel_job(request: Request, job_id: JobId) -> OkResponse:
    """Cancel a pending, waiting or running job (409 when it has already finished)."""
    queue_of(request).cancel(job_id)
    return OkResponse()


@router.post("/{job_id}/retry", response_model=OkResponse, dependencies=[Depends(require_write)])
def retry_job(request: Request, job_id: JobId) -> OkResponse:
    """Run a failed or cancelled job again from scratch (409 otherwise)."""
    queue_of(request).retry(job_id)
    return OkResponse()
