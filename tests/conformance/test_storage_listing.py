"""Contract: ``list_jobs`` filters, tag modes and keyset paging on every backend."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from helpers import add_job, claim_one, list_all_ids

from dqflow.record import JobStatus
from dqflow.storage import JobFilter, NewJob, Storage, TagMode


def test_paging_walks_every_job_once_newest_first(storage: Storage) -> None:
    results = storage.add_jobs([NewJob("t", "{}") for _ in range(23)])
    all_ids = sorted((r.job_id for r in results), reverse=True)
    page = storage.list_jobs(JobFilter(limit=10))
    assert [j.id for j in page.jobs] == all_ids[:10] and page.next_cursor == all_ids[9]
    for limit in (1, 5, 10, 22, 23, 24, 100):
        assert list_all_ids(storage, JobFilter(limit=limit)) == all_ids, limit
    exact = storage.list_jobs(JobFilter(limit=23))
    assert len(exact.jobs) == 23 and exact.next_cursor is None  # a full last page has no cursor
    assert list_all_ids(storage, JobFilter(cursor=all_ids[4], limit=7)) == all_ids[5:]
    assert storage.list_jobs(JobFilter(limit=0)).jobs == []


def test_filters_by_status_and_type(storage: Storage) -> None:
    ids = [r.job_id for r in storage.add_jobs([NewJob("a" if i % 2 else "b", "{}") for i in range(25)])]
    type_a = list_all_ids(storage, JobFilter(job_type="a", limit=5))
    assert type_a == sorted(ids[1::2], reverse=True) and len(type_a) == 12
    claimed = claim_one(storage)
    processing = storage.list_jobs(JobFilter(statuses=(JobStatus.PROCESSING,)))
    assert [(j.id, j.status) for j in processing.jobs] == [(claimed.id, JobStatus.PROCESSING)]
    both = list_all_ids(storage, JobFilter(statuses=(JobStatus.PROCESSING, JobStatus.PENDING), limit=4))
    assert both == sorted(ids, reverse=True)
    assert list_all_ids(storage, JobFilter(statuses=(JobStatus.COMPLETED,))) == []
    assert list_all_ids(storage, JobFilter(job_type="nope")) == []


@pytest.fixture
def tagged(storage: Storage) -> dict[str, int]:
    """Seven jobs with different tag lists (and types x / y / z), by name."""
    jobs = {
        "ab": NewJob("x", "{}", tags=("a", "b")),
        "a": NewJob("x", "{}", tags=("a",)),
        "b": NewJob("y", "{}", tags=("b",)),
        "none": NewJob("y", "{}"),
        "abc": NewJob("x", "{}", tags=("c", "b", "a")),
        "ba": NewJob("y", "{}", tags=("b", "a", "a")),
        "aa": NewJob("z", "{}", tags=("a", "a")),  # a repeated tag counts once
    }
    results = storage.add_jobs(list(jobs.values()))
    return {name: r.job_id for name, r in zip(jobs, results, strict=True)}


@pytest.mark.parametrize(
    ("tags", "mode", "expected"),
    [
        (("a",), TagMode.ALL, ["ab", "a", "abc", "ba", "aa"]),
        (("a", "b"), TagMode.ALL, ["ab", "abc", "ba"]),
        (("a", "b"), TagMode.ANY, ["ab", "a", "b", "abc", "ba", "aa"]),
        (("a", "c"), TagMode.ANY, ["ab", "a", "abc", "ba", "aa"]),
        (("a", "b"), TagMode.NONE, ["none"]),
        (("c",), TagMode.NONE, ["ab", "a", "b", "none", "ba", "aa"]),
        (("a", "b"), TagMode.EXACT, ["ab", "ba"]),
        (("b", "a"), TagMode.EXACT, ["ab", "ba"]),
        (("b", "a", "b"), TagMode.EXACT, ["ab", "ba"]),
        (("a",), TagMode.EXACT, ["a", "aa"]),
        (("zzz",), TagMode.ANY, []),
        (("zzz",), TagMode.ALL, []),
        ((), TagMode.ALL, ["ab", "a", "b", "none", "abc", "ba", "aa"]),  # no tags: no tag filter
        ((), TagMode.EXACT, ["ab", "a", "b", "none", "abc", "ba", "aa"]),
    ],
    ids=lambda value: "+".join(value) if isinstance(value, tuple) else str(value) if isinstance(value, TagMode) else "",
)
def test_tag_modes(
    storage: Storage, tagged: dict[str, int], tags: tuple[str, ...], mode: TagMode, expected: list[str]
) -> None:
    want = sorted((tagged[name] for name in expected), reverse=True)
    assert list_all_ids(storage, JobFilter(tags=tags, tag_mode=mode)) == want
    assert list_all_ids(storage, JobFilter(tags=tags, tag_mode=mode, limit=2)) == want


def test_filters_combine(storage: Storage, tagged: dict[str, int]) -> None:
    y_jobs = sorted([tagged["b"], tagged["none"], tagged["ba"]], reverse=True)
    assert list_all_ids(storage, JobFilter(job_type="y")) == y_jobs
    assert list_all_ids(storage, JobFilter(job_type="y", tags=("a",))) == [tagged["ba"]]
    [job] = storage.claim_jobs("w", ["x"], 1, 30_000)  # the oldest x job: "ab"
    assert job.id == tagged["ab"]
    assert list_all_ids(storage, JobFilter(statuses=(JobStatus.PROCESSING,))) == [tagged["ab"]]
    assert list_all_ids(storage, JobFilter(statuses=(JobStatus.PROCESSING,), job_type="y")) == []
    assert list_all_ids(storage, JobFilter(statuses=(JobStatus.PROCESSING,), tags=("a", "b"))) == [tagged["ab"]]
    storage.cancel_job(tagged["none"])
    assert list_all_ids(storage, JobFilter(statuses=(JobStatus.CANCELLED, JobStatus.PROCESSING), limit=1)) == [
        tagged["none"],
        tagged["ab"],
    ]
    pending_b = JobFilter(statuses=(JobStatus.PENDING,), tags=("b",), tag_mode=TagMode.ANY, limit=1)
    assert list_all_ids(storage, pending_b) == sorted([tagged["b"], tagged["abc"], tagged["ba"]], reverse=True)
    assert list_all_ids(storage, JobFilter(job_type="z", tags=("a", "b"))) == []


def test_filters_by_creation_time(storage: Storage) -> None:
    early = storage.add_jobs([NewJob("t", "{}"), NewJob("t", "{}")])
    time.sleep(0.01)
    middle = add_job(storage)
    time.sleep(0.01)
    late = add_job(storage)
    records = {j.id: j for j in storage.list_jobs(JobFilter()).jobs}
    t_middle = records[middle].created_at
    # created_after is inclusive, created_before exclusive
    assert list_all_ids(storage, JobFilter(created_after=t_middle)) == [late, middle]
    assert list_all_ids(storage, JobFilter(created_before=t_middle)) == [early[1].job_id, early[0].job_id]
    window = JobFilter(created_after=t_middle, created_before=records[late].created_at)
    assert list_all_ids(storage, window) == [middle]
    assert list_all_ids(storage, JobFilter(created_after=datetime.now(UTC) + timedelta(hours=1))) == []
    assert list_all_ids(storage, JobFilter(created_before=datetime(2000, 1, 1, tzinfo=UTC))) == []
    assert list_all_ids(storage, JobFilter(created_after=t_middle, job_type="t", limit=1)) == [late, middle]
    between = t_middle - timedelta(milliseconds=5)  # a time between two adds
    assert list_all_ids(storage, JobFilter(created_after=between)) == [late, middle]
    assert list_all_ids(storage, JobFilter(created_before=between)) == [early[1].job_id, early[0].job_id]
