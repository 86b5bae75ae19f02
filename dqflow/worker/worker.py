"""``Worker``: runs the declared job types until stopped, composed of parts with one job each.

* ``_fetcher``: claims jobs in batches (one ahead), wakes on new work, ends a drain;
* ``_executor``: runs a handler (thread, task or child process) and turns the run
  into one outcome, validated off the event loop;
* ``_completer``: writes outcomes in batches with one fenced ``settle_jobs`` call;
* ``_maintenance``: heartbeats (lease renewal) and reclaiming expired leases.

One asyncio loop drives them; storage calls block threads of the part that makes
them. This module only wires the parts, handles signals and shuts down in order:
stop claiming, let running jobs finish within the grace, hand back the rest,
write what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

from dqflow.queue import Queue
from dqflow.queue.events import ERROR
from dqflow.schedules.clock import clock_from_env
from dqflow.schedules.scheduler import Scheduler
from dqflow.storage import Release, WorkerInfo
from dqflow.worker._attempt import Attempt
from dqflow.worker._completer import Completer
from dqflow.worker._executor import Executor
from dqflow.worker._fetcher import Fetcher
from dqflow.worker._maintenance import Maintenance
from dqflow.worker._pruner import Pruner
from dqflow.worker._store import WorkerStore
from dqflow.worker.context import WriteStats
from dqflow.worker.settings import WorkerSettingError, resolve_settings, runnable_types

log = logging.getLogger("dqflow.worker")

# The registry beat follows the lease heartbeat, within these bounds (a write per beat).
REGISTRY_MIN_INTERVAL_S = 1.0
REGISTRY_MAX_INTERVAL_S = 15.0


class Worker:
    """Runs the queue's declared job types until stopped (or, with ``drain``, until idle).

    Settings left out come from the declaration's ``worker`` section; a setting
    that cannot work raises ``WorkerSettingError``. ``run()`` blocks; ``stop()``
    (thread-safe, also on SIGINT/SIGTERM) stops claiming, lets running jobs
    finish within ``shutdown_grace`` seconds and hands the rest back; a second
    signal hands them back at once. With ``eager_steps`` (the default), a settle that
    completes workflow steps claims the next steps' jobs for this worker in the same
    atomic step (``Storage.settle_and_claim``): a run goes on here at once, ahead of
    the queue; ``eager_steps=False`` leaves them to the queue's order.
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
        eager_steps: bool | None = None,
    ) -> None:
        settings = resolve_settings(
            queue.declaration.worker,
            concurrency=concurrency,
            batch_size=batch_size,
            lease=lease,
            heartbeat=heartbeat,
            poll_interval=poll_interval,
            shutdown_grace=shutdown_grace,
            reclaim_interval=reclaim_interval,
            eager_steps=eager_steps,
        )
        self.queue = queue
        self.concurrency = settings.concurrency
        self.batch_size = settings.batch_size
        self.lease = settings.lease
        self.heartbeat = settings.heartbeat
        self.poll_interval = settings.poll_interval
        self.shutdown_grace = settings.shutdown_grace
        self.reclaim_interval = settings.reclaim_interval
        self.eager_steps = settings.eager_steps
        self.job_types = runnable_types(queue.declaration, job_types)
        queue.declaration.check_schemas(self.job_types)  # before anything runs, if loading deferred it
        queue.declaration.check_workflows()  # it advances the runs whose step jobs it ends
        self.drain = drain
        self._scheduler = _scheduler_of(queue)
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stats = WriteStats()
        self._store: WorkerStore = queue.storage
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._grace_cut: asyncio.Event | None = None
        self._fetcher: Fetcher | None = None

    # -- public ----------------------------------------------------------------------

    def run(self) -> None:
        """Run until stopped (blocking)."""
        _run_abandoning_stragglers(self.run_async())

    def stop(self) -> None:
        """Ask the worker to shut down gracefully (safe from any thread or a signal handler)."""
        self._stop_requested.set()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._begin_stop)

    async def run_async(self) -> None:
        """Run until stopped, inside the caller's event loop."""
        loop = self._loop = asyncio.get_running_loop()
        stopping = self._stopping = asyncio.Event()
        self._grace_cut = asyncio.Event()
        tracing = self.queue.tracing
        fetcher: Fetcher
        completer = Completer(
            self._store,
            self.queue.events,
            self.stats,
            self._report,
            on_written=self._wake,
            tracing=tracing,
        )
        executor = Executor(
            self.queue,
            loop,
            self.concurrency,
            self.stats,
            self.worker_id,
            on_settled=completer.add,
            on_change=self._wake,
        )
        maintenance = Maintenance(
            self._store,
            self.worker_id,
            lease_ms=round(self.lease * 1000),
            heartbeat=self.heartbeat,
            reclaim_interval=self.reclaim_interval,
            holding=lambda: [*executor.active.values(), *fetcher.holding(), *completer.holding()],
            on_lost=executor.lost,
            report=self._report,
            info=self._info(),
            registry_interval=min(max(self.heartbeat, REGISTRY_MIN_INTERVAL_S), REGISTRY_MAX_INTERVAL_S),
            scheduler=self._scheduler,
            pruner=Pruner(self.queue.declaration, self.queue.storage),
        )
        fetcher = self._fetcher = Fetcher(
            self._store,
            self.worker_id,
            self.job_types,
            lease_ms=round(self.lease * 1000),
            batch_size=self.batch_size,
            poll_interval=self.poll_interval,
            drain=self.drain,
            executor=executor,
            completer=completer,
            maintenance=maintenance,
            stopping=stopping,
            report=self._report,
            tracing=tracing,
        )
        if self.eager_steps:
            completer.claim_steps_for(fetcher)
        if self._stop_requested.is_set():
            stopping.set()
        installed = self._install_signal_handlers()
        writer = asyncio.create_task(completer.run(), name="dqflow-settle")
        maintenance.start()
        log.info(
            "worker %s started: concurrency %d, job types %s, backend %s",
            self.worker_id,
            self.concurrency,
            _names(self.job_types),
            self._store.url,
        )
        try:
            await fetcher.run()
            await self._shutdown(executor, fetcher, completer)
        finally:
            writer.cancel()
            await maintenance.stop()
            await asyncio.gather(writer, return_exceptions=True)
            for sig in installed:
                loop.remove_signal_handler(sig)
            fetcher.close()
            completer.close()
            executor.shutdown()
            log.info(
                "worker %s stopped: %d completed, %d failed, %d stale writes rejected",
                self.worker_id,
                self.stats.completed,
                self.stats.failed,
                self.stats.rejected_writes,
            )

    # -- plumbing --------------------------------------------------------------------

    def _info(self) -> WorkerInfo:
        """This worker as the registry shows it (``dqflow stats``)."""
        return WorkerInfo(
            worker_id=self.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=datetime.now(UTC),
            concurrency=self.concurrency,
            job_types=tuple(self.job_types),
        )

    def _wake(self) -> None:
        if self._fetcher is not None:
            self._fetcher.wake()

    def _begin_stop(self) -> None:
        self._stop_requested.set()
        assert self._stopping is not None
        self._stopping.set()
        self._wake()

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
        assert self._stopping is not None and self._grace_cut is not None
        if self._stopping.is_set():
            log.warning("second %s: handing back running jobs now", signal.Signals(sig).name)
            self._grace_cut.set()
            return
        log.info(
            "%s: finishing running jobs (up to %.0fs), claiming no more",
            signal.Signals(sig).name,
            self.shutdown_grace,
        )
        self._begin_stop()

    def _report(self, where: str, exc: BaseException) -> None:
        log.error("%s: %s", where, exc)
        self.queue.events.emit(ERROR, {"error": exc, "where": where, "worker_id": self.worker_id})

    # -- shutdown --------------------------------------------------------------------

    async def _shutdown(self, executor: Executor, fetcher: Fetcher, completer: Completer) -> None:
        assert self._grace_cut is not None
        # first the last wait for work: a job its thread started meanwhile runs out the grace too
        unstarted = await fetcher.take_unstarted()
        if executor.active:
            log.info("waiting up to %.0fs for %d running jobs", self.shutdown_grace, len(executor.active))
            deadline = time.monotonic() + self.shutdown_grace
            while executor.active and time.monotonic() < deadline and not self._grace_cut.is_set():
                await asyncio.sleep(min(0.02, max(0.0, deadline - time.monotonic())))
        leftovers: list[Attempt] = executor.abandon_all()
        releases = [Release(a.job.id, a.job.lease_token, started=False) for a in leftovers]
        releases += [Release(job.id, job.lease_token, started=False) for job in unstarted]
        released = await completer.release(releases)
        if leftovers:
            log.info("handed back %d running jobs", sum(released[: len(leftovers)]))
        if unstarted:
            log.info("handed back %d jobs claimed but not started", sum(released[len(leftovers) :]))
        await completer.flush(max(5.0, self.lease))


def _run_abandoning_stragglers(main: Coroutine[Any, Any, None]) -> None:
    """``asyncio.run(main)``, except that tasks still running when ``main`` ends are abandoned.

    ``asyncio.run`` waits for every task it cancels: an async handler that swallows its
    cancellation would keep the process alive past the shutdown grace.
    """
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(main)
    finally:
        stragglers = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in stragglers:
            task.cancel()
        if stragglers:
            loop.run_until_complete(asyncio.wait(stragglers, timeout=0.1))
        for task in stragglers:
            if not task.done():
                task._log_destroy_pending = False  # type: ignore[attr-defined]  # abandoned on purpose
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _names(job_types: Sequence[str]) -> str:
    shown = ", ".join(job_types[:10])
    return shown if len(job_types) <= 10 else f"{shown} and {len(job_types) - 10} more"


def run_worker(queue: Queue, **options: Any) -> Worker:
    """Build a worker for ``queue`` and run it until stopped; return it (for its stats)."""
    worker = Worker(queue, **options)
    worker.run()
    return worker


def _scheduler_of(queue: Queue) -> Scheduler | None:
    """The scheduler of the declaration's schedules (None without any); its clock from the environment."""
    if not queue.declaration.schedules:
        return None
    try:
        clock = clock_from_env()
    except ValueError as exc:
        raise WorkerSettingError(str(exc)) from None
    return Scheduler(queue, clock)
