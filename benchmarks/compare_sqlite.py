"""dqflow on SQLite side by side with huey's SQLite backend (``SqliteHuey``), in one run.

Each system runs the workload of ``benchmarks/throughput.py`` in its own
subprocess on fresh temporary SQLite files, ``--runs`` times, interleaved so that
a noisy moment hurts both alike; the table holds the medians and the ratios.

    .venv/bin/python benchmarks/compare_sqlite.py --jobs 5000 --concurrency 16 --runs 3

Writes ``benchmarks/results/sqlite.md`` and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_common.py
from _common import fmt, loadavg, median, version

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "sqlite.md"
METRICS = (
    "process_jobs_per_s",
    "enqueue_jobs_per_s",
    "enqueue_bulk_jobs_per_s",
    "latency_p50_ms",
    "latency_p99_ms",
)
HUEY = "huey (SqliteHuey)"
HUEY_FULL = "huey (SqliteHuey, synchronous=FULL)"


@dataclass(frozen=True)
class System:
    name: str
    command: list[str]


def systems(jobs: int, concurrency: int, with_full: bool) -> list[System]:
    common = ["--jobs", str(jobs), "--concurrency", str(concurrency)]
    py = sys.executable
    huey = [py, str(HERE / "peers" / "huey_sqlite_bench.py"), *common]
    chosen = [
        System("dqflow", [py, str(HERE / "throughput.py"), "--backend", "sqlite", *common]),
        System(HUEY, [*huey, "--synchronous", "normal"]),
    ]
    if with_full:
        chosen.append(System(HUEY_FULL, [*huey, "--synchronous", "full"]))
    return chosen


def run_one(system: System, timeout: float) -> dict[str, Any] | None:
    """One run of ``system``: its JSON line, or None (with the reason on stderr)."""
    try:
        done = subprocess.run(system.command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        print(f"  {system.name}: timed out after {timeout:.0f} s", file=sys.stderr)
        return None
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        print(f"  {system.name}: exit {done.returncode}\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def report(
    args: argparse.Namespace,
    medians: dict[str, dict[str, float | None]],
    outputs: dict[str, bool],
    raw: dict[str, list[dict[str, Any]]],
    load: tuple[str, str],
) -> str:
    dq = medians.get("dqflow", {})
    dq_rate = dq.get("process_jobs_per_s")
    lines = [
        "# dqflow on SQLite vs huey's SQLite backend",
        "",
        f"Command: `{' '.join(['.venv/bin/python', 'benchmarks/compare_sqlite.py', *sys.argv[1:]])}`  ",
        f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Machine: {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}; huey {version('huey')}.  ",
        f"Load average before / after: {load[0]} / {load[1]} (a shared machine: figures move by tens of"
        " percent between runs, which is why runs are interleaved and medians reported).",
        "",
        'Workload (`benchmarks/throughput.py`): payload `{"n": i}`, handler returns `{"n": i, "ok": true}`'
        " (dqflow validates both against JSON Schemas and stores the output; huey stores the result);"
        f" {args.jobs} jobs enqueued one by one, then {args.jobs} in bulk; those processed with"
        f" concurrency {args.concurrency} until all are done (checked in storage); latency = enqueue call"
        f" to handler start, 200 jobs 20 ms apart on an idle worker. Medians of {args.runs} runs.",
        "",
        "| system | processed jobs/s | dqflow / system | enqueue jobs/s | bulk enqueue jobs/s"
        " | p50 latency ms | p99 latency ms | output stored | runs |",
        "|---|---:|---:|---:|---:|---:|---:|:---:|---:|",
    ]
    for name, m in medians.items():
        rate = m.get("process_jobs_per_s")
        ratio = "1.00x" if name == "dqflow" else f"{dq_rate / rate:.2f}x" if dq_rate and rate else "-"
        lines.append(
            f"| {name} | {fmt(rate)} | {ratio} | {fmt(m.get('enqueue_jobs_per_s'))}"
            f" | {fmt(m.get('enqueue_bulk_jobs_per_s'))} | {fmt(m.get('latency_p50_ms'), 2)}"
            f" | {fmt(m.get('latency_p99_ms'), 2)} | {'yes' if outputs.get(name) else 'no'}"
            f" | {len(raw.get(name, []))} |"
        )
    lines += [
        "",
        "Every run, processed jobs/s: "
        + "; ".join(
            f"{name} {', '.join(fmt(r.get('process_jobs_per_s')) for r in results)}" for name, results in raw.items()
        )
        + ".",
        "",
        "Peer notes: dqflow's SQLite file is in WAL mode with `synchronous=NORMAL`; the `huey (SqliteHuey)`"
        " row runs huey on the same setting (huey's `fsync` option offers only FULL or OFF, so the"
        f" benchmark sets the pragma). `{HUEY_FULL}` is huey's own default: an fsync on every commit."
        f" huey runs one consumer with {args.concurrency} worker threads and its default polling"
        " (0.1 s, backing off); its bulk figure is `task.map`, which enqueues one by one.",
        "",
        "## Goals (issue 2)",
        "",
    ]
    huey = medians.get(HUEY, {})
    huey_rate = huey.get("process_jobs_per_s")
    if dq_rate and huey_rate:
        times = dq_rate / huey_rate
        lines.append(
            f"- Processed jobs/s at C={args.concurrency}: dqflow {fmt(dq_rate)} vs huey-SQLite {fmt(huey_rate)}"
            f" = **{times:.2f}x** (goal ≥ 2x): {'met' if times >= 2 else 'not met'}."
        )
    huey_p50, dq_p50 = huey.get("latency_p50_ms"), dq.get("latency_p50_ms")
    if huey_p50 is not None and dq_p50 is not None:
        lines.append(
            f"- p50 enqueue-to-start latency: dqflow {dq_p50:.2f} ms vs huey-SQLite {huey_p50:.2f} ms"
            f" (goal: lower): {'met' if dq_p50 < huey_p50 else 'not met'}."
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=900, help="seconds per system run")
    parser.add_argument(
        "--huey-full", action="store_true", help=f"also run {HUEY_FULL} (huey's default durability; slow)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the markdown table")
    args = parser.parse_args(argv)

    chosen = systems(args.jobs, args.concurrency, args.huey_full)
    raw: dict[str, list[dict[str, Any]]] = {s.name: [] for s in chosen}
    load_before = loadavg()
    for run in range(1, args.runs + 1):
        for system in chosen:
            print(f"run {run}/{args.runs}: {system.name}", file=sys.stderr, flush=True)
            result = run_one(system, args.timeout)
            if result is not None:
                raw[system.name].append(result)
                print(f"  {json.dumps(result)}", file=sys.stderr, flush=True)
    medians = {name: {m: median(results, m) for m in METRICS} for name, results in raw.items()}
    outputs = {name: bool(results) and all(r.get("stores_output") for r in results) for name, results in raw.items()}
    text = report(args, medians, outputs, raw, (load_before, loadavg()))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)
    return 0 if all(raw.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
