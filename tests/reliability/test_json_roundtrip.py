"""Property tests: any JSON payload and output comes back from every backend exactly as it went in."""

from __future__ import annotations

import math
from typing import Any

import pytest
from helpers import make_queue
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dqflow import Queue
from dqflow.json_values import dumps
from dqflow.storage import Completion

pytestmark = pytest.mark.reliability

EXAMPLES = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


def same(a: Any, b: Any) -> bool:
    """Equal *and* of the same JSON kind all the way down (1 is not 1.0, -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        # key order is not promised by JSON
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def json_values(backend: str) -> st.SearchStrategy[Any]:
    floats = st.floats(allow_nan=False, allow_infinity=False)
    # U+0000 and lone surrogates are refused on every backend (test_bad_input.py); everything else goes
    text = st.text(st.characters(codec="utf-8", blacklist_characters="\x00"), max_size=20)
    scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | floats | text
    return st.recursive(
        scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(text, inner, max_size=5), max_leaves=25
    )


def queue_for(backend: str) -> Queue:
    return make_queue(backend, {"anything": {"handler": lambda payload: None}})


def store_output(queue: Queue, job_id: int, value: Any) -> None:
    claimed = queue.storage.claim_jobs("roundtrip", ["anything"], 1, 60_000)
    assert [job.id for job in claimed] == [job_id]
    assert queue.storage.settle_jobs([Completion(job_id, claimed[0].lease_token, dumps(value))]) == [True]


def test_any_json_payload_and_output_round_trips(backend: str) -> None:
    queue = queue_for(backend)

    @EXAMPLES
    @given(payload=json_values(backend), output=json_values(backend))
    def check(payload: Any, output: Any) -> None:
        job_id = queue.add("anything", payload)
        stored = queue.get_job(job_id)
        assert same(stored.payload, payload), (payload, stored.payload)
        store_output(queue, job_id, output)
        done = queue.get_job(job_id)
        assert same(done.output, output), (output, done.output)
        assert same(done.payload, payload)

    try:
        check()
    finally:
        queue.close()


FLOATS_IN_EXPONENT_FORM = [1e16, -2.5e20, 1e300, 1.7976931348623157e308, 5e-324, 1e-7, -0.0]


@pytest.mark.parametrize("value", FLOATS_IN_EXPONENT_FORM, ids=repr)
def test_floats_in_exponent_form_round_trip(backend: str, value: float) -> None:
    queue = queue_for(backend)
    job_id = queue.add("anything", {"x": value, "list": [value]})
    assert same(queue.get_job(job_id).payload, {"x": value, "list": [value]}), queue.get_job(job_id).payload
    store_output(queue, job_id, value)
    assert same(queue.get_job(job_id).output, value), queue.get_job(job_id).output
    queue.close()


def test_integers_within_53_bits_round_trip_exactly(backend: str) -> None:
    queue = queue_for(backend)
    values = [2**53, -(2**53), 2**53 - 1, 2**31, -(2**31) - 1, 0, 9007199254740993 - 2]
    job_id = queue.add("anything", values)
    assert same(queue.get_job(job_id).payload, values)
    store_output(queue, job_id, values)
    assert same(queue.get_job(job_id).output, values)
    queue.close()
