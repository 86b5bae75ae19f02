"""Test helpers for projects that use dqflow: an in-memory queue, a worker run to idle, assertions.

::

    from dqflow.testing import MemoryQueue

    def test_report(tmp_path):
        with MemoryQueue("jobs.yaml") as queue:
            job_id = queue.add("generate_report", {"reportId": "q3"})
            queue.run_until_idle()
            queue.assert_completed(job_id)

With pytest the ``dqflow_queue`` fixture gives one per test (``dqflow.testing.pytest_plugin``,
registered as a pytest plugin when dqflow is installed). See docs/TESTING.md.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dqflow.declaration import Declaration, find_config, load_declaration
from dqflow.enums import JobStatus
from dqflow.queue import Queue
from dqflow.storage import JobFilter
from dqflow.storage.sqlite.backend import MEMORY_URL

if TYPE_CHECKING:
    from dqflow.record import JobRecord

__all__ = ["ANY", "MEMORY_URL", "DeclarationSource", "MemoryQueue"]

DeclarationSource = Declaration | str | os.PathLike[str] | Mapping[str, Mapping[str, Any]] | None
"""What ``MemoryQueue`` is built from: a ``Declaration``, a ``jobs.yaml`` path, the ``jobs``
mapping of ``Declaration.build``, or None (``$DQFLOW_CONFIG``, else ``./jobs.yaml``)."""


class _Any:
    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Any()
"""Matches any payload or output in the assertions."""

_IDLE_POLL_S = 0.02


def _declaration(source: DeclarationSource) -> Declaration:
    if isinstance(source, Declaration):
        return source
    if isinstance(source, Mapping):
        return Declaration.build(source)
    return load_declaration(find_config(None if source is None else os.fspath(source)))


class MemoryQueue(Queue):
    """A ``Queue`` on a private in-memory database (``sqlite:///:memory:``), with helpers for tests.

    Nothing outlives ``close()``; two queues never see each other's jobs. Handlers run
    in this process, in ``run_until_idle``.
    """

    def __init__(self, declaration: DeclarationSource = None) -> None:
        super().__init__(_declaration(declaration), MEMORY_URL)

    # -- running ---------------------------------------------------------------------

    def run_until_idle(self, *, timeout: float = 60.0, job_types: list[str] | None = None) -> None:
        """Run a worker in this process until no job is ready or running.

        Jobs due later (a ``delay``, a retry waiting out its back-off) stay pending.
        ``TimeoutError`` when the jobs are not done within ``timeout`` seconds (the
        worker is stopped first); a worker error is raised here.
        """
        from dqflow.worker import Worker

        worker = Worker(self, drain=True, job_types=job_types, poll_interval=_IDLE_POLL_S)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                worker.run()
            except BaseException as exc:  # raised again on the caller's thread
                errors.append(exc)

        thread = threading.Thread(target=run, name="dqflow-run-until-idle", daemon=True)
        thread.start()  # a thread of its own: works from async tests too (the worker runs its own loop)
        thread.join(timeout)
        if thread.is_alive():
            busy = self.jobs(status=JobStatus.PROCESSING)
            worker.stop()
            thread.join(worker.shutdown_grace + 5)
            raise TimeoutError(f"run_until_idle: jobs still running after {timeout:g} s: {_describe(busy) or 'none'}")
        if errors:
            raise errors[0]

    # -- looking -----------------------------------------------------------------------

    def jobs(self, job_type: str | None = None, *, status: JobStatus | str | None = None) -> list[JobRecord]:
        """Every job (of ``job_type``, in ``status``), oldest first."""
        statuses = () if status is None else (JobStatus(status),)
        found: list[JobRecord] = []
        cursor: int | None = None
        while True:
            page = self.storage.list_jobs(JobFilter(statuses, job_type, limit=500, cursor=cursor))
            found.extend(page.jobs)
            if page.next_cursor is None:
                return found[::-1]
            cursor = page.next_cursor

    def assert_enqueued(
        self, job_type: str, payload: Any = ANY, *, count: int | None = None, status: JobStatus | str | None = None
    ) -> list[JobRecord]:
        """The jobs of ``job_type`` whose payload equals ``payload`` (and in ``status``), oldest
        first; ``AssertionError`` listing what there is when none match (or not ``count``)."""
        candidates = self.jobs(job_type, status=status)
        matches = [job for job in candidates if payload is ANY or job.payload == payload]
        if (count is None and not matches) or (count is not None and len(matches) != count):
            wanted = f"{'a' if count is None else count} {job_type} job(s)"
            if payload is not ANY:
                wanted += f" with payload {payload!r}"
            if status is not None:
                wanted += f" {JobStatus(status).value}"
            raise AssertionError(f"expected {wanted}, found {len(matches)}; {job_type} jobs: {_describe(candidates)}")
        return matches

    def assert_completed(self, job: int | str, output: Any = ANY) -> list[JobRecord]:
        """Job ``job`` (an id), or every job of type ``job`` (at least one), completed with
        ``output`` (each; ``ANY`` for any). ``AssertionError`` saying status and last error."""
        records = [self.require_job(job)] if isinstance(job, int) else self.jobs(job)
        if not records:
            raise AssertionError(f"expected completed {job} jobs, found no {job} job at all")
        for record in records:
            if record.status is not JobStatus.COMPLETED:
                raise AssertionError(f"expected job {record.id} completed: {_describe([record])}")
            if output is not ANY and record.output != output:
                raise AssertionError(f"job {record.id} ({record.job_type}) output {record.output!r} != {output!r}")
        return records

    def assert_failed(self, job: int, error: str | None = None) -> JobRecord:
        """Job ``job`` failed for good (with ``error`` in its last error, when given)."""
        record = self.require_job(job)
        last = record.error_history[-1]["error"] if record.error_history else ""
        if record.status is not JobStatus.FAILED or (error is not None and error not in last):
            raise AssertionError(
                f"expected job {job} failed{f' with {error!r}' if error else ''}: {_describe([record])}"
            )
        return record


def _describe(records: list[JobRecord]) -> str:
    """``#3 pending (attempt 1/3, last error: ...) payload {...}``, a few records at most."""
    parts = []
    for record in records[:10]:
        text = f"#{record.id} {record.status.value} (attempt {record.attempts}/{record.max_attempts}"
        if record.error_history:
            text += f", last error: {str(record.error_history[-1].get('error'))[:200]}"
        parts.append(f"{text}) payload {record.payload!r}")
    more = f" and {len(records) - 10} more" if len(records) > 10 else ""
    return "; ".join(parts) + more
