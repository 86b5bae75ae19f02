"""What a failed attempt says: its error message and traceback, each bounded.

A handler may raise with a message of megabytes. Every attempt's message and
traceback end up in the error history, in events and in the log, so each is cut
to a fixed size here (with a note of how much was cut) before it goes anywhere.
"""

from __future__ import annotations

import traceback

ERROR_LIMIT = 8_192  # characters of an attempt's error message kept
TRACEBACK_LIMIT = 16_384  # characters of an attempt's traceback kept
_LINE_LIMIT = 2_048  # characters of one traceback line kept (the exception's message line, mostly)


def cut(text: str, limit: int) -> str:
    """``text`` itself, or its start and a note of how many characters were cut, within ``limit``."""
    if len(text) <= limit:
        return text
    keep = max(0, limit - 48)  # room for the note
    return text[:keep] + f" [... {len(text) - keep:,} more characters cut]"


def _cut_middle(text: str, limit: int) -> str:
    """Keep the start and the end (a traceback's innermost frames and its exception) within ``limit``."""
    if len(text) <= limit:
        return text
    head = limit // 4
    note = f"\n[... {len(text) - limit:,} characters cut ...]\n"
    tail = max(0, limit - head - len(note))
    return text[:head] + note + text[len(text) - tail :]


def error_message(exc: BaseException) -> str:
    """``ExceptionType: message``, as Python prints it, bounded."""
    try:
        text = str(exc)
    except Exception:  # an exception whose __str__ fails still fails the attempt, with its type
        text = "<message could not be printed>"
    name = type(exc).__qualname__
    if type(exc).__module__ not in ("builtins", "__main__"):
        name = f"{type(exc).__module__}.{name}"
    return cut(f"{name}: {text}" if text else name, ERROR_LIMIT)


def traceback_text(exc: BaseException) -> str:
    """The exception's traceback (chained causes included), each line and the whole bounded."""
    lines: list[str] = []
    for chunk in traceback.TracebackException.from_exception(exc, capture_locals=False).format():
        for line in chunk.splitlines(keepends=True):
            lines.append(cut(line, _LINE_LIMIT) + ("\n" if len(line) > _LINE_LIMIT else ""))
    return _cut_middle("".join(lines), TRACEBACK_LIMIT).rstrip("\n")
