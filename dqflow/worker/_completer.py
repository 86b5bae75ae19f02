"""Writes settled attempts in batches: one fenced ``settle_jobs`` call per batch.

Outcomes pile up while a write is in flight and go out together in the next one,
so a worker with one slot still settles in batches while its handler runs. Where
the storage runs writes side by side (``Storage.concurrent_settles``: a connection
pool, Redis), a second batch may go out while the first is in flight, so that one
batch's work in this process overlaps the other's on the server: a workflow step's
settle, which plans the run's next move, would otherwise hold up every result
behind it. Each outcome is in one write only; storage fences and orders them as it
does the writes of several workers. A failed write is retried with backoff (the
outcomes stay queued, their leases renewed meanwhile; no write starts before the
backoff ends); a rejected outcome means the worker lost the job, and is counted
and logged. Listeners hear ``job:completed`` / ``job:failed`` only for what
storage accepted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from dqflow.queue.events import JOB_COMPLETED, JOB_FAILED, JOB_WAITING, EventEmitter
from dqflow.record import JobRecord
from dqflow.storage import Completion, Outcome, Release, StepClaim, Wait
from dqflow.worker._attempt import Attempt, Settled
from dqflow.worker._store import Calls, WorkerStore
from dqflow.worker.context import WriteStats

if TYPE_CHECKING:
    from dqflow.telemetry import Tracing

log = logging.getLogger("dqflow.worker")

_MAX_BACKOFF = 5.0
_BATCH_LIMIT = 1000  # outcomes written per call at most
_COOLDOWN = 0.001  # seconds a write waits for more results to join it


class StepTaker(Protocol):
    """Where the step jobs a settle claims go (the fetcher): eager dispatch."""

    def step_claim(self, step_completions: int) -> StepClaim | None:
        """The claim to send with a batch completing this many steps (None: claim nothing)."""

    async def adopt(self, jobs: list[JobRecord]) -> None:
        """Jobs a settle claimed for this worker: run them (or hand them back when stopping)."""


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
        self._writers = max(1, store.concurrent_settles)
        self._calls = Calls("settle", self._writers)
        self._queued: list[Settled] = []
        self._writing: dict[int, list[Settled]] = {}  # the batches in flight, by write
        self._writes = 0  # numbers the writes
        self._backoff = 0.0
        self._not_before = 0.0  # monotonic time before which no write starts (after a failure)
        self._wanted = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._taker: StepTaker | None = None

    def claim_steps_for(self, taker: StepTaker) -> None:
        """Eager dispatch: a batch that completes workflow steps claims the next steps' jobs
        for ``taker`` in the same atomic step (``Storage.settle_and_claim``)."""
        self._taker = taker

    @property
    def busy(self) -> bool:
        """Outcomes are queued or being written."""
        return bool(self._queued) or not self._idle.is_set()

    def holding(self) -> list[Attempt]:
        """Attempts whose outcome is not written yet: their leases must still be renewed."""
        return [s.attempt for batch in self._writing.values() for s in batch] + [s.attempt for s in self._queued]

    def add(self, settled: Settled) -> None:
        """Queue an outcome for the next write."""
        self._queued.append(settled)
        self._idle.clear()
        self._wanted.set()

    async def run(self) -> None:
        """Write queued outcomes until cancelled, up to ``concurrent_settles`` batches at once."""
        lanes = [asyncio.ensure_future(self._lane()) for _ in range(self._writers)]
        try:
            await asyncio.gather(*lanes)
        finally:
            for lane in lanes:
                lane.cancel()

    async def _lane(self) -> None:
        """One write at a time: whatever is queued when it starts goes out together."""
        while True:
            await self._wanted.wait()
            # a moment for the rest of a burst of results to join this write
            await asyncio.sleep(_COOLDOWN)
            self._wanted.clear()
            wait = self._not_before - time.monotonic()
            if wait > 0:
                self._wanted.set()  # for whichever lane comes back first
                await asyncio.sleep(wait)
                continue
            if self._queued:
                try:
                    await self._write_batch()
                    self._backoff = 0.0
                except Exception as exc:
                    self._backoff = min(_MAX_BACKOFF, self._backoff * 2 or 0.1)
                    self._not_before = time.monotonic() + self._backoff
                    self._report(f"saving results (retrying in {self._backoff:.1f}s)", exc)
            if self._queued:
                self._wanted.set()
            elif not self._writing:
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
        self._writes += 1
        write = self._writes
        self._writing[write] = batch
        outcomes: list[Outcome] = [settled.outcome for settled in batch]
        claim = self._step_claim(outcomes)
        taken: list[JobRecord] = []
        started = 0 if self._tracing is None else self._tracing.now()
        try:
            if claim is None:
                applied = await self._calls(self._store.settle_jobs, outcomes)
            else:
                applied, taken = await self._calls(self._store.settle_and_claim, outcomes, claim)
        except BaseException as exc:
            self._queued[:0] = batch  # tried again, in order
            if self._tracing is not None:
                self._tracing.settled(started, [settled.attempt.span for settled in batch], None, exc)
            raise
        finally:
            del self._writing[write]
        if self._tracing is not None:
            self._tracing.settled(started, [settled.attempt.span for settled in batch], applied, None)
        for settled, ok in zip(batch, applied, strict=True):
            if ok:
                self._announce(settled)
            else:
                self._rejected(settled)
        if taken:
            assert self._taker is not None
            await self._taker.adopt(taken)
        self._on_written()

    def _step_claim(self, outcomes: Sequence[Outcome]) -> StepClaim | None:
        if self._taker is None:
            return None
        steps = sum(1 for o in outcomes if type(o) is Completion and o.workflow_run_id is not None)
        return self._taker.step_claim(steps) if steps else None

    def _announce(self, settled: Settled) -> None:
        job = settled.attempt.job
        outcome = settled.outcome
        if isinstance(outcome, Completion):
            self._stats.completed += 1
            if self._events.has_listeners(JOB_COMPLETED):
                self._events.emit(JOB_COMPLETED, {"job_id": job.id, "job_type": job.job_type, "output": settled.output})
            return
        if isinstance(outcome, Wait):
            self._stats.waited += 1
            if self._events.has_listeners(JOB_WAITING):
                wait = {"kind": outcome.kind, "until": outcome.until, "token_id": outcome.token_id}
                self._events.emit(JOB_WAITING, {"job_id": job.id, "job_type": job.job_type, **wait})
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
        what = {Completion: "completion", Wait: "wait"}.get(type(settled.outcome), "failure")
        self._stats.rejected_writes += 1
        log.warning(
            "job %s: %s rejected: this worker no longer holds the job (lease token %s was taken over or cancelled)",
            job.id,
            what,
            job.lease_token,
        )
