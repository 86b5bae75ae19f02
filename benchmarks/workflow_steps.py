"""The handlers and declaration ``benchmarks/workflows.py`` runs dqflow with (the same work as Celery's tasks)."""

from __future__ import annotations

from typing import Any

JOBS_YAML = """
defaults: {max_attempts: 3, timeout: 60s}
worker: {poll_interval: 50ms}
jobs:
  step:
    handler: workflow_steps:step
    payload: {type: object, required: [n], properties: {n: {type: integer}}}
    output: {type: object, required: [n], properties: {n: {type: integer}}}
  collect:
    handler: workflow_steps:collect
    payload: {type: object, required: [ns], properties: {ns: {type: array, items: {type: integer}}}}
    output: {type: object, required: [count], properties: {count: {type: integer}}}
workflows:
  linear3:
    input: {type: object, required: [n], properties: {n: {type: integer}}}
    steps:
      a: {job: step, payload: {n: "${input.n}"}}
      b: {job: step, needs: [a], payload: {n: "${steps.a.output.n}"}}
      c: {job: step, needs: [b], payload: {n: "${steps.b.output.n}"}}
    returns: {n: "${steps.c.output.n}"}
  fan100:
    input:
      type: object
      required: [items]
      properties: {items: {type: array, items: {type: integer}}}
    steps:
      each: {job: step, for_each: "${input.items}", payload: {n: "${item}"}}
      join: {job: collect, needs: [each], payload: {ns: "${steps.each.outputs[*].n}"}}
    returns: {count: "${steps.join.output.count}"}
"""


def step(payload: dict[str, Any]) -> dict[str, Any]:
    """``{"n": n}`` → ``{"n": n}`` (Celery's ``bench.step`` does the same)."""
    return {"n": payload["n"]}


def collect(payload: dict[str, Any]) -> dict[str, Any]:
    """The fan-in: how many outputs arrived."""
    return {"count": len(payload["ns"])}
