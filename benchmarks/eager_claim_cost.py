"""Client CPU of eager dispatch: ``settle_and_claim`` against ``settle_jobs`` + ``claim_jobs``.

A worker that completes step b of a linear run either settles it and then claims the
step c its settle created (two calls: today's path), or claims c in the settle itself
(``Storage.settle_and_claim`` with a ``StepClaim``). Both are timed here in one process,
on the same storage, over ``--runs`` linear runs whose step b is settled in batches of
``--batch`` (the worker's settle batch), with ``time.process_time`` (this process's CPU,
not the wall: the machine may be shared). Before each timed pass the runs are started and
their steps a settled and b claimed, untimed, so each settle plans from the run state
this process kept. PostgreSQL: the CPU of the server process serving the pool's one
connection is read from ``/proc`` as well (Linux, same host).

    .venv/bin/python benchmarks/eager_claim_cost.py --backend postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from throughput import fresh_backend  # noqa: E402

from dqflow import Declaration, Queue  # noqa: E402
from dqflow.record import JobRecord  # noqa: E402
from dqflow.storage import Completion, StepClaim  # noqa: E402

LEASE_MS = 60_000
WORKER = "bench"
TICKS_PER_S = os.sysconf("SC_CLK_TCK")
JOBS = {"double": {"handler": lambda payload: {"n": payload["n"] * 2}, "max_attempts": 1}}
STEPS = {
    "a": {"job": "double", "payload": {"n": "${input.n}"}},
    "b": {"job": "double", "needs": ["a"], "payload": {"n": "${steps.a.output.n}"}},
    "c": {"job": "double", "needs": ["b"], "payload": {"n": "${steps.b.output.n}"}},
}
WORKFLOWS = {
    "linear": {
        "input": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
        "steps": STEPS,
        "returns": {"n": "${steps.c.output.n}"},
    }
}


def _done(job: JobRecord) -> Completion:
    return Completion(job.id, job.lease_token, json.dumps({"n": 1}), workflow_run_id=job.workflow_run_id)


def _claim_all(queue: Queue, count: int) -> list[JobRecord]:
    jobs: list[JobRecord] = []
    while len(jobs) < count:
        jobs += queue.storage.claim_jobs(WORKER, ["double"], min(500, count - len(jobs)), LEASE_MS)
    return sorted(jobs, key=lambda job: job.id)


def _server_cpu(queue: Queue) -> float | None:
    """CPU seconds of the PostgreSQL process behind the pool's only connection (None elsewhere)."""
    pool = getattr(queue.storage, "_pool", None)
    if pool is None:
        return None
    with pool.connection() as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def one_pass(queue: Queue, runs: int, batch: int, eager: bool) -> dict[str, Any]:
    """Settle ``runs`` runs' step b (ready and claimed beforehand), timed; claim their step c."""
    queue.start_workflows("linear", [{"n": n} for n in range(runs)])
    firsts = _claim_all(queue, runs)
    for start in range(0, runs, batch):
        assert queue.storage.settle_jobs([_done(job) for job in firsts[start : start + batch]]) == [True] * len(
            firsts[start : start + batch]
        )
    seconds = _claim_all(queue, runs)
    claim = StepClaim(worker_id=WORKER, job_types=frozenset({"double"}), limit=batch, lease_ms=LEASE_MS)
    server_before = _server_cpu(queue)
    cpu, wall = time.process_time(), time.perf_counter()
    taken: list[JobRecord] = []
    claim_cpu = 0.0  # of which the separate claims
    for start in range(0, runs, batch):
        outcomes = [_done(job) for job in seconds[start : start + batch]]
        if eager:
            applied, claimed = queue.storage.settle_and_claim(outcomes, claim)
        else:
            applied = queue.storage.settle_jobs(outcomes)
            before = time.process_time()
            claimed = queue.storage.claim_jobs(WORKER, ["double"], batch, LEASE_MS)
            claim_cpu += time.process_time() - before
        assert all(applied) and len(claimed) == len(outcomes)
        taken += claimed
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    server_after = _server_cpu(queue)
    server = None if server_before is None or server_after is None else server_after - server_before
    assert {job.workflow_step for job in taken} == {"c"} and len(taken) == runs
    for start in range(0, runs, 500):  # finish the runs (untimed)
        assert all(queue.storage.settle_jobs([_done(job) for job in taken[start : start + 500]]))
    return {"cpu": cpu, "claim_cpu": claim_cpu if not eager else None, "wall": wall, "server": server}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with fresh_backend(args.backend, reuse_prepared=False) as url:
        queue = (
            Queue(Declaration.build(JOBS, workflows=WORKFLOWS), backend=url, pool_min_size=1, pool_max_size=1)
            if url.startswith("postgres")
            else Queue(Declaration.build(JOBS, workflows=WORKFLOWS), backend=url)
        )
        try:
            one_pass(queue, min(args.runs, 200), args.batch, True)  # warm-up: statements prepared, caches full
            one_pass(queue, min(args.runs, 200), args.batch, False)
            results: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
            for _ in range(args.repeat):  # interleaved, so drift on a shared machine hits both alike
                for eager in (False, True):
                    results[eager].append(one_pass(queue, args.runs, args.batch, eager))
        finally:
            queue.close()
    print(f"{args.runs} runs' step b, batches of {args.batch}, {args.repeat} passes each (median per step)")
    for eager, name in ((False, "settle_jobs + claim_jobs"), (True, "settle_and_claim")):
        passes = results[eager]
        line = [f"{name:26}"]
        metrics = (
            ("cpu", "client CPU"),
            ("claim_cpu", "of which claim_jobs"),
            ("server", "server CPU"),
            ("wall", "wall"),
        )
        for metric, label in metrics:
            values = [p[metric] for p in passes if p[metric] is not None]
            if values:
                per_step = [v / args.runs * 1e6 for v in values]
                spread = f"(min {min(per_step):.1f}, max {max(per_step):.1f})"
                line.append(f"{label} {statistics.median(per_step):6.1f} us/step {spread}")
        print("\n    ".join(line))


if __name__ == "__main__":
    main()
