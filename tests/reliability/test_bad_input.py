"""Bad input gets a clear error and changes nothing: values that are not JSON, values over the size
limits, characters a backend cannot store."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from helpers import make_queue, running_worker, wait_for_status

from dqflow import (
    FailureReason,
    JobContext,
    JobStatus,
    OutputValidationError,
    PayloadValidationError,
    Queue,
)
from dqflow.errors import OutputTooLargeError, PayloadTooLargeError

pytestmark = pytest.mark.reliability


def _cycle() -> Any:
    value: list[Any] = [1]
    value.append(value)
    return value


NOT_JSON = {
    "nan": (float("nan"), "NaN"),
    "infinity": (float("inf"), "Infinity"),
    "minus-infinity": (float("-inf"), "Infinity"),
    "bytes": (b"abc", "bytes"),
    "set": ({1, 2}, "set"),
    "frozenset": (frozenset({1}), "frozenset"),
    "int-key": ({1: "a"}, "not a string"),
    "tuple-key": ({(1, 2): "a"}, "not a string"),
    "cycle": (_cycle(), "circular"),
    "datetime": (dt.datetime(2024, 1, 1, tzinfo=dt.UTC), "datetime"),
    "date": (dt.date(2024, 1, 1), "date"),
    "decimal": (Decimal("1.5"), "Decimal"),
    "object": (object(), "object"),
    "complex": (1j, "complex"),
    # strings every backend can store: no U+0000 (PostgreSQL's jsonb cannot hold it), valid Unicode
    "nul-in-string": ("a\x00b", "NUL character"),
    "nul-in-key": ({"k\x00": 1}, "NUL character"),
    "lone-surrogate": ("\ud800", "not valid Unicode"),
}


def all_jobs(queue: Queue) -> list[Any]:
    return queue.list_jobs(limit=10_000).jobs


@pytest.mark.parametrize("name", list(NOT_JSON))
def test_payloads_that_are_not_json_are_refused_and_store_nothing(backend: str, name: str) -> None:
    value, hint = NOT_JSON[name]
    queue = make_queue(backend, {"t": {"handler": lambda payload: None}})
    with pytest.raises(PayloadValidationError) as caught:
        queue.add("t", {"deep": [0, {"value": value}]})
    message = str(caught.value)
    assert "payload of t" in message and "not JSON" in message and hint in message, message
    assert "$.deep[1].value" in message, message  # says where
    # in a batch: the good jobs before it are not stored either, and the error names the index
    with pytest.raises(PayloadValidationError, match=r"job 2"):
        queue.add_many(
            [{"job_type": "t", "payload": 1}, {"job_type": "t", "payload": 2}, {"job_type": "t", "payload": value}]
        )
    assert all_jobs(queue) == []
    queue.close()


def test_outputs_that_are_not_json_are_refused_and_store_nothing(backend: str) -> None:
    seen: dict[str, str] = {}

    def returns_bad(payload: Any) -> Any:
        return {"value": NOT_JSON[payload["name"]][0]}

    def sets_bad(payload: Any, ctx: JobContext) -> Any:
        try:
            ctx.set_output({"value": NOT_JSON[payload["name"]][0]})
        except OutputValidationError as exc:
            seen[payload["name"]] = str(exc)
        return None

    queue = make_queue(
        backend, {"returns_bad": {"handler": returns_bad, "max_attempts": 1}, "sets_bad": {"handler": sets_bad}}
    )
    returned = {name: queue.add("returns_bad", {"name": name}) for name in NOT_JSON}
    set_ = {name: queue.add("sets_bad", {"name": name}) for name in NOT_JSON}
    with running_worker(queue, concurrency=4):
        for name, job_id in returned.items():
            job = wait_for_status(queue, job_id, "failed", "completed")
            assert job.status is JobStatus.FAILED, (name, job)
            assert job.failure_reason == FailureReason.INVALID_OUTPUT.value
            assert job.output is None
            error = job.error_history[-1]["error"]
            assert "output of returns_bad" in error and NOT_JSON[name][1] in error, (name, error)
        for name, job_id in set_.items():
            job = wait_for_status(queue, job_id, "completed", "failed")
            assert job.status is JobStatus.COMPLETED and job.output is None, (name, job)
    assert set(seen) == set(NOT_JSON)
    assert all("not JSON" in message for message in seen.values()), seen
    queue.close()


LIMITS = {"max_payload_bytes": 200, "max_output_bytes": 150}


def test_payloads_and_outputs_over_the_size_limit_are_refused(backend: str) -> None:
    attempts: list[str] = []

    def big_output(payload: Any, ctx: JobContext) -> Any:
        size = payload["size"]
        if payload.get("set"):
            try:
                ctx.set_output("x" * size)
            except OutputTooLargeError as exc:  # an output error, not a payload one
                attempts.append(str(exc))
                return None
        return "x" * size

    queue = make_queue(backend, {"t": {"handler": big_output, "max_attempts": 1}}, limits=LIMITS)
    # {"size":0,"pad":"..."}: find the padding that makes the payload exactly 200 bytes of compact JSON
    base = len('{"size":0,"pad":""}')
    at_limit = {"size": 0, "pad": "p" * (200 - base)}
    over = {"size": 0, "pad": "p" * (201 - base)}
    multibyte = {"size": 0, "pad": "é" * 100}  # 100 characters, 200 bytes of UTF-8: counted in bytes
    for payload in (over, multibyte):
        with pytest.raises(PayloadTooLargeError, match=r"over the limit of 200 bytes"):
            queue.add("t", payload)
    assert all_jobs(queue) == []
    ok_id = queue.add("t", at_limit)
    # outputs: a JSON string of n characters is n + 2 bytes
    fits = queue.add("t", {"size": 148})
    too_big = queue.add("t", {"size": 149})
    set_too_big = queue.add("t", {"size": 149, "set": True})
    with running_worker(queue):
        for job_id in (ok_id, fits, too_big, set_too_big):
            wait_for_status(queue, job_id, "completed", "failed")
    assert queue.get_job(ok_id).status is JobStatus.COMPLETED
    assert queue.get_job(fits).output == "x" * 148
    failed = queue.get_job(too_big)
    assert failed.status is JobStatus.FAILED and failed.failure_reason == "invalid_output" and failed.output is None
    assert "151 bytes is over the limit of 150 bytes" in failed.error_history[-1]["error"]
    # set_output refused it with a clear error inside the handler, which then returned None
    refused = queue.get_job(set_too_big)
    assert attempts and "over the limit of 150 bytes" in attempts[0]
    assert refused.output is None and refused.failure_reason is None and refused.status is JobStatus.COMPLETED
    queue.close()


def test_an_output_the_backend_cannot_store_fails_only_its_own_job(backend: str) -> None:
    """A handler returning a string with U+0000 must not block the results of other jobs.

    (Regression: on PostgreSQL such an output used to pass validation and then make the whole
    completion batch fail, retried forever.)
    """

    def handler(payload: Any) -> Any:
        return {"s": "nul\x00" if payload["bad"] else "fine"}

    queue = make_queue(backend, {"t": {"handler": handler, "max_attempts": 1}})
    ids = [queue.add("t", {"bad": i == 2}) for i in range(4)]
    with running_worker(queue, concurrency=4):
        for job_id in ids:
            wait_for_status(queue, job_id, "completed", "failed", timeout=10)
    for i, job_id in enumerate(ids):
        job = queue.get_job(job_id)
        if i != 2:
            assert job.status is JobStatus.COMPLETED and job.output == {"s": "fine"}
        else:
            assert job.status is JobStatus.FAILED and job.failure_reason == "invalid_output", job
            assert job.output is None and "NUL character" in job.error_history[-1]["error"]
    queue.close()
