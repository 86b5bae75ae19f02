"""The example project end to end: add jobs, run a worker until the queue is empty, show the results.

Run ``python examples/demo.py`` (on the backend of jobs.yaml: SQLite in .dqflow/),
with ``--backend URL`` for another one (postgresql://..., redis://...), or with
``--json`` for the results as one JSON document.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from dqflow import PayloadValidationError, Queue, Worker

HERE = Path(__file__).resolve().parent
JOBS_YAML = HERE.parent / "jobs.yaml"


def demo(backend: str | None = None, say: Callable[[str], object] = print) -> dict[str, Any]:
    """Run the example; return what happened (the jobs as JSON and the refused payload's error)."""
    with Queue.from_yaml(JOBS_YAML, backend) as queue:
        queue.on("job:progress", lambda e: say(f"  job {e['job_id']} progress {e['progress']}%"))

        ids = [
            queue.add("generate_report", {"reportId": "q3-sales"}),
            queue.add("generate_report", {"reportId": "q3-costs", "format": "csv"}, priority=9),
            queue.add("process_images", {"images": ["cat.png", "dog.png", "owl.png", "fox.png"]}),
            queue.add("send_welcome_email", {"to": "ada@example.com", "name": "Ada"}),
        ]
        say(f"added jobs {ids}")

        # A payload that does not match its schema is refused before anything is stored.
        try:
            queue.add("generate_report", {"reportId": 42})
            refused = "not refused?!"
        except PayloadValidationError as exc:
            refused = str(exc)
        say(f"refused: {refused}")

        say("running a worker until the queue is empty...")
        Worker(queue, concurrency=4, drain=True).run()

        jobs = [queue.require_job(job_id) for job_id in ids]

        # Typed output: the stored JSON parsed into a pydantic model. (The folder of
        # jobs.yaml is importable once it is loaded, so the handlers' module is too.)
        from examples.handlers import ReportOutput

        report = jobs[0].output_as(ReportOutput)
        say(f"report {ids[0]} is at {report.url} (generated {report.generatedAt:%H:%M:%S})")

    return {"jobs": [job.model_dump(mode="json") for job in jobs], "refused": refused}


def show(result: dict[str, Any]) -> None:
    """A table of each job's status, progress and output."""
    table = Table(show_lines=True)
    for column in ("id", "job type", "status", "progress", "output"):
        table.add_column(column, overflow="fold")
    for job in result["jobs"]:
        progress = "-" if job["progress"] is None else f"{job['progress']}%"
        output = Text(json.dumps(job["output"]), style="green")
        table.add_row(str(job["id"]), job["job_type"], job["status"], progress, output)
    Console(width=None if sys.stdout.isatty() else 140).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", help="a backend URL (default: the one in jobs.yaml)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    result = demo(args.backend, say=(lambda _: None) if args.json else print)
    if args.json:
        print(json.dumps(result))
    else:
        show(result)


if __name__ == "__main__":
    main()
