"""The static type check of a workflow's wiring, against the JSON Schemas of its jobs.

For each step, in topological order: ``for_each`` must give an array, ``if``
a boolean, and the ``payload`` mapping must build a value the job's payload
schema accepts; ``returns`` must build what the workflow's ``output`` schema
accepts. Every reference is typed by walking the producing schema
(:mod:`~dqflow.workflows.producers`), every link compared with
:func:`~dqflow.workflows.compat.fits`. The graph itself (unknown steps,
cycles, references to steps that are not upstream) was checked before.

Errors and warnings go to ``report(level, message, loc)``; each message names
the step and both sides: ``step 'resize': step 'fetch' (fetch_album) output
$.images[*].width (integer|null) cannot fill resize_image payload $.width
(integer): null is not allowed``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dqflow.declaration.model import JobTypeSpec
from dqflow.declaration.schemas import SchemaValidator
from dqflow.workflows.compat import Finding, Level, fits, fits_value, join
from dqflow.workflows.model import WorkflowStep
from dqflow.workflows.producers import PathError, Produced, elements_of, walk
from dqflow.workflows.references import (
    Constant,
    Interpolation,
    ListTemplate,
    MapTemplate,
    Ref,
    RefTemplate,
    Template,
    format_path,
)
from dqflow.workflows.schema_view import Choice, Node, Opaque, Shape, describe, view

__all__ = ["Loc", "Report", "check_workflow"]

Loc = tuple[str | int, ...]
Report = Callable[[Level, str, Loc], None]

_RUN_TIME = "checked when the step runs"


class _NoSuchPath(Exception):
    """A reference whose path the producing schema rules out (the message names the producer)."""


@dataclass(frozen=True, slots=True)
class _Source:
    """A typed reference: what it reads (``label`` + ``produced.path``)."""

    label: str
    produced: Produced

    def text(self) -> str:
        """``step 'fetch' (fetch_album) output $.title (string|null)``."""
        shown = "unknown" if self.produced.node is None else describe(view(self.produced.node))
        return f"{self.label} {self.produced.path} ({shown})"


def _node(schema: SchemaValidator | None) -> Node | None:
    return None if schema is None else Node.of_validator(schema)


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


class _StepCheck:
    """Checks one step (or ``returns`` when ``step`` is None)."""

    def __init__(self, wiring: _Wiring, step: WorkflowStep | None, who: str) -> None:
        self.wiring = wiring
        self.step = step
        self.who = who
        self.item: _Source | None = None
        self.sources: dict[tuple[str, Loc], _Source | None] = {}

    # -- reporting

    def error(self, message: str, loc: Loc) -> None:
        self.wiring.report("error", f"{self.who}: {message}", loc)

    def warning(self, message: str, loc: Loc) -> None:
        self.wiring.report("warning", f"{self.who}: {message}; {_RUN_TIME}", loc)

    def findings(self, found: list[Finding], producer: Callable[[Finding], str], consumer: str, loc: Loc) -> None:
        """Report ``fits`` findings; ``producer`` says what gave the value at a finding."""
        for finding in found:
            where_c = f"{consumer} {finding.consumer_path} ({finding.consumer_type})"
            what = producer(finding)
            if finding.level == "error":
                self.error(f"{what} cannot fill {where_c}: {finding.reason}", loc)
            else:
                self.warning(f"cannot prove {what} fits {where_c}: {finding.reason}", loc)

    # -- typing references

    def source(self, ref: Ref, loc: Loc) -> _Source | None:
        """The typed reference, or None after reporting (once) a path that cannot exist."""
        key = (ref.text, loc)
        if key not in self.sources:
            try:
                self.sources[key] = self._source(ref)
            except _NoSuchPath as exc:
                self.error(f"{ref}: {exc}", loc)
                self.sources[key] = None
        return self.sources[key]

    def _source(self, ref: Ref) -> _Source:
        wiring = self.wiring
        if ref.kind == "input":
            label, node, start = "workflow input", wiring.input, "$"
        elif ref.kind == "item":
            assert self.item is not None  # only for_each steps may say ${item}: checked with the graph
            label, node, start = self.item.label, self.item.produced.node, self.item.produced.path
        else:
            assert ref.step is not None
            job = wiring.steps[ref.step].job
            output = wiring.job_types[job].output_schema
            label = f"step {ref.step!r} ({job}) {ref.kind}"
            if output is None:
                unknown = f"job {job} declares no output schema"
                return _Source(label, Produced(None, format_path(ref.path), unknown=unknown))
            if ref.kind == "output":
                node, start = _node(output), "$"
            else:
                node, start = Node.of_validator(output).sub({"type": "array", "items": output.schema}), "$"
        try:
            return _Source(label, walk(node, ref.path, start))
        except PathError as exc:
            raise _NoSuchPath(f"{label} {exc}") from None

    # -- for_each and if

    def for_each(self, ref: Ref, loc: Loc) -> None:
        source = self.source(ref, loc)
        if source is None or not self.present(source, "for_each needs a value", loc):
            return
        if self.typed(source, Node.of({"type": "array"}), "for_each needs an array", loc):
            self.item = _Source(source.label, elements_of(source.produced))

    def condition(self, template: Template, loc: Loc) -> None:
        if isinstance(template, Constant):
            return  # a literal true/false: shape checked with the graph
        assert isinstance(template, RefTemplate)
        source = self.source(template.ref, loc)
        if source is None or not self.present(source, "if needs a value", loc):
            return
        self.typed(source, Node.of({"type": "boolean"}), "if needs a boolean", loc)

    def present(self, source: _Source, need: str, loc: Loc) -> bool:
        if source.produced.may_be_absent:
            self.error(f"{need}, but {source.text()} may be absent", loc)
            return False
        return True

    def typed(self, source: _Source, consumer: Node, need: str, loc: Loc) -> bool:
        """Check ``source`` against a simple ``consumer`` (array, boolean); False after an error."""
        if source.produced.node is None:
            unknown = source.produced.unknown
            self.warning(f"{need}, but cannot tell what {source.label} {source.produced.path} is: {unknown}", loc)
            return True
        found = fits(source.produced.node, consumer, source.produced.path, "$")
        for finding in found:
            if finding.level == "error":
                self.error(f"{need}, but {source.label} {finding.producer_path} is {finding.producer_type}", loc)
            else:
                text = f"{source.label} {finding.producer_path} ({finding.producer_type})"
                self.warning(f"{need}, but cannot prove {text} is one: {finding.reason}", loc)
        return not any(finding.level == "error" for finding in found)

    # -- values against the consumer schema

    def value(self, template: Template, consumer: Node | None, label: str, cp: str, loc: Loc) -> None:
        """Check ``template`` where ``consumer`` (None: anything) is expected, at data path ``cp``."""
        if isinstance(template, Constant) and isinstance(template.value, dict):
            template = MapTemplate(tuple((k, Constant(v)) for k, v in template.value.items()))
        elif isinstance(template, Constant) and isinstance(template.value, list):
            template = ListTemplate(tuple(Constant(v) for v in template.value))
        if isinstance(template, Constant):
            shown = f"the value {_short(template.value)}"
            self.findings(fits_value(template.value, consumer, "$", cp), lambda _: shown, label, loc)
        elif isinstance(template, RefTemplate):
            self.reference(template.ref, consumer, label, cp, loc)
        elif isinstance(template, Interpolation):
            self.interpolation(template, consumer, label, cp, loc)
        elif isinstance(template, MapTemplate):
            self.mapping(template, consumer, label, cp, loc)
        else:
            self.listing(template, consumer, label, cp, loc)

    def reference(self, ref: Ref, consumer: Node | None, label: str, cp: str, loc: Loc) -> None:
        source = self.source(ref, loc)
        if source is None:
            return
        if self.step is None and ref.step is not None and self.wiring.steps[ref.step].may_skip:
            self.maybe_skipped(ref, consumer, label, cp, loc)
        produced = source.produced
        if produced.node is None:
            if fits(None, consumer):
                self.warning(f"cannot check {source.label} {produced.path}: {produced.unknown}", loc)
            return
        found = fits(produced.node, consumer, produced.path, cp)
        self.findings(found, lambda f: f"{source.label} {f.producer_path} ({f.producer_type})", label, loc)

    def maybe_skipped(self, ref: Ref, consumer: Node | None, label: str, cp: str, loc: Loc) -> None:
        if not any(f.level == "error" for f in fits(Node.of({"type": "null"}), consumer)):
            return
        type_text = "any" if consumer is None else describe(view(consumer))
        self.error(
            f"step {ref.step!r} may be skipped (an if on it or upstream), then {ref} is null, "
            f"but {label} {cp} ({type_text}) does not allow null",
            loc,
        )

    def interpolation(self, template: Interpolation, consumer: Node | None, label: str, cp: str, loc: Loc) -> None:
        for part in template.parts:
            if isinstance(part, Ref):
                source = self.source(part, loc)
                if source is not None and source.produced.may_be_absent:
                    self.error(f"{part} is interpolated, but {source.text()} may be absent", loc)
        found = fits(Node.of({"type": "string"}), consumer, "$", cp)
        shown = f"the interpolated string {_short(template.text)}"
        self.findings(found, lambda _: shown, label, loc)

    def _object_shape(self, consumer: Node | None, label: str, cp: str, loc: Loc, kind: str) -> Shape | None:
        """The consumer's shape when it can hold a mapping/list (``kind``); None to check refs only."""
        if consumer is None:
            return None
        shown = view(consumer)
        if isinstance(shown, Choice):
            fitting = [v for v in map(view, shown.branches) if isinstance(v, Shape) and kind in v.types]
            if len(fitting) == 1:
                return fitting[0]
            shown = Opaque(f"{describe(shown)} offers {len(fitting)} branches for {kind}s")
        if isinstance(shown, Opaque):
            self.warning(f"cannot read {label} {cp}: {shown.reason}", loc)
            return None
        if shown.anything:
            return None
        if shown.typed and kind not in shown.types:
            what = "a mapping" if kind == "object" else "a list"
            self.error(f"{what} cannot fill {label} {cp} ({describe(shown)})", loc)
            return None
        return shown

    def mapping(self, template: MapTemplate, consumer: Node | None, label: str, cp: str, loc: Loc) -> None:
        shape = self._object_shape(consumer, label, cp, loc, "object")
        written = {key for key, _ in template.items}
        if shape is not None:
            for keyword in shape.applicable_constraints(frozenset({"object"})):
                self.warning(f"{label} {cp} has {keyword}, which the checker does not prove", loc)
            for name in sorted(shape.required - written):
                self.error(f"required {label} {join(cp, name)} is not mapped", loc)
        for key, item in template.items:
            target: Node | bool | None = None
            if shape is not None:
                target = shape.properties.get(key, shape.additional)
                if target is False:
                    self.error(
                        f"{label} {cp} does not allow the key {key!r} (additionalProperties: false)", (*loc, key)
                    )
                    continue
            node = target if isinstance(target, Node) else None
            required = shape is not None and key in shape.required
            self.entry(item, node, label, join(cp, key), (*loc, key), required=required)

    def entry(self, item: Template, consumer: Node | None, label: str, cp: str, loc: Loc, *, required: bool) -> None:
        """A mapping value: a reference there may be absent unless the key is required."""
        if isinstance(item, RefTemplate) and required:
            source = self.source(item.ref, loc)
            if source is not None and source.produced.may_be_absent:
                self.error(f"{source.text()} may be absent, but {label} {cp} is required", loc)
                return
        self.value(item, consumer, label, cp, loc)

    def listing(self, template: ListTemplate, consumer: Node | None, label: str, cp: str, loc: Loc) -> None:
        shape = self._object_shape(consumer, label, cp, loc, "array")
        if shape is not None:
            for keyword in shape.applicable_constraints(frozenset({"array"})):
                self.warning(f"{label} {cp} has {keyword}, which the checker does not prove", loc)
        items = None if shape is None else shape.items
        for index, element in enumerate(template.items):
            where = (*loc, index)
            if isinstance(element, RefTemplate):
                source = self.source(element.ref, where)
                if source is not None and source.produced.may_be_absent:
                    self.error(f"{source.text()} may be absent, but a list element needs a value", where)
                    continue
            self.value(element, items, label, f"{cp}[{index}]", where)

    def top(self, template: Template, consumer: Node | None, label: str, loc: Loc) -> None:
        """The whole payload or ``returns``: a single reference there must have a value."""
        if isinstance(template, RefTemplate):
            source = self.source(template.ref, loc)
            if source is not None and source.produced.may_be_absent:
                self.error(f"{source.text()} may be absent, but {label} needs a value", loc)
                return
        self.value(template, consumer, label, "$", loc)


@dataclass
class _Wiring:
    """What every step check reads: the declared schemas and the steps."""

    input: Node | None
    steps: Mapping[str, WorkflowStep]
    job_types: Mapping[str, JobTypeSpec]
    report: Report


def check_workflow(
    steps: Mapping[str, WorkflowStep],
    returns: Template | None,
    *,
    input_schema: SchemaValidator | None,
    output_schema: SchemaValidator | None,
    job_types: Mapping[str, JobTypeSpec],
    base: Loc,
    report: Report,
) -> None:
    """Type-check every step of a workflow whose graph is sound; findings go to ``report``."""
    wiring = _Wiring(_node(input_schema), steps, job_types, report)
    for name, step in steps.items():
        loc: Loc = (*base, "steps", name)
        check = _StepCheck(wiring, step, f"step {name!r}")
        if step.for_each is not None:
            check.for_each(step.for_each, (*loc, "for_each"))
            if check.item is None:
                continue  # its payload cannot be typed without the item
        if step.condition is not None:
            check.condition(step.condition, (*loc, "if"))
        spec = job_types[step.job]
        check.top(step.payload, _node(spec.payload_schema), f"{step.job} payload", (*loc, "payload"))
    if returns is not None:
        check = _StepCheck(wiring, None, "returns")
        check.top(returns, _node(output_schema), "workflow output", (*base, "returns"))
