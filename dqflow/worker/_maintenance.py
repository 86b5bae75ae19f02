"""Background upkeep of a running worker, each a small loop with one job.

* heartbeat: renews the leases of every job this worker holds (running, claimed
  ahead, or settled but not written yet) and stops the handlers of jobs it lost
  (cancelled, or taken over after a stall);
* reclaim: puts jobs whose lease expired (their worker died) back to pending;
* registry: records this worker as alive (``dqflow stats``, ``dqflow health``) every
  ``registry_interval`` seconds, and removes it when the worker stops.

Periodic work to come (a cron scheduler, a pruner of old jobs and events) joins
here as further loops. Each loop calls storage on threads of its own, so a slow
claim or write never delays a heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from dqflow.storage import WorkerInfo
from dqflow.worker._attempt import Attempt
from dqflow.worker._store import Calls, WorkerStore

log = logging.getLogger("dqflow.worker")


class Maintenance:
    """Heartbeat and reclaim loops for one worker."""

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
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._heartbeat_loop(), name="dqflow-heartbeat"),
            asyncio.create_task(self._reclaim_loop(), name="dqflow-reclaim"),
            asyncio.create_task(self._registry_loop(), name="dqflow-registry"),
        ]

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
