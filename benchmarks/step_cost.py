"""What a linear workflow step costs against a plain job, in CPU time, split by process.

``workflows.py`` reports the step cost as a ratio of wall-clock rates over a short
drain (300 runs take a fifth of a second), which a small, noisy machine moves by
±20%. This script drains larger batches and reads the CPU time each process spent
per unit of work — the ratio it reports moves far less from run to run, and the
split says where a step's extra cost goes:

* ``worker``: the ``dqflow run --concurrency 16`` process (claims, handlers, settles;
  a step's settle plans the run's next step and writes the run's state);
* ``server``: the database server (PostgreSQL: every ``postgres`` process, so keep the
  machine otherwise idle; Redis: the server process, from ``INFO server``); SQLite has none;
* ``producer``: this process — the submit (``add_many`` / ``start_workflows``) and the
  wait's polling of ``count_jobs`` (every ``--poll`` seconds, 20 ms by default against
  ``workflows.py``'s 5 ms: a poll's queries cost the server too — a full count on
  PostgreSQL — and fewer leave more of a small machine to the work measured; the
  wall-clock column is that much coarser).

Each repetition drains ``--steps`` plain jobs, then ``--steps / 3`` runs of the
3-step ``linear3`` workflow (the same job type and handler), on the same warm worker.
Medians of ``--runs`` repetitions per unit (a plain job, a step). Linux only (reads
``/proc``).

    .venv/bin/python benchmarks/step_cost.py --steps 3000 --runs 3

Writes ``benchmarks/results/step_cost.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import workflows  # noqa: E402
from _common import loadavg, version  # noqa: E402
from workflows import DqflowBench, dqflow_store  # noqa: E402

PARTS = ("worker", "server", "producer")
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (those that ended meanwhile count nothing)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICKS_PER_S


def server_pids(backend: str, url: str) -> Callable[[], list[int]]:
    """The database server's processes, looked up on each reading (PostgreSQL starts a process per connection)."""
    if backend == "redis":
        import redis

        client = redis.Redis.from_url(url.split("?", 1)[0])  # the key prefix is dqflow's, not the driver's
        pid = int(client.info("server")["process_id"])
        client.close()
        return lambda: [pid]
    if backend == "postgresql":

        def postgres() -> list[int]:
            pids = []
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    try:
                        with open(f"/proc/{entry}/comm") as comm:
                            if comm.read().startswith("postgres"):
                                pids.append(int(entry))
                    except OSError:
                        continue
            return pids

        return postgres
    return list


def measure(
    bench: DqflowBench, servers: Callable[[], list[int]], units: int, drain: Callable[[], float]
) -> dict[str, float]:
    """Microseconds per unit each process spent while ``drain`` ran, and the wall clock's."""
    worker, server = [bench.proc.pid], servers()
    before = (cpu_seconds(worker), cpu_seconds(server), time.process_time(), time.perf_counter())
    drain()
    server = sorted(set(server) | set(servers()))
    after = (cpu_seconds(worker), cpu_seconds(server), time.process_time(), time.perf_counter())
    spent = {part: (after[i] - before[i]) * 1e6 / units for i, part in enumerate(PARTS)}
    spent["total"] = sum(spent[part] for part in PARTS)
    spent["wall"] = (after[3] - before[3]) * 1e6 / units
    return spent


def one_backend(backend: str, steps: int, runs: int, eager_steps: bool) -> dict[str, list[dict[str, float]]]:
    """``runs`` repetitions of a plain drain and a linear drain on one warm worker."""
    found: dict[str, list[dict[str, float]]] = {"plain": [], "step": []}
    with tempfile.TemporaryDirectory(prefix="dqbench-steps-") as name, dqflow_store(backend) as url:
        bench = DqflowBench(url, Path(name), concurrency=16, eager_steps=eager_steps)
        try:
            servers = server_pids(backend, url)
            for _ in range(runs):
                found["plain"].append(measure(bench, servers, steps, lambda: bench.plain_jobs(steps)))
                time.sleep(0.3)
                found["step"].append(measure(bench, servers, steps, lambda: bench.runs("linear3", steps // 3)))
                bench.read_back()  # every run completed (outside the measured window)
                time.sleep(0.3)
        finally:
            bench.close()
    return found


def report(results: dict[str, dict[str, list[dict[str, float]]]], args: argparse.Namespace, load: str) -> str:
    lines = [
        "# A linear workflow step against a plain job: CPU time by process",
        "",
        f"`{' '.join(['python', 'benchmarks/step_cost.py', *sys.argv[1:]])}`",
        f"on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} cores, load average before {load}, after {loadavg()}; dqflow {version('dqflow')}.",
        f"{args.steps} plain jobs, then {args.steps // 3} runs of 3 steps, per repetition; a worker of "
        f"concurrency 16 in its own process{'' if not args.no_eager_steps else ', steps not claimed eagerly'}."
        f" Medians of {args.runs}, in µs per plain job or per step.",
        "",
        "| backend | unit | worker | server | producer | CPU total | wall | step ÷ plain (CPU, wall) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for backend, found in results.items():
        medians = {unit: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for unit, rows in found.items()}
        plain, step = medians["plain"], medians["step"]
        for unit, row in medians.items():
            ratio = (
                f"{step['total'] / plain['total']:.2f}, {step['wall'] / plain['wall']:.2f}" if unit == "step" else ""
            )
            cells = " | ".join(f"{row[k]:.1f}" for k in (*PARTS, "total", "wall"))
            lines.append(f"| {backend} | {unit} | {cells} | {ratio} |")
    lines += [
        "",
        f"The producer's column holds the submit and the wait's polling (`count_jobs` every {args.poll * 1000:g} ms),",
        "which grows with the wall time; the server's holds that poll's queries too.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3000, help="Plain jobs (and linear steps) per repetition.")
    parser.add_argument("--runs", type=int, default=3, help="Repetitions (the table holds medians).")
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql", "redis"])
    parser.add_argument("--poll", type=float, default=0.02, help="Seconds between the wait's counts.")
    parser.add_argument(
        "--no-eager-steps", action="store_true", help="The worker leaves each next step to the queue's claim."
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "step_cost.md")
    args = parser.parse_args()
    if not Path("/proc/self/stat").exists():
        raise SystemExit("step_cost.py reads CPU times from /proc: Linux only")
    workflows.POLL_S = args.poll
    load = loadavg()
    results = {
        backend: one_backend(backend, args.steps, args.runs, not args.no_eager_steps) for backend in args.backends
    }
    text = report(results, args, load)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
