"""``schedules:`` as written → checked :class:`Schedule` s (cron ticks that add a job or start a workflow).

Each schedule is checked whole at load: its shape (unknown keys refused), the
cron expression (croniter, 5 fields or an ``@hourly``-style alias), the IANA
time zone, the job type or workflow it names, and its ``payload`` / ``input``
against that job's or workflow's schema. Problems are located (file, line, key)
through the loader's ``problem`` callback, so this module knows nothing of YAML.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from dqflow.bounds import check_priority
from dqflow.declaration.model import JOB_TYPE_NAME, JobTypeSpec
from dqflow.declaration.schemas import SchemaValidator
from dqflow.declaration.yaml_source import Loc
from dqflow.errors import ConfigError, kind_of, shown

if TYPE_CHECKING:
    from dqflow.schedules.cron import CronTimes
    from dqflow.workflows.model import Workflow

__all__ = ["CATCH_UP_LIMIT", "CatchUp", "Overlap", "RawSchedule", "Schedule", "compile_schedules"]

CATCH_UP_LIMIT = 100
"""Most missed ticks ``catch_up: all`` enqueues (the newest ones)."""

Overlap = Literal["allow", "skip"]
CatchUp = Literal["none", "latest", "all"]
Problem = Callable[[str, Loc], ConfigError]


@dataclass(frozen=True, slots=True)
class Schedule:
    """One declared schedule: a cron in a zone that adds a job (``job``) or starts a workflow (``workflow``)."""

    name: str
    cron: CronTimes
    timezone: str
    job: str | None = None
    payload: Any = None
    workflow: str | None = None
    input: Any = None
    overlap: Overlap = "allow"
    catch_up: CatchUp = "none"
    tags: tuple[str, ...] | None = None
    priority: int | None = None
    description: str | None = None

    @property
    def target(self) -> str:
        """What a tick runs, for people: ``job send_digest`` or ``workflow nightly``."""
        return f"job {self.job}" if self.job is not None else f"workflow {self.workflow}"


def _tag(value: str) -> str:
    if not value.strip():
        raise ValueError("a tag must be a non-empty string")
    return value


class RawSchedule(BaseModel):
    """A schedule as written in ``jobs.yaml`` (strict; unknown keys refused)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    cron: str
    timezone: str = "UTC"
    job: str | None = None
    payload: Any = None
    workflow: str | None = None
    input: Any = None
    overlap: Overlap = "allow"
    catch_up: CatchUp = "none"
    tags: list[Annotated[str, AfterValidator(_tag)]] | None = None
    priority: Annotated[int, AfterValidator(check_priority)] | None = None
    description: str | None = None


_ALLOWED = list(RawSchedule.model_fields)


def _describe(error: Any) -> str:
    kind = error["type"]
    loc = tuple(error["loc"])
    if kind == "extra_forbidden":
        name = str(loc[-1])
        close = difflib.get_close_matches(name, _ALLOWED, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown key {name!r}{hint} (allowed: {', '.join(_ALLOWED)})"
    if kind == "missing":
        return f"missing required key {loc[-1]!r}"
    value = error.get("input")
    if kind in ("string_type", "int_type", "list_type", "dict_type", "model_type"):
        expected = {"string_type": "a string", "int_type": "an integer", "list_type": "a list"}.get(kind, "a mapping")
        return f"expected {expected}, got {kind_of(value)} ({shown(value)})"
    message = str(error["msg"])
    message = message.removeprefix("Value error, ")
    return f"{message[:1].lower()}{message[1:]} (got {shown(value)})"


def _zone(name: str) -> ZoneInfo:
    if not name or name != name.strip():
        raise ValueError(f"unknown time zone {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin or UTC") from None


def _schema_problems(schema: SchemaValidator | None, value: Any) -> list[str]:
    """Why ``value`` fails ``schema`` (none without a schema); a broken schema is reported where it is declared."""
    if schema is None:
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            return [f"not JSON: {exc}"]
        return []
    try:
        return schema.errors(value)
    except ConfigError:
        return []


def compile_schedules(
    data: Any,
    job_types: Mapping[str, JobTypeSpec],
    workflows: Mapping[str, Workflow],
    *,
    problem: Problem,
    declared_workflows: frozenset[str] = frozenset(),
) -> tuple[dict[str, Schedule], list[ConfigError]]:
    """Compile the ``schedules:`` section; the problems found (empty when all is well)."""
    errors: list[ConfigError] = []
    if data is None:
        return {}, errors
    if not isinstance(data, dict):
        errors.append(
            problem(f"expected a mapping of schedule names to schedules, got {kind_of(data)}", ("schedules",))
        )
        return {}, errors
    compiled: dict[str, Schedule] = {}
    for name, body in data.items():
        base: Loc = ("schedules", str(name))
        if not isinstance(name, str) or not JOB_TYPE_NAME.match(name):
            errors.append(
                problem(
                    f"invalid schedule name {name!r}: start with a letter or _, then letters, digits, _ . : -", base
                )
            )
            continue
        schedule = _compile_one(name, body, base, job_types, workflows, declared_workflows, problem, errors)
        if schedule is not None:
            compiled[name] = schedule
    return compiled, errors


def _compile_one(
    name: str,
    body: Any,
    base: Loc,
    job_types: Mapping[str, JobTypeSpec],
    workflows: Mapping[str, Workflow],
    declared_workflows: frozenset[str],
    problem: Problem,
    errors: list[ConfigError],
) -> Schedule | None:
    from dqflow.schedules.cron import CronError, CronTimes  # croniter loads only for declarations with schedules

    if not isinstance(body, dict):
        errors.append(problem(f"expected a mapping (cron, timezone, job or workflow, ...), got {kind_of(body)}", base))
        return None
    try:
        raw = RawSchedule.model_validate(body)
    except ValidationError as exc:
        errors.extend(problem(_describe(err), (*base, *(str(p) for p in err["loc"]))) for err in exc.errors())
        return None
    before = len(errors)
    times: CronTimes | None = None
    try:
        times = CronTimes(raw.cron, _zone(raw.timezone))
    except CronError as exc:
        errors.append(problem(str(exc), (*base, "cron")))
    except ValueError as exc:
        errors.append(problem(str(exc), (*base, "timezone")))
    if (raw.job is None) == (raw.workflow is None):
        errors.append(problem("give exactly one of `job` (a job type) or `workflow` (a workflow)", base))
    elif raw.job is not None:
        if raw.input is not None:
            errors.append(
                problem("`input` is for workflow schedules; a job schedule takes `payload`", (*base, "input"))
            )
        spec = job_types.get(raw.job)
        if spec is None:
            known = ", ".join(sorted(job_types)) or "none"
            errors.append(problem(f"unknown job type {raw.job!r} (declared: {known})", (*base, "job")))
        else:
            for message in _schema_problems(spec.payload_schema, raw.payload):
                errors.append(
                    problem(f"payload does not match the payload schema of {raw.job}: {message}", (*base, "payload"))
                )
    else:
        if raw.payload is not None:
            errors.append(
                problem("`payload` is for job schedules; a workflow schedule takes `input`", (*base, "payload"))
            )
        if raw.tags is not None or raw.priority is not None:
            errors.append(problem("`tags` and `priority` apply to job schedules only", base))
        if raw.overlap == "skip":
            errors.append(
                problem("`overlap: skip` applies to job schedules only (not yet to workflows)", (*base, "overlap"))
            )
        workflow = workflows.get(str(raw.workflow))
        if workflow is None and raw.workflow in declared_workflows:
            pass  # declared but broken: its own problems are reported already
        elif workflow is None:
            known = ", ".join(sorted(workflows)) or "none"
            errors.append(problem(f"unknown workflow {raw.workflow!r} (declared: {known})", (*base, "workflow")))
        else:
            for message in _schema_problems(workflow.input_schema, raw.input):
                errors.append(
                    problem(f"input does not match the input schema of {raw.workflow}: {message}", (*base, "input"))
                )
    if len(errors) > before or times is None:
        return None
    return Schedule(
        name=name,
        cron=times,
        timezone=raw.timezone,
        job=raw.job,
        payload=raw.payload,
        workflow=raw.workflow,
        input=raw.input,
        overlap=raw.overlap,
        catch_up=raw.catch_up,
        tags=None if raw.tags is None else tuple(dict.fromkeys(raw.tags)),
        priority=raw.priority,
        description=raw.description,
    )
