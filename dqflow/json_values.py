"""Strict JSON: what may be stored as a payload or an output.

Only objects with string keys, arrays, strings, finite numbers, booleans and
null, nested at most ``MAX_JSON_DEPTH`` (100) levels deep. ``dumps`` refuses
everything else (NaN, Infinity, bytes, sets, datetimes, cycles, deeper
nesting; tuples become arrays) with a message naming the path. Strings must be
valid Unicode without NUL characters, which PostgreSQL cannot store: the same
value is accepted or refused on every backend.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

from dqflow.bounds import MAX_JSON_DEPTH
from dqflow.errors import ValidationFailed


def json_problems(value: Any, path: str = "$") -> list[str]:
    """List why ``value`` is not strict JSON (empty when it is)."""
    problems: list[str] = []
    _walk(value, path, problems, set(), 0)
    return problems


def _walk(value: Any, path: str, problems: list[str], seen: set[int], depth: int) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        _check_text(value, path, problems)
        return
    if isinstance(value, int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            problems.append(f"{path}: {value!r} is not a JSON number (NaN and Infinity are not allowed)")
        return
    if isinstance(value, (dict, list, tuple)):
        if depth >= MAX_JSON_DEPTH:
            problems.append(f"{path}: nested deeper than {MAX_JSON_DEPTH} levels of arrays and objects")
            return
        if id(value) in seen:
            problems.append(f"{path}: circular reference")
            return
        seen.add(id(value))
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    problems.append(f"{path}: key {key!r} is not a string")
                    continue
                _check_text(key, f"{path} key {key!r}", problems)
                _walk(item, f"{path}.{key}", problems, seen, depth + 1)
        else:
            for index, item in enumerate(value):
                _walk(item, f"{path}[{index}]", problems, seen, depth + 1)
        seen.discard(id(value))
        return
    problems.append(f"{path}: {type(value).__name__} is not JSON-serializable")


def _check_text(text: str, path: str, problems: list[str]) -> None:
    if "\x00" in text:
        problems.append(f"{path}: contains a NUL character (\\u0000), which cannot be stored")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        problems.append(f"{path}: is not valid Unicode ({exc.reason} at index {exc.start})")


_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode
"""The compact text of a JSON value (``json.dumps`` with these options, without building an encoder per call)."""


def _not_json(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def compact_encoder(*, allow_nan: bool) -> Callable[[Any], str]:
    """``json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=allow_nan)``
    as a function: the C encoder that ``JSONEncoder.encode`` builds on every call, made once
    (no cycle check: a cycle ends in RecursionError; nothing shared between calls or threads)."""
    if c_make_encoder is None:  # pragma: no cover - a Python without the json accelerator
        return json.JSONEncoder(separators=(",", ":"), allow_nan=allow_nan, ensure_ascii=False).encode
    chunks = c_make_encoder(None, _not_json, encode_basestring, None, ":", ",", False, False, allow_nan)
    return lambda value: "".join(chunks(value, 0))


_compact = compact_encoder(allow_nan=False)
# the C scanner reads the text back
_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def strict_text(value: Any) -> str | None:
    """The text :func:`dumps` gives for ``value`` when it is surely strict JSON, else None (ask ``dumps``).

    Encoded and read back in C rather than walked in Python: the encoder refuses NaN,
    Infinity, cycles and other types; a NUL character, a lone surrogate or more
    brackets than ``MAX_JSON_DEPTH`` show in the text; a key that is not a string
    (and a tuple) reads back as something else.
    """
    try:
        text = _compact(value)
    except (TypeError, ValueError, RecursionError):
        return None
    if "\\u0000" in text or text.count("{") + text.count("[") > MAX_JSON_DEPTH:
        return None
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            return None
    return text if _scan(text, 0)[0] == value else None


def dumps(value: Any, what: type[ValidationFailed] = ValidationFailed, label: str = "value") -> str:
    """Serialise strict JSON compactly, or raise ``what`` listing the problems."""
    text = strict_text(value)
    if text is not None:
        return text
    problems = json_problems(value)
    if problems:
        raise what(f"{label} is not JSON", problems)
    return _encode(value)


def loads(text: str | bytes | None) -> Any:
    """Parse JSON text stored by a backend (``None`` stays ``None``): read by the C scanner
    alone when it takes the whole text (a compact value, as dqflow writes one), else by
    ``json.loads`` (whitespace around the value; its error)."""
    if text is None:
        return None
    if isinstance(text, str):
        try:
            value, end = _scan(text, 0)
        except StopIteration:
            return json.loads(text)
        if end == len(text):
            return value
    return json.loads(text)
