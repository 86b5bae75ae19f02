"""Conformance: payload and output schemas that `$ref` other schema files, end to end on every backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import make_queue

from dqflow import FailureReason, JobStatus, PayloadValidationError, Worker

COMMON = {"$defs": {"id": {"type": "string", "minLength": 2}, "url": {"type": "string", "pattern": "^https://"}}}
PAYLOAD = {"type": "object", "properties": {"id": {"$ref": "defs/common.json#/$defs/id"}}, "required": ["id"]}
OUTPUT = {"type": "object", "properties": {"url": {"$ref": "defs/common.json#/$defs/url"}}, "required": ["url"]}


def echo_url(payload: dict[str, Any]) -> dict[str, Any]:
    return {"url": payload["url"]}


def test_payload_and_output_schemas_with_refs_to_another_file(backend: str, tmp_path: Path) -> None:
    (tmp_path / "schemas" / "defs").mkdir(parents=True)
    (tmp_path / "schemas" / "defs" / "common.json").write_text(json.dumps(COMMON))
    (tmp_path / "schemas" / "payload.json").write_text(json.dumps(PAYLOAD))
    (tmp_path / "schemas" / "output.json").write_text(json.dumps(OUTPUT))
    jobs = {
        "fetch": {
            "handler": echo_url,
            "payload": "schemas/payload.json",
            "output": "schemas/output.json",
            "max_attempts": 1,
        }
    }
    queue = make_queue(backend, jobs, base_dir=tmp_path)
    try:
        with pytest.raises(PayloadValidationError, match=r"\$\.id: 'x' is too short"):
            queue.add("fetch", {"id": "x", "url": "https://ok"})
        assert queue.list_jobs().jobs == []
        good = queue.add("fetch", {"id": "ok", "url": "https://example.test/a"})
        bad = queue.add("fetch", {"id": "ok", "url": "ftp://example.test/a"})
        Worker(queue, drain=True).run()
        done = queue.require_job(good)
        assert done.status is JobStatus.COMPLETED and done.output == {"url": "https://example.test/a"}
        failed = queue.require_job(bad)
        assert failed.status is JobStatus.FAILED
        assert failed.failure_reason == FailureReason.INVALID_OUTPUT.value
        assert "$.url" in failed.error_history[0]["error"] and failed.output is None
    finally:
        queue.close()
