"""What the CLI prints: job data as text (never rich markup), tables that fit 80 columns."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cli_support import Result

MARKUP_TAGS = ["[/]", "[bold red]x[/bold red]", "[link=http://x]y"]
MARKUP_ERROR = "cannot open [/var/data/in.csv] or [bold]this[/bold]"


def test_markup_in_job_data_prints_literally(project: Path, dq: Callable[..., Result]) -> None:
    tags = [arg for tag in MARKUP_TAGS for arg in ("-t", tag)]
    job_id = dq("add", "boom", "-p", f'{{"why": "{MARKUP_ERROR}", "note": "[red]n[/]"}}', *tags).out.strip()
    assert dq("run", "--drain").code == 0
    for args in (["show", job_id], ["show", job_id, "--events"], ["events", job_id], ["list"]):
        result = dq(*args)
        assert result.code == 0, (args, result.err)
        flat = " ".join(result.out.split())  # tables may wrap long cells
        if args[0] != "events":
            for tag in MARKUP_TAGS:
                assert tag in flat, (args, tag, result.out)
        if args[0] != "list":
            assert MARKUP_ERROR in flat.replace("\\", ""), (args, result.out)
    assert "[red]n[/]" in dq("show", job_id).out
