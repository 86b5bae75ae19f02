"""The systems ``benchmarks/compare.py`` measures, each behind the same small interface.

A system knows how to make a fresh store, how to start its worker as a separate
process, how to enqueue many jobs, and how to count finished jobs in its own store.
Everything else (warm-up, the clock, polling for completion, latency) is done by
``compare.py`` the same way for every system.

The job is the same everywhere: payload ``{"n": n}``, the handler returns
``{"n": n, "ok": true}`` (stored where the system keeps results). A job with
``n < 0`` is a marker job: the first thing its handler does is read
``time.monotonic()`` (CLOCK_MONOTONIC: one clock for every process on the machine,
never stepped), then it appends ``"<n> <that time>"`` to the starts file, which is
how ``compare.py`` sees when a handler started.

``floor-redis`` is no job system: a bare ``LPUSH`` and a worker process blocked in
``BRPOP`` on the same list, timed by the same loop. It is the floor of one wake-up on
this machine: what any Redis queue pays at least from a push to a woken worker.

Run as a script, this module is the worker process:

    python benchmarks/systems.py worker SYSTEM STORE_URL CONCURRENCY STARTS_FILE
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # _common.py, throughput.py
sys.path.insert(0, str(HERE / "peers"))  # huey_sqlite_bench.py (huey's SQLite storage at synchronous=NORMAL)

PG_ADMIN = os.environ.get("DQFLOW_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("DQFLOW_BENCH_REDIS", "redis://127.0.0.1:6379")
HUEY_REDIS_DB = 14  # not 13: compare_redis.py flushes that one
DQFLOW_REDIS_DB = 10


def record_start(n: int) -> None:
    """Marker jobs (``n < 0``) append when their handler started to the starts file."""
    if n < 0:
        at = time.monotonic()  # before the file is opened: the start, not the bookkeeping
        with open(os.environ["DQBENCH_STARTS"], "a") as starts:
            starts.write(f"{n} {at!r}\n")


class System:
    """One system on one backend. Subclasses fill in the five methods."""

    name: ClassVar[str]
    backend: ClassVar[str]
    stores_output: ClassVar[bool] = True

    def __init__(self, url: str) -> None:
        self.url = url

    @classmethod
    @contextmanager
    def fresh(cls) -> Iterator[str]:
        """A store URL of an empty store, removed afterwards."""
        raise NotImplementedError

    def open(self) -> None:
        """Connect the producer side (enqueue and count)."""

    def close(self) -> None:
        """Disconnect the producer side."""

    def enqueue(self, numbers: list[int]) -> None:
        """Enqueue one job per number, with the system's call for many jobs."""
        raise NotImplementedError

    def enqueue_one(self, n: int) -> None:
        """Enqueue one job."""
        self.enqueue([n])

    def finished(self) -> int:
        """How many jobs are finished, read from the system's store."""
        raise NotImplementedError

    def outputs_ok(self, numbers: list[int]) -> bool:
        """Whether the results of ``numbers`` are stored (read back after the clock stopped)."""
        return False

    @staticmethod
    def run_worker(url: str, concurrency: int) -> None:
        """The worker process: run until SIGTERM."""
        raise NotImplementedError


# -- dqflow -------------------------------------------------------------------------------


def dqflow_handler(payload: dict[str, Any]) -> dict[str, Any]:
    record_start(payload["n"])
    return {"n": payload["n"], "ok": True}


def dqflow_declaration() -> Any:
    from throughput import OUTPUT_SCHEMA, PAYLOAD_SCHEMA

    from dqflow import Declaration

    spec = {"payload": PAYLOAD_SCHEMA, "output": OUTPUT_SCHEMA, "max_attempts": 1}
    return Declaration.build({"bench": {"handler": dqflow_handler, **spec}})


class Dqflow(System):
    def open(self) -> None:
        from dqflow import Queue

        self.queue = Queue(dqflow_declaration(), self.url)

    def close(self) -> None:
        self.queue.close()

    def enqueue(self, numbers: list[int]) -> None:
        from dqflow import JobSpec

        self.queue.add_many([JobSpec("bench", {"n": n}) for n in numbers])

    def enqueue_one(self, n: int) -> None:
        self.queue.add("bench", {"n": n})

    def outputs_ok(self, numbers: list[int]) -> bool:
        from dqflow import JobStatus

        wanted, good, cursor = set(numbers), 0, None
        while True:
            page = self.queue.list_jobs(status=JobStatus.COMPLETED, limit=10_000, cursor=cursor)
            good += sum(1 for j in page.jobs if j.payload["n"] in wanted and j.output == {**j.payload, "ok": True})
            if page.next_cursor is None:
                return good == len(wanted)
            cursor = page.next_cursor

    @staticmethod
    def run_worker(url: str, concurrency: int) -> None:
        import logging

        from dqflow import Queue, Worker

        logging.disable(logging.CRITICAL)
        with Queue(dqflow_declaration(), url) as queue:
            Worker(queue, concurrency=concurrency).run()


class DqflowSqlite(Dqflow):
    name, backend = "dqflow", "sqlite"

    @classmethod
    @contextmanager
    def fresh(cls) -> Iterator[str]:
        with tempfile.TemporaryDirectory(prefix="dqbench-") as folder:
            yield f"sqlite:///{Path(folder) / 'queue.db'}"

    def open(self) -> None:
        super().open()
        self.queue.get_job(1)  # creates the schema
        self.counter = sqlite3.connect(self.url.removeprefix("sqlite:///"))

    def close(self) -> None:
        self.counter.close()
        super().close()

    def finished(self) -> int:
        return int(self.counter.execute("SELECT count(*) FROM dqflow_jobs WHERE status = 'completed'").fetchone()[0])


class DqflowPostgres(Dqflow):
    name, backend = "dqflow", "postgresql"

    @classmethod
    @contextmanager
    def fresh(cls) -> Iterator[str]:
        from throughput import fresh_backend

        with fresh_backend(PG_ADMIN, reuse_prepared=False) as url:
            yield url

    def open(self) -> None:
        import psycopg

        super().open()
        self.counter = psycopg.connect(self.url, autocommit=True)

    def close(self) -> None:
        self.counter.close()
        super().close()

    def finished(self) -> int:
        row = self.counter.execute("SELECT count(*) FROM dqflow_jobs WHERE status = 'completed'").fetchone()
        return int(row[0]) if row else 0


class DqflowRedis(Dqflow):
    name, backend = "dqflow", "redis"

    @classmethod
    @contextmanager
    def fresh(cls) -> Iterator[str]:
        from throughput import fresh_backend

        with fresh_backend(f"{REDIS}/{DQFLOW_REDIS_DB}", reuse_prepared=False) as url:
            yield url

    def open(self) -> None:
        import redis

        super().open()
        prefix = self.url.split("prefix=", 1)[1]
        self.completed_key = "{" + prefix + "}:status:completed"
        self.counter = redis.Redis.from_url(f"{REDIS}/{DQFLOW_REDIS_DB}")

    def close(self) -> None:
        self.counter.close()
        super().close()

    def finished(self) -> int:
        return int(self.counter.zcard(self.completed_key))


# -- huey ---------------------------------------------------------------------------------


def make_huey(url: str) -> tuple[Any, Any]:
    """The huey instance of ``url`` (``redis://...#name`` or a SQLite file path) and its task."""
    if url.startswith("redis"):
        from huey import RedisHuey

        address, name = url.split("#", 1)
        huey = RedisHuey(name, url=address, results=True, blocking=True)
    else:
        from huey import SqliteHuey
        from huey_sqlite_bench import storage_class

        huey = SqliteHuey("dqbench", filename=url, results=True, storage_class=storage_class("normal"))

    @huey.task(name="bench")  # type: ignore[untyped-decorator]
    def bench(payload: dict[str, Any]) -> dict[str, Any]:
        record_start(payload["n"])
        return {"n": payload["n"], "ok": True}

    return huey, bench


class Huey(System):
    name = "huey"

    def open(self) -> None:
        self.huey, self.task = make_huey(self.url)
        self.results: dict[int, Any] = {}

    def close(self) -> None:
        self.huey.storage.close() if hasattr(self.huey.storage, "close") else None

    def enqueue(self, numbers: list[int]) -> None:
        group = self.task.map([({"n": n},) for n in numbers])  # huey's call for many: one by one inside
        self.results.update(zip(numbers, group, strict=True))

    def enqueue_one(self, n: int) -> None:
        self.results[n] = self.task({"n": n})  # huey's call for one job

    def finished(self) -> int:
        return int(self.huey.result_count())

    def outputs_ok(self, numbers: list[int]) -> bool:
        sample = numbers[:: max(1, len(numbers) // 50)]  # reading all N results back would take long
        return all(self.results[n].get(preserve=True) == {"n": n, "ok": True} for n in sample)

    @staticmethod
    def run_worker(url: str, concurrency: int) -> None:
        import logging

        logging.disable(logging.CRITICAL)
        huey, _ = make_huey(url)
        huey.create_consumer(workers=concurrency, worker_type="thread", periodic=False).run()


class HueyRedis(Huey):
    backend = "redis"

    @classmethod
    @contextmanager
    def fresh(cls) -> Iterator[str]:
        """A huey name of its own (its keys are ``huey.*.<name>``), so that other programs
        using the same Redis database are neither disturbed nor disturbing; deleted after."""
        import redis

        name = f"dqbench_{uuid.uuid4().hex[:10]}"
        client = redis.Redis.from_url(f"{REDIS}/{HUEY_REDIS_DB}")
        try:
            yield f"{REDIS}/{HUEY_REDIS_DB}#{name}"
        finally:
            keys = list(client.scan_iter(match=f"huey.*.{name}*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()


class HueySqlite(Huey):
    backend = "sqlite"

    @classmethod
    @contextmanager
    def fresh(cls) -> Iterator[str]:
        with tempfile.TemporaryDirectory(prefix="dqbench-huey-") as folder:
            yield str(Path(folder) / "huey.db")


# -- the floor: a bare push and a blocked pop ---------------------------------------------


class RedisFloor(System):
    """``LPUSH`` to a list, a worker process blocked in ``BRPOP`` on it: no job system at all."""

    name, backend = "floor", "redis"
    stores_output = False

    @classmethod
    @contextmanager
    def fresh(cls) -> Iterator[str]:
        import redis

        name = f"dqbench_floor_{uuid.uuid4().hex[:10]}"
        client = redis.Redis.from_url(f"{REDIS}/{HUEY_REDIS_DB}")
        try:
            yield f"{REDIS}/{HUEY_REDIS_DB}#{name}"
        finally:
            client.delete(f"{name}:list", f"{name}:done")
            client.close()

    def open(self) -> None:
        import redis

        address, self.key = self.url.split("#", 1)
        self.client = redis.Redis.from_url(address)

    def close(self) -> None:
        self.client.close()

    def enqueue(self, numbers: list[int]) -> None:
        for start in range(0, len(numbers), 1000):
            self.client.lpush(f"{self.key}:list", *numbers[start : start + 1000])

    def enqueue_one(self, n: int) -> None:
        self.client.lpush(f"{self.key}:list", n)

    def finished(self) -> int:
        return int(self.client.get(f"{self.key}:done") or 0)

    @staticmethod
    def run_worker(url: str, concurrency: int) -> None:
        import redis

        address, name = url.split("#", 1)
        client = redis.Redis.from_url(address)
        while True:  # one waiter whatever the concurrency: the floor of one wake-up
            popped = client.brpop([f"{name}:list"], timeout=1)
            if popped is not None:
                record_start(int(popped[1]))
                client.incr(f"{name}:done")


# -- pgqueuer -----------------------------------------------------------------------------


class Pgqueuer(System):
    name, backend = "pgqueuer", "postgresql"
    stores_output = False  # pgqueuer keeps no result; "finished" = gone from its queue table

    @classmethod
    @contextmanager
    def fresh(cls) -> Iterator[str]:
        import psycopg
        from _common import fresh_pg_database
        from pgqueuer import Queries

        with fresh_pg_database(PG_ADMIN, "bench_pgqueuer") as url:

            async def install() -> None:
                conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
                await Queries.from_psycopg_connection(conn).install()
                await conn.close()

            asyncio.run(install())
            yield url

    def open(self) -> None:
        import psycopg
        from pgqueuer import Queries

        self.loop = asyncio.new_event_loop()
        self.conn = self.loop.run_until_complete(psycopg.AsyncConnection.connect(self.url, autocommit=True))
        self.queries = Queries.from_psycopg_connection(self.conn)
        self.counter = psycopg.connect(self.url, autocommit=True)
        self.enqueued = 0

    def close(self) -> None:
        self.loop.run_until_complete(self.conn.close())
        self.loop.close()
        self.counter.close()

    def enqueue(self, numbers: list[int]) -> None:
        payloads = [json.dumps({"n": n}).encode() for n in numbers]
        self.loop.run_until_complete(self.queries.enqueue(["bench"] * len(numbers), payloads, [0] * len(numbers)))
        self.enqueued += len(numbers)

    def enqueue_one(self, n: int) -> None:
        self.loop.run_until_complete(self.queries.enqueue("bench", json.dumps({"n": n}).encode()))
        self.enqueued += 1

    def finished(self) -> int:
        row = self.counter.execute("SELECT count(*) FROM pgqueuer").fetchone()
        return self.enqueued - (int(row[0]) if row else 0)

    @staticmethod
    def run_worker(url: str, concurrency: int) -> None:
        import psycopg
        from pgqueuer import PgQueuer
        from pgqueuer.models import Job

        async def main() -> None:
            pgq = PgQueuer.from_psycopg_connection(await psycopg.AsyncConnection.connect(url, autocommit=True))

            # pgqueuer requires max_concurrent_tasks >= 2 * batch_size, so its smallest setting
            # is batch 1 with 2 tasks (an entrypoint concurrency_limit=1 instead made it wait
            # between jobs: under 1 job/s).
            @pgq.entrypoint("bench")
            async def bench(job: Job) -> None:
                n = json.loads(job.payload or b"{}")["n"]
                record_start(n)

            await pgq.run(batch_size=max(1, concurrency // 2), max_concurrent_tasks=max(2, concurrency))

        try:
            import uvloop

            uvloop.run(main())
        except ImportError:
            asyncio.run(main())


SYSTEMS: dict[str, type[System]] = {
    f"{cls.name}-{cls.backend}": cls
    for cls in (DqflowSqlite, DqflowPostgres, DqflowRedis, HueySqlite, HueyRedis, RedisFloor, Pgqueuer)
}


def main(argv: list[str]) -> int:
    if len(argv) != 6 or argv[1] != "worker" or argv[2] not in SYSTEMS:
        print(__doc__, file=sys.stderr)
        return 2
    _, _, system, url, concurrency, starts = argv
    os.environ["DQBENCH_STARTS"] = starts
    SYSTEMS[system].run_worker(url, int(concurrency))
    return 0


if __name__ == "__main__":
    # Run from the module imported by its name, so that tasks carry the same module name
    # (``systems``) in the worker as in the producer (huey finds tasks by module and name).
    import systems

    sys.exit(systems.main(sys.argv))
