"""``dqflow run``: a worker for the declared job types."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from dqflow.cli._app import command, open_queue, options, setup_logging
from dqflow.cli._logging import LogFormat
from dqflow.cli._output import console, print_json
from dqflow.cli._parse import duration

#: The worker's youngest-generation threshold (Python's default: 700). A worker's hot path makes
#: no reference cycles, so a collection finds nothing and only walks live objects: 700 made one
#: every ~20 workflow steps, every tenth also walking the run states the storages keep (8-15% of
#: the worker's CPU in a linear drain). Cyclic garbage a handler makes waits at most this many
#: more allocations.
YOUNG_GENERATION_THRESHOLD = 20_000


def _freeze_startup_objects() -> None:
    """Leave what start-up loaded (modules, the declaration, compiled schemas) out of garbage
    collection: a worker allocates for every job it settles, and collections walked the ~100k
    objects of the imports again and again (up to 40% of a workflow step's settle CPU time).
    The records' SQLModel classes are loaded first: every claim builds them."""
    import importlib

    for module in ("dqflow.record", "dqflow.workflow_record"):  # loaded now, frozen with the rest
        importlib.import_module(module)

    gc.collect()
    gc.freeze()


@contextmanager
def _worker_collection() -> Iterator[None]:
    """Garbage collection for a worker's run: start-up's objects frozen, then collections
    every ``YOUNG_GENERATION_THRESHOLD`` allocations, the caller's thresholds back afterwards
    (``dqflow.cli.run`` may be called inside a longer-lived process)."""
    _freeze_startup_objects()
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], YOUNG_GENERATION_THRESHOLD), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


@command("run")
def run(
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", "-C", min=1, help="Jobs at once (default: the YAML's worker.concurrency)."),
    ] = None,
    job_type: Annotated[
        list[str] | None,
        typer.Option(
            "--job-type", "-j", help="Only this job type (repeat for more; default: all).", show_default=False
        ),
    ] = None,
    drain: Annotated[
        bool, typer.Option("--drain", help="Exit 0 once no job is ready (for cron and CI) instead of waiting.")
    ] = False,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="Jobs claimed per round trip (default: concurrency).")
    ] = None,
    lease: Annotated[
        str | None,
        typer.Option("--lease", metavar="DURATION", help="How long a claim holds without a heartbeat, e.g. 30s."),
    ] = None,
    shutdown_grace: Annotated[
        str | None,
        typer.Option(
            "--shutdown-grace",
            metavar="DURATION",
            help="On SIGINT/SIGTERM, wait this long for running jobs before handing them back.",
        ),
    ] = None,
    eager_steps: Annotated[
        bool | None,
        typer.Option(
            "--eager-steps/--no-eager-steps",
            help="Claim a run's next steps while settling the ones before (default: the YAML's worker.eager_steps).",
            show_default=False,
        ),
    ] = None,
    log_format: Annotated[
        LogFormat, typer.Option("--log-format", help="text (for people) or json (one object per line).")
    ] = LogFormat.TEXT,
) -> None:
    """Run jobs until stopped (Ctrl-C: finish running jobs, then exit), or with --drain until idle."""
    from dqflow.worker import Worker, WorkerSettingError

    setup_logging(options().verbose, default_level=logging.INFO, log_format=log_format)
    lease_s = duration(lease, "--lease")
    grace_s = duration(shutdown_grace, "--shutdown-grace")
    with open_queue(import_handlers=True) as queue:
        try:
            worker = Worker(
                queue,
                concurrency=concurrency,
                job_types=job_type or None,
                drain=drain,
                batch_size=batch_size,
                lease=lease_s,
                shutdown_grace=grace_s,
                eager_steps=eager_steps,
            )
        except WorkerSettingError as exc:
            raise typer.BadParameter(str(exc)) from None
        with _worker_collection():
            started = time.monotonic()
            worker.run()
            elapsed = time.monotonic() - started
    stats = worker.stats
    if options().json:
        print_json(
            {
                "worker_id": worker.worker_id,
                "completed": stats.completed,
                "failed": stats.failed,
                "rejected_writes": stats.rejected_writes,
                "seconds": round(elapsed, 3),
            }
        )
    elif drain:
        console().print(f"drained in {elapsed:.1f}s: {stats.completed} completed, {stats.failed} failed attempts")
