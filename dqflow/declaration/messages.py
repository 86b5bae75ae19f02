"""Pydantic's errors about ``jobs.yaml`` turned into sentences a user can act on."""

from __future__ import annotations

import difflib

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from dqflow.declaration.model import RawDeclaration, RawDefaults, RawJob, RawLimits, RawRetention, RawRetry, RawWorker
from dqflow.declaration.yaml_source import Loc
from dqflow.errors import kind_of, shown

__all__ = ["describe"]

_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The raw model whose keys live at ``loc`` (for listing allowed keys)."""
    parts = [p for p in loc if p != "[key]"]
    if not parts:
        return RawDeclaration
    head, rest = parts[0], parts[1:]
    if head == "defaults":
        return (
            RawDefaults
            if not rest
            else RawRetry
            if rest == ["retry"]
            else RawRetention
            if rest == ["retention"]
            else None
        )
    if head == "worker" and not rest:
        return RawWorker
    if head == "limits" and not rest:
        return RawLimits
    if head == "jobs" and len(rest) == 1:
        return RawJob
    if head == "jobs" and len(rest) == 2 and rest[1] == "retry":
        return RawRetry
    if head == "jobs" and len(rest) == 2 and rest[1] == "retention":
        return RawRetention
    return None


def describe(error: ErrorDetails) -> str:
    """One pydantic error as a sentence: unknown keys with the allowed ones, expected types, ..."""
    kind = error["type"]
    loc: Loc = tuple(error["loc"])
    value = error.get("input")
    if kind == "extra_forbidden":
        name = str(loc[-1])
        model = _model_at(loc[:-1])
        if model is None:
            return f"unknown key {name!r}"
        allowed = list(model.model_fields)
        close = difflib.get_close_matches(name, allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown key {name!r}{hint} (allowed: {', '.join(allowed)})"
    if kind == "missing":
        return f"missing required key {loc[-1]!r}"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {kind_of(value)} ({shown(value)})"
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return f"{message[:1].lower()}{message[1:]} (got {shown(value)})"
