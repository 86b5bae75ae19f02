"""The uniqueness rule of one job being added: the job type's ``unique``, or ``add(unique=...)``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dqflow.declaration import JobTypeSpec
from dqflow.declaration.unique import UniqueSpec, parse_unique, schema_problems
from dqflow.durations import to_ms
from dqflow.storage.base import UniqueRule

__all__ = ["unique_rule"]


def unique_rule(declared: JobTypeSpec, payload: Any, given: Any) -> UniqueRule | None:
    """The rule for a job of ``declared`` with ``payload``: ``given`` None means the
    declared one, False none, a ``UniqueSpec`` or mapping (as in jobs.yaml) that one."""
    if given is False:
        return None
    spec: UniqueSpec | None
    if given is None:
        spec = declared.unique
    elif isinstance(given, UniqueSpec):
        spec = given
    elif isinstance(given, Mapping):
        spec = parse_unique(given)
        if declared.payload_schema is not None:
            problems = schema_problems(spec, declared.payload_schema.schema)
            if problems:
                raise ValueError(f"{declared.name}: {problems[0]}")
    else:
        raise TypeError(f"unique must be a mapping (key, for, while), False or None, not {type(given).__name__}")
    if spec is None:
        return None
    return UniqueRule(spec.key_of(declared.name, payload), to_ms(spec.within), spec.statuses)
