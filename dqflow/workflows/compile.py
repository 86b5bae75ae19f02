"""``workflows:`` as written → checked :class:`~dqflow.workflows.model.Workflow` s.

In order, for each workflow: the strict shape (unknown keys refused), the
``input``/``output`` schemas, the graph (unknown jobs and steps, cycles,
topological order, upstream sets), every mapping parsed into templates with
the reference rules (only upstream steps, ``item`` only in ``for_each`` steps,
``output`` of a plain step and ``outputs`` of a fan-out one), and, when all of
that holds, the type check of every link (:mod:`~dqflow.workflows.checker`).

The type check needs every schema it reads checked against its metaschema. When
the loader defers schema checks (``check_schemas=False``), it defers the type
check as well: each workflow then comes with a :class:`TypeCheck` that
:meth:`~dqflow.declaration.loader.Declaration.check_workflows` runs on first use,
reporting the same problems at the same places.

The loader hands in two callbacks, so this module knows nothing of YAML:
``problem(message, loc)`` makes a ConfigError located at ``loc`` (file, line,
key) and ``load_schema(source, which, loc)`` loads a schema file or inline
schema exactly like a job's (reporting its own problems).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from dqflow.declaration.model import JobTypeSpec
from dqflow.declaration.schemas import SchemaValidator
from dqflow.declaration.yaml_source import Loc
from dqflow.errors import ConfigError, DeclarationError
from dqflow.workflows.model import WORKFLOW_NAME, CheckWarning, RawStep, RawWorkflow, Workflow, WorkflowStep
from dqflow.workflows.references import (
    Constant,
    Ref,
    ReferenceSyntaxError,
    RefTemplate,
    Template,
    parse_template,
    references,
)

if TYPE_CHECKING:
    from dqflow.workflows.compat import Level

__all__ = ["LoadSchema", "Problem", "TypeCheck", "compile_workflows"]

Problem = Callable[[str, Loc], ConfigError]
LoadSchema = Callable[[Any, str, Loc], SchemaValidator | None]


class _Collector:
    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.errors: list[ConfigError] = []
        self.warnings: list[CheckWarning] = []

    def error(self, message: str, loc: Loc) -> None:
        self.errors.append(self.problem(message, loc))

    def report(self, level: Level, message: str, loc: Loc) -> None:
        if level == "error":
            self.error(message, loc)
        else:
            located = self.problem(message, loc)
            self.warnings.append(CheckWarning(message, located.file, located.line, located.key))


@dataclass(frozen=True, slots=True)
class TypeCheck:
    """The type check of one workflow's links: at load, or on first use when loading deferred it."""

    workflow: Workflow
    job_types: Mapping[str, JobTypeSpec]
    base: Loc
    problem: Problem

    def run(self) -> tuple[list[ConfigError], tuple[CheckWarning, ...]]:
        """The errors and warnings of every link (errors only, when a schema it reads is not valid)."""
        # Imported here: the checker is loaded by what type-checks, not by every command that loads jobs.yaml.
        from dqflow.workflows.checker import check_workflow

        out = _Collector(self.problem)
        workflow = self.workflow
        schemas = [workflow.input_schema, workflow.output_schema]
        for step in workflow.steps.values():
            spec = self.job_types[step.job]
            schemas += [spec.payload_schema, spec.output_schema]
        for schema in dict.fromkeys(s for s in schemas if s is not None):
            try:
                schema.check()  # free when loading checked it; else the error a check at load gives
            except DeclarationError as exc:
                out.errors.extend(exc.problems)
            except ConfigError as exc:
                out.errors.append(exc)
        if out.errors:
            return out.errors, ()
        check_workflow(
            workflow.steps,
            workflow.returns,
            input_schema=workflow.input_schema,
            output_schema=workflow.output_schema,
            job_types=self.job_types,
            base=self.base,
            report=out.report,
        )
        return out.errors, tuple(out.warnings)


def compile_workflows(
    data: Any,
    job_types: Mapping[str, JobTypeSpec],
    *,
    problem: Problem,
    load_schema: LoadSchema,
    deferred: dict[str, TypeCheck] | None = None,
) -> tuple[dict[str, Workflow], list[ConfigError]]:
    """Compile the ``workflows:`` section; the problems found (empty when all is well).

    With ``deferred`` (a dict to fill), each workflow's type check is not run but put
    there by name, and the workflows come without their warnings until it runs.
    """
    out = _Collector(problem)
    if data is None:
        return {}, []
    if not isinstance(data, dict):
        out.error("expected a mapping of workflow names to workflows", ("workflows",))
        return {}, out.errors
    compiled: dict[str, Workflow] = {}
    for name, body in data.items():
        base: Loc = ("workflows", str(name))
        if not isinstance(name, str) or not WORKFLOW_NAME.match(name):
            out.error(f"invalid workflow name {name!r}: start with a letter or _, then letters, digits, _ . : -", base)
            continue
        try:
            raw = RawWorkflow.model_validate(body)
        except ValidationError as exc:
            for error in exc.errors():
                loc = tuple(part for part in error["loc"] if part != "[key]")
                out.error(_describe(error, loc), (*base, *loc))
            continue
        workflow = _compile_one(name, raw, base, job_types, load_schema, out)
        if workflow is None:
            continue
        type_check = TypeCheck(workflow, job_types, base, problem)
        if deferred is not None:
            deferred[name] = type_check
            compiled[name] = workflow
            continue
        errors, warnings = type_check.run()
        out.errors += errors
        if not errors:
            compiled[name] = replace(workflow, warnings=warnings)
    return compiled, out.errors


_ALLOWED = {
    1: [field.alias or name for name, field in RawWorkflow.model_fields.items()],
    3: [field.alias or name for name, field in RawStep.model_fields.items()],
}


_EXPECTED = {
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
    "string_type": "a string",
}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    names = {
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        list: "a list",
        dict: "a mapping",
    }
    return names.get(type(value), type(value).__name__)


def _describe(error: ErrorDetails, loc: tuple[Any, ...]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        name = str(loc[-1])
        allowed = _ALLOWED.get(len(loc), [])
        close = difflib.get_close_matches(name, allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown key {name!r}{hint} (allowed: {', '.join(allowed)})"
    if kind == "missing":
        return f"missing required key {loc[-1]!r}"
    if kind == "too_short":
        return "must not be empty"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {_kind(error.get('input'))}"
    message = error["msg"]
    if message.startswith("Value error, "):
        return message[len("Value error, ") :]
    return f"{message[:1].lower()}{message[1:]} (got {error.get('input')!r})"


# --------------------------------------------------------------------------- one workflow


def _compile_one(
    name: str,
    raw: RawWorkflow,
    base: Loc,
    job_types: Mapping[str, JobTypeSpec],
    load_schema: LoadSchema,
    out: _Collector,
) -> Workflow | None:
    errors_before = len(out.errors)
    input_schema = load_schema(raw.input, "input", (*base, "input"))
    output_schema = None if raw.output is None else load_schema(raw.output, "output", (*base, "output"))
    schemas_ok = input_schema is not None and (raw.output is None or output_schema is not None)

    _check_jobs(raw.steps, job_types, base, out)
    if not _check_needs(raw.steps, base, out):
        return None  # no graph to walk
    order = _order(raw.steps, base, out)
    if order is None:
        return None

    upstream: dict[str, frozenset[str]] = {}
    may_skip: dict[str, bool] = {}
    for step_name in order:
        needs = raw.steps[step_name].needs
        upstream[step_name] = frozenset(need for direct in needs for need in (direct, *upstream[direct]))
        may_skip[step_name] = raw.steps[step_name].if_ is not None or any(may_skip[need] for need in needs)
    steps: dict[str, WorkflowStep] = {}
    for step_name in order:
        graph = _Graph(raw.steps, upstream[step_name], may_skip[step_name])
        compiled_step = _step(step_name, raw.steps[step_name], graph, (*base, "steps", step_name), out)
        if compiled_step is not None:
            steps[step_name] = compiled_step
    returns = None
    if raw.returns is not None:
        returns = _template(raw.returns, (*base, "returns"), out)
        if returns is not None:
            _check_refs(returns, None, raw.steps, (*base, "returns"), out)
    elif raw.output is not None:
        out.error("the workflow declares an output schema but no returns", (*base, "output"))
    if len(out.errors) > errors_before or not schemas_ok:
        return None
    assert input_schema is not None
    dependents = {step: tuple(other for other in steps if step in steps[other].needs) for step in steps}
    return Workflow(
        name=name,
        input_schema=input_schema,
        steps=steps,
        output_schema=output_schema,
        returns=returns,
        description=raw.description,
        dependents=dependents,
    )


def _check_jobs(steps: Mapping[str, RawStep], job_types: Mapping[str, JobTypeSpec], base: Loc, out: _Collector) -> None:
    for name, step in steps.items():
        if step.job not in job_types:
            close = difflib.get_close_matches(step.job, list(job_types), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            known = ", ".join(sorted(job_types))
            out.error(f"unknown job {step.job!r}{hint} (declared: {known})", (*base, "steps", name, "job"))


def _check_needs(steps: Mapping[str, RawStep], base: Loc, out: _Collector) -> bool:
    """Every ``needs`` names another step, once; False after reporting one that does not."""
    sound = True
    for name, step in steps.items():
        seen: set[str] = set()
        for index, need in enumerate(step.needs):
            loc = (*base, "steps", name, "needs", index)
            if need not in steps:
                out.error(f"needs unknown step {need!r} (steps: {', '.join(steps)})", loc)
            elif need == name:
                out.error(f"step {name!r} needs itself", loc)
            elif need in seen:
                out.error(f"step {need!r} is listed twice", loc)
            else:
                seen.add(need)
                continue
            sound = False
    return sound


def _order(steps: Mapping[str, RawStep], base: Loc, out: _Collector) -> list[str] | None:
    """Topological order (declaration order among equals); None after reporting a cycle."""
    order: list[str] = []
    placed: set[str] = set()
    while len(order) < len(steps):
        ready = [name for name, step in steps.items() if name not in placed and set(step.needs) <= placed]
        if not ready:
            cycle = _cycle(steps, placed)
            out.error(f"steps form a cycle through needs: {' → '.join(cycle)}", (*base, "steps", cycle[0], "needs"))
            return None
        order.extend(ready)
        placed.update(ready)
    return order


def _cycle(steps: Mapping[str, RawStep], placed: set[str]) -> list[str]:
    """One cycle among the steps not placed, as ``[a, b, a]``."""
    start = next(name for name in steps if name not in placed)
    path = [start]
    while True:
        following = next(need for need in steps[path[-1]].needs if need not in placed)
        if following in path:
            return [*path[path.index(following) :], following]
        path.append(following)


def _template(value: Any, loc: Loc, out: _Collector) -> Template | None:
    try:
        return parse_template(value)
    except ReferenceSyntaxError as exc:
        where: tuple[str | int, ...] = getattr(exc, "path", ())
        out.error(str(exc), (*loc, *where))
        return None


@dataclass(frozen=True, slots=True)
class _Graph:
    """What a step's compilation needs of the others: the declared steps and its place among them."""

    declared: Mapping[str, RawStep]
    upstream: frozenset[str]
    may_skip: bool


def _step(name: str, raw: RawStep, graph: _Graph, loc: Loc, out: _Collector) -> WorkflowStep | None:
    errors_before = len(out.errors)
    declared, upstream = graph.declared, graph.upstream
    for_each: Ref | None = None
    if raw.for_each is not None:
        parsed = _template(raw.for_each, (*loc, "for_each"), out)
        if parsed is not None and not isinstance(parsed, RefTemplate):
            message = f'step {name!r}: for_each must be exactly one reference to an array, like "${{input.items}}"'
            out.error(message, (*loc, "for_each"))
        elif isinstance(parsed, RefTemplate):
            for_each = parsed.ref
            _check_refs(parsed, name, declared, (*loc, "for_each"), out, upstream=upstream, item=False)
    condition: Template | None = None
    if raw.if_ is not None:
        condition = _template(raw.if_, (*loc, "if"), out)
        if condition is not None and not isinstance(condition, RefTemplate | Constant):
            out.error(f'step {name!r}: if must be one reference to a boolean, like "${{input.publish}}"', (*loc, "if"))
        elif isinstance(condition, Constant) and not isinstance(condition.value, bool):
            shown = json.dumps(condition.value)
            out.error(f"step {name!r}: if must be true, false or one reference to a boolean, not {shown}", (*loc, "if"))
        elif condition is not None:
            _check_refs(condition, name, declared, (*loc, "if"), out, upstream=upstream, item=False)
    payload = _template(raw.payload, (*loc, "payload"), out)
    if payload is not None:
        item = raw.for_each is not None
        _check_refs(payload, name, declared, (*loc, "payload"), out, upstream=upstream, item=item)
    if len(out.errors) > errors_before or payload is None:
        return None
    return WorkflowStep(
        name=name,
        job=raw.job,
        needs=tuple(raw.needs),
        upstream=upstream,
        payload=payload,
        for_each=for_each,
        condition=condition,
        may_skip=graph.may_skip,
        description=raw.description,
    )


def _check_refs(
    template: Template,
    step: str | None,
    declared: Mapping[str, RawStep],
    loc: Loc,
    out: _Collector,
    *,
    upstream: frozenset[str] | None = None,
    item: bool = False,
) -> None:
    """The reference rules of the graph; ``step`` None is ``returns`` (every step is over there)."""
    for where, ref in references(template):
        at = (*loc, *where)
        if ref.kind == "item":
            if not item:
                why = "in for_each and if" if step is not None and declared[step].for_each is not None else "here"
                out.error(f"{ref}: item is only defined in the payload of a for_each step, not {why}", at)
            continue
        if ref.kind == "input" or ref.step is None:
            continue
        if ref.step not in declared:
            out.error(f"{ref}: no step {ref.step!r} in this workflow (steps: {', '.join(declared)})", at)
            continue
        if step is not None and upstream is not None and ref.step not in upstream:
            what = "itself" if ref.step == step else f"step {ref.step!r}"
            out.error(f"{ref}: step {step!r} reads {what}, which is not upstream of it; add it to needs", at)
            continue
        fans_out = declared[ref.step].for_each is not None
        if ref.kind == "output" and fans_out:
            out.error(
                f"{ref}: step {ref.step!r} fans out (for_each); read its outputs: ${{steps.{ref.step}.outputs}}", at
            )
        elif ref.kind == "outputs" and not fans_out:
            out.error(f"{ref}: step {ref.step!r} does not fan out; read its output: ${{steps.{ref.step}.output}}", at)
