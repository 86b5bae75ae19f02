"""Redis layout version: recorded on first use; a queue from before numbering reads as layout 1 and
is upgraded (its old finished jobs indexed for clean-up)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from dqflow import Declaration
from dqflow.storage import Completion, NewJob
from dqflow.storage.redis import RedisStorage
from dqflow.storage.redis._layout import LAYOUT_VERSION
from dqflow.worker._pruner import Pruner

RETENTION = {"completed": "1s", "cancelled": "1s"}


def _handler(payload: Any) -> None:
    return None


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


def test_upgrading_from_layout_1_indexes_old_finished_jobs_so_the_pruner_removes_them(
    redis_url: str, raw: redis.Redis
) -> None:
    prefix = "{" + redis_url.split("?prefix=")[1] + "}"
    store = RedisStorage(redis_url)
    store.setup()
    ids = [result.job_id for result in store.add_jobs([NewJob("t", "{}") for _ in range(3)])]
    claimed = store.claim_jobs("w", None, 3, 30_000)
    store.settle_jobs([Completion(job.id, job.lease_token, None) for job in claimed[:2]])
    store.cancel_job(ids[2])
    live = store.add_jobs([NewJob("t", "{}")])[0].job_id
    store.close()
    # as layout 1 left them: finished before P:finished existed, layout recorded as 1
    raw.zrem(f"{prefix}:finished", *ids)
    raw.set(f"{prefix}:layout", 1)
    later = datetime.now(UTC) + timedelta(hours=1)

    old = RedisStorage(redis_url)
    old.setup()
    try:
        assert raw.get(f"{prefix}:layout") == str(LAYOUT_VERSION)
        assert {int(m) for m in raw.zrange(f"{prefix}:finished", 0, -1)} == set(ids)
        pruner = Pruner(Declaration.build({"t": {"handler": _handler, "retention": RETENTION}}), old, now=lambda: later)
        assert pruner.prune_once() == (3, False)
        assert [old.get_job(job_id) for job_id in ids] == [None, None, None]
        assert old.get_job(live) is not None
    finally:
        old.close()


def test_the_upgrade_is_idempotent_and_keeps_finish_times(redis_url: str, raw: redis.Redis) -> None:
    prefix = "{" + redis_url.split("?prefix=")[1] + "}"
    store = RedisStorage(redis_url)
    store.setup()
    job_id = store.add_jobs([NewJob("t", "{}")])[0].job_id
    store.cancel_job(job_id)
    score = raw.zscore(f"{prefix}:finished", str(job_id))
    store.close()
    raw.delete(f"{prefix}:layout")  # unversioned, with jobs: read as layout 1
    for _ in range(2):
        again = RedisStorage(redis_url)
        again.setup()
        again.close()
        assert raw.zscore(f"{prefix}:finished", str(job_id)) == score
        assert raw.get(f"{prefix}:layout") == str(LAYOUT_VERSION)
