"""The worker: claims jobs in batches, runs handlers, writes results back in batches.

One asyncio loop drives everything. ``async def`` handlers run as tasks on it,
plain handlers on a thread pool of ``concurrency`` threads. Storage calls run on
two dedicated threads (claims and batched completions can overlap); an idle
worker blocks in ``Storage.wait_for_jobs`` on a thread of its own. Background
tasks renew leases (and notice cancelled or lost jobs), reclaim expired leases
of dead workers, and flush completions and failures in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from dqflow.declaration import RetryPolicy
from dqflow.errors import ValidationFailed
from dqflow.queue import Queue
from dqflow.queue.events import ERROR, JOB_COMPLETED, JOB_FAILED, JOB_PROCESSING
from dqflow.record import FailureReason, JobRecord
from dqflow.storage import Completion, Failure, Lease, Release
from dqflow.worker.context import JobContext, WriteStats
from dqflow.worker.handlers import HandlerInfo, inspect_handler
from dqflow.worker.isolation import HandlerFailed, prewarm, run_in_process
from dqflow.worker.threads import HandlerThreads

log = logging.getLogger("dqflow.worker")

T = TypeVar("T")
_MAX_BACKOFF = 5.0
_FLUSH_LIMIT = 1000  # results written per statement at most


@dataclass(eq=False)
class _Running:
    """One claimed job while this worker holds it."""

    job: JobRecord
    ctx: JobContext
    task: asyncio.Future[Any] | None = None  # an async handler's task, to cancel it
    timer: asyncio.TimerHandle | None = None  # fires at the job's timeout
    settled: bool = False  # the attempt's outcome is decided (completed, failed, dropped)

    @property
    def lease(self) -> Lease:
        return Lease(self.job.id, self.job.lease_token)


class _AttemptTimedOut(Exception):
    pass


def _arguments(info: HandlerInfo, running: _Running) -> tuple[Any, ...]:
    payload: Any = running.job.payload
    if info.payload_model is not None:
        payload = info.payload_model.model_validate(payload)
    return (payload, running.ctx) if info.takes_ctx else (payload,)


def _call_sync(info: HandlerInfo, running: _Running) -> Any:
    return info.func(*_arguments(info, running))


async def _call_async(info: HandlerInfo, running: _Running) -> Any:
    return await info.func(*_arguments(info, running))


class Worker:
    """Runs the queue's declared job types until stopped (or, with ``drain``, until idle).

    Settings left out come from the declaration's ``worker`` section. ``run()``
    blocks; ``stop()`` (thread-safe, also on SIGINT/SIGTERM) stops claiming, lets
    running jobs finish within ``shutdown_grace`` seconds and hands the rest back.
    """

    def __init__(
        self,
        queue: Queue,
        *,
        concurrency: int | None = None,
        job_types: Sequence[str] | None = None,
        batch_size: int | None = None,
        lease: float | None = None,
        heartbeat: float | None = None,
        poll_interval: float | None = None,
        shutdown_grace: float | None = None,
        reclaim_interval: float | None = None,
        worker_id: str | None = None,
        drain: bool = False,
    ) -> None:
        settings = queue.declaration.worker
        self.queue = queue
        self.storage = queue.storage
        self.concurrency = int(concurrency or settings.concurrency)
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
        self.batch_size = int(batch_size or (settings.batch_size if concurrency is None else self.concurrency))
        self.lease = float(lease or settings.lease)
        self.heartbeat = float(heartbeat or min(settings.heartbeat, self.lease / 3))
        self.poll_interval = float(poll_interval or settings.poll_interval)
        self.shutdown_grace = float(settings.shutdown_grace if shutdown_grace is None else shutdown_grace)
        self.reclaim_interval = float(reclaim_interval or max(0.5, min(5.0, self.lease / 5)))
        self.job_types = list(job_types) if job_types else None
        queue.declaration.check_schemas(self.job_types)  # before anything runs, if loading deferred it
        if self.job_types:
            for name in self.job_types:
                queue.job_type(name)
        self.drain = drain
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stats = WriteStats()
        self._handlers: dict[str, HandlerInfo] = {}
        self._active: dict[int, _Running] = {}
        self._unflushed: dict[int, _Running] = {}
        self._occupied = 0
        self._completions: list[tuple[_Running, Completion, Any]] = []
        self._failures: list[tuple[_Running, Failure]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested = threading.Event()
        self._lease_ms = int(self.lease * 1000)

    # -- public ----------------------------------------------------------------------

    def run(self) -> None:
        """Run until stopped (blocking)."""
        asyncio.run(self.run_async())

    def stop(self) -> None:
        """Ask the worker to shut down gracefully (safe from any thread or a signal handler)."""
        self._stop_requested.set()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake_for_stop)

    async def run_async(self) -> None:
        """Run until stopped, inside the caller's event loop."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._capacity = asyncio.Event()
        self._flush_wanted = asyncio.Event()
        self._flush_idle = asyncio.Event()
        self._flush_idle.set()
        self._grace_cut = asyncio.Event()
        self._waiting: asyncio.Future[list[JobRecord]] | None = None
        self._db = ThreadPoolExecutor(2, thread_name_prefix="dqflow-db")
        self._waiter = ThreadPoolExecutor(1, thread_name_prefix="dqflow-wait")
        self._pool: HandlerThreads[_Running] = HandlerThreads(self.concurrency, self._loop, self._threads_done)
        if self._stop_requested.is_set():
            self._stopping.set()
        installed = self._install_signal_handlers()
        if any(spec.isolation == "process" for spec in self.queue.declaration.job_types.values()):
            prewarm()
        background = [
            asyncio.create_task(self._flush_loop(), name="dqflow-flush"),
            asyncio.create_task(self._heartbeat_loop(), name="dqflow-heartbeat"),
            asyncio.create_task(self._reclaim_loop(), name="dqflow-reclaim"),
        ]
        log.info(
            "worker %s started: concurrency %d, job types %s, backend %s",
            self.worker_id,
            self.concurrency,
            ", ".join(self.job_types) if self.job_types else "all",
            self.storage.url,
        )
        try:
            await self._fetch_loop()
            await self._shutdown()
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            for sig in installed:
                self._loop.remove_signal_handler(sig)
            self._db.shutdown(wait=True)
            self._waiter.shutdown(wait=False)
            self._pool.shutdown()
            log.info(
                "worker %s stopped: %d completed, %d failed, %d stale writes rejected",
                self.worker_id,
                self.stats.completed,
                self.stats.failed,
                self.stats.rejected_writes,
            )

    # -- plumbing --------------------------------------------------------------------

    def _wake_for_stop(self) -> None:
        self._stop_requested.set()
        self._stopping.set()
        self._capacity.set()

    def _install_signal_handlers(self) -> list[signal.Signals]:
        if threading.current_thread() is not threading.main_thread():
            return []
        assert self._loop is not None
        installed: list[signal.Signals] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._loop.add_signal_handler(sig, self._on_signal, sig)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):
                pass
        return installed

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stopping.is_set():
            log.warning("second %s: handing back running jobs now", signal.Signals(sig).name)
            self.shutdown_grace = 0.0
            self._grace_cut.set()
            return
        log.info(
            "%s: finishing running jobs (up to %.0fs), claiming no more",
            signal.Signals(sig).name,
            self.shutdown_grace,
        )
        self._wake_for_stop()

    async def _db_call(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._loop is not None
        return await self._loop.run_in_executor(self._db, functools.partial(fn, *args))

    def _report(self, where: str, exc: BaseException) -> None:
        log.error("%s: %s", where, exc)
        self.queue.events.emit(ERROR, {"error": exc, "where": where, "worker_id": self.worker_id})

    # -- claiming --------------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        backoff = 0.0
        while not self._stopping.is_set():
            free = self.concurrency - self._occupied
            if free <= 0:
                self._capacity.clear()
                await self._capacity.wait()
                continue
            wanted = min(free, self.batch_size)
            try:
                jobs = await self._db_call(
                    self.storage.claim_jobs, self.worker_id, self.job_types, wanted, self._lease_ms
                )
                backoff = 0.0
            except Exception as exc:
                backoff = min(_MAX_BACKOFF, backoff * 2 or 0.1)
                self._report(f"claiming jobs (retrying in {backoff:.1f}s)", exc)
                await self._sleep_unless_stopping(backoff)
                continue
            for job in jobs:
                self._start(job)
            if len(jobs) == wanted:
                continue
            if self.drain:
                if self._occupied == 0 and not self._unflushed:
                    return
                self._capacity.clear()
                await self._capacity.wait()
                continue
            await self._wait_for_work(wanted)

    async def _wait_for_work(self, wanted: int) -> None:
        """Block until work may be ready, then claim it on the same thread (one hand-off less)."""
        assert self._loop is not None
        try:
            due = await self._db_call(self.storage.next_due_in, self.job_types)
        except Exception as exc:
            self._report("checking for scheduled jobs", exc)
            due = None
        timeout = self.poll_interval if due is None else min(self.poll_interval, due)
        if timeout <= 0:
            return
        waiting: asyncio.Future[list[JobRecord]] = self._loop.run_in_executor(
            self._waiter, self._wait_then_claim, timeout, wanted
        )
        self._waiting = waiting
        stopping: asyncio.Future[Any] = asyncio.ensure_future(self._stopping.wait())
        done, _ = await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if waiting not in done:
            return  # stopping: _shutdown hands back whatever this wait still claims
        self._waiting = None
        error = waiting.exception()
        if error is not None:
            self._report("waiting for jobs", error)
            await self._sleep_unless_stopping(min(self.poll_interval, 1.0))
            return
        for job in waiting.result():
            self._start(job)

    def _wait_then_claim(self, timeout: float, wanted: int) -> list[JobRecord]:
        self.storage.wait_for_jobs(timeout, self.job_types)
        if self._stop_requested.is_set():
            return []
        return self.storage.claim_jobs(self.worker_id, self.job_types, wanted, self._lease_ms)

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    # -- running ---------------------------------------------------------------------

    def _start(self, job: JobRecord) -> None:
        running = _Running(job, JobContext(self.queue, job, self.stats))
        self._active[job.id] = running
        self._occupied += 1
        if self.queue.events.has_listeners(JOB_PROCESSING):
            self.queue.events.emit(
                JOB_PROCESSING,
                {"job_id": job.id, "job_type": job.job_type, "attempt": job.attempts, "worker_id": self.worker_id},
            )
        info = self._handler_for(job.job_type)
        if info is None:
            running.settled = True
            self._active.pop(job.id, None)
            message = f"no handler is declared for job type {job.job_type!r}"
            self._fail(running, message, FailureReason.NO_HANDLER, final=True)
            self._free_slot()
            return
        assert self._loop is not None
        if job.timeout_ms is not None:
            running.timer = self._loop.call_later(job.timeout_ms / 1000, self._timed_out, running)
        spec = self.queue.declaration.job_types[job.job_type]
        if spec.isolation == "process":
            self._pool.submit(running, functools.partial(run_in_process, spec.handler_ref, job, running.ctx))
        elif info.is_async:
            running.task = asyncio.ensure_future(_call_async(info, running))
            running.task.add_done_callback(functools.partial(self._async_done, running))
        else:
            self._pool.submit(running, functools.partial(_call_sync, info, running))

    def _handler_for(self, job_type: str) -> HandlerInfo | None:
        info = self._handlers.get(job_type)
        if info is None:
            spec = self.queue.declaration.job_types.get(job_type)
            if spec is None or spec.handler is None:
                return None
            info = self._handlers[job_type] = inspect_handler(spec.handler)
        return info

    def _async_done(self, running: _Running, task: asyncio.Future[Any]) -> None:
        if task.cancelled():
            self._settle(running, False, None)
        elif task.exception() is not None:
            self._settle(running, False, task.exception())
        else:
            self._settle(running, True, task.result())
        self._free_slot()

    def _threads_done(self, outcomes: list[tuple[_Running, bool, Any]]) -> None:
        for running, ok, value in outcomes:
            self._settle(running, ok, value)
            self._free_slot()

    def _timed_out(self, running: _Running) -> None:
        if running.settled:
            return
        running.ctx.cancel("timeout")  # a thread cannot be killed: it sees ctx.cancelled; a child process is killed
        if running.task is not None:
            running.task.cancel()
        self._settle(running, False, _AttemptTimedOut())

    def _settle(self, running: _Running, ok: bool, value: Any) -> None:
        """Decide the attempt's outcome once; later outcomes of the same attempt are ignored."""
        if running.settled:
            return
        running.settled = True
        if running.timer is not None:
            running.timer.cancel()
        job, ctx = running.job, running.ctx
        self._active.pop(job.id, None)
        try:
            if isinstance(value, _AttemptTimedOut):
                self._fail(running, f"timed out after {job.timeout_ms} ms", FailureReason.TIMEOUT)
            elif ctx.cancelled or (value is None and not ok):
                self._dropped(running)
            elif ok:
                self._complete(running, value)
            else:
                if isinstance(value, HandlerFailed):
                    detail = str(value)
                else:
                    detail = "".join(traceback.format_exception_only(type(value), value)).strip()
                self._fail(running, detail, FailureReason.HANDLER_ERROR)
        except Exception as exc:  # a bug of ours: never lose the job silently
            self._report(f"job {job.id}", exc)
            self._fail(running, f"worker error: {exc}", FailureReason.HANDLER_ERROR)

    def _free_slot(self) -> None:
        self._occupied -= 1
        self._capacity.set()

    def _dropped(self, running: _Running) -> None:
        log.info(
            "job %s: handler stopped (%s); nothing written for this attempt",
            running.job.id,
            running.ctx.cancel_reason,
        )

    # -- results ---------------------------------------------------------------------

    def _complete(self, running: _Running, result: Any) -> None:
        job, ctx = running.job, running.ctx
        output: Any = None
        output_json: str | None = None
        if ctx.output_was_set:
            output_json, output = ctx.output_json, ctx.output
        elif result is not None:
            try:
                output_json = self.queue.validate_output(job.job_type, result)
            except ValidationFailed as exc:
                self._fail(running, str(exc), FailureReason.INVALID_OUTPUT)
                return
            output = result
        self._unflushed[job.id] = running
        self._completions.append((running, Completion(job.id, job.lease_token, output_json), output))
        self._flush_wanted.set()

    def _fail(self, running: _Running, error: str, reason: FailureReason, *, final: bool = False) -> None:
        job = running.job
        retry_at = None
        if not final and job.attempts < job.max_attempts:
            policy = RetryPolicy(
                delay=job.retry_delay_ms / 1000,
                backoff="fixed" if job.retry_backoff == "fixed" else "exponential",
                max_delay=None if job.retry_max_delay_ms is None else job.retry_max_delay_ms / 1000,
                jitter=job.retry_jitter,
            )
            retry_at = datetime.now(UTC) + timedelta(seconds=policy.delay_for(job.attempts))
        log.info("job %s (%s) attempt %d failed: %s: %s", job.id, job.job_type, job.attempts, reason.value, error)
        self._unflushed[job.id] = running
        self._failures.append((running, Failure(job.id, job.lease_token, error, reason.value, retry_at)))
        self._flush_wanted.set()

    async def _flush_loop(self) -> None:
        backoff = 0.0
        while True:
            await self._flush_wanted.wait()
            self._flush_wanted.clear()
            self._flush_idle.clear()
            try:
                await self._flush_once()
                backoff = 0.0
                if self._completions or self._failures:
                    self._flush_wanted.set()
            except Exception as exc:
                backoff = min(_MAX_BACKOFF, backoff * 2 or 0.1)
                self._report(f"saving results (retrying in {backoff:.1f}s)", exc)
                await asyncio.sleep(backoff)
                self._flush_wanted.set()
            finally:
                if not self._completions and not self._failures:
                    self._flush_idle.set()

    async def _flush_once(self) -> None:
        completions, self._completions = self._completions[:_FLUSH_LIMIT], self._completions[_FLUSH_LIMIT:]
        if completions:
            try:
                applied = await self._db_call(self.storage.complete_jobs, [c for _, c, _ in completions])
            except BaseException:
                self._completions[:0] = completions
                raise
            for (running, completion, output), ok in zip(completions, applied, strict=True):
                self._unflushed.pop(completion.job_id, None)
                job = running.job
                if ok:
                    self.stats.completed += 1
                    if self.queue.events.has_listeners(JOB_COMPLETED):
                        self.queue.events.emit(
                            JOB_COMPLETED, {"job_id": job.id, "job_type": job.job_type, "output": output}
                        )
                else:
                    self._rejected(job, "completion")
        failures, self._failures = self._failures[:_FLUSH_LIMIT], self._failures[_FLUSH_LIMIT:]
        if failures:
            try:
                applied = await self._db_call(self.storage.fail_jobs, [f for _, f in failures])
            except BaseException:
                self._failures[:0] = failures
                raise
            for (running, failure), ok in zip(failures, applied, strict=True):
                self._unflushed.pop(failure.job_id, None)
                job = running.job
                if ok:
                    self.stats.failed += 1
                    self.queue.events.emit(
                        JOB_FAILED,
                        {
                            "job_id": job.id,
                            "job_type": job.job_type,
                            "attempt": job.attempts,
                            "error": failure.error,
                            "reason": failure.reason,
                            "will_retry": failure.retry_at is not None,
                        },
                    )
                else:
                    self._rejected(job, "failure")
        if self.drain:
            self._capacity.set()  # the fetch loop may be waiting for the last results to land

    def _rejected(self, job: JobRecord, what: str) -> None:
        self.stats.rejected_writes += 1
        log.warning(
            "job %s: %s rejected: this worker no longer holds the job (lease token %s was taken over or cancelled)",
            job.id,
            what,
            job.lease_token,
        )

    # -- leases ----------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            holding = [r for r in (*self._active.values(), *self._unflushed.values()) if not r.ctx.cancelled]
            if not holding:
                continue
            try:
                held = await self._db_call(
                    self.storage.renew_leases, self.worker_id, [r.lease for r in holding], self._lease_ms
                )
            except Exception as exc:
                self._report("renewing leases", exc)
                continue
            for running in holding:
                if running.job.id not in held and running.job.id in self._active:
                    log.info("job %s was cancelled or taken over: stopping its handler", running.job.id)
                    running.ctx.cancel("cancelled")
                    if running.task is not None:
                        running.task.cancel()

    async def _reclaim_loop(self) -> None:
        while True:
            await asyncio.sleep(self.reclaim_interval)
            try:
                reclaimed = await self._db_call(self.storage.reclaim_expired)
            except Exception as exc:
                self._report("reclaiming expired leases", exc)
                continue
            for item in reclaimed:
                log.warning("job %s: lease expired (worker gone?); now %s", item.job_id, item.status.value)

    # -- shutdown --------------------------------------------------------------------

    async def _shutdown(self) -> None:
        if self._active:
            log.info("waiting up to %.0fs for %d running jobs", self.shutdown_grace, len(self._active))
            deadline = time.monotonic() + self.shutdown_grace
            while self._active and time.monotonic() < deadline and not self._grace_cut.is_set():
                self._capacity.clear()
                try:
                    await asyncio.wait_for(self._capacity.wait(), timeout=max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    break
        late: list[JobRecord] = []
        if self._waiting is not None:
            try:
                late = await asyncio.wait_for(self._waiting, timeout=self.poll_interval + 10)
            except Exception as exc:  # its claim failed or hangs: leases expire instead
                self._report("finishing the last wait for jobs", exc)
        leftovers = list(self._active.values())
        for running in leftovers:
            running.settled = True  # whatever the handler still returns is dropped
            self._active.pop(running.job.id, None)
            running.ctx.cancel("shutdown")
            if running.task is not None:
                running.task.cancel()
        if leftovers or late:
            try:
                released = await self._db_call(
                    self.storage.release_jobs,
                    [Release(r.job.id, r.job.lease_token, started=False) for r in leftovers]
                    + [Release(job.id, job.lease_token, started=False) for job in late],
                )
                log.info("handed back %d running jobs", sum(released))
            except Exception as exc:
                self._report("handing back jobs (their leases will expire instead)", exc)
        deadline = time.monotonic() + max(5.0, self.lease)
        while (self._completions or self._failures or not self._flush_idle.is_set()) and time.monotonic() < deadline:
            self._flush_wanted.set()
            await asyncio.sleep(0.01)
        if self._completions or self._failures:
            log.error(
                "could not save %d results before stopping; those jobs run again once their leases expire",
                len(self._completions) + len(self._failures),
            )


def run_worker(queue: Queue, **options: Any) -> Worker:
    """Build a worker for ``queue`` and run it until stopped; return it (for its stats)."""
    worker = Worker(queue, **options)
    worker.run()
    return worker
