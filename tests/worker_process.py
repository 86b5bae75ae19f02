"""Run a real dqflow worker process for tests: python tests/worker_process.py CONFIG BACKEND [options]."""

from __future__ import annotations

import argparse
import logging

from dqflow import Queue, Worker


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("backend")
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--lease", type=float, default=None)
    parser.add_argument("--shutdown-grace", type=float, default=None)
    parser.add_argument("--drain", action="store_true")
    parser.add_argument("--job-type", action="append", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    queue = Queue.from_yaml(args.config, backend=args.backend)
    worker = Worker(
        queue,
        concurrency=args.concurrency,
        lease=args.lease,
        shutdown_grace=args.shutdown_grace,
        drain=args.drain,
        job_types=args.job_type,
    )
    print("worker ready", flush=True)
    worker.run()
    queue.close()


if __name__ == "__main__":
    main()
