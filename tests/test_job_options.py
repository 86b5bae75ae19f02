"""``JOB_OPTIONS`` is a literal table (so the storage contract loads without SQLAlchemy):
it must say exactly what ``NewJob`` and the ``JobRecord`` columns say."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Integer, Text

from dqflow.record import JobTable
from dqflow.storage.base import EDITABLE_FIELDS, JOB_OPTIONS, JobOption, NewJob, OptionKind

FLOW_CONTROL = {"concurrency_key", "concurrency_limit", "rate_key", "rate_limit", "rate_window_ms", "dead_letter_json"}
FIXED_AT_ADD = {"job_type", "idempotency_key", "workflow_run_id", "workflow_step", "workflow_item"} | FLOW_CONTROL
NOT_COLUMNS = {"depends_on"}  # NewJob fields kept outside the job row


def kind_of(name: str, column: Any) -> OptionKind:
    """The option kind a ``NewJob`` field must have, read off its column's SQL type."""
    if name.endswith("_json"):
        return OptionKind.JSON_TEXT
    kinds: tuple[tuple[type, OptionKind], ...] = (
        (BigInteger, OptionKind.INT),
        (Integer, OptionKind.INT32),
        (Boolean, OptionKind.BOOL),
        (DateTime, OptionKind.TIME),
        (JSON, OptionKind.STRINGS),
        (Text, OptionKind.TEXT),
    )
    return next(kind for sql_type, kind in kinds if isinstance(column.type, sql_type))


def expected_options() -> tuple[JobOption, ...]:
    columns = JobTable.__table__.columns  # type: ignore[attr-defined]
    options = []
    for item in fields(NewJob):
        if item.name in NOT_COLUMNS:
            continue
        column = columns[item.name.removesuffix("_json")]
        editable = item.name not in FIXED_AT_ADD
        options.append(JobOption(item.name, column.name, kind_of(item.name, column), bool(column.nullable), editable))
    return tuple(options)


def test_job_options_match_new_job_and_the_job_columns() -> None:
    expected = expected_options()
    missing = [o.name for o in expected if o not in JOB_OPTIONS]
    extra = [o.name for o in JOB_OPTIONS if o not in expected]
    assert not missing and not extra, f"JOB_OPTIONS drifted: fix rows {missing} / remove {extra} in storage/base.py"
    assert expected == JOB_OPTIONS  # and in NewJob order


def test_editable_fields_are_the_options_but_type_and_key() -> None:
    assert {o.name for o in JOB_OPTIONS} - EDITABLE_FIELDS == FIXED_AT_ADD
