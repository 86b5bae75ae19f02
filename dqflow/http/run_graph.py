"""A workflow run laid out as a graph for the dashboard's SVG: steps in columns by depth, edges from needs.

Pure data, no drawing: the ``_run_graph.html`` template turns it into SVG.
A step's column is one more than the deepest step it needs; steps of one
column are stacked in declaration order. Layout follows the declared
workflow's ``needs``; a run whose workflow is no longer declared is drawn as
a chain in step order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dqflow.workflow_record import WorkflowStepRecord

NODE_WIDTH = 180
NODE_HEIGHT = 66
GAP_X = 56
GAP_Y = 22
MARGIN = 12


@dataclass(frozen=True, slots=True)
class Node:
    """One step's box: where it is, what it shows, where it links."""

    name: str
    job: str
    status: str
    job_ids: tuple[int, ...]
    done: int
    x: int
    y: int

    @property
    def label(self) -> str:
        """``3/10 jobs`` for a fan-out, ``job 42`` for one job, ``no jobs yet`` before it starts."""
        if not self.job_ids:
            return "no jobs yet"
        if len(self.job_ids) == 1:
            return f"job {self.job_ids[0]}"
        return f"{self.done}/{len(self.job_ids)} jobs done"


@dataclass(frozen=True, slots=True)
class Edge:
    """A ``needs`` link, as an SVG cubic path from the needed step to the step."""

    source: str
    target: str
    path: str


@dataclass(frozen=True, slots=True)
class RunGraph:
    width: int
    height: int
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]


def layout(
    steps: Sequence[WorkflowStepRecord],
    needs: Mapping[str, Sequence[str]] | None,
    jobs: Mapping[str, str],
    done: Mapping[str, int],
) -> RunGraph:
    """Place ``steps`` (a run's step records, needed steps first) by ``needs`` (step → the steps
    it needs; None: a chain in step order).

    ``jobs`` names each step's job type; ``done`` counts each step's completed jobs.
    """
    names = [step.name for step in steps]
    known = set(names)
    upstream = {
        name: [n for n in (needs.get(name, ()) if needs is not None else names[i - 1 : i]) if n in known]
        for i, name in enumerate(names)
    }
    depth: dict[str, int] = {}
    for name in names:
        depth[name] = 1 + max((depth.get(n, 0) for n in upstream[name]), default=-1)
    rows: dict[int, int] = {}
    nodes: list[Node] = []
    for step in steps:
        column = depth[step.name]
        row = rows.get(column, 0)
        rows[column] = row + 1
        nodes.append(
            Node(
                name=step.name,
                job=jobs.get(step.name, ""),
                status=step.status.value,
                job_ids=tuple(step.job_ids or ()),
                done=done.get(step.name, 0),
                x=MARGIN + column * (NODE_WIDTH + GAP_X),
                y=MARGIN + row * (NODE_HEIGHT + GAP_Y),
            )
        )
    placed = {node.name: node for node in nodes}
    edges: list[Edge] = []
    for name in names:
        edges.extend(Edge(need, name, _curve(placed[need], placed[name])) for need in upstream[name])
    columns = max(depth.values(), default=0) + 1
    tallest = max(rows.values(), default=1)
    return RunGraph(
        width=2 * MARGIN + columns * NODE_WIDTH + (columns - 1) * GAP_X,
        height=2 * MARGIN + tallest * NODE_HEIGHT + (tallest - 1) * GAP_Y,
        nodes=tuple(nodes),
        edges=tuple(edges),
    )


def _curve(source: Node, target: Node) -> str:
    x1, y1 = source.x + NODE_WIDTH, source.y + NODE_HEIGHT // 2
    x2, y2 = target.x, target.y + NODE_HEIGHT // 2
    bend = (x2 - x1) // 2
    return f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}"
