"""Unique jobs through the queue API on every backend: a job type's ``unique`` and ``add(unique=...)``."""

from __future__ import annotations

import time

import pytest
from helpers import make_queue

SYNC = {
    "handler": lambda payload: None,
    "payload": {"type": "object", "properties": {"customer": {"type": "integer"}, "note": {"type": "string"}}},
    "unique": {"key": "${payload.customer}", "while": ["pending", "processing"]},
}
REPORT = {"handler": lambda payload: None, "unique": {"for": "300ms"}}
PLAIN = {"handler": lambda payload: None}


def test_declared_key_and_states(backend: str) -> None:
    queue = make_queue(backend, {"sync": SYNC, "plain": PLAIN})
    first = queue.add("sync", {"customer": 1, "note": "a"})
    assert queue.add("sync", {"customer": 1, "note": "b"}) == first  # same key: the note is not part of it
    second = queue.add("sync", {"customer": 2})
    assert second != first
    queue.cancel(first)
    third = queue.add("sync", {"customer": 1})
    assert third not in (first, second)
    assert queue.add("sync", {"customer": 1}, unique=False) not in (first, second, third)
    ids = queue.add_many([{"job_type": "sync", "payload": {"customer": 3}}] * 3 + [{"job_type": "plain"}] * 2)
    assert ids[0] == ids[1] == ids[2] and len(set(ids)) == 3
    queue.close()


def test_whole_payload_within_a_window_and_an_override(backend: str) -> None:
    queue = make_queue(backend, {"report": REPORT, "plain": PLAIN})
    first = queue.add("report", {"month": "2030-01"})
    assert queue.add("report", {"month": "2030-01"}) == first
    assert queue.add("report", {"month": "2030-02"}) != first
    time.sleep(0.4)
    assert queue.add("report", {"month": "2030-01"}) != first
    one = queue.add("plain", {"x": 1, "y": 1}, unique={"key": ["x"]})
    assert queue.add("plain", {"x": 1, "y": 2}, unique={"key": ["x"]}) == one
    assert queue.add("plain", {"x": 1, "y": 2}) != one  # no rule given, none declared
    with pytest.raises(ValueError, match="unknown key 'four'"):
        queue.add("plain", {}, unique={"four": "10m"})
    queue.close()
