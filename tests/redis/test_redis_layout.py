"""Redis layout version: recorded on first use; a queue from before numbering reads as layout 1."""

from __future__ import annotations

import redis

from dqflow.storage import NewJob
from dqflow.storage.redis import RedisStorage
from dqflow.storage.redis.backend import LAYOUT_VERSION


def test_setup_records_the_layout_version(redis_url: str, raw: redis.Redis) -> None:
    store = RedisStorage(redis_url)
    store.setup()
    store.close()
    assert raw.get("{" + redis_url.split("?prefix=")[1] + "}:layout") == str(LAYOUT_VERSION)


def test_a_queue_written_before_layouts_were_numbered_keeps_working(redis_url: str, raw: redis.Redis) -> None:
    prefix = "{" + redis_url.split("?prefix=")[1] + "}"
    store = RedisStorage(redis_url)
    store.setup()
    job_id = store.add_jobs([NewJob("t", '{"x": 1}')])[0].job_id
    store.close()
    raw.delete(f"{prefix}:layout")  # as an unversioned dqflow left it
    again = RedisStorage(redis_url)
    again.setup()
    try:
        job = again.get_job(job_id)
        assert job is not None and job.payload == {"x": 1} and job.meta == {}
        assert raw.get(f"{prefix}:layout") == str(LAYOUT_VERSION)
    finally:
        again.close()
