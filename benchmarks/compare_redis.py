"""dqflow on Redis side by side with RQ, arq and huey (Redis), in one run.

Each system runs the workload of ``benchmarks/throughput.py`` in its own
subprocess (own Redis db or key prefix, cleaned before and after), ``--runs``
times, interleaved so that a noisy moment hurts every system alike; the table
holds the medians. Also times ``storage.add_jobs`` of 10,000 jobs directly.

    .venv/bin/python benchmarks/compare_redis.py --jobs 5000 --concurrency 16 --runs 3

Writes ``benchmarks/results/redis.md`` and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_common.py
from _common import fmt, loadavg, median, version

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "redis.md"
REDIS = os.environ.get("DQFLOW_BENCH_REDIS", "redis://127.0.0.1:6379")
DQFLOW_DB, ARQ_DB, RQ_DB, HUEY_DB = 10, 11, 12, 13
PREFIX = "dqbench"
METRICS = (
    "process_jobs_per_s",
    "enqueue_jobs_per_s",
    "enqueue_bulk_jobs_per_s",
    "latency_p50_ms",
    "latency_p99_ms",
)


@dataclass(frozen=True)
class System:
    name: str
    command: list[str]
    db: int
    peer: bool = True


def systems(jobs: int, concurrency: int) -> list[System]:
    common = ["--jobs", str(jobs), "--concurrency", str(concurrency)]
    py = sys.executable
    peers = HERE / "peers"
    return [
        System(
            "dqflow",
            [py, str(HERE / "throughput.py"), "--backend", f"{REDIS}/{DQFLOW_DB}?prefix={PREFIX}", *common],
            DQFLOW_DB,
            peer=False,
        ),
        System(
            "huey (redis)",
            [py, str(peers / "huey_redis_bench.py"), "--redis", f"{REDIS}/{HUEY_DB}", *common],
            HUEY_DB,
        ),
        System("arq", [py, str(peers / "arq_bench.py"), "--redis", f"{REDIS}/{ARQ_DB}", *common], ARQ_DB),
        System(
            "arq (poll_delay=0.01s)",
            [
                py,
                str(peers / "arq_bench.py"),
                "--redis",
                f"{REDIS}/{ARQ_DB}",
                "--poll-delay",
                "0.01",
                *common,
            ],
            ARQ_DB,
        ),
        System("rq", [py, str(peers / "rq_bench.py"), "--redis", f"{REDIS}/{RQ_DB}", *common], RQ_DB),
        System(
            "rq (SimpleWorker)",
            [py, str(peers / "rq_bench.py"), "--redis", f"{REDIS}/{RQ_DB}", "--worker", "simple", *common],
            RQ_DB,
        ),
    ]


def clean_dqflow() -> None:
    client = redis.Redis.from_url(f"{REDIS}/{DQFLOW_DB}")
    keys = list(client.scan_iter(match="{" + PREFIX + "}*", count=5000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])
    client.close()


def run_one(system: System, timeout: float) -> dict[str, Any] | None:
    if not system.peer:
        clean_dqflow()
    try:
        done = subprocess.run(system.command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        print(f"  {system.name}: timed out after {timeout:.0f} s", file=sys.stderr)
        return None
    finally:
        if not system.peer:
            clean_dqflow()
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        print(f"  {system.name}: exit {done.returncode}\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def bulk_10k(runs: int) -> list[float]:
    """Seconds for one ``add_jobs`` call of 10,000 jobs (the storage layer alone)."""
    sys.path.insert(0, str(HERE.parent))
    from dqflow.storage.base import NewJob
    from dqflow.storage.redis import RedisStorage

    times = []
    for _ in range(runs):
        clean_dqflow()
        storage = RedisStorage(f"{REDIS}/{DQFLOW_DB}?prefix={PREFIX}")
        storage.setup()
        jobs = [NewJob("noop", json.dumps({"n": i})) for i in range(10_000)]
        start = time.perf_counter()
        storage.add_jobs(jobs)
        times.append(time.perf_counter() - start)
        storage.close()
    clean_dqflow()
    return times


def paired_ratios(by_run: dict[tuple[str, int], dict[str, Any]], names: list[str], runs: int) -> dict[str, list[float]]:
    """Per run, dqflow's processed jobs/s divided by each peer's in the same run (same load)."""
    ratios: dict[str, list[float]] = {}
    for name in names:
        for run in range(1, runs + 1):
            dq, peer = by_run.get(("dqflow", run)), by_run.get((name, run))
            if name != "dqflow" and dq and peer and peer.get("process_jobs_per_s"):
                ratios.setdefault(name, []).append(dq["process_jobs_per_s"] / peer["process_jobs_per_s"])
    return ratios


def report(
    args: argparse.Namespace,
    medians: dict[str, dict[str, float | None]],
    outputs: dict[str, bool],
    counts: dict[str, int],
    bulk: list[float],
    load: tuple[str, str],
    paired: dict[str, list[float]],
) -> str:
    dq = medians.get("dqflow", {})
    dq_rate = dq.get("process_jobs_per_s")
    lines = [
        "# dqflow on Redis vs RQ, arq and huey",
        "",
        f"Command: `{' '.join(['.venv/bin/python', 'benchmarks/compare_redis.py', *sys.argv[1:]])}`  ",
        f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Machine: {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, Redis {redis_version()}, redis-py {version('redis')}, "
        f"hiredis {version('hiredis')}; rq {version('rq')}, arq {version('arq')}, huey {version('huey')}.  ",
        f"Load average before / after: {load[0]} / {load[1]} (the machine is shared: figures move by"
        " tens of percent between runs, which is why runs are interleaved and medians reported).",
        "",
        'Workload (`benchmarks/throughput.py`): payload `{"n": i}`, handler returns'
        f' `{{"n": i, "ok": true}}`; {args.jobs} jobs enqueued one by one, then {args.jobs} in bulk;'
        f" those processed with concurrency {args.concurrency} until all are done (checked in storage);"
        " latency = enqueue call to handler start, 200 jobs 20 ms apart on an idle worker."
        f" Medians of {args.runs} runs.",
        "",
        "| system | processed jobs/s | dqflow / system | enqueue jobs/s | bulk enqueue jobs/s"
        " | p50 latency ms | p99 latency ms | output stored | runs |",
        "|---|---:|---:|---:|---:|---:|---:|:---:|---:|",
    ]
    for name, m in medians.items():
        rate = m.get("process_jobs_per_s")
        ratio = f"{dq_rate / rate:.2f}x" if dq_rate and rate else "-"
        stored = "yes" if outputs.get(name) else "no"
        lines.append(
            f"| {name} | {fmt(rate)} | {ratio if name != 'dqflow' else '1.00x'}"
            f" | {fmt(m.get('enqueue_jobs_per_s'))} | {fmt(m.get('enqueue_bulk_jobs_per_s'))}"
            f" | {fmt(m.get('latency_p50_ms'), 2)} | {fmt(m.get('latency_p99_ms'), 2)} | {stored}"
            f" | {counts.get(name, 0)} |"
        )
    lines += [
        "",
        "Peer notes: `rq` forks a work horse per job (its default `Worker`); `rq (SimpleWorker)` runs"
        " jobs in the worker process. `arq` polls its queue every 0.5 s by default; the"
        " `poll_delay=0.01s` row is tuned for latency and throughput. huey runs one consumer with"
        f" {args.concurrency} threads and blocking reads (its defaults). arq has no bulk enqueue:"
        " its bulk figure is `asyncio.gather` over `enqueue_job`; huey's is `task.map` (one by one).",
        "",
        "## Goals (issue 4)",
        "",
    ]
    peers = {k: v for k, v in medians.items() if k != "dqflow" and v.get("process_jobs_per_s")}
    if dq_rate and peers:
        fastest = max(peers, key=lambda k: peers[k]["process_jobs_per_s"] or 0)
        best = peers[fastest]["process_jobs_per_s"] or 0
        times = dq_rate / best
        lines.append(
            f"- Processed jobs/s at C={args.concurrency}: dqflow {fmt(dq_rate)} vs fastest peer {fastest}"
            f" {fmt(best)} = **{times:.2f}x** (goal ≥ 2x): {'met' if times >= 2 else 'not met'}."
        )
        if paired.get(fastest):
            runs = paired[fastest]
            lines.append(
                f"  Run by run (same moment, same load) dqflow / {fastest}:"
                f" {', '.join(f'{r:.2f}x' for r in runs)}; median {statistics.median(runs):.2f}x."
            )
    huey_p50 = medians.get("huey (redis)", {}).get("latency_p50_ms")
    dq_p50 = dq.get("latency_p50_ms")
    if huey_p50 is not None and dq_p50 is not None:
        lines.append(
            f"- p50 enqueue-to-start latency: dqflow {dq_p50:.2f} ms vs huey {huey_p50:.2f} ms"
            f" (goal ≤ huey's): {'met' if dq_p50 <= huey_p50 else 'not met'}."
        )
    if bulk:
        med = statistics.median(bulk)
        lines.append(
            f"- Bulk enqueue of 10,000 jobs (`storage.add_jobs`, one Lua call): median {med * 1000:.0f} ms"
            f" (runs: {', '.join(f'{t * 1000:.0f}' for t in bulk)} ms; goal < 300 ms):"
            f" {'met' if med < 0.3 else 'not met'}."
        )
    return "\n".join(lines) + "\n"


def redis_version() -> str:
    try:
        client = redis.Redis.from_url(f"{REDIS}/0")
        info: Any = client.info("server")
        client.close()
        return str(info.get("redis_version", "?"))
    except redis.RedisError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", action="append", help="run only these systems (repeatable)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per system run")
    args = parser.parse_args(argv)
    if not (HERE / "throughput.py").exists():
        parser.error("benchmarks/throughput.py is missing (it runs the dqflow side)")
    chosen = [s for s in systems(args.jobs, args.concurrency) if not args.only or s.name in args.only]
    results: dict[str, list[dict[str, Any]]] = {s.name: [] for s in chosen}
    by_run: dict[tuple[str, int], dict[str, Any]] = {}
    load_before = loadavg()
    for run in range(1, args.runs + 1):
        for system in chosen:
            print(f"run {run}/{args.runs}: {system.name} ...", file=sys.stderr, flush=True)
            result = run_one(system, args.timeout)
            if result is not None:
                results[system.name].append(result)
                by_run[(system.name, run)] = result
                print(f"  {json.dumps(result)}", file=sys.stderr, flush=True)
    bulk = bulk_10k(args.runs) if any(not s.peer for s in chosen) else []
    medians = {name: {m: median(rs, m) for m in METRICS} for name, rs in results.items()}
    outputs = {name: bool(rs) and all(r.get("stores_output") for r in rs) for name, rs in results.items()}
    counts = {name: len(rs) for name, rs in results.items()}
    paired = paired_ratios(by_run, [s.name for s in chosen], args.runs)
    text = report(args, medians, outputs, counts, bulk, (load_before, loadavg()), paired)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
