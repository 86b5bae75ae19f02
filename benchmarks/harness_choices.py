"""Which choice of a benchmark harness moves the dqflow / huey ratio on Redis?

The older harness (``throughput.py`` and ``peers/huey_redis_bench.py`` as run by
``compare_redis.py``) ran each worker inside the producer's process, queued the jobs
first and started the clock with the worker, and detected completion differently
(dqflow: the draining worker returning; huey: the producer polling huey's result
count every 5 ms from inside the consumer's process). This script measures dqflow
and huey under each choice in turn, everything else equal, runs interleaved:

- ``older scripts``: ``throughput.py`` / ``peers/huey_redis_bench.py`` as they are;
- ``compare.py`` with ``--placement`` in-process / own-process and ``--clock``
  at-worker-start / first-enqueue (completion always seen by polling the store
  every 5 ms from the producer).

    .venv/bin/python benchmarks/harness_choices.py --jobs 5000 --concurrency 16 --runs 3

Writes ``benchmarks/results/harness_choices.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt, loadavg
from compare import measure_with_retries
from systems import DQFLOW_REDIS_DB, HUEY_REDIS_DB, REDIS

HERE = Path(__file__).resolve().parent
VARIANTS = [
    ("older scripts (in-process, queued first, clock at worker start, drain / in-process poll)", None, None),
    ("in-process, clock at worker start", "in-process", "at-worker-start"),
    ("in-process, clock at first enqueue (worker warm)", "in-process", "first-enqueue"),
    ("own process, clock at worker start", "own-process", "at-worker-start"),
    ("own process, clock at first enqueue (worker warm): compare.py", "own-process", "first-enqueue"),
]


def older(system: str, jobs: int, concurrency: int) -> float:
    common = ["--jobs", str(jobs), "--concurrency", str(concurrency), "--latency-jobs", "20"]
    if system == "dqflow":
        command = [sys.executable, str(HERE / "throughput.py"), "--backend", f"{REDIS}/{DQFLOW_REDIS_DB}", *common]
    else:
        command = [sys.executable, str(HERE / "peers" / "huey_redis_bench.py"), "--redis", f"{REDIS}/{HUEY_REDIS_DB}"]
        command += common
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return float(result["process_jobs_per_s"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    before = loadavg()
    rates: dict[tuple[str, str], list[float]] = {}
    for run in range(1, args.runs + 1):
        for label, placement, clock in VARIANTS:
            for system in ("dqflow", "huey"):
                if placement is None:
                    rate = older(system, args.jobs, args.concurrency)
                else:
                    options = argparse.Namespace(placement=placement, clock=clock, latency_jobs=20, latency_gap_ms=20.0)
                    row = measure_with_retries(f"{system}-redis", args.jobs, args.concurrency, options)
                    rate = row["jobs_per_s"]
                rates.setdefault((label, system), []).append(rate)
                print(json.dumps({"run": run, "variant": label, "system": system, "jobs_per_s": rate}), flush=True)
    lines = [
        "# Which harness choice moves dqflow / huey on Redis",
        "",
        f"Command: `.venv/bin/python benchmarks/harness_choices.py {' '.join(argv or sys.argv[1:])}`  ",
        f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Load average (1, 5, 15 min) before / after:"
        f" {before} / {loadavg()}: the machine (2 cores) was shared with other helpers' test and"
        " benchmark runs; read the figures as measured under that load.",
        "",
        f"{args.jobs:,} jobs, concurrency {args.concurrency}, Redis; medians of {args.runs} interleaved runs"
        " (jobs/s, run by run in brackets).",
        "",
        "| harness choice | dqflow jobs/s | huey jobs/s | dqflow / huey |",
        "|---|---:|---:|---:|",
    ]
    for label, _, _ in VARIANTS:
        dq, huey = rates[(label, "dqflow")], rates[(label, "huey")]
        dq_m, huey_m = statistics.median(dq), statistics.median(huey)
        lines.append(
            f"| {label} | {fmt(dq_m)} ({', '.join(fmt(r) for r in dq)}) | {fmt(huey_m)}"
            f" ({', '.join(fmt(r) for r in huey)}) | {dq_m / huey_m:.2f}x |"
        )
    text = "\n".join(lines) + "\n"
    (HERE / "results" / "harness_choices.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
