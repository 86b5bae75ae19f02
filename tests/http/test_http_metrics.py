"""``GET /metrics`` on a real ``dqflow serve``, on each backend: counts, start latency, workers' leases."""

from __future__ import annotations

import time
from pathlib import Path

from http_server import Server, worker
from prometheus_client.parser import text_string_to_metric_families

from dqflow import Queue, Worker


def _scrape(server: Server) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    with server.client() as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def test_metrics_count_jobs_and_measure_start_latency(server: Server, queue: Queue) -> None:
    for n in range(3):
        queue.add("echo", {"n": n})
    queue.add("boom", {})
    queue.cancel(queue.add("steps", {"steps": 1}))
    queue.add("steps", {"steps": 1}, delay="1h")
    Worker(queue, drain=True, job_types=["echo", "boom"]).run()
    samples = _scrape(server)
    jobs = samples["dqflow_jobs"]
    assert jobs[(("job_type", "echo"), ("status", "completed"))] == 3
    assert jobs[(("job_type", "boom"), ("status", "failed"))] == 1
    assert jobs[(("job_type", "steps"), ("status", "cancelled"))] == 1
    assert jobs[(("job_type", "steps"), ("status", "pending"))] == 1
    assert samples["dqflow_job_start_latency_seconds_count"][()] == 4
    assert 0 <= samples["dqflow_job_start_latency_seconds_sum"][()] < 60
    quantiles = samples["dqflow_job_start_latency_quantile_seconds"]
    assert quantiles[(("quantile", "0.5"),)] <= quantiles[(("quantile", "0.99"),)] < 60
    assert samples.get("dqflow_worker_jobs", {}) == {}


def test_metrics_show_what_each_worker_holds(server: Server, queue: Queue, tmp_path: Path) -> None:
    job_id = queue.add("steps", {"steps": 200, "pause": 0.05})
    with worker(server.backend, tmp_path / "worker.log", "--job-type", "steps"):
        deadline = time.monotonic() + 30
        while queue.require_job(job_id).status.value != "processing":
            assert time.monotonic() < deadline, "the worker did not start the job"
            time.sleep(0.05)
        holder = queue.require_job(job_id).locked_by
        samples = _scrape(server)
        queue.cancel(job_id)
    assert samples["dqflow_worker_jobs"] == {(("worker", holder),): 1}
    assert 0 < samples["dqflow_worker_lease_seconds_left"][(("worker", holder),)] <= 5
    assert 0 <= samples["dqflow_worker_last_seen_seconds"][(("worker", holder),)] < 30  # the registry


def test_metrics_show_the_oldest_pending_job(server: Server, queue: Queue) -> None:
    queue.add("steps", {"steps": 1}, delay="1h")
    time.sleep(0.3)
    assert 0.3 <= _scrape(server)["dqflow_oldest_pending_age_seconds"][()] < 60


def test_metrics_need_the_read_token(server: Server) -> None:
    with server.client(token=None) as client:
        assert client.get("/metrics").status_code == 401
