"""Redis' change feed: the capped stream ``{prefix}:changes`` the Lua scripts append to.

Cursors are stream ids (``"<ms>-<seq>"``); Redis hands them out in order inside
the atomic scripts, so reading after a cursor never skips an entry.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from dqflow.storage.changes import OUTPUT, PROGRESS, Change
from dqflow.storage.redis.codec import EPOCH, as_text

if TYPE_CHECKING:
    from dqflow.storage.redis.backend import RedisStorage

START = "0-0"
_STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")


def check_cursor(after: str) -> str:
    if not isinstance(after, str) or not _STREAM_ID.match(after):
        raise ValueError(f"invalid change cursor {after!r}: expected '<milliseconds>-<sequence>'")
    return after


def _key(storage: RedisStorage) -> str:
    return f"{storage._key}:changes"


def change_cursor(storage: RedisStorage) -> str:
    newest = storage._guard("read the change feed", lambda: storage._client.xrevrange(_key(storage), count=1))
    return str(as_text(newest[0][0])) if newest else START


def _entries_to_changes(storage: RedisStorage, entries: list[Any]) -> list[Change]:
    entries = as_text(entries)
    job_ids = sorted({int(fields["job"]) for _, fields in entries})

    def job_types() -> list[Any]:
        pipe = storage._client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hmget(f"{storage._key}:job:{job_id}", "job_type", "workflow_run_id")
        return list(pipe.execute())

    types = dict(zip(job_ids, as_text(storage._guard("read the change feed", job_types)), strict=True))
    changes: list[Change] = []
    for stream_id, fields in entries:
        job_id = int(fields["job"])
        at = datetime.fromtimestamp(int(stream_id.split("-")[0]) / 1000, UTC)
        if "event" in fields:
            event = json.loads(fields["event"])
            kind, data = str(event["type"]), event["data"] or {}
            at = EPOCH + timedelta(microseconds=event["at"])
        elif PROGRESS in fields:
            kind, data = PROGRESS, {"progress": int(fields[PROGRESS])}
        else:
            kind, data = OUTPUT, {}
        job_type, run_id = types.get(job_id) or (None, None)
        run = None if run_id is None else int(run_id)
        changes.append(Change(stream_id, job_id, str(job_type or ""), kind, at, data, run))
    return changes


def read_changes(storage: RedisStorage, after: str, limit: int) -> list[Change]:
    start = "(" + check_cursor(after)
    entries = storage._guard(
        "read the change feed", lambda: storage._client.xrange(_key(storage), min=start, count=max(1, limit))
    )
    return _entries_to_changes(storage, entries) if entries else []


def wait_for_changes(storage: RedisStorage, after: str, timeout: float) -> None:
    check_cursor(after)
    block_ms = max(1, int(timeout * 1000))
    storage._guard(
        "wait for changes",
        lambda: storage._blocking.xread({_key(storage): after}, count=1, block=block_ms),
    )
