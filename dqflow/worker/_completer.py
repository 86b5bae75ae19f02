"""Writes settled attempts in batches: one fenced ``settle_jobs`` call per batch.

Outcomes pile up while a write is in flight and go out together in the next one,
so a worker with one slot still settles in batches while its handler runs. A
failed write is retried with backoff (the outcomes stay queued, their leases
renewed meanwhile); a rejected outcome means the worker lost the job, and is
counted and logged. Listeners hear ``job:completed`` / ``job:failed`` only for
what storage accepted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from dqflow.queue.events import JOB_COMPLETED, JOB_FAILED, EventEmitter
from dqflow.storage import Completion, Outcome, Release
from dqflow.worker._attempt import Attempt, Settled
from dqflow.worker._store import Calls, WorkerStore
from dqflow.worker.context import WriteStats

if TYPE_CHECKING:
    from dqflow.telemetry import Tracing

log = logging.getLogger("dqflow.worker")

_MAX_BACKOFF = 5.0
_BATCH_LIMIT = 1000  # outcomes written per call at most
_COOLDOWN = 0.001  # seconds a write waits for more results to join it


class Completer:
    """Queues ``Settled`` attempts and writes them with ``settle_jobs``, in batches, on a thread of its own."""

    def __init__(
        self,
        store: WorkerStore,
        events: EventEmitter,
        stats: WriteStats,
        report: Callable[[str, BaseException], None],
        on_written: Callable[[], None],
        tracing: Tracing | None = None,
    ) -> None:
        self._store = store
        self._tracing = tracing
        self._events = events
        self._stats = stats
        self._report = report
        self._on_written = on_written
        self._calls = Calls("settle")
        self._queued: list[Settled] = []
        self._writing: list[Settled] = []
        self._wanted = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def busy(self) -> bool:
        """Outcomes are queued or being written."""
        return bool(self._queued) or not self._idle.is_set()

    def holding(self) -> list[Attempt]:
        """Attempts whose outcome is not written yet: their leases must still be renewed."""
        return [s.attempt for s in (*self._writing, *self._queued)]

    def add(self, settled: Settled) -> None:
        """Queue an outcome for the next write."""
        self._queued.append(settled)
        self._idle.clear()
        self._wanted.set()

    async def run(self) -> None:
        """Write queued outcomes until cancelled."""
        backoff = 0.0
        while True:
            await self._wanted.wait()
            # a moment for the rest of a burst of results to join this write
            await asyncio.sleep(_COOLDOWN)
            self._wanted.clear()
            try:
                await self._write_batch()
                backoff = 0.0
            except Exception as exc:
                backoff = min(_MAX_BACKOFF, backoff * 2 or 0.1)
                self._report(f"saving results (retrying in {backoff:.1f}s)", exc)
                await asyncio.sleep(backoff)
            if self._queued:
                self._wanted.set()
            else:
                self._idle.set()

    async def flush(self, seconds: float) -> None:
        """Shutdown: wait up to ``seconds`` for every queued outcome to be written."""
        deadline = time.monotonic() + seconds
        while self.busy and time.monotonic() < deadline:
            self._wanted.set()
            try:
                await asyncio.wait_for(self._idle.wait(), timeout=max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                break
        if self._queued:
            log.error(
                "could not save %d results before stopping; those jobs run again once their leases expire",
                len(self._queued),
            )

    async def release(self, releases: Sequence[Release]) -> list[bool]:
        """Hand claimed jobs back to pending at once (shutdown); one flag per job: taken back."""
        if not releases:
            return []
        try:
            return await self._calls(self._store.settle_jobs, list(releases))
        except Exception as exc:
            self._report("handing back jobs (their leases will expire instead)", exc)
            return [False] * len(releases)

    def close(self) -> None:
        self._calls.shutdown(wait=True)

    async def _write_batch(self) -> None:
        batch, self._queued = self._queued[:_BATCH_LIMIT], self._queued[_BATCH_LIMIT:]
        self._writing = batch
        outcomes: list[Outcome] = [settled.outcome for settled in batch]
        started = 0 if self._tracing is None else self._tracing.now()
        try:
            applied = await self._calls(self._store.settle_jobs, outcomes)
        except BaseException as exc:
            self._queued[:0] = batch  # tried again, in order
            if self._tracing is not None:
                self._tracing.settled(started, [settled.attempt.span for settled in batch], None, exc)
            raise
        finally:
            self._writing = []
        if self._tracing is not None:
            self._tracing.settled(started, [settled.attempt.span for settled in batch], applied, None)
        for settled, ok in zip(batch, applied, strict=True):
            if ok:
                self._announce(settled)
            else:
                self._rejected(settled)
        self._on_written()

    def _announce(self, settled: Settled) -> None:
        job = settled.attempt.job
        outcome = settled.outcome
        if isinstance(outcome, Completion):
            self._stats.completed += 1
            if self._events.has_listeners(JOB_COMPLETED):
                self._events.emit(JOB_COMPLETED, {"job_id": job.id, "job_type": job.job_type, "output": settled.output})
            return
        self._stats.failed += 1
        if self._events.has_listeners(JOB_FAILED):
            self._events.emit(
                JOB_FAILED,
                {
                    "job_id": job.id,
                    "job_type": job.job_type,
                    "attempt": job.attempts,
                    "error": outcome.error,
                    "reason": outcome.reason,
                    "will_retry": outcome.retry_at is not None,
                    "exception": settled.exception,
                },
            )

    def _rejected(self, settled: Settled) -> None:
        job = settled.attempt.job
        what = "completion" if isinstance(settled.outcome, Completion) else "failure"
        self._stats.rejected_writes += 1
        log.warning(
            "job %s: %s rejected: this worker no longer holds the job (lease token %s was taken over or cancelled)",
            job.id,
            what,
            job.lease_token,
        )
