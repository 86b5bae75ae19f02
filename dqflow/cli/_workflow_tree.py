"""Rich renderables for workflow runs: a run as a tree of its steps, and the runs table.

Every value that comes from a run (names, tags, outputs, errors) is a ``Text``,
never markup: an output ``"[bold]"`` prints as written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from dqflow.cli._output import when
from dqflow.cli._tables import progress_text
from dqflow.record import JobRecord
from dqflow.workflow_record import WorkflowRun, WorkflowStepRecord

RUN_STYLE = {"running": "cyan", "completed": "green", "failed": "red", "cancelled": "dim"}
STEP_STYLE = {
    "waiting": "magenta",
    "running": "cyan",
    "completed": "green",
    "failed": "red",
    "skipped": "dim",
    "cancelled": "dim",
}
MAX_VALUE_CHARS = 300
"""Outputs longer than this are cut (``--json`` prints them whole)."""
MAX_IDS_SHOWN = 8


def _status(value: StrEnum, styles: Mapping[str, str]) -> Text:
    return Text(value.value, style=styles.get(value.value, ""))


def _value(value: Any) -> Text:
    """A JSON value on one line, cut at ``MAX_VALUE_CHARS``."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    if len(text) > MAX_VALUE_CHARS:
        text = text[: MAX_VALUE_CHARS - 1] + "…"
    return Text(text, style="dim" if value is None else "")


def _ids(job_ids: Sequence[int]) -> str:
    if not job_ids:
        return "no jobs yet"
    shown = ", ".join(str(i) for i in job_ids[:MAX_IDS_SHOWN])
    more = f", … ({len(job_ids)} jobs)" if len(job_ids) > MAX_IDS_SHOWN else ""
    return f"job{'s' if len(job_ids) > 1 else ''} {shown}{more}"


def _step_node(step: WorkflowStepRecord, jobs: Mapping[int, JobRecord]) -> Text:
    line = Text.assemble((step.name, "bold"), "  ", _status(step.status, STEP_STYLE), "  ", _ids(step.job_ids))
    records = [jobs[i] for i in step.job_ids if i in jobs]
    if len(step.job_ids) == 1 and records and records[0].progress is not None:
        line.append("  ")
        line.append_text(progress_text(records[0].progress))
    elif len(step.job_ids) > 1:
        done = sum(1 for r in records if r.status.value == "completed")
        line.append("  ")
        line.append_text(progress_text(round(done / len(step.job_ids) * 100)))
        line.append(f" ({done}/{len(step.job_ids)} done)")
    if step.skipped_reason:
        line.append(f"  ({step.skipped_reason})", style="dim")
    return line


def run_tree(run: WorkflowRun, jobs: Mapping[int, JobRecord]) -> RenderableType:
    """The run: a header line, its input, one node per step (status, jobs, progress, output), its output."""
    header = Text.assemble(
        (f"run {run.id}", "bold"),
        "  ",
        Text(run.name),
        "  ",
        _status(run.status, RUN_STYLE),
        f"  created {when(run.created_at)}",
    )
    if run.completed_at is not None:
        header.append(f", finished {when(run.completed_at)}")
    tree = Tree(header)
    tree.add(Text.assemble(("input ", "bold"), _value(run.input)))
    for step in run.steps:
        node = tree.add(_step_node(step, jobs))
        if step.outputs is not None:  # a fan-out step: its outputs in element order
            node.add(Text.assemble("outputs ", _value(step.outputs)))
        elif step.output is not None:
            node.add(Text.assemble("output ", _value(step.output)))
        if step.error:
            node.add(Text.assemble(("error ", "red"), Text(step.error)))
    if run.output is not None:
        tree.add(Text.assemble(("output ", "bold"), _value(run.output)))
    if run.failure_reason or run.error:
        tree.add(
            Text.assemble(
                (f"{run.status.value}: ", "red"), Text(" ".join(filter(None, [run.failure_reason, run.error])))
            )
        )
    return tree


def runs_table(runs: Sequence[WorkflowRun]) -> Table:
    """One row per run, newest first."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("run", justify="right", no_wrap=True)
    table.add_column("workflow", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("steps", no_wrap=True)
    table.add_column("tags", overflow="fold")
    table.add_column("created", no_wrap=True)
    table.add_column("finished", no_wrap=True)
    for run in runs:
        done = sum(1 for s in run.steps if s.is_over)
        table.add_row(
            str(run.id),
            Text(run.name),
            _status(run.status, RUN_STYLE),
            f"{done}/{len(run.steps)}",
            Text(", ".join(run.tags or ())),
            when(run.created_at),
            when(run.completed_at),
        )
    return table
