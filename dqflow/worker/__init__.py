"""The worker runtime: claiming, running handlers, leases, retries, timeouts."""

from dqflow.worker.context import JobContext
from dqflow.worker.worker import Worker, run_worker

__all__ = ["JobContext", "Worker", "run_worker"]
