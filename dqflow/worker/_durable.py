"""The worker's ``DurableStore``: a running attempt's steps and tokens, through the queue's storage.

Writes are fenced by the attempt's lease token; a rejected write cancels the
attempt (``lost``), and the handler stops at once (``LeaseLost``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from dqflow.declaration.schemas import InvalidSchemaError, SchemaValidator
from dqflow.durable.model import NewToken, TokenRecord
from dqflow.record import JobRecord

if TYPE_CHECKING:
    from dqflow.queue import Queue
    from dqflow.worker.context import JobContext


class QueueDurableStore:
    """The ``DurableStore`` of one attempt run by this worker."""

    def __init__(self, queue: Queue, job: JobRecord, ctx: JobContext) -> None:
        self._queue = queue
        self._job = job
        self._ctx = ctx

    def stored_steps(self) -> dict[str, Any]:
        # the claim hands back the job's steps: a plain job pays nothing for this
        return {name: step.result for name, step in self._job.steps.items()}

    def _held(self, stored: bool) -> bool:
        if not stored:
            self._ctx.cancel("lost")
        return stored

    def save_step(self, name: str, entry_json: str) -> bool:
        job = self._job
        return self._held(self._queue.storage.save_step(job.id, job.lease_token, name, entry_json))

    def create_token(self, name: str, entry_json: str, token: NewToken) -> bool:
        job = self._job
        return self._held(self._queue.storage.create_token(job.id, job.lease_token, name, entry_json, token))

    def get_token(self, token_id: str) -> TokenRecord | None:
        return self._queue.storage.get_token(token_id)

    def token_schema(self, schema: str | dict[str, Any] | None) -> tuple[str | None, str | None]:
        return token_schema(self._queue, schema)

    def step_limit(self) -> int:
        return self._queue.declaration.limits.max_output_bytes


def token_schema(queue: Queue, schema: str | dict[str, Any] | None) -> tuple[str | None, str | None]:
    """``(signal name, inline schema JSON)`` for ``ctx.create_token(schema=...)``; ``ValueError`` when
    the name is not declared under ``signals:`` or the inline schema is not a valid JSON Schema."""
    if schema is None:
        return None, None
    if isinstance(schema, str):
        signals = queue.declaration.signals
        if schema not in signals:
            known = ", ".join(sorted(signals)) or "none"
            raise ValueError(f"unknown signal {schema!r} for a token schema (declared under signals: {known})")
        return schema, None
    if isinstance(schema, dict):
        try:
            SchemaValidator(schema, name="token schema").check()
        except InvalidSchemaError as exc:
            raise ValueError(f"token schema is not a valid JSON Schema: {exc}") from exc
        return None, json.dumps(schema)
    raise TypeError(f"a token schema is a signal name or a JSON Schema dict, not {type(schema).__name__}")
