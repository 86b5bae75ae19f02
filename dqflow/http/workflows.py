"""Workflow routes under ``/api/workflows``: start a run, read runs, cancel and retry them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, status
from starlette.concurrency import run_in_threadpool

from dqflow.errors import WorkflowRunNotFoundError, WorkflowWaitTimeoutError
from dqflow.http.auth import require_read, require_write
from dqflow.http.errors import InvalidInput, NotFound
from dqflow.http.jobs import ERRORS, MAX_ID, MAX_LIST_LIMIT, WaitQuery, _split_list, queue_of, wait_seconds
from dqflow.http.models import (
    StartWorkflowRequest,
    StartWorkflowResponse,
    WorkflowRun,
    WorkflowRunListResponse,
    WorkflowRunResponse,
)
from dqflow.queue import Queue
from dqflow.workflow_record import WorkflowRun as WorkflowRunRecord

RUN_NOT_FOUND = "Workflow run not found"

RunId = Annotated[int, Path(ge=1, le=MAX_ID, description="The run's id.")]

router = APIRouter(prefix="/api/workflows", tags=["workflows"], responses=ERRORS)  # type: ignore[arg-type]


def _run(queue: Queue, run_id: int) -> WorkflowRunRecord:
    """The run, or a 404."""
    run = queue.get_workflow(run_id)
    if run is None:
        raise NotFound(RUN_NOT_FOUND)
    return run


@router.post(
    "/{name}/runs",
    response_model=StartWorkflowResponse,
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(require_write)],
)
def start_run(
    request: Request, name: Annotated[str, Path(min_length=1, max_length=200)], body: StartWorkflowRequest
) -> StartWorkflowResponse:
    """Start a run. The input must match the workflow's input schema (422 names the field; nothing is stored)."""
    queue = queue_of(request)
    if name not in queue.declaration.workflows:
        known = ", ".join(sorted(queue.declaration.workflows)) or "none"
        raise NotFound(f"unknown workflow {name!r} (declared: {known})")
    try:
        run_id = queue.start_workflow(name, body.input, idempotency_key=body.idempotency_key, tags=body.tags)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(str(exc)) from None
    return StartWorkflowResponse(id=run_id, run=WorkflowRun.of(_run(queue, run_id)))


@router.get("/runs", response_model=WorkflowRunListResponse, dependencies=[Depends(require_read)])
def list_runs(
    request: Request,
    name: Annotated[str | None, Query(max_length=200, description="Only runs of this workflow.")] = None,
    status_: Annotated[
        list[str] | None,
        Query(alias="status", description="running, completed, failed, cancelled (comma-separated or repeated)"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 50,
    cursor: Annotated[int | None, Query(ge=1, le=MAX_ID, description="A page's nextCursor.")] = None,
) -> WorkflowRunListResponse:
    """Runs matching every filter, newest first."""
    try:
        page = queue_of(request).list_workflows(
            name=name or None, statuses=tuple(_split_list(status_)), limit=limit, cursor=cursor
        )
    except (ValueError, TypeError) as exc:
        raise InvalidInput(str(exc)) from None
    return WorkflowRunListResponse(
        runs=[WorkflowRun.of(run) for run in page.runs],
        has_more=page.next_cursor is not None,
        next_cursor=page.next_cursor,
    )


@router.get("/runs/{run_id}", response_model=WorkflowRunResponse, dependencies=[Depends(require_read)])
async def get_run(
    request: Request,
    run_id: RunId,
    wait: WaitQuery = None,
) -> WorkflowRunResponse:
    """One run with its steps (``{"run": {...}}``); 404 ``{"error": "Workflow run not found"}``."""
    queue = queue_of(request)
    if wait is not None:
        seconds = wait_seconds(wait)
        try:
            return WorkflowRunResponse(run=WorkflowRun.of(await queue.wait_workflow_async(run_id, timeout=seconds)))
        except WorkflowRunNotFoundError:
            raise NotFound(RUN_NOT_FOUND) from None
        except WorkflowWaitTimeoutError:
            pass
    return WorkflowRunResponse(run=WorkflowRun.of(await run_in_threadpool(_run, queue, run_id)))


@router.post("/runs/{run_id}/cancel", response_model=WorkflowRunResponse, dependencies=[Depends(require_write)])
def cancel_run(request: Request, run_id: RunId) -> WorkflowRunResponse:
    """Cancel a running run: steps not started are cancelled, running ones are asked to stop (409 if finished)."""
    queue = queue_of(request)
    _run(queue, run_id)
    return WorkflowRunResponse(run=WorkflowRun.of(queue.cancel_workflow(run_id)))


@router.post("/runs/{run_id}/retry", response_model=WorkflowRunResponse, dependencies=[Depends(require_write)])
def retry_run(request: Request, run_id: RunId) -> WorkflowRunResponse:
    """Re-run a failed or cancelled run's unfinished steps and carry on (409 otherwise)."""
    queue = queue_of(request)
    _run(queue, run_id)
    return WorkflowRunResponse(run=WorkflowRun.of(queue.retry_workflow(run_id)))
