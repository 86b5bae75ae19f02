"""Event names are a ``Literal``: a misspelt one fails mypy --strict (and raises at run time)."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest
from typecheck import errors_outside, mypy

from dqflow.queue.events import EVENT_NAMES, EventEmitter, EventName

USER_MODULE = """
from typing import Any

from dqflow import Queue


def listen(queue: Queue) -> None:
    def show(data: dict[str, Any]) -> None:
        print(data)

    queue.on("job:completed", show)
    queue.once("workflow:failed", show)
    queue.off("job:waiting")
    queue.on({event!r}, show)
"""


def test_event_names_are_a_literal() -> None:
    assert set(get_args(EventName)) == EVENT_NAMES
    assert {
        "job:waiting",
        "workflow:started",
        "workflow:completed",
        "workflow:failed",
        "workflow:cancelled",
    } <= EVENT_NAMES
    with pytest.raises(ValueError, match="unknown event 'job:complete'"):
        EventEmitter().on("job:complete", print)  # type: ignore[arg-type]


def test_a_misspelt_event_fails_type_checking(tmp_path: Path) -> None:
    (tmp_path / "good.py").write_text(USER_MODULE.format(event="job:output"))
    (tmp_path / "bad.py").write_text(USER_MODULE.format(event="job:complete"))
    checked = mypy(tmp_path, "good.py", "bad.py")  # one run: every error must be in bad.py
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert errors_outside(checked.stdout, "bad.py") == [], checked.stdout
    assert 'bad.py:14: error: Argument 1 to "on" of "Queue" has incompatible type' in checked.stdout, checked.stdout
