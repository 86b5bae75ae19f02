"""Job types, tags, idempotency keys and filters full of quotes, SQL and Lua metacharacters change
nothing they should not: filters match exactly, other jobs are untouched (property-tested)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from helpers import make_queue
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dqflow import JobStatus, Queue
from dqflow.storage import JobFilter, NewJob, TagMode, open_storage
from dqflow.storage.base import Storage

pytestmark = pytest.mark.reliability

# quotes, SQL (comments, LIKE wildcards, escapes), Lua patterns and Redis glob/hash-tag characters
META = "'\";-%_\\{}*[]$?^().+:#/ \t\nx"
NUL = "\x00"


def metachar_text(backend: str, *, nul: bool = True, min_size: int = 1) -> st.SearchStrategy[str]:
    # PostgreSQL text columns cannot hold U+0000: left out there (refused with a StorageError)
    alphabet = META if backend.startswith("postgres") or not nul else META + NUL
    specials = ["'; DROP TABLE dqflow_jobs; --", "%", "_", "\\", "*", "{dqflow}", "a]b[c", "$1", "' OR '1'='1", "%%"]
    return st.sampled_from(specials) | st.text(st.sampled_from(alphabet), min_size=min_size, max_size=8)


@dataclass
class Model:
    """What the storage should hold: every job added so far (all examples share one backend)."""

    jobs: dict[int, dict[str, Any]] = field(default_factory=dict)
    keys: dict[str, int] = field(default_factory=dict)


def matches(tags: set[str], wanted: set[str], mode: TagMode) -> bool:
    if mode is TagMode.ALL:
        return wanted <= tags
    if mode is TagMode.ANY:
        return bool(wanted & tags)
    if mode is TagMode.NONE:
        return not wanted & tags
    return tags == wanted


def listed(storage: Storage, job_filter: JobFilter) -> list[int]:
    return [job.id for job in storage.list_jobs(job_filter).jobs]


def test_metacharacters_in_types_tags_keys_and_filters(backend: str) -> None:
    storage = open_storage(backend)
    storage.setup()
    model = Model()
    text = metachar_text(backend)
    # SQLite matches tags holding U+0000 wrongly (test_tags_with_nul_characters_filter_exactly): left out there
    tag = metachar_text(backend, nul=not backend.startswith("sqlite"))
    job_strategy = st.tuples(text, st.lists(tag, max_size=3, unique=True), st.none() | text)

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        new=st.lists(job_strategy, min_size=1, max_size=4),
        probe_type=text,
        probe_tags=st.lists(tag, min_size=1, max_size=3, unique=True),
        mode=st.sampled_from(list(TagMode)),
    )
    def check(
        new: list[tuple[str, list[str], str | None]], probe_type: str, probe_tags: list[str], mode: TagMode
    ) -> None:
        before = {job_id: storage.get_job(job_id) for job_id in model.jobs}
        results = storage.add_jobs(
            [NewJob(job_type=t, payload_json='{"p":1}', tags=tuple(tags), idempotency_key=key) for t, tags, key in new]
        )
        for (job_type, tags, key), result in zip(new, results, strict=True):
            if key is not None and key in model.keys:
                assert not result.created and result.job_id == model.keys[key], (key, result)
                continue
            assert result.created, (key, result)
            model.jobs[result.job_id] = {"type": job_type, "tags": set(tags)}
            if key is not None:
                model.keys[key] = result.job_id
            stored = storage.get_job(result.job_id)
            assert stored is not None
            assert stored.job_type == job_type and stored.tags == tags and stored.idempotency_key == key
            assert stored.status is JobStatus.PENDING
        # nothing else changed
        for job_id, old in before.items():
            assert storage.get_job(job_id) == old
        # filters match exactly
        everything = listed(storage, JobFilter(limit=10_000))
        assert sorted(everything) == sorted(model.jobs)
        for job_type in {probe_type, *(t for t, _, _ in new)}:
            expected = sorted(i for i, job in model.jobs.items() if job["type"] == job_type)
            assert sorted(listed(storage, JobFilter(job_type=job_type, limit=10_000))) == expected, job_type
        for tags in (probe_tags, *(tags for _, tags, _ in new if tags)):
            expected = sorted(i for i, job in model.jobs.items() if matches(job["tags"], set(tags), mode))
            got = sorted(listed(storage, JobFilter(tags=tuple(tags), tag_mode=mode, limit=10_000)))
            assert got == expected, (tags, mode)
        got = listed(storage, JobFilter(job_type=probe_type, tags=tuple(probe_tags), tag_mode=mode, limit=10_000))
        expected = [
            i
            for i, job in model.jobs.items()
            if job["type"] == probe_type and matches(job["tags"], set(probe_tags), mode)
        ]
        assert sorted(got) == sorted(expected)

    try:
        check()
    finally:
        storage.close()


def test_metacharacter_filters_through_the_queue_api(backend: str) -> None:
    """The public API: unknown (hostile) job types are refused; hostile filters match nothing."""
    from helpers import make_queue

    queue: Queue = make_queue(backend, {"plain": {"handler": lambda payload: None}})
    ids = [queue.add("plain", {"i": i}, tags=["a", "b"]) for i in range(3)]
    hostile = ["plain' OR '1'='1", "plain%", "pla_n", "*", "plain;--", "{plain}", "plain\\"]
    for job_type in hostile:
        assert queue.list_jobs(job_type=job_type).jobs == []
        with pytest.raises(Exception, match="unknown job type"):
            queue.add(job_type, {})
        for mode in TagMode:
            expected = ids if mode is TagMode.NONE else []
            assert sorted(j.id for j in queue.list_jobs(tags=[job_type], tag_mode=mode).jobs) == sorted(expected)
    assert sorted(j.id for j in queue.list_jobs().jobs) == sorted(ids)
    assert all(queue.get_job(i).status is JobStatus.PENDING for i in ids)
    queue.close()


def test_nul_characters_in_tags_keys_and_filters_are_refused(backend: str) -> None:
    """PostgreSQL cannot store U+0000 in text, so the queue refuses it on every backend alike."""
    queue = make_queue(backend, {"t": {"handler": lambda payload: None}})
    try:
        for bad in (";\x00x", "\x00", "a\x00"):
            with pytest.raises(ValueError, match="NUL"):
                queue.add("t", {}, tags=[bad])
            with pytest.raises(ValueError, match="NUL"):
                queue.add("t", {}, idempotency_key=bad)
            with pytest.raises(ValueError, match="NUL"):
                queue.list_jobs(tags=[bad])
            with pytest.raises(ValueError, match="NUL"):
                queue.list_jobs(job_type=bad)
        assert queue.list_jobs().jobs == []
    finally:
        queue.close()
