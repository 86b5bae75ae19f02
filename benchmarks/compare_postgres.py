"""dqflow on PostgreSQL side by side with pgqueuer and procrastinate, in one run.

Each system runs the workload of ``benchmarks/throughput.py`` in its own
subprocess and its own fresh database (created and dropped around each run),
``--runs`` times, interleaved so that a noisy moment hurts every system alike;
the table holds the medians. Also times ``storage.add_jobs`` of 10,000 jobs
directly, and with ``--finished-rows N`` runs dqflow once more per run with N
finished jobs already in its table (how throughput holds as history grows).

    .venv/bin/python benchmarks/compare_postgres.py --jobs 10000 --concurrency 16 --runs 3 \\
        --finished-rows 1000000

Writes ``benchmarks/results/postgres.md`` and prints it.
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
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_common.py
from _common import fmt, loadavg, median, version

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
RESULTS = HERE / "results" / "postgres.md"
ADMIN_URL = os.environ.get("DQFLOW_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
METRICS = (
    "process_jobs_per_s",
    "enqueue_jobs_per_s",
    "enqueue_bulk_jobs_per_s",
    "latency_p50_ms",
    "latency_p99_ms",
)


@dataclass(frozen=True)
class System:
    """One row of the table: how to run it (``{url}`` is replaced for dqflow rows)."""

    name: str
    command: list[str]
    peer: bool = True
    finished_rows: int = 0


def systems(jobs: int, concurrency: int, finished_rows: int) -> list[System]:
    common = ["--jobs", str(jobs), "--concurrency", str(concurrency)]
    py = sys.executable
    peers = HERE / "peers"
    dqflow = [py, str(HERE / "throughput.py"), "--backend", "{url}", *common]
    chosen = [
        System("dqflow", dqflow, peer=False),
        System("pgqueuer", [py, str(peers / "pgqueuer_bench.py"), "--admin-url", ADMIN_URL, *common]),
        System("procrastinate", [py, str(peers / "procrastinate_bench.py"), "--admin-url", ADMIN_URL, *common]),
    ]
    if finished_rows:
        chosen.append(System(f"dqflow, {finished_rows:,} finished jobs in the table", dqflow, False, finished_rows))
    return chosen


@contextmanager
def dqflow_database(finished_rows: int) -> Iterator[str]:
    """A fresh, migrated database for one dqflow run (with ``finished_rows`` of history); dropped after."""
    from dqflow.storage.postgres import migrate

    name = f"bench_dqflow_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    try:
        migrate(url)
        if finished_rows:
            fill_history(url, finished_rows)
        yield url
    finally:
        drop_database(name)


def drop_database(name: str) -> None:
    """Drop a benchmark database, retrying for a while if the server is restarting."""
    for attempt in range(30):
        try:
            with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except psycopg.OperationalError as exc:
            if attempt == 29:
                print(f"  could not drop database {name}: {exc}", file=sys.stderr)
                return
            time.sleep(1)


def fill_history(url: str, rows: int) -> None:
    """``rows`` completed, failed and cancelled jobs with output and an event each, then VACUUM ANALYZE
    (the steady state of a long-running queue: autovacuum has seen the history)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO dqflow_jobs (job_type, payload, status, priority, run_at, attempts, output, tags,
                                     created_at, updated_at, started_at, completed_at, lease_token)
            SELECT 'noop', jsonb_build_object('n', g), (ARRAY['completed', 'failed', 'cancelled'])[1 + g %% 3],
                   0, now() - interval '1 day', 1, jsonb_build_object('n', g, 'ok', true), '[]',
                   now() - interval '1 day', now() - interval '1 day', now() - interval '1 day',
                   now() - interval '1 day', 1
            FROM generate_series(1, %s) AS g
            """,
            (rows,),
        )
        conn.execute(
            "INSERT INTO dqflow_job_events (job_id, event_type, created_at)"
            " SELECT id, 'completed', completed_at FROM dqflow_jobs"
        )
        conn.execute("VACUUM ANALYZE dqflow_jobs")
        conn.execute("VACUUM ANALYZE dqflow_job_events")


def run_one(system: System, timeout: float) -> dict[str, Any] | None:
    def attempt(command: list[str]) -> dict[str, Any] | None:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            print(f"  {system.name}: timed out after {timeout:.0f} s", file=sys.stderr)
            return None
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            print(f"  {system.name}: exit {done.returncode}\n{done.stderr[-2000:]}", file=sys.stderr)
            return None
        result: dict[str, Any] = json.loads(lines[-1])
        return result

    if system.peer:
        return attempt(system.command)
    try:
        with dqflow_database(system.finished_rows) as url:
            return attempt([part.replace("{url}", url) for part in system.command])
    except psycopg.Error as exc:
        print(f"  {system.name}: could not prepare its database: {exc}", file=sys.stderr)
        return None


def bulk_10k(runs: int) -> list[float]:
    """Seconds for one ``add_jobs`` call of 10,000 jobs (the storage layer alone, fresh database)."""
    from dqflow.storage.base import NewJob
    from dqflow.storage.postgres import PostgresStorage

    times = []
    for _ in range(runs):
        with dqflow_database(0) as url:
            storage = PostgresStorage(url)
            storage.setup()
            storage.add_jobs([NewJob("noop", "{}")])  # connect and warm up first
            jobs = [NewJob("noop", json.dumps({"n": i})) for i in range(10_000)]
            start = time.perf_counter()
            storage.add_jobs(jobs)
            times.append(time.perf_counter() - start)
            storage.close()
    return times


def server_version() -> str:
    try:
        with psycopg.connect(ADMIN_URL) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"
    except psycopg.Error:
        return "?"


def goal(ok: bool) -> str:
    return "met" if ok else "**not met**"


def report(
    args: argparse.Namespace,
    medians: dict[str, dict[str, float | None]],
    runs: dict[str, list[dict[str, Any]]],
    bulk: list[float],
    load: tuple[str, str],
) -> str:
    dq = medians.get("dqflow", {})
    dq_rate = dq.get("process_jobs_per_s")
    peers = {k: v for k, v in medians.items() if not k.startswith("dqflow") and v.get("process_jobs_per_s")}
    lines = [
        "# dqflow on PostgreSQL vs pgqueuer and procrastinate",
        "",
        f"Command: `{' '.join(['.venv/bin/python', 'benchmarks/compare_postgres.py', *sys.argv[1:]])}`  ",
        f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Machine: {os.cpu_count()} cores (PostgreSQL, workers"
        f" and load generator share them), Python {platform.python_version()}, PostgreSQL {server_version()}"
        " (synchronous_commit on, default settings), "
        f"psycopg {version('psycopg')}; pgqueuer {version('pgqueuer')}, procrastinate {version('procrastinate')}.  ",
        f"Load average before / after: {load[0]} / {load[1]} (the machine is shared with other work: figures"
        " move by tens of percent between runs, which is why runs are interleaved and medians reported).",
        "",
        'Workload (`benchmarks/throughput.py`): payload `{"n": i}`, handler returns `{"n": i, "ok": true}`;'
        f" {args.jobs:,} jobs enqueued one by one, then {args.jobs:,} in bulk; {args.jobs:,} pre-queued jobs"
        f" processed with concurrency {args.concurrency} until all are done (checked in the database);"
        " latency = enqueue call to handler start, 200 jobs 20 ms apart on an idle worker."
        f" Medians of {args.runs} runs; every run in a fresh database.",
        "",
        "| system | processed jobs/s | dqflow / system | enqueue jobs/s | bulk enqueue jobs/s"
        " | p50 latency ms | p99 latency ms | output stored | runs |",
        "|---|---:|---:|---:|---:|---:|---:|:---:|---:|",
    ]
    for name, m in medians.items():
        rate = m.get("process_jobs_per_s")
        ratio = "1.00x" if name == "dqflow" else (f"{dq_rate / rate:.2f}x" if dq_rate and rate else "-")
        stored = "yes" if runs[name] and all(r.get("stores_output") for r in runs[name]) else "no"
        lines.append(
            f"| {name} | {fmt(rate)} | {ratio} | {fmt(m.get('enqueue_jobs_per_s'))}"
            f" | {fmt(m.get('enqueue_bulk_jobs_per_s'))} | {fmt(m.get('latency_p50_ms'), 2)}"
            f" | {fmt(m.get('latency_p99_ms'), 2)} | {stored} | {len(runs[name])} |"
        )
    lines += [
        "",
        "Per run (processed jobs/s): "
        + "; ".join(f"{name} {', '.join(fmt(r.get('process_jobs_per_s')) for r in rs)}" for name, rs in runs.items())
        + ".",
        "",
        "Peer notes: pgqueuer runs one worker process (psycopg async driver, uvloop as `pgq run` does,"
        f" batch {max(1, args.concurrency // 2)}, max_concurrent_tasks {args.concurrency}); done = its queue"
        f" table is empty (it deletes finished jobs). procrastinate runs one worker with concurrency"
        f" {args.concurrency} and a pool of {args.concurrency + 2} connections; done = no job todo/doing."
        " Neither stores the handler's return value.",
        "",
        "## Goals (issue 3)",
        "",
    ]
    if dq_rate and peers:
        fastest = max(peers, key=lambda k: peers[k]["process_jobs_per_s"] or 0)
        best = peers[fastest]["process_jobs_per_s"] or 0
        times = dq_rate / best
        lines.append(
            f"- Processed jobs/s at C={args.concurrency}, output stored: dqflow {fmt(dq_rate)} vs the faster"
            f" peer ({fastest}) {fmt(best)} = **{times:.2f}x** (goal ≥ 2x): {goal(times >= 2)}."
        )
    p50s = [v["latency_p50_ms"] for v in peers.values() if v.get("latency_p50_ms") is not None]
    dq_p50, dq_p99 = dq.get("latency_p50_ms"), dq.get("latency_p99_ms")
    if dq_p50 is not None and p50s:
        lines.append(
            f"- p50 enqueue-to-start latency: dqflow {dq_p50:.2f} ms vs peers"
            f" {', '.join(f'{p:.2f}' for p in p50s)} ms (goal ≤ theirs): {goal(dq_p50 <= min(p50s))}."
        )
    if dq_p99 is not None:
        lines.append(f"- p99 latency: dqflow {dq_p99:.2f} ms (goal < 20 ms): {goal(dq_p99 < 20)}.")
    if bulk:
        med = statistics.median(bulk)
        lines.append(
            f"- Bulk enqueue of 10,000 jobs (`storage.add_jobs`, one statement): median {med * 1000:.0f} ms"
            f" (runs: {', '.join(f'{t * 1000:.0f}' for t in bulk)} ms; goal < 500 ms): {goal(med < 0.5)}."
        )
    history = [k for k in medians if k.startswith("dqflow, ")]
    for name in history:
        rate = medians[name].get("process_jobs_per_s")
        if rate and dq_rate:
            lines.append(
                f"- With {name.removeprefix('dqflow, ')}: {fmt(rate)} jobs/s processed,"
                f" {rate / dq_rate:.2f}x the empty-table figure (the claim walks only the partial index"
                " of ready jobs)."
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--finished-rows", type=int, default=0, help="also run dqflow with this much history")
    parser.add_argument("--only", action="append", help="run only these systems (repeatable)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per system run")
    parser.add_argument("--no-bulk", action="store_true", help="skip the direct add_jobs(10,000) timing")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"markdown file (default {RESULTS})")
    args = parser.parse_args(argv)
    if not (HERE / "throughput.py").exists():
        parser.error("benchmarks/throughput.py is missing (it runs the dqflow side)")
    chosen = [
        s
        for s in systems(args.jobs, args.concurrency, args.finished_rows)
        if not args.only or any(s.name.startswith(o) for o in args.only)
    ]
    results: dict[str, list[dict[str, Any]]] = {s.name: [] for s in chosen}
    load_before = loadavg()
    for run in range(1, args.runs + 1):
        for system in chosen:
            print(f"run {run}/{args.runs}: {system.name} ...", file=sys.stderr, flush=True)
            result = run_one(system, args.timeout)
            if result is not None:
                results[system.name].append(result)
                print(f"  {json.dumps(result)}", file=sys.stderr, flush=True)
    bulk = [] if args.no_bulk or not any(not s.peer for s in chosen) else bulk_10k(args.runs)
    medians = {name: {m: median(rs, m) for m in METRICS} for name, rs in results.items()}
    text = report(args, medians, results, bulk, (load_before, loadavg()))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
