"""A workflow's graph for people: a compact text tree, Mermaid, and a JSON shape.

The text tree lists the steps in topological order, one line each: the step,
its job, ``for each`` / ``if`` when it has them, and ``← needs``::

    album_pipeline
    ├─ fetch     fetch_album
    ├─ resize    resize_image  for each ${steps.fetch.output.images}  ← fetch
    └─ publish   publish_album  if ${input.publish}  ← resize, fetch
"""

from __future__ import annotations

from typing import Any

from dqflow.workflows.model import Workflow, WorkflowStep
from dqflow.workflows.references import Constant, RefTemplate, Template

__all__ = ["graph_json", "mermaid", "text_tree"]


def _condition(template: Template | None) -> str | None:
    if template is None:
        return None
    if isinstance(template, RefTemplate):
        return template.ref.text
    if isinstance(template, Constant):
        return "true" if template.value is True else "false"
    return None  # the loader allows only a reference or a boolean


def _details(step: WorkflowStep) -> list[str]:
    parts = [step.job]
    if step.for_each is not None:
        parts.append(f"for each {step.for_each.text}")
    condition = _condition(step.condition)
    if condition is not None:
        parts.append(f"if {condition}")
    if step.needs:
        parts.append(f"← {', '.join(step.needs)}")
    return parts


def text_tree(workflow: Workflow) -> str:
    """The workflow as a few lines of text (see the module docstring)."""
    width = max(len(name) for name in workflow.steps)
    lines = [workflow.name]
    names = list(workflow.steps)
    for index, name in enumerate(names):
        branch = "└─" if index == len(names) - 1 and workflow.returns is None else "├─"
        lines.append(f"{branch} {name.ljust(width)}  {'  '.join(_details(workflow.steps[name]))}")
    if workflow.returns is not None:
        lines.append(f"└─ {'returns'.ljust(width)}  ← {', '.join(_sinks(workflow))}")
    return "\n".join(lines)


def _sinks(workflow: Workflow) -> list[str]:
    """Steps no other step needs (where a run ends)."""
    return [name for name in workflow.steps if not workflow.dependents.get(name)]


def _label(text: str) -> str:
    """Mermaid label text: quotes and angle brackets as entities, so any name is safe."""
    return text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def mermaid(workflow: Workflow) -> str:
    """``flowchart TD`` Mermaid: the input, every step (fan-out steps as subroutines), the output."""
    lines = ["flowchart TD", '    input(["input"])']
    for name, step in workflow.steps.items():
        label = [name, step.job]
        if step.for_each is not None:
            label.append(f"for each {step.for_each.text}")
        condition = _condition(step.condition)
        if condition is not None:
            label.append(f"if {condition}")
        opening, closing = ("[[", "]]") if step.for_each is not None else ("[", "]")
        lines.append(f'    step_{name}{opening}"{"<br/>".join(map(_label, label))}"{closing}')
    if workflow.returns is not None:
        lines.append('    output(["output"])')
    for name, step in workflow.steps.items():
        for need in step.needs or ("input",):
            source = "input" if need == "input" else f"step_{need}"
            lines.append(f"    {source} --> step_{name}")
    if workflow.returns is not None:
        lines.extend(f"    step_{name} --> output" for name in _sinks(workflow))
    return "\n".join(lines) + "\n"


def graph_json(workflow: Workflow) -> dict[str, Any]:
    """The graph as plain data (``dqflow check --json``, ``dqflow graph --json``)."""
    return {
        "name": workflow.name,
        "description": workflow.description,
        "steps": [
            {
                "name": name,
                "job": step.job,
                "needs": list(step.needs),
                "for_each": None if step.for_each is None else step.for_each.text,
                "if": _condition(step.condition),
                "may_skip": step.may_skip,
            }
            for name, step in workflow.steps.items()
        ],
        "has_returns": workflow.returns is not None,
        "warnings": [{"file": w.file, "line": w.line, "key": w.key, "message": w.message} for w in workflow.warnings],
    }
