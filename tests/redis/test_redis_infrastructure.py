"""Redis-specific guarantees: scripts, keys, indexes, wake-ups, connections."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from backends import REDIS_URL
from helpers import list_all_ids
from redis.crc import key_slot

from dqflow.errors import ConfigError, StorageError
from dqflow.storage import open_storage
from dqflow.storage.base import Completion, Failure, JobFilter, Lease, NewJob, Release, TagMode
from dqflow.storage.redis import RedisStorage
from dqflow.storage.redis.scripts import NAMES

LUA_DIR = Path(__file__).parents[2] / "dqflow" / "storage" / "redis" / "lua"


def test_every_script_has_its_own_file() -> None:
    assert sorted(p.stem for p in LUA_DIR.glob("*.lua")) == sorted([*NAMES, "_lib"])


def test_scripts_reload_after_noscript(storage: RedisStorage, raw: redis.Redis) -> None:
    [first] = storage.add_jobs([NewJob("t", "{}")])
    raw.script_flush()
    [second] = storage.add_jobs([NewJob("t", "{}")])  # NOSCRIPT -> SCRIPT LOAD -> EVALSHA again
    assert second.job_id == first.job_id + 1
    raw.script_flush()
    assert len(storage.claim_jobs("w", None, 5, 1000)) == 2


def test_setup_loads_every_script(storage: RedisStorage, raw: redis.Redis) -> None:
    raw.script_flush()
    storage.setup()
    shas = [script.sha for script in storage._scripts.values()]
    assert raw.script_exists(*shas) == [True] * len(shas)


def exercise(storage: RedisStorage) -> None:
    """Touch every kind of key the backend writes."""
    from datetime import UTC, datetime, timedelta

    storage.add_jobs(
        [
            NewJob("a", "{}", tags=("x", "y"), idempotency_key="k"),
            NewJob("b/odd type", "{}", run_at=datetime.now(UTC) + timedelta(hours=1), tags=("z",)),
            NewJob("a", "{}"),
            NewJob("a", "{}"),
        ]
    )
    a, b, c = storage.claim_jobs("w", ["a"], 3, 1)
    storage.settle_jobs([Completion(a.id, a.lease_token, "1")])
    storage.settle_jobs([Failure(b.id, b.lease_token, "e", "handler_error")])
    storage.settle_jobs([Release(c.id, c.lease_token, True)])
    storage.renew_leases("w", [Lease(c.id, c.lease_token)], 1000)
    storage.retry_job(b.id)
    storage.edit_job(2, {"tags": ["q"], "priority": 3})
    storage.cancel_job(2)
    storage.claim_jobs("w", None, 5, 1)
    time.sleep(0.01)
    storage.reclaim_expired()
    storage.list_jobs(JobFilter(tags=("x",), tag_mode=TagMode.EXACT))
    storage.next_due_in(None)


def test_every_key_carries_the_hash_tag(storage: RedisStorage, raw: redis.Redis) -> None:
    exercise(storage)
    keys = list(raw.scan_iter(match=f"*{storage.prefix}*", count=1000))
    assert len(keys) > 15
    tag = "{" + storage.prefix + "}"
    assert all(key.startswith(tag + ":") for key in keys), keys
    assert {key_slot(key.encode()) for key in keys} == {key_slot(tag.encode())}


def test_scripts_touch_only_keys_built_from_keys_1() -> None:
    for path in LUA_DIR.glob("*.lua"):
        source = path.read_text()
        assert "KEYS[2]" not in source, path.name
        for command in ("'SCAN'", "'KEYS'", "'HSCAN'", "'SSCAN'", "'ZSCAN'", "'SORT'"):
            assert command not in source.upper(), (path.name, command)


def test_list_walks_the_smallest_index_not_every_job(storage: RedisStorage) -> None:
    storage.add_jobs([NewJob("bulk", "{}", tags=("common",)) for _ in range(3000)])
    rare = [r.job_id for r in storage.add_jobs([NewJob("rare", "{}", tags=("common", "rare")) for _ in range(3)])]
    storage.add_jobs([NewJob("bulk", "{}", tags=("common",)) for _ in range(1000)])
    rare.reverse()

    def listed(job_filter: JobFilter) -> list[int]:
        return [j.id for j in storage.list_jobs(job_filter).jobs]

    assert listed(JobFilter(job_type="rare")) == rare
    assert storage.last_list_scanned == 3
    assert listed(JobFilter(tags=("common", "rare"), tag_mode=TagMode.ALL)) == rare
    assert storage.last_list_scanned == 3
    assert listed(JobFilter(tags=("rare", "common"), tag_mode=TagMode.EXACT)) == rare
    assert storage.last_list_scanned == 3
    assert listed(JobFilter(statuses=(), job_type="bulk", limit=10))[0] == 4003
    assert storage.last_list_scanned == 11  # a page plus one look-ahead
    [job] = storage.claim_jobs("w", ["rare"], 1, 60_000)
    assert listed(JobFilter(statuses=(), job_type="bulk", limit=10)) != []
    from dqflow.record import JobStatus

    assert listed(JobFilter(statuses=(JobStatus.PROCESSING,), tags=("common",))) == [job.id]
    assert storage.last_list_scanned == 1
    page = storage.list_jobs(JobFilter(job_type="bulk", limit=5, cursor=1000))
    assert [j.id for j in page.jobs] == [999, 998, 997, 996, 995] and storage.last_list_scanned == 6


def test_claim_does_not_scan_finished_jobs(storage: RedisStorage, raw: redis.Redis) -> None:
    storage.add_jobs([NewJob("t", "{}") for _ in range(500)])
    claimed = storage.claim_jobs("w", None, 500, 60_000)
    storage.settle_jobs([Completion(j.id, j.lease_token) for j in claimed])
    tag = "{" + storage.prefix + "}"
    assert raw.exists(f"{tag}:ready:t") == 0 and raw.zcard(f"{tag}:processing") == 0
    assert raw.zcard(f"{tag}:status:completed") == 500


# -- waking idle workers ---------------------------------------------------------------


def _wake_after_add(storage: RedisStorage, job_types: list[str] | None, add_type: str) -> float:
    """Seconds from the add call's return to the waiting thread waking (best of 5)."""
    best = 10.0
    raw = storage._client
    for _ in range(5):
        raw.delete(*(f"{{{storage.prefix}}}:wake{suffix}" for suffix in ("", f":{add_type}")))
        woke: list[float] = []
        ready = threading.Event()

        def wait(ready: threading.Event = ready, woke: list[float] = woke) -> None:
            ready.set()
            storage.wait_for_jobs(5.0, job_types)
            woke.append(time.perf_counter())

        thread = threading.Thread(target=wait)
        thread.start()
        ready.wait()
        time.sleep(0.05)  # let BLPOP block
        added = time.perf_counter()
        storage.add_jobs([NewJob(add_type, "{}")])
        thread.join(6)
        assert woke, "the waiter never woke"
        best = min(best, woke[0] - added)
        storage.claim_jobs("w", None, 100, 60_000)
    return best


def test_wait_for_jobs_wakes_within_milliseconds(storage: RedisStorage) -> None:
    latency = _wake_after_add(storage, ["t"], "t")
    print(f"\nwake-up latency (typed waiter): {latency * 1000:.2f} ms")
    assert latency < 0.05
    latency = _wake_after_add(storage, None, "t")
    print(f"wake-up latency (any-type waiter): {latency * 1000:.2f} ms")
    assert latency < 0.05


def test_wait_for_jobs_times_out_and_ignores_other_types(storage: RedisStorage) -> None:
    storage.add_jobs([NewJob("other", "{}")])
    start = time.perf_counter()
    storage.wait_for_jobs(0.2, ["mine"])
    assert 0.15 < time.perf_counter() - start < 1.0
    start = time.perf_counter()
    storage.wait_for_jobs(0, ["mine"])
    storage.wait_for_jobs(-1, None)
    assert time.perf_counter() - start < 0.05


def test_release_and_retry_wake_waiters(storage: RedisStorage) -> None:
    [job_id] = [r.job_id for r in storage.add_jobs([NewJob("t", "{}")])]
    [job] = storage.claim_jobs("w", ["t"], 1, 60_000)
    storage.wait_for_jobs(0.01, ["t"])  # eat the add's token
    storage.settle_jobs([Release(job_id, job.lease_token, False)])
    start = time.perf_counter()
    storage.wait_for_jobs(2.0, ["t"])
    assert time.perf_counter() - start < 0.5


# -- connections and configuration ----------------------------------------------------


def test_unreachable_server_raises_storage_error() -> None:
    storage = RedisStorage("redis://127.0.0.1:1/0?prefix=nowhere", socket_connect_timeout=0.5)
    with pytest.raises(StorageError, match=r"Redis at redis://127\.0\.0\.1:1/0\?prefix=nowhere is not reachable"):
        storage.add_jobs([NewJob("t", "{}")])
    with pytest.raises(StorageError):
        storage.setup()
    with pytest.raises(StorageError):
        storage.wait_for_jobs(0.1, None)
    storage.close()
    storage.close()


def test_client_recovers_after_its_connections_are_killed(redis_url: str, raw: redis.Redis) -> None:
    name = f"dqtest-{uuid.uuid4().hex[:8]}"
    storage = RedisStorage(redis_url, client_name=name)
    storage.setup()
    storage.add_jobs([NewJob("t", "{}")])
    clients: list[dict[str, str]] = raw.client_list()  # type: ignore[assignment]
    for client in clients:
        if client["name"] == name:
            raw.client_kill_filter(_id=client["id"])
    # the pool notices the dead connection and reconnects on the next call
    assert len(storage.claim_jobs("w", None, 5, 1000)) == 1
    storage.close()


@pytest.fixture
def own_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)  # bytes replies
    yield client
    client.close()


def test_callers_own_client_and_prefix_option(own_client: redis.Redis, raw: redis.Redis) -> None:
    prefix = f"dqtest:{uuid.uuid4().hex[:12]}"
    try:
        storage = open_storage(own_client, prefix=prefix)
        assert isinstance(storage, RedisStorage) and storage.prefix == prefix
        storage.setup()
        [result] = storage.add_jobs([NewJob("t", '{"é": 1}', tags=("x",))])
        [job] = storage.claim_jobs("w", None, 1, 1000)
        assert job.payload == {"é": 1} and job.tags == ["x"]
        assert storage.get_job(result.job_id) == job
        assert [e.event_type.value for e in storage.get_events(result.job_id)] == ["added", "processing"]
        assert storage.list_jobs(JobFilter(tags=("x",))).jobs == [job]
        storage.wait_for_jobs(0.01, None)
        assert raw.exists("{" + prefix + "}:job:1") == 1
        storage.close()
        own_client.ping()  # the caller's client stays open
    finally:
        for key in raw.scan_iter(match="{" + prefix + "}*"):
            raw.delete(key)


def test_url_forms() -> None:
    storage = RedisStorage("redis://user:secret@localhost:6390/3?prefix=jobs")
    assert storage.prefix == "jobs" and storage.url == "redis://user:***@localhost:6390/3?prefix=jobs"
    assert "secret" not in storage.url
    storage.close()
    assert RedisStorage("rediss://localhost:6390/0").prefix == "dqflow"
    assert RedisStorage("redis://localhost/0?prefix=a", prefix="b").prefix == "b"
    assert isinstance(open_storage("redis://localhost:6379/0"), RedisStorage)
    for bad in ("{x}", "a}b", ""):
        with pytest.raises(ConfigError, match="prefix"):
            RedisStorage("redis://localhost/0", prefix=bad)
    with pytest.raises(ConfigError, match="not a Redis URL"):
        RedisStorage("http://localhost/0")
    with pytest.raises(ConfigError, match="bogus"):
        RedisStorage("redis://localhost/0?bogus=1")
    assert RedisStorage(redis.Redis(port=6390, ssl=True)).url == "rediss://localhost:6390/0"


# -- backend-specific limits -----------------------------------------------------------


def test_values_outside_what_redis_stores_are_refused_before_anything_is_stored(storage: RedisStorage) -> None:
    from datetime import datetime

    with pytest.raises(ValueError, match="priority"):
        storage.add_jobs([NewJob("t", "{}"), NewJob("t", "{}", priority=2**40)])
    with pytest.raises(ValueError, match="timezone-aware"):
        storage.add_jobs([NewJob("t", "{}", run_at=datetime(2030, 1, 1))])
    assert storage.list_jobs(JobFilter()).jobs == []


def test_list_resumes_when_a_step_spends_its_scan_budget(storage: RedisStorage) -> None:
    storage.add_jobs([NewJob("t", "{}", tags=("even",) if i % 2 == 0 else ()) for i in range(40)])
    storage.list_scan_budget = 3
    everything = list_all_ids(storage, JobFilter(limit=7))
    assert everything == list(range(40, 0, -1))
    none_even = list_all_ids(storage, JobFilter(tags=("even",), tag_mode=TagMode.NONE, limit=4))
    assert none_even == list(range(40, 0, -2))
