"""Claims jobs for the executor: in batches, one job ahead, woken by new work; decides when a drain is done.

The fetcher keeps free slots filled and one claimed job waiting in a buffer, so
that the next job starts the moment a slot frees, even at concurrency 1, and the
claim of the one after overlaps with the handler. Claims come back in priority
order and start in that order. A buffered job is held like a running one (its
lease is renewed; it is handed back at shutdown; a job lost meanwhile never
starts); its timeout starts when it starts.

An idle fetcher blocks in ``wait_and_claim`` (NOTIFY, a Redis blocking pop, a
SQLite data change) and claims on that same thread as soon as it wakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from dqflow.record import JobRecord
from dqflow.worker._attempt import Attempt
from dqflow.worker._completer import Completer
from dqflow.worker._executor import Executor
from dqflow.worker._maintenance import Maintenance
from dqflow.worker._store import Calls, WorkerStore

if TYPE_CHECKING:
    from dqflow.telemetry import Tracing

log = logging.getLogger("dqflow.worker")

_MAX_BACKOFF = 5.0
AHEAD = 1  # jobs claimed beyond the free slots, waiting to start
_COOLDOWN = 0.001  # seconds a busy worker waits before claiming for less than a batch


class Fetcher:
    """The claim loop of one worker."""

    def __init__(
        self,
        store: WorkerStore,
        worker_id: str,
        job_types: Sequence[str],
        *,
        lease_ms: int,
        batch_size: int,
        poll_interval: float,
        drain: bool,
        executor: Executor,
        completer: Completer,
        maintenance: Maintenance,
        stopping: asyncio.Event,
        report: Callable[[str, BaseException], None],
        tracing: Tracing | None = None,
    ) -> None:
        self._store = store
        self._tracing = tracing
        self._worker_id = worker_id
        self._job_types = list(job_types)
        self._lease_ms = lease_ms
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._drain = drain
        self._executor = executor
        self._completer = completer
        self._maintenance = maintenance
        self._stopping = stopping
        self._report = report
        self._claims = Calls("claim")
        self._waits = Calls("wait")
        self._buffer: deque[Attempt] = deque()
        self._changed = asyncio.Event()  # a slot freed or results were written: look again
        self._waiting: asyncio.Future[list[JobRecord]] | None = None

    # -- for the other parts -----------------------------------------------------------

    def holding(self) -> list[Attempt]:
        """Claimed jobs waiting to start (their leases are renewed too)."""
        return list(self._buffer)

    def wake(self) -> None:
        """A slot is free or results were written: start a buffered job, look for more."""
        self.start_buffered()
        self._changed.set()

    def start_buffered(self) -> None:
        """Start buffered jobs, in claim order, while slots are free (a lost one is dropped)."""
        while self._buffer and self._executor.free > 0 and not self._stopping.is_set():
            attempt = self._buffer.popleft()
            if attempt.ctx.cancelled:
                log.info("job %s was cancelled or taken over before it started", attempt.job.id)
                continue
            self._executor.start(attempt)

    async def take_unstarted(self) -> list[JobRecord]:
        """Shutdown: the jobs claimed but not started (buffered, or claimed by a last wait), to hand back."""
        jobs = [attempt.job for attempt in self._buffer]
        self._buffer.clear()
        if self._waiting is not None:
            try:
                jobs += await asyncio.wait_for(self._waiting, timeout=self._poll_interval + 10)
            except Exception as exc:  # its claim failed or hangs: leases expire instead
                self._report("finishing the last wait for jobs", exc)
            self._waiting = None
        return jobs

    def close(self) -> None:
        self._claims.shutdown(wait=True)
        self._waits.shutdown(wait=False)  # may be blocked in a wait until its timeout

    # -- the loop ----------------------------------------------------------------------

    async def run(self) -> None:
        """Claim until stopping (or, draining, until nothing is ready or running)."""
        backoff = 0.0
        while not self._stopping.is_set():
            self.start_buffered()
            room = self._executor.free + AHEAD - len(self._buffer)
            if room <= 0:
                await self._wait_for_change()
                continue
            if room < self._batch_size and self._executor.occupied:
                # Handlers end in bursts: a moment's pause lets the rest of a burst free its
                # slots, so one claim fills them all instead of one claim per slot.
                await asyncio.sleep(_COOLDOWN)
                self.start_buffered()
                room = self._executor.free + AHEAD - len(self._buffer)
                if room <= 0:
                    continue
            wanted = min(room, self._batch_size + AHEAD)  # the job ahead rides along with a full batch
            self._changed.clear()  # set again while the claim runs: results were written meanwhile
            started = 0 if self._tracing is None else self._tracing.now()
            try:
                jobs = await self._claims(
                    self._store.claim_jobs, self._worker_id, self._job_types, wanted, self._lease_ms
                )
                backoff = 0.0
            except Exception as exc:
                backoff = min(_MAX_BACKOFF, backoff * 2 or 0.1)
                self._report(f"claiming jobs (retrying in {backoff:.1f}s)", exc)
                await self._sleep_unless_stopping(backoff)
                continue
            if self._tracing is not None:
                self._tracing.claimed(started, jobs, self._worker_id)
            self._accept(jobs)
            if len(jobs) == wanted:
                continue
            if self._drain:
                if self._changed.is_set():
                    # results written during the claim may have made jobs ready (a dependent, a
                    # workflow's next step) that the claim could not see yet: look again
                    continue
                if self._buffer or self._executor.occupied or self._executor.active or self._completer.busy:
                    await self._wait_for_change()
                    continue
                # before deciding nothing is ready: jobs of a dead worker count (cron, CI)
                if await self._maintenance.reclaim_once():
                    continue
                return
            await self._wait_for_work(wanted)

    def _accept(self, jobs: list[JobRecord]) -> None:
        for job in jobs:
            self._buffer.append(self._executor.prepare(job))
        self.start_buffered()

    async def _wait_for_change(self) -> None:
        # no await between the caller's look and this clear: no wake-up is missed
        self._changed.clear()
        await self._changed.wait()  # set by wake(): a slot freed, results written, stopping

    async def _wait_for_work(self, wanted: int) -> None:
        """Block until work may be ready, then claim it on the same thread (one hand-off less)."""
        try:
            due = await self._claims(self._store.next_due_in, self._job_types)
        except Exception as exc:
            self._report("checking for scheduled jobs", exc)
            due = None
        timeout = self._poll_interval if due is None else min(self._poll_interval, due)
        if timeout <= 0:
            return
        started = 0 if self._tracing is None else self._tracing.now()
        waiting = self._waits.submit(self._wait_then_claim, timeout, wanted)
        self._waiting = waiting
        stopping: asyncio.Future[Any] = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not waiting.done():
            return  # stopping: take_unstarted hands back whatever this wait still claims
        self._waiting = None
        error = waiting.exception()
        if error is not None:
            self._report("waiting for jobs", error)
            await self._sleep_unless_stopping(min(self._poll_interval, 1.0))
            return
        jobs = waiting.result()
        if self._tracing is not None:  # the span covers the wait: a claim that blocked until work came
            self._tracing.claimed(started, jobs, self._worker_id)
        self._accept(jobs)

    def _wait_then_claim(self, timeout: float, wanted: int) -> list[JobRecord]:
        # jobs claimed after a stop was requested are handed back by take_unstarted
        return self._store.wait_and_claim(self._worker_id, self._job_types, wanted, self._lease_ms, timeout)

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
