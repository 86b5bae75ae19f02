"""``GET /api/events``: Server-Sent Events of job changes stored by any worker process."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from dqflow.http.auth import require_read
from dqflow.http.errors import InvalidInput
from dqflow.http.jobs import MAX_ID, queue_of
from dqflow.http.live import ChangeHub, Subscriber, stream

router = APIRouter(tags=["events"])


def hub_of(request: Request) -> ChangeHub:
    """The app's one change hub (created with the first client)."""
    settings = request.app.state.dqflow
    if settings.hub is None:
        settings.hub = ChangeHub(settings.queue)
    hub: ChangeHub = settings.hub
    return hub


@router.get(
    "/api/events",
    dependencies=[Depends(require_read)],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "An endless event stream."}},
)
async def events(
    request: Request,
    job_id: Annotated[int | None, Query(alias="jobId", ge=1, le=MAX_ID)] = None,
    job_type: Annotated[str | None, Query(alias="jobType", min_length=1, max_length=200)] = None,
    run_id: Annotated[
        int | None, Query(alias="runId", ge=1, le=MAX_ID, description="Only the step jobs of this workflow run.")
    ] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=100)] = None,
    resume_after: Annotated[
        str | None, Query(alias="lastEventId", max_length=100, description="Like the Last-Event-ID header.")
    ] = None,
) -> StreamingResponse:
    """Server-Sent Events as changes are stored (job:processing, job:progress, job:output,
    job:completed, job:failed, job:retried, job:cancelled, job:edited, job:reclaimed), from any
    worker process.

    Each event's ``id`` is its place in the change feed: reconnect with ``Last-Event-ID``
    (browsers do) to get what was missed first. ``data`` is JSON: ``jobId``, ``jobType``,
    ``at``, and the change (``progress``, ``output``, ``error``/``reason``/``willRetry``, ...).
    """
    after = last_event_id or resume_after
    queue = queue_of(request)
    if after:
        try:
            await asyncio.to_thread(queue.storage.read_changes, after, 1)
        except ValueError as exc:
            raise InvalidInput(f"Last-Event-ID: {exc}") from None
    subscriber = Subscriber(asyncio.get_running_loop(), job_id=job_id, job_type=job_type, run_id=run_id)
    return StreamingResponse(
        stream(hub_of(request), subscriber, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
