"""The dashboard's workflow pages: runs by status, and one run drawn as a graph of its steps.

The run page's graph is server-rendered SVG (``_run_graph.html``); the page's
script re-reads the ``/graph`` fragment whenever the event stream reports a
change to one of the run's step jobs, so it updates live.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from dqflow.http.dashboard import PAGE_SIZE, _page, _readable, templates
from dqflow.http.jobs import MAX_ID, queue_of
from dqflow.http.run_graph import NODE_HEIGHT, NODE_WIDTH, RunGraph, layout
from dqflow.queue import Queue
from dqflow.workflow_record import WorkflowRun

RUN_STATUSES = ("running", "completed", "failed", "cancelled")
FINISHED_RUN = {"completed", "failed", "cancelled"}
MAX_JOBS_COUNTED = 500
"""Step jobs read per run page to count a fan-out's finished jobs."""

router = APIRouter(include_in_schema=False)


def _value(status: StrEnum) -> str:
    return status.value


@router.get("/workflows", response_class=HTMLResponse)
async def runs_page(
    request: Request,
    status: Annotated[str | None, Query(max_length=20)] = None,
    name: Annotated[str | None, Query(max_length=200)] = None,
    cursor: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> Response:
    """Workflow runs, newest first, filtered by status and workflow."""
    if (refused := await _readable(request)) is not None:
        return refused
    queue = queue_of(request)
    status = status if status in RUN_STATUSES else None
    name = name or None
    page = await run_in_threadpool(
        queue.list_workflows, name=name, statuses=(status,) if status else (), limit=PAGE_SIZE, cursor=cursor
    )
    return _page(
        request,
        "runs.html",
        runs=page.runs,
        run_statuses=RUN_STATUSES,
        workflows=sorted(queue.declaration.workflows),
        selected_status=status,
        selected_name=name,
        cursor=cursor,
        next_cursor=page.next_cursor,
        status_of=_value,
        steps_done=_steps_done,
    )


def _steps_done(run: WorkflowRun) -> int:
    return sum(1 for step in run.steps if step.is_over)


def _graph(queue: Queue, run: WorkflowRun) -> RunGraph:
    """The run's layout: needs and job types from the declared workflow, finished jobs counted."""
    workflow = queue.declaration.workflows.get(run.name)
    needs = None if workflow is None else {name: step.needs for name, step in workflow.steps.items()}
    jobs = {} if workflow is None else {name: step.job for name, step in workflow.steps.items()}
    done: dict[str, int] = {}
    for step in run.steps:
        ids = list(step.job_ids or ())
        if _value(step.status) == "completed":
            done[step.name] = len(ids)
        elif len(ids) > 1:
            records = (queue.get_job(i) for i in ids[:MAX_JOBS_COUNTED])
            done[step.name] = sum(1 for r in records if r is not None and r.status.value == "completed")
    return layout(run.steps, needs, jobs, done)


async def _read_run(request: Request, run_id: int) -> tuple[WorkflowRun, RunGraph] | None:
    queue = queue_of(request)

    def read() -> tuple[WorkflowRun, RunGraph] | None:
        run = queue.get_workflow(run_id)
        return None if run is None else (run, _graph(queue, run))

    return await run_in_threadpool(read) if 1 <= run_id <= MAX_ID else None


@router.get("/workflows/runs/{run_id}", response_class=HTMLResponse)
async def run_page(request: Request, run_id: int) -> Response:
    """One run: its graph of steps coloured by status (each linking to its jobs), input and output."""
    if (refused := await _readable(request)) is not None:
        return refused
    found = await _read_run(request, run_id)
    if found is None:
        return _page(request, "missing.html", status_code=404, what=f"Workflow run #{run_id}")
    run, graph = found
    return _page(request, "run.html", **_run_context(run, graph))


@router.get("/workflows/runs/{run_id}/graph", response_class=HTMLResponse)
async def run_fragment(request: Request, run_id: int) -> Response:
    """The live part of the run page (graph, steps, output), re-read by the page's script."""
    if (refused := await _readable(request)) is not None:
        return refused
    found = await _read_run(request, run_id)
    if found is None:
        return HTMLResponse("", status_code=404)
    run, graph = found
    context = {**_run_context(run, graph), "base": str(request.scope.get("root_path", "")).rstrip("/")}
    return templates.TemplateResponse(request, "_run_live.html", context)


def _run_context(run: WorkflowRun, graph: RunGraph) -> dict[str, Any]:
    status = _value(run.status)
    return {
        "run": run,
        "run_status": status,
        "finished": status in FINISHED_RUN,
        "graph": graph,
        "node_width": NODE_WIDTH,
        "node_height": NODE_HEIGHT,
        "status_of": _value,
    }
