"""Workflows declared in ``jobs.yaml``: steps wired output → payload, checked before anything runs.

* :mod:`~dqflow.workflows.model` — the raw ``workflows:`` shape and the compiled :class:`Workflow`;
* :mod:`~dqflow.workflows.references` — the ``${...}`` reference language;
* :mod:`~dqflow.workflows.compile` — ``workflows:`` → graphs, reference rules, then the type check;
* :mod:`~dqflow.workflows.checker`, :mod:`~dqflow.workflows.producers`,
  :mod:`~dqflow.workflows.compat`, :mod:`~dqflow.workflows.schema_view` — the static type check;
* :mod:`~dqflow.workflows.resolver` — the pure functions the runtime calls (ready steps, payloads, returns);
* :mod:`~dqflow.workflows.runtime` — moving runs (start, a step job's end, cancel, retry) for storage;
* :mod:`~dqflow.workflows.graph` — the graph as a text tree and as Mermaid.
"""

from dqflow.workflows.model import CheckWarning, Workflow, WorkflowStep
from dqflow.workflows.resolver import SKIPPED, ResolutionError, StepPlan, plan_step, ready_steps, resolve_returns

__all__ = [
    "SKIPPED",
    "CheckWarning",
    "ResolutionError",
    "StepPlan",
    "Workflow",
    "WorkflowStep",
    "plan_step",
    "ready_steps",
    "resolve_returns",
]
