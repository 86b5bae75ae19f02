"""Background upkeep of a running worker, each a small loop with one job.

* heartbeat: renews the leases of every job this worker holds (running, claimed
  ahead, or settled but not written yet) and stops the handlers of jobs it lost
  (cancelled, or taken over after a stall);
* reclaim: puts jobs whose lease expired (their worker died) back to pending;
* registry: records this worker as alive (``dqflow stats``, ``dqflow health``) every
  ``registry_interval`` seconds, and removes it when the worker stops;
* schedule: enqueues the due ticks of the declared schedules (``dqflow/schedules``),
  woken at the next tick; every worker runs it, storage decides each tick once;
* prune: deletes finished jobs older than their type's ``retention`` window, a small
  batch per type and status at a time (``_pruner.py``).

Each loop calls storage on threads of its own, so a slow claim or write never
delays a heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from dqflow.schedules.scheduler import Scheduler, Tick
from dqflow.storage import WorkerInfo
from dqflow.storage.base import TickVerdict
from dqflow.worker._attempt import Attempt
from dqflow.worker._pruner import Pruner
from dqflow.worker._store import Calls, WorkerStore

log = logging.getLogger("dqflow.worker")

_RECHECK = 30.0
"""Most real seconds the scheduler sleeps between passes (a paused schedule resumed is seen by then)."""
_LEAST_WAIT = 0.005
PRUNE_INTERVAL = 60.0
"""Real seconds between prune passes (1 s while a pass leaves more to delete)."""


class Maintenance:
    """Heartbeat, reclaim, registry and (with schedules) scheduler loops for one worker."""

    def __init__(
        self,
        store: WorkerStore,
        worker_id: str,
        *,
        lease_ms: int,
        heartbeat: float,
        reclaim_interval: float,
        holding: Callable[[], list[Attempt]],
        on_lost: Callable[[Attempt], None],
        report: Callable[[str, BaseException], None],
        info: WorkerInfo,
        registry_interval: float,
        scheduler: Scheduler | None = None,
        pruner: Pruner | None = None,
        prune_interval: float = PRUNE_INTERVAL,
    ) -> None:
        self._store = store
        self._worker_id = worker_id
        self._lease_ms = lease_ms
        self._heartbeat = heartbeat
        self._reclaim_interval = reclaim_interval
        self._holding = holding
        self._on_lost = on_lost
        self._report = report
        self._heartbeat_calls = Calls("heartbeat")
        self._reclaim_calls = Calls("reclaim")
        self._info = info
        self._registry_interval = registry_interval
        self._registry_calls = Calls("registry")
        self._scheduler = scheduler
        self._schedule_calls = Calls("schedule")
        self._pruner = pruner
        self._prune_interval = prune_interval
        self._prune_calls = Calls("prune")
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._heartbeat_loop(), name="dqflow-heartbeat"),
            asyncio.create_task(self._reclaim_loop(), name="dqflow-reclaim"),
            asyncio.create_task(self._registry_loop(), name="dqflow-registry"),
        ]
        if self._scheduler is not None and self._scheduler.schedules:
            self._tasks.append(asyncio.create_task(self._schedule_loop(self._scheduler), name="dqflow-schedule"))
        if self._pruner is not None and self._pruner.has_work:
            self._tasks.append(asyncio.create_task(self._prune_loop(self._pruner), name="dqflow-prune"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await asyncio.wait_for(self._registry_calls(self._store.remove_worker, self._info.worker_id), 5)
        except Exception as exc:  # the entry ages out instead
            self._report("removing this worker from the registry", exc)
        self._heartbeat_calls.shutdown(wait=False)
        self._reclaim_calls.shutdown(wait=False)
        self._registry_calls.shutdown(wait=False)
        self._schedule_calls.shutdown(wait=False)
        self._prune_calls.shutdown(wait=False)

    async def reclaim_once(self) -> int:
        """Put jobs whose lease expired back to pending (or failed); return how many."""
        try:
            reclaimed = await self._reclaim_calls(self._store.reclaim_expired)
        except Exception as exc:
            self._report("reclaiming expired leases", exc)
            return 0
        for item in reclaimed:
            log.warning("job %s: lease expired (worker gone?); now %s", item.job_id, item.status.value)
        return len(reclaimed)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat)
            holding = [attempt for attempt in self._holding() if not attempt.ctx.cancelled]
            if not holding:
                continue
            leases = [attempt.lease for attempt in holding]
            try:
                held = await self._heartbeat_calls(self._store.renew_leases, self._worker_id, leases, self._lease_ms)
            except Exception as exc:
                self._report("renewing leases", exc)
                continue
            for attempt in holding:
                if attempt.job.id not in held:
                    self._on_lost(attempt)

    async def _reclaim_loop(self) -> None:
        while True:
            await asyncio.sleep(self._reclaim_interval)
            await self.reclaim_once()

    async def _registry_loop(self) -> None:
        while True:
            try:
                await self._registry_calls(self._store.beat_worker, self._info)
            except Exception as exc:
                self._report("recording this worker in the registry", exc)
            await asyncio.sleep(self._registry_interval)

    async def schedule_once(self) -> list[Tick]:
        """One scheduler pass: claim the due ticks; the ticks claimed."""
        if self._scheduler is None:
            return []
        try:
            ticks = await self._schedule_calls(self._scheduler.run_due)
        except Exception as exc:
            self._report("enqueuing scheduled jobs", exc)
            return []
        for tick in ticks:
            if tick.result.job_id is not None and tick.result.verdict is TickVerdict.ENQUEUED:
                what = "job" if self._scheduler.queue.declaration.schedules[tick.schedule].job else "workflow run"
                log.info(
                    "schedule %s: tick %s added %s %s", tick.schedule, tick.tick.isoformat(), what, tick.result.job_id
                )
        return ticks

    async def _schedule_loop(self, scheduler: Scheduler) -> None:
        while True:
            await self.schedule_once()
            wait = _RECHECK
            try:
                upcoming = scheduler.next_tick()
            except Exception as exc:
                self._report("working out the next scheduled tick", exc)
            else:
                if upcoming is not None:
                    wait = min(max(scheduler.clock.seconds_until(upcoming), _LEAST_WAIT), _RECHECK)
            await asyncio.sleep(wait)

    async def _prune_loop(self, pruner: Pruner) -> None:
        # a random first wait: workers started together do not prune in step
        await asyncio.sleep(random.uniform(0, self._prune_interval))
        while True:
            more = False
            try:
                deleted, more = await self._prune_calls(pruner.prune_once)
            except Exception as exc:
                self._report("deleting finished jobs past their retention", exc)
            else:
                if deleted:
                    log.info("pruned %d finished jobs past their retention", deleted)
            await asyncio.sleep(1.0 if more else self._prune_interval)
