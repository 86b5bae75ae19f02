"""Workflow throughput and latency: dqflow on SQLite, PostgreSQL and Redis beside Celery canvas on Redis.

Shapes (the step handler is the same everywhere: ``{"n": n}`` → ``{"n": n}``):

* ``linear3``: three steps, each fed the previous one's output (Celery: ``chain`` of 3);
* ``fan100``: a fan-out of 100 jobs and a fan-in job that receives their 100 outputs
  (Celery: ``chord`` of 100 with a callback).

Every system's worker runs **in its own process**, started and warmed up (one run
finished) before the clock: dqflow ``dqflow run --concurrency 16``, Celery ``celery
worker --pool threads --concurrency 16`` with a Redis broker and Redis result backend.
The clock starts just before the first run is submitted and stops when the producer
sees the last run finished (dqflow: the count of completed last-step jobs, read as the
plain jobs' count is, since a run finishes atomically with its last step; every run's
status is read back after the clock; Celery: every result's ``get()``). dqflow's runs
are started in one batch (``start_workflows``, as the plain jobs below go in with
``add_many``); Celery's are submitted one by one (``apply_async`` per chain or chord:
canvas has no batch submit). Also measured:

* ``step_cost``: dqflow only — the same handler as plain jobs (``add_many`` of as many
  jobs as the linear runs have steps) against those steps: plain jobs/s ÷ steps/s
  (1.0: a step costs what a job costs);
* latency: one run (``start_workflow``) on the idle worker, from the submit call to the
  run seen finished.

Medians of ``--runs`` repetitions (interleaved: repetition 1 of every system, then 2, ...).

    .venv/bin/python benchmarks/workflows.py --chains 300 --chords 10 --runs 3

Writes ``benchmarks/results/workflows.md`` (and the raw JSON lines beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "peers"))

from _common import fmt, loadavg, median, version  # noqa: E402
from workflow_steps import JOBS_YAML  # noqa: E402

PG_ADMIN = os.environ.get("DQFLOW_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("DQFLOW_BENCH_REDIS", "redis://127.0.0.1:6379")
DQFLOW_REDIS_DB = 10
CELERY_REDIS_DB = 12
FAN = 100
POLL_S = 0.005
TIMEOUT_S = 600.0
FINISHED = {"completed", "failed", "cancelled"}

Result = dict[str, Any]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DQFLOW_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(HERE), str(HERE / "peers"), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _wait(done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not finished within {TIMEOUT_S:g} s")
        time.sleep(POLL_S)


# -- dqflow --------------------------------------------------------------------------------


@contextmanager
def dqflow_store(backend: str) -> Iterator[str]:
    from throughput import fresh_backend

    base = {"sqlite": "sqlite:///unused", "postgresql": PG_ADMIN, "redis": f"{REDIS}/{DQFLOW_REDIS_DB}"}[backend]
    with fresh_backend(base, reuse_prepared=False) as url:
        yield url


class DqflowBench:
    """One backend: a declaration folder, the worker process and a producer queue."""

    def __init__(self, url: str, folder: Path, concurrency: int, *, eager_steps: bool = True) -> None:
        from dqflow import Queue

        (folder / "jobs.yaml").write_text(JOBS_YAML)
        self.url = url
        self.queue = Queue.from_yaml(folder / "jobs.yaml", backend=url)
        self.last_runs: list[int] = []
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dqflow",
                "run",
                "--config",
                str(folder / "jobs.yaml"),
                "--backend",
                url,
                "--concurrency",
                str(concurrency),
                "--eager-steps" if eager_steps else "--no-eager-steps",
            ],
            env=_env(),
            cwd=folder,
            stdout=open(folder / "worker.log", "ab"),  # noqa: SIM115 - closed with the process
            stderr=subprocess.STDOUT,
        )
        self.latency("linear3")  # warm-up: the worker has imported, connected and run every step type
        self.latency("fan100")

    def close(self) -> None:
        _stop(self.proc)
        self.queue.close()

    def _input(self, workflow: str, n: int) -> dict[str, Any]:
        return {"n": n} if workflow == "linear3" else {"items": list(range(n, n + FAN))}

    def _all_finished(self, run_ids: list[int]) -> Callable[[], bool]:
        left = list(run_ids)

        def check() -> bool:
            while left:
                run = self.queue.get_workflow(left[-1])
                if run is None or str(getattr(run.status, "value", run.status)) not in FINISHED:
                    return False
                if str(getattr(run.status, "value", run.status)) != "completed":
                    raise RuntimeError(f"run {run.id} ended {run.status}: {run.failure_reason} {run.error}")
                left.pop()
            return True

        return check

    def runs(self, workflow: str, count: int) -> float:
        """Seconds from the first submit to the last run's last step seen completed.

        The clock stops on the count of completed jobs of the run's last step type, read
        the way ``plain_jobs`` reads its own: a run is finished in the same transaction
        (script) as its last step, so that count reaching every run's last step means
        every run finished. ``read_back`` then checks, outside the clock, that each run
        completed; a failed step job ends the wait at once."""
        from dqflow import JobStatus

        last = "step" if workflow == "linear3" else "collect"
        per_run = {"step": 3} if workflow == "linear3" else {"step": FAN, "collect": 1}
        counts = self.queue.count_jobs()
        done = {job_type: counts.get((job_type, JobStatus.COMPLETED), 0) + n * count for job_type, n in per_run.items()}
        failed = sum(counts.get((job_type, JobStatus.FAILED), 0) for job_type in per_run)

        def finished() -> bool:
            counts = self.queue.count_jobs()
            if sum(counts.get((job_type, JobStatus.FAILED), 0) for job_type in per_run) > failed:
                raise RuntimeError(f"a step job of a {workflow} run failed")
            return counts.get((last, JobStatus.COMPLETED), 0) >= done[last]

        start = time.perf_counter()
        ids = self.queue.start_workflows(workflow, [self._input(workflow, i) for i in range(count)])
        _wait(finished, f"{count} {workflow} runs")
        self.last_runs = ids
        return time.perf_counter() - start

    def read_back(self) -> None:
        """Check that every run of the last ``runs`` call completed (outside the clock)."""
        _wait(self._all_finished(self.last_runs), f"{len(self.last_runs)} runs read back")

    def plain_jobs(self, count: int) -> float:
        """Seconds to add ``count`` plain jobs of the step's job type and see them all completed."""
        from dqflow import JobStatus

        before = self.queue.count_jobs().get(("step", JobStatus.COMPLETED), 0)
        start = time.perf_counter()
        self.queue.add_many([{"job_type": "step", "payload": {"n": i}} for i in range(count)])
        _wait(
            lambda: self.queue.count_jobs().get(("step", JobStatus.COMPLETED), 0) >= before + count,
            f"{count} plain jobs",
        )
        return time.perf_counter() - start

    def latency(self, workflow: str) -> float:
        """Milliseconds from the submit call to the run seen completed, on the idle worker."""
        time.sleep(0.3)
        start = time.perf_counter()
        run_id = self.queue.start_workflow(workflow, self._input(workflow, 1))
        _wait(self._all_finished([run_id]), f"one {workflow} run")
        return (time.perf_counter() - start) * 1000


# -- Celery --------------------------------------------------------------------------------


class CeleryBench:
    """Celery canvas on Redis: its worker process (threads pool) and the producer app."""

    def __init__(self, folder: Path, concurrency: int) -> None:
        queue_name = f"dqbench-{uuid.uuid4().hex[:8]}"
        url = f"{REDIS}/{CELERY_REDIS_DB}"
        os.environ["DQBENCH_CELERY_URL"] = url
        os.environ["DQBENCH_CELERY_QUEUE"] = queue_name
        import celery_canvas

        celery_canvas.app.conf.task_default_queue = queue_name
        self.canvas = celery_canvas
        self.url, self.queue_name = url, queue_name
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "celery_canvas",
                "worker",
                "--pool",
                "threads",
                "--concurrency",
                str(concurrency),
                "--loglevel",
                "WARNING",
                "-Q",
                queue_name,
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            env=_env(DQBENCH_CELERY_URL=url, DQBENCH_CELERY_QUEUE=queue_name),
            cwd=folder,
            stdout=open(folder / "celery.log", "ab"),  # noqa: SIM115 - closed with the process
            stderr=subprocess.STDOUT,
        )
        self.latency("linear3")  # warm-up
        self.latency("fan100")

    def close(self) -> None:
        _stop(self.proc)
        import redis

        client = redis.Redis.from_url(self.url)  # kombu leaves its queue's binding behind
        client.delete(f"_kombu.binding.{self.queue_name}", self.queue_name)
        client.close()

    def _submit(self, workflow: str, n: int) -> Any:
        from celery import chain, chord

        step, collect = self.canvas.step, self.canvas.collect
        if workflow == "linear3":
            # a chain passes each result positionally: step(previous output), like dqflow's wiring
            return chain(step.s({"n": n}), step.s(), step.s()).apply_async()
        return chord([step.s({"n": n + i}) for i in range(FAN)])(collect.s())

    def runs(self, workflow: str, count: int) -> float:
        start = time.perf_counter()
        results = [self._submit(workflow, i) for i in range(count)]
        for result in results:
            result.get(timeout=TIMEOUT_S, interval=POLL_S)
        return time.perf_counter() - start

    def latency(self, workflow: str) -> float:
        time.sleep(0.3)
        start = time.perf_counter()
        self._submit(workflow, 1).get(timeout=TIMEOUT_S, interval=POLL_S)
        return (time.perf_counter() - start) * 1000


# -- the run -------------------------------------------------------------------------------


def measure(bench: Any, system: str, chains: int, chords: int, plain: bool) -> Result:
    linear_s = bench.runs("linear3", chains)
    if isinstance(bench, DqflowBench):
        bench.read_back()
    fan_s = bench.runs("fan100", chords)
    if isinstance(bench, DqflowBench):
        bench.read_back()
    result: Result = {
        "system": system,
        "linear_runs_per_s": chains / linear_s,
        "linear_steps_per_s": 3 * chains / linear_s,
        "fan_runs_per_s": chords / fan_s,
        "fan_steps_per_s": (FAN + 1) * chords / fan_s,
        "linear_latency_ms": bench.latency("linear3"),
        "fan_latency_ms": bench.latency("fan100"),
    }
    if plain:
        plain_s = bench.plain_jobs(3 * chains)
        result["plain_jobs_per_s"] = 3 * chains / plain_s
        result["step_cost"] = result["plain_jobs_per_s"] / result["linear_steps_per_s"]
        result["fan_step_cost"] = result["plain_jobs_per_s"] / result["fan_steps_per_s"]
    return result


def one_repetition(systems: list[str], args: argparse.Namespace) -> list[Result]:
    results = []
    for system in systems:
        with tempfile.TemporaryDirectory(prefix="dqbench-wf-") as name:
            folder = Path(name)
            if system == "celery-redis":
                bench: Any = CeleryBench(folder, args.concurrency)
                try:
                    results.append(measure(bench, system, args.chains, args.chords, plain=False))
                finally:
                    bench.close()
                print(json.dumps(results[-1]), flush=True)
                continue
            with dqflow_store(system.split("-", 1)[1]) as url:
                bench = DqflowBench(url, folder, args.concurrency, eager_steps=not args.no_eager_steps)
                try:
                    results.append(measure(bench, system, args.chains, args.chords, plain=True))
                finally:
                    bench.close()
        print(json.dumps(results[-1]), flush=True)
    return results


def report(all_results: list[Result], systems: list[str], args: argparse.Namespace, load: str) -> str:
    by = {s: [r for r in all_results if r["system"] == s] for s in systems}
    celery = by.get("celery-redis", [])
    lines = [
        "# Workflows: dqflow vs Celery canvas",
        "",
        f"`{' '.join(['python', 'benchmarks/workflows.py', *sys.argv[1:]])}`",
        f"on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC,",
        f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores, load average "
        f"before {load}, after {loadavg()}; dqflow {version('dqflow')}, celery {version('celery')}.",
        f"{args.chains} linear runs (3 steps; Celery `chain` of 3), {args.chords} fan-out runs "
        f"({FAN} jobs + 1 fan-in; Celery `chord` of {FAN}); workers of concurrency {args.concurrency} in their own",
        f"process, warm, started before the clock. Medians of {args.runs}.",
        "",
        "| system | linear runs/s | linear steps/s | fan-out runs/s | fan-out steps/s | steps/s vs Celery "
        "(linear, fan-out) | plain jobs/s | step cost: plain jobs/s ÷ steps/s (linear, fan-out) "
        "| one linear run, idle (ms) | one fan-out-100 + fan-in, idle (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    c_linear = median(celery, "linear_steps_per_s")
    c_fan = median(celery, "fan_steps_per_s")
    for system, results in by.items():
        linear, fan = median(results, "linear_steps_per_s"), median(results, "fan_steps_per_s")
        ratio = "-"
        if system != "celery-redis" and c_linear and c_fan and linear and fan:
            ratio = f"{linear / c_linear:.1f}x, {fan / c_fan:.1f}x"
        lines.append(
            f"| {system} | {fmt(median(results, 'linear_runs_per_s'), 1)} | {fmt(linear)} "
            f"| {fmt(median(results, 'fan_runs_per_s'), 2)} | {fmt(fan)} | {ratio} "
            f"| {fmt(median(results, 'plain_jobs_per_s'))} | {_pair(results, 'step_cost', 'fan_step_cost')} "
            f"| {fmt(median(results, 'linear_latency_ms'), 1)} | {fmt(median(results, 'fan_latency_ms'), 1)} |"
        )
    lines += [
        "",
        "Goals (issue 10): at least 5x Celery's steps/s on every shape and backend; a step costs at most",
        "1.5x a plain job; a fan-out of 100 + fan-in finished in under 100 ms on an idle worker.",
        "",
    ]
    return "\n".join(lines)


def _pair(results: list[Result], first: str, second: str) -> str:
    a, b = median(results, first), median(results, second)
    return "-" if a is None or b is None else f"{a:.2f}, {b:.2f}"


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # unwinds: workers stopped, stores removed


def main() -> None:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chains", type=int, default=300, help="Linear runs per repetition.")
    parser.add_argument("--chords", type=int, default=10, help="Fan-out runs per repetition.")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--no-eager-steps", action="store_true", help="dqflow's worker leaves each next step to the queue's claim."
    )
    parser.add_argument("--runs", type=int, default=3, help="Repetitions (the table holds medians).")
    parser.add_argument(
        "--systems",
        nargs="+",
        default=["celery-redis", "dqflow-sqlite", "dqflow-postgresql", "dqflow-redis"],
        choices=["celery-redis", "dqflow-sqlite", "dqflow-postgresql", "dqflow-redis"],
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "workflows.md")
    args = parser.parse_args()
    load = loadavg()
    results: list[Result] = []
    for _ in range(args.runs):
        results += one_repetition(args.systems, args)
    text = report(results, args.systems, args, load)
    args.out.write_text(text)
    with args.out.with_suffix(".jsonl").open("a") as raw:
        for result in results:
            raw.write(json.dumps(result) + "\n")
    print(text)


if __name__ == "__main__":
    main()
