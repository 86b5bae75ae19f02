"""Live updates: one shared tail of the storage's change feed per app, fanned out to SSE clients.

The queue's one follower of the feed (``Queue.changes``: LISTEN/NOTIFY, a Redis
stream read, a SQLite ``data_version`` check) hands each change to the event loop
of every client whose filters match. However many
clients are connected, the database sees one reader per server process. A client
that reconnects with ``Last-Event-ID`` first gets what it missed, read once from
the feed, then the live changes (duplicates dropped by cursor).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from pydantic.alias_generators import to_camel

from dqflow.queue import Queue
from dqflow.storage.changes import OUTPUT, Change

READ_BATCH = 500
CLIENT_BUFFER = 2000
"""Changes one client may have waiting; a client that falls further behind is disconnected
(it reconnects with ``Last-Event-ID`` and catches up from the feed)."""
RESUME_LIMIT = 10_000
HEARTBEAT_SECONDS = 15.0
RETRY_MS = 2000

_CLOSED = object()


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One SSE event: ``id`` (the feed cursor), ``event`` (``job:progress``...), its JSON data."""

    id: str
    event: str
    job_id: int
    job_type: str
    data: str
    run_id: int | None = None

    def encode(self) -> bytes:
        return f"id: {self.id}\nevent: {self.event}\ndata: {self.data}\n\n".encode()


@dataclass(eq=False)
class Subscriber:
    """One connected client: its filters, its event loop and its queue."""

    loop: asyncio.AbstractEventLoop
    job_id: int | None = None
    job_type: str | None = None
    run_id: int | None = None
    queue: asyncio.Queue[Any] = field(default_factory=lambda: asyncio.Queue(CLIENT_BUFFER))
    closed: bool = False

    def wants(self, event: LiveEvent) -> bool:
        return (
            (self.job_id is None or event.job_id == self.job_id)
            and (self.job_type is None or event.job_type == self.job_type)
            and (self.run_id is None or event.run_id == self.run_id)
        )

    def offer(self, item: Any) -> None:
        """Called on the loop's thread."""
        if self.closed:
            return
        if item is _CLOSED or self.queue.full():
            # Too far behind (or shutting down): drop the backlog and end the stream; the client
            # reconnects with Last-Event-ID and catches up from the feed.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.closed = True
            self.queue.put_nowait(_CLOSED)
            return
        self.queue.put_nowait(item)


def _camel(data: dict[str, Any]) -> dict[str, Any]:
    return {to_camel(key): value for key, value in data.items()}


def to_live_events(queue: Queue, changes: list[Change]) -> list[LiveEvent]:
    """Changes as SSE events; an output change carries the job's current output (read once per job)."""
    outputs: dict[int, Any] = {}
    for job_id in {c.job_id for c in changes if c.kind == OUTPUT}:
        record = queue.get_job(job_id)
        outputs[job_id] = None if record is None else record.output
    events = []
    for change in changes:
        body: dict[str, Any] = {"jobId": change.job_id, "jobType": change.job_type, "at": change.at.isoformat()}
        if change.workflow_run_id is not None:
            body["runId"] = change.workflow_run_id
        body.update(_camel(change.data))
        if change.kind == OUTPUT:
            body["output"] = outputs.get(change.job_id)
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        events.append(
            LiveEvent(change.cursor, f"job:{change.kind}", change.job_id, change.job_type, text, change.workflow_run_id)
        )
    return events


class ChangeHub:
    """Fans the queue's change feed (``Queue.changes``, one follower thread) out to SSE clients."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue
        self._subscribers: set[Subscriber] = set()
        self._lock = threading.Lock()

    def subscribe(self, subscriber: Subscriber) -> None:
        """Returns once the feed is followed: every later change reaches ``subscriber``."""
        with self._lock:
            self._subscribers.add(subscriber)
        self.queue.changes.subscribe(self._hear)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(subscriber)

    def close(self) -> None:
        """Every open stream ends (the queue's feed goes on for its other listeners)."""
        self.queue.changes.unsubscribe(self._hear)
        with self._lock:
            subscribers = list(self._subscribers)
            self._subscribers.clear()
        for subscriber in subscribers:
            subscriber.loop.call_soon_threadsafe(subscriber.offer, _CLOSED)

    def _hear(self, changes: list[Change]) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        if not subscribers:
            return
        events = to_live_events(self.queue, changes)
        for subscriber in subscribers:
            wanted = [event for event in events if subscriber.wants(event)]
            if wanted and not subscriber.loop.is_closed():
                for event in wanted:
                    subscriber.loop.call_soon_threadsafe(subscriber.offer, event)


async def stream(hub: ChangeHub, subscriber: Subscriber, last_event_id: str | None) -> AsyncIterator[bytes]:
    """The SSE body: the missed changes after ``last_event_id`` (if given), then live ones."""
    await asyncio.to_thread(hub.subscribe, subscriber)
    try:
        yield f"retry: {RETRY_MS}\n: connected\n\n".encode()
        sent: set[str] = set()
        if last_event_id:
            missed = await asyncio.to_thread(_missed, hub.queue, last_event_id)
            for event in missed:
                if subscriber.wants(event):
                    sent.add(event.id)
                    yield event.encode()
        while True:
            try:
                item = await asyncio.wait_for(subscriber.queue.get(), HEARTBEAT_SECONDS)
            except TimeoutError:
                yield b": ping\n\n"
                continue
            if item is _CLOSED:
                return
            if item.id in sent:
                continue
            sent.clear()  # past the resumed part: no more duplicates possible
            yield item.encode()
    finally:
        hub.unsubscribe(subscriber)


def _missed(queue: Queue, after: str) -> list[LiveEvent]:
    """Everything in the feed after ``after`` (a client's Last-Event-ID), up to ``RESUME_LIMIT``."""
    changes: list[Change] = []
    cursor = after
    while len(changes) < RESUME_LIMIT:
        batch = queue.storage.read_changes(cursor, READ_BATCH)
        if not batch:
            break
        changes.extend(batch)
        cursor = batch[-1].cursor
    return to_live_events(queue, changes)
