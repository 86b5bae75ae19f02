"""A workflow step's cost on the worker: runs started beforehand, drained by one worker process.

``benchmarks/workflows.py`` times runs from their submission, so a linear run's
figure includes the producer's starts. This one takes the producer out: the
jobs or runs are stored first, then ``dqflow run --drain --concurrency 16``
runs them all, in its own process, and the time is read from the jobs' own
timestamps (from the start of the first job after the first claim's batch, so the
worker's start-up is left out, to the last completion). Modes, on each backend:

* ``plain``: ``3 x --chains`` jobs of the step's job type (``add_many``);
* ``linear3``: ``--chains`` runs of three steps, each fed the previous output;
* ``fan100``: ``--chords`` runs of a fan-out of 100 and a fan-in of their outputs.

Step cost = plain jobs/s ÷ steps/s (1.0: a step costs what a plain job costs).
Medians of ``--runs`` repetitions, interleaved (every mode once, then again).
Writes ``benchmarks/results/workflow_drain.md``.

    .venv/bin/python benchmarks/workflow_drain.py --chains 1000 --chords 20 --runs 3
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import fmt, loadavg, median  # noqa: E402
from workflow_steps import JOBS_YAML  # noqa: E402
from workflows import FAN, _env, dqflow_store  # noqa: E402

CONCURRENCY = 16
MODES = ("plain", "linear3", "fan100")
Result = dict[str, Any]


def _store(queue: Any, mode: str, chains: int, chords: int) -> int:
    """Store the mode's work; answer how many jobs it makes."""
    if mode == "plain":
        for first in range(0, 3 * chains, 1000):
            queue.add_many(
                [{"job_type": "step", "payload": {"n": n}} for n in range(first, min(3 * chains, first + 1000))]
            )
        return 3 * chains
    if mode == "linear3":
        for n in range(chains):
            queue.start_workflow("linear3", {"n": n})
        return 3 * chains
    for n in range(chords):
        queue.start_workflow("fan100", {"items": list(range(n, n + FAN))})
    return (FAN + 1) * chords


def _seconds(queue: Any, expected: int) -> float:
    """From the start of the first job after the first claim's batch to the last completion."""
    starts, ends = [], []
    cursor = None
    while True:
        page = queue.list_jobs(limit=500, cursor=cursor)
        for job in page.jobs:
            if str(getattr(job.status, "value", job.status)) != "completed":
                raise RuntimeError(f"job {job.id} is {job.status} after the drain")
            starts.append(job.started_at)
            ends.append(job.completed_at)
        cursor = page.next_cursor
        if cursor is None:
            break
    if len(starts) != expected:
        raise RuntimeError(f"{len(starts)} jobs stored, {expected} expected")
    starts.sort()
    return (max(ends) - starts[CONCURRENCY]).total_seconds()


def measure(backend: str, mode: str, chains: int, chords: int) -> Result:
    with tempfile.TemporaryDirectory(prefix="dqbench-drain-") as name, dqflow_store(backend) as url:
        folder = Path(name)
        (folder / "jobs.yaml").write_text(JOBS_YAML)
        from dqflow import Queue

        with Queue.from_yaml(folder / "jobs.yaml", backend=url) as queue:
            count = _store(queue, mode, chains, chords)
            command = [sys.executable, "-m", "dqflow", "run", "--config", str(folder / "jobs.yaml")]
            subprocess.run(
                [*command, "--backend", url, "--concurrency", str(CONCURRENCY), "--drain"],
                env=_env(),
                cwd=folder,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            seconds = _seconds(queue, count)
    counted = count - CONCURRENCY
    result = {"backend": backend, "mode": mode, "jobs": count, "per_s": counted / seconds}
    print(result, flush=True)
    return result


def report(results: list[Result], backends: list[str], args: argparse.Namespace, load: str) -> str:
    lines = [
        "# Workflow steps drained by one worker",
        "",
        f"`{' '.join(['python', 'benchmarks/workflow_drain.py', *sys.argv[1:]])}`",
        f"on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC,",
        f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores, load average "
        f"before {load}, after {loadavg()}. Medians of {args.runs}.",
        "",
        "| backend | plain jobs/s | linear3 steps/s | fan100 steps/s | step cost (linear, fan-out) |",
        "|---|---:|---:|---:|---:|",
    ]
    for backend in backends:
        rates = {
            mode: median([r for r in results if r["backend"] == backend and r["mode"] == mode], "per_s")
            for mode in MODES
        }
        plain, linear, fan = rates["plain"], rates["linear3"], rates["fan100"]
        cost = "-" if not (plain and linear and fan) else f"{plain / linear:.2f}, {plain / fan:.2f}"
        lines.append(f"| {backend} | {fmt(plain)} | {fmt(linear)} | {fmt(fan)} | {cost} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chains", type=int, default=1000, help="Linear runs (plain: three times as many jobs).")
    parser.add_argument("--chords", type=int, default=20, help="Fan-out runs.")
    parser.add_argument("--runs", type=int, default=3, help="Repetitions (the table holds medians).")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "workflow_drain.md")
    parser.add_argument(
        "--backends", nargs="+", default=["sqlite", "postgresql", "redis"], choices=["sqlite", "postgresql", "redis"]
    )
    args = parser.parse_args()
    load = loadavg()
    results = [
        measure(backend, mode, args.chains, args.chords)
        for _ in range(args.runs)
        for backend in args.backends
        for mode in MODES
    ]
    text = report(results, args.backends, args, load)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
