"""Redis: ``settle_and_claim`` against ``settle_jobs`` then ``claim_jobs``, in CPU per step.

``--runs`` runs of a 3-step linear workflow; their first jobs are claimed up front (not
measured). Then, batch by batch (``--batch`` completions), either each batch is settled
and its runs' next steps claimed in one call (``eager``), or settled, then those steps
claimed by a claim of their own (``separate``): step b (the runs not yet known to this
process: each settle reads them), then step c (planned from the states it wrote). Client
CPU is this process's ``time.process_time``; server CPU is ``used_cpu_sys + used_cpu_user``
of ``INFO cpu`` — run it against a Redis server of its own (nothing else on it):

    redis-server --port 6391 --save "" --appendonly no --daemonize yes
    .venv/bin/python benchmarks/redis_settle_and_claim.py --url redis://127.0.0.1:6391/0

Prints the median over ``--repeat`` repetitions (each mode in turn, a fresh key prefix each).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
import uuid
from typing import Any

import redis

from dqflow import Queue
from dqflow.declaration import Declaration
from dqflow.record import JobRecord
from dqflow.storage import Completion, StepClaim

LEASE_MS = 600_000
JOBS = {"double": {"handler": lambda payload: {"n": payload["n"] * 2}, "max_attempts": 1}}
N = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
WORKFLOWS = {
    "linear": {
        "input": N,
        "steps": {
            "a": {"job": "double", "payload": {"n": "${input.n}"}},
            "b": {"job": "double", "needs": ["a"], "payload": {"n": "${steps.a.output.n}"}},
            "c": {"job": "double", "needs": ["b"], "payload": {"n": "${steps.b.output.n}"}},
        },
        "returns": {"n": "${steps.c.output.n}"},
    }
}


def server_cpu(client: Any) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def _complete(job: JobRecord) -> Completion:
    return Completion(job.id, job.lease_token, json.dumps({"n": 1}), workflow_run_id=job.workflow_run_id)


def one(url: str, runs: int, batch: int, eager: bool) -> list[tuple[float, float, int]]:
    """(client s, server s, steps) of step b, then of step c."""
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    queue = Queue(Declaration.build(JOBS, workflows=WORKFLOWS), backend=f"{url}?prefix={prefix}")
    storage = queue.storage
    raw = redis.Redis.from_url(url)
    claim = StepClaim(worker_id="w", job_types=None, limit=batch, lease_ms=LEASE_MS)
    try:
        queue.start_workflows("linear", [{"n": n} for n in range(runs)])
        held: list[JobRecord] = []
        while len(held) < runs:
            held += storage.claim_jobs("w", None, 500, LEASE_MS)
        results = []
        for _ in ("b", "c"):
            nxt: list[JobRecord] = []
            gc.collect()
            client0, server0 = time.process_time(), server_cpu(raw)
            for start in range(0, len(held), batch):
                outcomes = [_complete(job) for job in held[start : start + batch]]
                if eager:
                    applied, taken = storage.settle_and_claim(outcomes, claim)
                else:
                    applied = storage.settle_jobs(outcomes)
                    taken = storage.claim_jobs("w", None, batch, LEASE_MS)
                assert all(applied) and len(taken) == len(outcomes), (applied, len(taken))
                nxt += taken
            results.append((time.process_time() - client0, server_cpu(raw) - server0, len(nxt)))
            held = nxt
        return results
    finally:
        for key in raw.scan_iter(match=f"{{{prefix}}}*", count=1000):
            raw.delete(key)
        raw.close()
        queue.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6391/0")
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--modes", default="separate,eager", help="separate, eager or both (comma-separated)")
    args = parser.parse_args()
    found: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(args.repeat):
        for mode in args.modes.split(","):
            eager = mode == "eager"
            for step, (client, server, steps) in zip("bc", one(args.url, args.runs, args.batch, eager), strict=True):
                found.setdefault((mode, step), []).append((client / steps * 1e6, server / steps * 1e6))
    print(f"{args.runs} runs, batches of {args.batch}, median of {args.repeat} (µs CPU per step)")
    print("| step | mode | client | server | total |")
    print("|---|---|---|---|---|")
    for (mode, step), values in sorted(found.items(), key=lambda item: (item[0][1], item[0][0] != "separate")):
        client = statistics.median(v[0] for v in values)
        server = statistics.median(v[1] for v in values)
        print(f"| {step} | {mode} | {client:.0f} | {server:.0f} | {client + server:.0f} |")


if __name__ == "__main__":
    main()
