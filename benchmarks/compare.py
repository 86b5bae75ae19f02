"""dqflow and its best peer per backend, measured the same way: the table of issue 9.

Every system is measured by this one loop (the systems live in ``benchmarks/systems.py``):

1. a fresh store; the system's worker started **in its own process** (concurrency C);
2. warm-up: one job enqueued, and the clock waits until it is seen finished and the
   worker has been idle for 0.5 s (connections open, code loaded);
3. the clock starts just before the enqueue of N jobs (``payload {"n": i}``, the handler
   returns ``{"n": i, "ok": true}``) with the system's call for many jobs, and stops when
   the producer, polling the system's store every 5 ms, first sees N more jobs finished
   → ``jobs_per_s`` = N / that time;
4. then ``--latency-jobs`` jobs 20 ms apart on the idle worker, each with the system's
   call for one job: from just before the enqueue call to the first line of the handler,
   both read from ``time.monotonic()`` (CLOCK_MONOTONIC, one clock for every process of
   the machine; the handler writes its reading to a file after taking it)
   → ``latency_p50_ms``; how long the enqueue call itself took → ``enqueue_call_p50_ms``
   (inside the latency: a job can start before the call returns);
5. the worker is stopped (SIGTERM) and the store removed.

Runs are interleaved (run 1 of every system, then run 2, ...) so that a noisy moment
hurts all alike; the table holds medians. On Redis, ``floor-redis`` (a bare ``LPUSH``
and a worker process blocked in ``BRPOP``) is timed by the same loop: the least any
Redis queue can take from a push to a woken worker on this machine. ``--clock worker-paused`` leaves the
enqueue out of the clock (the warm worker is frozen with SIGSTOP while the jobs are
enqueued, then continued as the clock starts): the worker's own rate, for peers whose
enqueue is slower than their worker. ``--placement in-process`` and ``--clock
at-worker-start`` reproduce the older harness's choices for comparison.

    .venv/bin/python benchmarks/compare.py --jobs 5000 --concurrency 1 16 --runs 3

Writes ``benchmarks/results/compare.md`` (and the raw JSON lines beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common.py, systems.py
from _common import fmt, loadavg, percentile, version
from systems import SYSTEMS, System, make_huey

HERE = Path(__file__).resolve().parent

RESULTS = HERE / "results"
POLL_S = 0.005
WARM_N = -1_000_000
PEERS = {"sqlite": "huey-sqlite", "postgresql": "pgqueuer-postgresql", "redis": "huey-redis"}
FLOORS = {"redis": ["floor-redis"]}  # no job system: the least one wake-up takes on this backend


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(POLL_S)


def read_starts(path: Path) -> dict[int, float]:
    if not path.exists():
        return {}
    starts = {}
    for line in path.read_text().splitlines():
        n, at = line.split()
        starts[int(n)] = float(at)
    return starts


class WorkerProcess:
    """The system's worker in its own process (the default placement)."""

    def __init__(self, key: str, url: str, concurrency: int, starts: Path, log: Path) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(HERE / "systems.py"), "worker", key, url, str(concurrency), str(starts)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class WorkerThread:
    """The older harness's choice: the worker inside the producer's process (dqflow, huey only)."""

    def __init__(self, key: str, url: str, concurrency: int) -> None:
        self.stopper: Callable[[], None]
        if key.startswith("dqflow"):
            from systems import dqflow_declaration

            from dqflow import Queue, Worker

            self.queue = Queue(dqflow_declaration(), url)
            worker = Worker(self.queue, concurrency=concurrency)
            self.thread = threading.Thread(target=worker.run, daemon=True)
            self.thread.start()
            self.stopper = worker.stop
        elif key.startswith("huey"):
            huey, _ = make_huey(url)
            consumer = huey.create_consumer(workers=concurrency, worker_type="thread", periodic=False)
            consumer.start()
            self.stopper = lambda: consumer.stop(graceful=True)
        else:
            raise SystemExit(f"error: --placement in-process is not available for {key}")

    def check(self) -> None:
        return None

    def stop(self) -> None:
        self.stopper()
        if hasattr(self, "thread"):
            self.thread.join(30)
            self.queue.close()


def measure(key: str, jobs: int, concurrency: int, args: argparse.Namespace) -> dict[str, Any]:
    cls = SYSTEMS[key]
    load = loadavg()
    with cls.fresh() as url, tempfile.TemporaryDirectory(prefix="dqbench-run-") as folder:
        starts = Path(folder) / "starts"
        os.environ["DQBENCH_STARTS"] = str(starts)  # for --placement in-process
        system: System = cls(url)
        system.open()
        numbers = list(range(jobs))

        def start_worker() -> WorkerProcess | WorkerThread:
            if args.placement == "own-process":
                return WorkerProcess(key, url, concurrency, starts, Path(folder) / "worker.log")
            return WorkerThread(key, url, concurrency)

        worker = None
        try:
            if args.clock == "first-enqueue":
                worker = start_worker()
                system.enqueue_one(WARM_N)
                wait_for(lambda: (worker.check(), system.finished() >= 1)[1], 120, "the warm-up job")
                time.sleep(0.5)
                base = system.finished()
                started = time.perf_counter()
                system.enqueue(numbers)
                enqueue_s = time.perf_counter() - started
            elif args.clock == "worker-paused":  # enqueue outside the clock: the worker's own rate
                if not isinstance(worker := start_worker(), WorkerProcess):
                    raise SystemExit("error: --clock worker-paused needs --placement own-process")
                system.enqueue_one(WARM_N)
                wait_for(lambda: (worker.check(), system.finished() >= 1)[1], 120, "the warm-up job")
                time.sleep(0.5)
                base = system.finished()
                worker.proc.send_signal(signal.SIGSTOP)  # warm (connections open, code loaded), frozen
                started = time.perf_counter()
                system.enqueue(numbers)
                enqueue_s = time.perf_counter() - started
                started = time.perf_counter()
                worker.proc.send_signal(signal.SIGCONT)
            else:  # the older choice: jobs queued first, the clock starts with the worker
                base = 0
                started = time.perf_counter()
                system.enqueue(numbers)
                enqueue_s = time.perf_counter() - started
                started = time.perf_counter()
                worker = start_worker()
            wait_for(lambda: system.finished() >= base + jobs, 600, f"{jobs} jobs finished")
            elapsed = time.perf_counter() - started
            outputs = system.outputs_ok(numbers) if cls.stores_output else False

            time.sleep(0.5)
            sent: dict[int, float] = {}
            calls: list[float] = []
            for i in range(1, args.latency_jobs + 1):
                sent[-i] = time.monotonic()
                system.enqueue_one(-i)
                calls.append((time.monotonic() - sent[-i]) * 1000)
                time.sleep(args.latency_gap_ms / 1000)
            wait_for(lambda: len(set(read_starts(starts)) & set(sent)) == len(sent), 60, "the latency jobs")
            begun = read_starts(starts)
            delays = [(begun[n] - at) * 1000 for n, at in sent.items()]
        finally:
            if worker is not None:
                worker.stop()
            system.close()
    return {
        "system": cls.name,
        "backend": cls.backend,
        "jobs": jobs,
        "concurrency": concurrency,
        "placement": args.placement,
        "clock": args.clock,
        "jobs_per_s": round(jobs / elapsed, 1),
        "enqueue_jobs_per_s": round(jobs / enqueue_s, 1),
        "latency_p50_ms": round(statistics.median(delays), 3),
        "latency_p99_ms": round(percentile(delays, 0.99), 3),
        "enqueue_call_p50_ms": round(statistics.median(calls), 3),
        "stores_output": outputs,
        "loadavg": load,
    }


def measure_with_retries(key: str, jobs: int, concurrency: int, args: argparse.Namespace) -> dict[str, Any]:
    """``measure``, run again (up to twice) when it fails: on a shared machine another
    program may restart a server mid-run. The row says how many attempts it took."""
    for attempt in range(1, 4):
        try:
            return {**measure(key, jobs, concurrency, args), "attempt": attempt}
        except Exception as exc:  # reported, then measured again from a fresh store
            print(f"{key} C={concurrency}: attempt {attempt} failed: {exc!r}", file=sys.stderr, flush=True)
            if attempt == 3:
                raise
            time.sleep(5)
    raise AssertionError("unreachable")


def med(rows: list[dict[str, Any]], metric: str) -> float | None:
    values = [r[metric] for r in rows if r.get(metric) is not None]
    return statistics.median(values) if values else None


def method_text(args: argparse.Namespace) -> str:
    """The report's paragraph on how the figures were measured."""
    clock = {
        "first-enqueue": "the clock runs from just before the enqueue of all jobs to the first time the producer,"
        " polling the system's store every 5 ms, sees them all finished (each system's own enqueue speed is"
        " inside the clock)",
        "worker-paused": "the warm worker is frozen (SIGSTOP) while all jobs are enqueued; the clock runs from"
        " continuing it (SIGCONT) to the first time the producer, polling the system's store every 5 ms,"
        " sees them all finished (enqueue speed left out: the worker's own rate)",
        "at-worker-start": "all jobs are queued first; the clock runs from starting the worker (start-up"
        " included) to the first time the producer, polling every 5 ms, sees them all finished",
    }[args.clock]
    where = "in its own process" if args.placement == "own-process" else "inside the producer's process"
    return (
        f"Method (`benchmarks/compare.py`, `--placement {args.placement} --clock {args.clock}`): {args.jobs:,}"
        ' jobs, payload `{"n": i}`, handler returns `{"n": i, "ok": true}`; each system\'s worker runs'
        f" {where}, started and warmed up (one job seen finished, then 0.5 s idle); the jobs are enqueued"
        " with each system's call for many jobs (dqflow `Queue.add_many`, huey `task.map`, which enqueues"
        f" one by one, pgqueuer `Queries.enqueue` with lists); {clock}. Enqueue→start p50:"
        f" {args.latency_jobs} jobs {args.latency_gap_ms:g} ms apart on the idle worker, each with the"
        " system's call for one job, from just before the enqueue call to the handler's first line (both"
        " read from `time.monotonic()`, one clock for every process of the machine); the enqueue call's own"
        " time is inside it (a job may start before the call returns). On Redis, `floor` is a bare"
        " `LPUSH` to a worker process blocked in `BRPOP`, timed by the same loop: the least any Redis queue"
        f" can take from a push to a woken worker here. Medians of {args.runs} runs."
    )


def report(args: argparse.Namespace, rows: list[dict[str, Any]], load: tuple[str, str], command: str) -> str:
    lines = [
        "# dqflow vs the best peer per backend, every system measured the same way",
        "",
        f"Command: `{command}`  ",
        f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Machine: {os.cpu_count()} cores, shared with other"
        f" work. Python {platform.python_version()}; huey {version('huey')}, pgqueuer {version('pgqueuer')},"
        f" redis-py {version('redis')}, psycopg {version('psycopg')}.  ",
        f"Load average (1, 5, 15 min) before / after: {load[0]} / {load[1]}. The machine was shared with other"
        " helpers' test runs while this ran: read the figures as measured under that load (runs are"
        " interleaved, so it hurts every system alike; the per-run figures below show the spread).",
        "",
        method_text(args),
        "",
        "| backend | C | dqflow jobs/s | best peer jobs/s | dqflow / peer | enqueue→start p50, dqflow / peer"
        " | enqueue jobs/s, dqflow / peer | load avg (1 min) at the runs |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for backend in args.backends:
        for c in args.concurrency:
            dq = [r for r in rows if r["system"] == "dqflow" and r["backend"] == backend and r["concurrency"] == c]
            peer_key = PEERS[backend]
            peer_name = SYSTEMS[peer_key].name
            peer = [r for r in rows if r["system"] == peer_name and r["backend"] == backend and r["concurrency"] == c]
            dq_rate, peer_rate = med(dq, "jobs_per_s"), med(peer, "jobs_per_s")
            ratio = f"{dq_rate / peer_rate:.2f}x" if dq_rate and peer_rate else "-"
            loads = ", ".join(r["loadavg"].split()[0] for r in dq + peer)
            loads += f" ({len(dq)} / {len(peer)} runs)"
            lines.append(
                f"| {backend} | {c} | {fmt(dq_rate)} | {peer_name} {fmt(peer_rate)} | {ratio}"
                f" | {fmt(med(dq, 'latency_p50_ms'), 2)} ms / {fmt(med(peer, 'latency_p50_ms'), 2)} ms"
                f" | {fmt(med(dq, 'enqueue_jobs_per_s'))} / {fmt(med(peer, 'enqueue_jobs_per_s'))} | {loads} |"
            )
    lines += ["", "Enqueue→start p50 of every system measured (medians; the enqueue call's own p50 in brackets):", ""]
    systems = sorted({r["system"] for r in rows})
    lines += ["| backend | C | " + " | ".join(systems) + " |"]
    lines += ["|---|---:|" + "---:|" * len(systems)]
    for backend in args.backends:
        for c in args.concurrency:
            cells = []
            for name in systems:
                same = [r for r in rows if (r["system"], r["backend"], r["concurrency"]) == (name, backend, c)]
                call = med(same, "enqueue_call_p50_ms")
                cells.append(f"{fmt(med(same, 'latency_p50_ms'), 2)} ms ({fmt(call, 2)} ms)" if same and call else "-")
            lines.append(f"| {backend} | {c} | " + " | ".join(cells) + " |")
    lines += ["", "Every run (jobs/s; enqueue→start p50 ms; load average at the start of the run):", ""]
    lines += [
        "| system | backend | C | run | jobs/s | enqueue jobs/s | p50 ms | p99 ms | enqueue call p50 ms"
        " | output stored | load avg |"
    ]
    lines += ["|---|---|---:|---:|---:|---:|---:|---:|---:|:---:|---|"]
    for r in rows:
        call = r.get("enqueue_call_p50_ms")
        lines.append(
            f"| {r['system']} | {r['backend']} | {r['concurrency']} | {r['run']} | {fmt(r['jobs_per_s'])}"
            f" | {fmt(r['enqueue_jobs_per_s'])} | {r['latency_p50_ms']:.2f} | {r['latency_p99_ms']:.2f}"
            f" | {fmt(call, 2)} | {'yes' if r['stores_output'] else 'no'} | {r['loadavg']} |"
        )
    lines += [
        "",
        "Peer notes: huey runs one consumer with C worker threads (its defaults: blocking reads on Redis,"
        " polling on SQLite, where it runs at `synchronous=NORMAL` like dqflow); its results are stored."
        " pgqueuer runs `PgQueuer.run` (uvloop, batch C/2, max_concurrent_tasks C; at C=1 batch 1 and"
        " max_concurrent_tasks 2, its smallest setting: it needs max_concurrent_tasks >= 2 * batch); it"
        " keeps no result, so its jobs are finished when gone from its queue table.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["redis", "sqlite", "postgresql"])
    parser.add_argument("--systems", nargs="+", help="system keys to run (default: dqflow and the best peer)")
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency-jobs", type=int, default=200)
    parser.add_argument("--latency-gap-ms", type=float, default=20.0)
    parser.add_argument("--placement", choices=["own-process", "in-process"], default="own-process")
    parser.add_argument(
        "--clock",
        choices=["first-enqueue", "worker-paused", "at-worker-start"],
        default="first-enqueue",
        help="first-enqueue: from the enqueue of N jobs to the last completion (the default);"
        " worker-paused: the warm worker is stopped (SIGSTOP) while the N jobs are enqueued and the clock"
        " starts when it is continued (SIGCONT), so enqueue speed is left out;"
        " at-worker-start: jobs queued first, the clock starts with the worker (the older harness)",
    )
    parser.add_argument("--output", default=str(RESULTS / "compare.md"))
    parser.add_argument(
        "--keep",
        action="store_true",
        help="add to the rows already in the output's .jsonl (runs numbered on) instead of starting afresh;"
        " the report covers them all",
    )
    args = parser.parse_args(argv)
    command = " ".join([".venv/bin/python", "benchmarks/compare.py", *(argv if argv is not None else sys.argv[1:])])
    keys = args.systems or [k for b in args.backends for k in (f"dqflow-{b}", PEERS[b], *FLOORS.get(b, []))]
    before = loadavg()
    raw = Path(args.output).with_suffix(".jsonl")
    rows: list[dict[str, Any]] = []
    if args.keep and raw.exists():
        rows = [json.loads(line) for line in raw.read_text().splitlines() if line.strip()]
    else:
        raw.write_text("")
    for _ in range(args.runs):
        for c in args.concurrency:
            for key in keys:
                cls = SYSTEMS[key]
                same = [r for r in rows if (r["system"], r["backend"], r["concurrency"]) == (cls.name, cls.backend, c)]
                try:
                    row = {**measure_with_retries(key, args.jobs, c, args), "run": len(same) + 1}
                except Exception as exc:  # three attempts failed: left out of the table, said so
                    print(f"{key} C={c}: left out: {exc!r}", file=sys.stderr, flush=True)
                    continue
                rows.append(row)
                print(json.dumps(row), flush=True)
                with open(raw, "a") as out:
                    out.write(json.dumps(row) + "\n")
    args.backends = sorted({r["backend"] for r in rows}, key=["redis", "sqlite", "postgresql"].index)
    args.concurrency = sorted({r["concurrency"] for r in rows})
    args.runs = max((r["run"] for r in rows), default=0)
    text = report(args, rows, (before, loadavg()), command)
    Path(args.output).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
