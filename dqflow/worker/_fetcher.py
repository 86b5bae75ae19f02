"""Claims jobs for the executor: in batches, ahead of the free slots, woken by new work; decides when a drain is done.

The fetcher keeps free slots filled and claimed jobs waiting in a buffer, so that
the next job starts the moment a slot frees, even at concurrency 1, and the claim
of the ones after overlaps with the handlers. How many wait ahead adapts: one
while jobs take longer than a claim (or none has run yet); with short jobs, as
many as the slots get through during one claim's round trip (up to
``_MAX_AHEAD``), so that a claim never leaves a slot idle and each claim carries
several jobs. Claims come back in priority order and start in that order; a job
added meanwhile with a higher priority waits at most for the buffered ones, about
one claim's time. When short jobs give way to a long one, the jobs ahead would
wait for it: once every slot has been busy for ``_PATIENCE`` with no job ending,
all but one are handed back (pending again, for any worker) and fewer are claimed
ahead from then on. A buffered job is held like a running one (its lease is
renewed; it is handed back at shutdown; a job lost meanwhile never starts); its
timeout starts when it starts.

An idle fetcher blocks a spare handler thread in ``wait_and_claim`` (NOTIFY, a Redis
blocking pop, a SQLite data change), which claims as soon as it wakes; when a slot is
free that thread runs the first job it claimed itself (``Executor.wait_for_work``),
so a job added to an idle worker starts with no hand-off between threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from dqflow.record import JobRecord
from dqflow.storage import Release, StepClaim
from dqflow.worker._attempt import Attempt
from dqflow.worker._completer import Completer
from dqflow.worker._executor import Claimed, Executor
from dqflow.worker._maintenance import Maintenance
from dqflow.worker._store import Calls, WorkerStore

if TYPE_CHECKING:
    from dqflow.telemetry import Tracing

log = logging.getLogger("dqflow.worker")

_MAX_BACKOFF = 5.0
_MAX_AHEAD = 32  # jobs claimed beyond the free slots, waiting to start, at most
_SMOOTHING = 0.2  # weight of the newest sample in a moving average
_COOLDOWN = 0.001  # seconds a busy worker waits before claiming for less than a batch
_PATIENCE = 0.05  # seconds every slot may stay busy with no job ending before the jobs ahead but one go back


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
        self._types = frozenset(self._job_types)
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
        self._buffer: deque[Attempt] = deque()
        self._taking = threading.Lock()  # the loop and handler threads both take from the buffer
        executor.pull_from(self.take_for_thread)
        self._claim_time: float | None = None  # seconds per claim call, a moving average
        self._changed = asyncio.Event()  # a slot freed or results were written: look again
        self._waiting: asyncio.Future[Claimed] | None = None

    # -- for the other parts -----------------------------------------------------------

    def holding(self) -> list[Attempt]:
        """Claimed jobs waiting to start (their leases are renewed too)."""
        with self._taking:
            return list(self._buffer)

    def wake(self) -> None:
        """A slot is free or results were written: start a buffered job, look for more."""
        self.start_buffered()
        self._changed.set()

    def start_buffered(self) -> None:
        """Start buffered jobs, in claim order, while slots are free (a lost one is dropped)."""
        while self._buffer and not self._stopping.is_set() and self._executor.take_slot():
            with self._taking:
                attempt = self._buffer.popleft() if self._buffer else None
            if attempt is None or attempt.ctx.cancelled:
                self._executor.give_slot_back()
                if attempt is None:
                    return
                log.info("job %s was cancelled or taken over before it started", attempt.job.id)
                continue
            self._executor.start(attempt)

    def take_for_thread(self) -> Attempt | None:
        """On a handler thread that just finished a job: the next buffered job, for that thread to
        run at once in the same slot, if it is one a thread may start (``on_thread``, not lost)."""
        with self._taking:
            if not self._buffer or self._stopping.is_set():
                return None
            attempt = self._buffer[0]
            if not attempt.on_thread or attempt.ctx.cancelled:
                return None  # the loop starts it (or drops it) when the slot frees
            return self._buffer.popleft()

    async def take_unstarted(self) -> list[JobRecord]:
        """Shutdown: the jobs claimed but not started (buffered, or claimed by a last wait), to hand back."""
        with self._taking:
            jobs = [attempt.job for attempt in self._buffer]
            self._buffer.clear()
        if self._waiting is not None:
            try:
                claimed = await asyncio.wait_for(self._waiting, timeout=self._poll_interval + 10)
                jobs += [attempt.job for attempt in claimed.waiting]  # a started one runs out its grace
            except Exception as exc:  # its claim failed or hangs: leases expire instead
                self._report("finishing the last wait for jobs", exc)
            self._waiting = None
        return jobs

    def close(self) -> None:
        self._claims.shutdown(wait=True)

    # -- eager dispatch (Completer.claim_steps_for) -------------------------------------

    def step_claim(self, step_completions: int) -> StepClaim | None:
        """A settle completing ``step_completions`` steps may claim as many of the next steps'
        jobs as it frees slots, or as there is room for ahead, whichever is more."""
        if self._stopping.is_set():
            return None
        room = self._executor.free + self.ahead - len(self._buffer)
        return StepClaim(self._worker_id, self._types, max(step_completions, room), self._lease_ms)

    async def adopt(self, jobs: list[JobRecord]) -> None:
        """Step jobs a settle claimed for this worker: buffered like claimed ones (handed back
        at once if the worker is stopping: nothing would start them)."""
        if self._tracing is not None:
            self._tracing.claimed(self._tracing.now(), jobs, self._worker_id)
        if self._stopping.is_set():
            await self._completer.release([Release(job.id, job.lease_token, started=False) for job in jobs])
            return
        self._accept(jobs)

    @property
    def ahead(self) -> int:
        """Jobs to keep claimed beyond the free slots: enough for the slots to run through
        two claims' round trips (one while no job or claim has been timed)."""
        run_time, claim_time = self._executor.run_time, self._claim_time
        if run_time is None or claim_time is None:
            return 1
        wanted = math.ceil(2 * claim_time * self._executor.concurrency / max(run_time, 1e-6))
        return max(1, min(wanted, _MAX_AHEAD))

    # -- the loop ----------------------------------------------------------------------

    async def run(self) -> None:
        """Claim until stopping (or, draining, until nothing is ready or running)."""
        backoff = 0.0
        while not self._stopping.is_set():
            self.start_buffered()
            ahead = self.ahead
            room = self._executor.free + ahead - len(self._buffer)
            if room <= 0 or (not self._executor.free and room < (ahead + 1) // 2):
                # every slot busy and at least half the jobs ahead still waiting: claim
                # later, for more at once, instead of one claim per job that starts
                if len(self._buffer) > 1 and not self._executor.free:
                    stalled = time.monotonic() - self._executor.last_turn
                    if stalled >= _PATIENCE:
                        await self._hand_back_surplus(stalled)
                    else:
                        await self._wait_for_change(_PATIENCE - stalled)
                else:
                    await self._wait_for_change()
                continue
            if room < self._batch_size and self._executor.occupied:
                # Handlers end in bursts: a moment's pause lets the rest of a burst free its
                # slots, so one claim fills them all instead of one claim per slot.
                await asyncio.sleep(_COOLDOWN)
                self.start_buffered()
                room = self._executor.free + ahead - len(self._buffer)
                if room <= 0:
                    continue
            wanted = min(room, self._batch_size + ahead)  # the jobs ahead ride along with a full batch
            self._changed.clear()  # set again while the claim runs: results were written meanwhile
            started = 0 if self._tracing is None else self._tracing.now()
            try:
                began = time.monotonic()
                jobs = await self._claims(
                    self._store.claim_jobs, self._worker_id, self._job_types, wanted, self._lease_ms
                )
                took = time.monotonic() - began
                claim_time = self._claim_time
                self._claim_time = took if claim_time is None else claim_time + _SMOOTHING * (took - claim_time)
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
        self._buffer_attempts([self._executor.prepare(job) for job in jobs])

    def _buffer_attempts(self, attempts: list[Attempt]) -> None:
        with self._taking:
            self._buffer.extend(attempts)
        self.start_buffered()

    async def _wait_for_change(self, timeout: float | None = None) -> None:
        # no await between the caller's look and this clear: no wake-up is missed
        self._changed.clear()
        timer = None if timeout is None else asyncio.get_running_loop().call_later(timeout, self._changed.set)
        await self._changed.wait()  # set by wake(): a slot freed, results written, stopping
        if timer is not None:
            timer.cancel()

    async def _hand_back_surplus(self, stalled: float) -> None:
        """Every slot has been busy for ``stalled`` seconds: hand back the jobs ahead but the
        first (the next to start), so that other workers can run them, and claim fewer ahead."""
        with self._taking:
            if len(self._buffer) <= 1:
                return
            surplus = [self._buffer.pop() for _ in range(len(self._buffer) - 1)][::-1]
        self._executor.slowed(stalled)
        releases = [Release(a.job.id, a.job.lease_token, started=False) for a in surplus]
        handed = sum(await self._completer.release(releases))
        log.info("handed back %d jobs claimed ahead: every slot has been busy for %.2fs", handed, stalled)

    async def _wait_for_work(self, wanted: int) -> None:
        """Block until work may be ready, then claim it on the same thread (one hand-off less)."""
        try:
            due = await self._claims(self._store.next_due_in, self._job_types)
        except Exception as exc:
            self._report("checking for scheduled jobs", exc)
            due = None
        timeout = self._poll_interval if due is None else min(self._poll_interval, due)
        if timeout <= 0:
            # due now but not claimed: a sleeping durable job's wake time has come (or a race)
            await self._wake_due()
            return
        started = 0 if self._tracing is None else self._tracing.now()
        # a wait that ends at a due time may end at a durable job's wake-up: wake it, then claim
        wake_due = due is not None and due <= self._poll_interval
        waiting: asyncio.Future[Claimed] = asyncio.get_running_loop().create_future()
        self._waiting = waiting
        # A slot free and nothing buffered stays so while the wait lasts (nothing else starts
        # jobs meanwhile): the thread that claims may run the first job in that slot itself.
        may_start = self._executor.free > 0 and not self._buffer
        self._executor.wait_for_work(
            functools.partial(self._wait_then_claim, timeout, wanted, wake_due),
            waiting,
            may_start=(lambda: not self._stopping.is_set()) if may_start else None,
        )
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
        claimed = waiting.result()
        if self._tracing is not None:  # the span covers the wait: a claim that blocked until work came
            self._tracing.claimed(started, claimed.jobs, self._worker_id)
        self._buffer_attempts(claimed.waiting)

    def _wait_then_claim(self, timeout: float, wanted: int, wake_due: bool) -> list[JobRecord]:
        # jobs claimed after a stop was requested are handed back by take_unstarted
        jobs = self._store.wait_and_claim(self._worker_id, self._job_types, wanted, self._lease_ms, timeout)
        if not jobs and wake_due and self._store.wake_due_jobs():
            jobs = self._store.claim_jobs(self._worker_id, self._job_types, wanted, self._lease_ms)
        return jobs

    async def _wake_due(self) -> None:
        try:
            await self._claims(self._store.wake_due_jobs)
        except Exception as exc:
            self._report("waking sleeping jobs", exc)
            await self._sleep_unless_stopping(min(self._poll_interval, 1.0))

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
