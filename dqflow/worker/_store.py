"""The part of storage a worker uses, and the threads its calls block on.

Workers touch storage only through these calls (claims, wake-ups, lease renewals,
reclaims, registry beats and one fenced ``settle_jobs`` per batch of outcomes, or
``settle_and_claim`` when it completes workflow steps); every one runs on a
thread of the part that makes it, so a slow write never delays a heartbeat.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from dqflow.record import JobRecord
from dqflow.storage import Lease, Outcome, ReclaimedJob, StepClaim, WorkerInfo

T = TypeVar("T")


class WorkerStore(Protocol):
    """What a worker needs from storage (``Storage`` has it; see ``dqflow.storage.base`` for the rules)."""

    url: str
    concurrent_settles: int

    def claim_jobs(
        self, worker_id: str, job_types: Sequence[str] | None, limit: int, lease_ms: int
    ) -> list[JobRecord]: ...

    def wait_and_claim(
        self, worker_id: str, job_types: Sequence[str] | None, limit: int, lease_ms: int, timeout: float
    ) -> list[JobRecord]: ...

    def next_due_in(self, job_types: Sequence[str] | None) -> float | None: ...

    def renew_leases(self, worker_id: str, leases: Sequence[Lease], lease_ms: int) -> set[int]: ...

    def settle_jobs(self, outcomes: Sequence[Outcome]) -> list[bool]: ...

    def settle_and_claim(self, outcomes: Sequence[Outcome], claim: StepClaim) -> tuple[list[bool], list[JobRecord]]: ...

    def reclaim_expired(self) -> list[ReclaimedJob]: ...

    def beat_worker(self, worker: WorkerInfo) -> None: ...

    def remove_worker(self, worker_id: str) -> None: ...

    def wake_due_jobs(self) -> int: ...


class Calls:
    """Blocking storage calls on ``threads`` threads of their own, awaited from the loop."""

    def __init__(self, name: str, threads: int = 1) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix=f"dqflow-{name}")

    async def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args))

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Start ``fn`` now; the caller awaits (or abandons) the future."""
        return asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args))

    def shutdown(self, *, wait: bool) -> None:
        self._pool.shutdown(wait=wait)
