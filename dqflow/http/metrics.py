"""``GET /metrics``: the queue's state in Prometheus' text format, read from storage at each scrape.

Everything comes from the shared storage, so every server process answers the
same for the whole queue, whichever workers did the work:

* ``dqflow_jobs{job_type, status}``: jobs per type and status (a finished job
  stays counted until it is deleted, so ``deriv``/``increase`` of the completed
  and failed series is the throughput and failure rate);
* ``dqflow_job_start_latency_seconds{quantile}``: from when a job was due to
  when a worker started it, over the newest jobs that have started;
* ``dqflow_worker_jobs{worker}`` and ``dqflow_worker_lease_seconds_left{worker}``:
  what each worker holds now, and how long until its soonest lease runs out
  (negative: its heartbeats have stopped; the job will be reclaimed);
* ``dqflow_worker_last_seen_seconds{worker}``: seconds since each registered
  worker's last beat (``dqflow stats``; a stopped worker leaves the registry);
* ``dqflow_oldest_pending_age_seconds``: how long ago the oldest pending job was
  added (0 when none is pending).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from dqflow.http.auth import require_read
from dqflow.http.jobs import queue_of
from dqflow.queue import Queue
from dqflow.record import JobStatus

LATENCY_SAMPLE = 1000
"""Newest started jobs the start latency is computed over."""
QUANTILES = (0.5, 0.9, 0.99)
MAX_WORKER_JOBS = 10_000
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

router = APIRouter(tags=["server"])


def _quantile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


class QueueCollector(Collector):
    """Reads the queue's state when Prometheus scrapes."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("dqflow_jobs", "Jobs per job type and status.", labels=["job_type", "status"])
        for (job_type, status), count in sorted(self.queue.count_jobs().items()):
            jobs.add_metric([job_type, status.value], count)
        yield jobs

        started = self.queue.list_jobs(
            status=[JobStatus.PROCESSING, JobStatus.COMPLETED, JobStatus.FAILED], limit=LATENCY_SAMPLE
        ).jobs
        waits = sorted(
            max(0.0, (job.started_at - job.run_at).total_seconds()) for job in started if job.started_at is not None
        )
        latency = SummaryMetricFamily(
            "dqflow_job_start_latency_seconds",
            f"Seconds from a job being due to a worker starting it (newest {LATENCY_SAMPLE} started jobs).",
        )
        latency.add_metric([], count_value=len(waits), sum_value=sum(waits))
        yield latency
        quantiles = GaugeMetricFamily(
            "dqflow_job_start_latency_quantile_seconds",
            "Quantiles of the start latency over the same jobs.",
            labels=["quantile"],
        )
        for q in QUANTILES:
            quantiles.add_metric([str(q)], _quantile(waits, q) if waits else 0.0)
        yield quantiles

        now = datetime.now(UTC)
        held: dict[str, int] = {}
        lease_left: dict[str, float] = {}
        for job in self.queue.list_jobs(status=JobStatus.PROCESSING, limit=MAX_WORKER_JOBS).jobs:
            worker = job.locked_by or "unknown"
            held[worker] = held.get(worker, 0) + 1
            if job.lease_expires_at is not None:
                left = (job.lease_expires_at - now).total_seconds()
                lease_left[worker] = min(left, lease_left.get(worker, left))
        busy = GaugeMetricFamily("dqflow_worker_jobs", "Jobs each worker holds now.", labels=["worker"])
        leases = GaugeMetricFamily(
            "dqflow_worker_lease_seconds_left",
            "Seconds until the worker's soonest lease expires (renewed by its heartbeats; negative: stale).",
            labels=["worker"],
        )
        for worker in sorted(held):
            busy.add_metric([worker], held[worker])
            if worker in lease_left:
                leases.add_metric([worker], round(lease_left[worker], 3))
        yield busy
        yield leases

        seen = GaugeMetricFamily(
            "dqflow_worker_last_seen_seconds",
            "Seconds since each registered worker's last beat (a stopped worker leaves the registry).",
            labels=["worker"],
        )
        for registered in self.queue.storage.list_workers():
            if registered.last_seen is not None:
                seen.add_metric([registered.worker_id], round((now - registered.last_seen).total_seconds(), 3))
        yield seen
        oldest = self.queue.storage.oldest_pending()
        age = 0.0 if oldest is None else max(0.0, (now - oldest.created_at).total_seconds())
        yield GaugeMetricFamily(
            "dqflow_oldest_pending_age_seconds", "Seconds since the oldest pending job was added.", value=round(age, 3)
        )


@router.get("/metrics", dependencies=[Depends(require_read)], response_class=Response)
def metrics(request: Request) -> Response:
    """The queue's state in Prometheus' text exposition format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(queue_of(request)))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE)
