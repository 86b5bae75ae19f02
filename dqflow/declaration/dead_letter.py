"""Dead-letter types in ``jobs.yaml``: ``dead_letter: JOB_TYPE`` per type or in ``defaults``.

When a job fails for good, storage adds a job of its type's ``dead_letter`` type in
the same transaction or script, with the envelope ``dqflow/schemas/dead_letter.json``
as payload. Here, at load: the named type must exist, its payload schema must accept
every envelope (the workflow checker's schema-fits-schema test), and no chain of
dead-letter types may lead back to where it started.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import cache
from importlib import resources
from typing import Any

from dqflow.declaration.model import JobTypeSpec, RawDeclaration
from dqflow.errors import ConfigError

__all__ = ["dead_letter_problems", "envelope_schema"]

Problem = Callable[[str, tuple[str | int, ...]], ConfigError]


@cache
def envelope_schema() -> dict[str, Any]:
    """The JSON Schema of the dead-letter envelope (package data)."""
    text = (resources.files("dqflow") / "schemas" / "dead_letter.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _where(raw: RawDeclaration, name: str) -> tuple[str | int, ...]:
    if "dead_letter" in raw.jobs[name].model_fields_set:
        return ("jobs", name, "dead_letter")
    return ("defaults", "dead_letter")


def dead_letter_problems(
    raw: RawDeclaration, job_types: Mapping[str, JobTypeSpec], problem: Problem
) -> list[ConfigError]:
    """Problems of every ``dead_letter`` setting (unknown type, loop, envelope refused)."""
    problems: list[ConfigError] = []
    checked: set[str] = set()
    for name, spec in job_types.items():
        target = spec.dead_letter
        if target is None:
            continue
        where = _where(raw, name)
        if target not in job_types:
            known = ", ".join(sorted(job_types))
            problems.append(problem(f"dead_letter names job type {target!r}, which is not declared ({known})", where))
            continue
        chain = [name]
        following: str | None = target
        while following is not None and following in job_types:
            if following in chain:
                loop = " -> ".join([*chain[chain.index(following) :], following])
                problems.append(problem(f"dead_letter leads back to a job type it started from: {loop}", where))
                break
            chain.append(following)
            following = job_types[following].dead_letter
        payload = job_types[target].payload_schema
        if target in checked or payload is None:
            continue
        checked.add(target)
        # Imported here, where a dead-letter type is declared: dqflow.workflows builds on the
        # declaration package (not the other way round), and a declaration without one skips it.
        from dqflow.workflows.compat import fits
        from dqflow.workflows.schema_view import Node

        errors = [f for f in fits(Node.of(envelope_schema()), Node.of_validator(payload)) if f.level == "error"]
        if errors:
            first = errors[0]
            problems.append(
                problem(
                    f"dead_letter type {target!r} cannot take the dead-letter envelope"
                    f" (dqflow/schemas/dead_letter.json): {first.reason} at {first.consumer_path}"
                    + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
                    where,
                )
            )
    return problems
