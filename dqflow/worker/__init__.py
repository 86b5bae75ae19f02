"""The worker runtime: claiming, running handlers, leases, retries, timeouts."""

from dqflow.worker.context import JobContext
from dqflow.worker.settings import WorkerSettingError
from dqflow.worker.worker import Worker, run_worker

__all__ = ["JobContext", "Worker", "WorkerSettingError", "run_worker"]
