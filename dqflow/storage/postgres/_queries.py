"""The backend's SQL: one statement per file in ``queries/``, read once per process.

Where a statement lists the job options (``add_jobs``, ``edit_job``) the file
holds a ``$OPTION_*`` / ``$EDIT_ASSIGNMENTS`` mark, expanded here from
``JOB_OPTIONS``, so a new option needs no SQL edit; ``add_jobs_unkeyed`` and
``add_jobs_drawn`` are composed from ``add_jobs.sql`` by its ``-- keyed`` /
``-- unkeyed`` and ``-- drawn here`` / ``-- given`` line marks;
``workflow_add_jobs_update_runs`` is ``add_jobs_drawn`` and ``workflow_update_run``
in one statement (a step settle's new jobs and its runs' new states);
``workflow_add_claimed_jobs_update_runs`` is the same with some of those jobs inserted
claimed (``workflow_add_claimed_jobs.sql``, for ``settle_and_claim``);
``workflow_lock_complete_jobs`` is ``complete_jobs.sql`` that first locks the batch's
runs (its ``-- runs locked`` / ``-- plain`` line marks).

Statements name the tables plainly (``dqflow_jobs``); for a dqflow schema they
are qualified once at load time, so they also work on a caller's connection
whose ``search_path`` does not include that schema.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from functools import cache
from importlib import resources

from sqlalchemy.dialects import postgresql

from dqflow.record import JobTable
from dqflow.storage.base import JOB_OPTIONS, JobOption, OptionKind

_OBJECTS = re.compile(
    r"\b(dqflow_jobs_id_seq|dqflow_jobs|dqflow_job_events|dqflow_job_changes|dqflow_job_dependencies"
    r"|dqflow_job_waits|dqflow_schedules|dqflow_unique_keys|dqflow_cleanup_state|dqflow_migrations"
    r"|dqflow_workflow_runs|dqflow_workers|dqflow_concurrency_slots|dqflow_rate_windows|dqflow_tokens)\b"
)


@cache
def read(name: str) -> str:
    """The text of ``queries/<name>.sql``."""
    return (resources.files(__package__) / "queries" / f"{name}.sql").read_text(encoding="utf-8")


def qualify(sql: str, schema: str | None) -> str:
    """Prefix dqflow's tables (and id sequence) with ``schema`` (a checked, plain identifier)."""
    if not schema:
        return sql
    return _OBJECTS.sub(lambda match: f"{schema}.{match.group(1)}", sql)


def sql_type(column: str) -> str:
    """The PostgreSQL type of a ``dqflow_jobs`` column, as the model declares it."""
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    return str(JobTable.__table__.columns[column].type.compile(dialect=dialect)).lower()  # type: ignore[attr-defined]


def _option_field(position: int, option: JobOption) -> str:
    """``add_jobs``: the option's value in row ``r`` of the JSON input, typed."""
    if option.kind is OptionKind.STRINGS:
        return f"r -> {position} AS {option.column}"
    return f"(r ->> {position})::{sql_type(option.column)} AS {option.column}"


def _option_value(option: JobOption) -> str:
    """``add_jobs``: what is inserted (a missing required time means now)."""
    if option.kind is OptionKind.TIME and not option.nullable:
        return f"coalesce({option.column}, now())"
    return option.column


def _run_option_value(option: JobOption) -> str:
    """``workflow_start_runs``: as ``_option_value``, the job's run being the run inserted with it."""
    return "batch.run_ids[input.workflow_run_id]" if option.column == "workflow_run_id" else _option_value(option)


def _edit_assignment(option: JobOption) -> str:
    column = option.column
    value = f"%({column})s::{sql_type(column)}"
    if option.kind is OptionKind.TIME and not option.nullable:
        value = f"coalesce({value}, now())"
    return f"{column} = CASE WHEN %(set_{column})s THEN {value} ELSE j.{column} END"


_ADD_JOBS_DROPS = {
    "add_jobs": ("unkeyed", "given"),
    "add_jobs_unkeyed": ("keyed", "given"),
    "add_jobs_drawn": ("keyed", "drawn here"),
}
"""The statements composed from ``add_jobs.sql``: the line marks each one drops."""

_COMPLETE_JOBS_DROPS = {"complete_jobs": ("runs locked",), "workflow_lock_complete_jobs": ("plain",)}
"""The statements composed from ``complete_jobs.sql``: the line marks each one drops."""


def _without(sql: str, marks: tuple[str, ...]) -> str:
    """The lines of ``sql`` not marked ``-- <mark>`` for any of ``marks`` (kept marks stay as comments)."""
    ends = tuple(f"-- {mark}" for mark in marks)
    return "\n".join(line for line in sql.splitlines() if not line.rstrip().endswith(ends))


def _with_options(sql: str) -> str:
    indent = ",\n           "
    return (
        sql.replace("$OPTION_FIELDS", indent.join(_option_field(i, o) for i, o in enumerate(JOB_OPTIONS)))
        .replace("$OPTION_COLUMNS", ", ".join(o.column for o in JOB_OPTIONS))
        .replace("$RUN_OPTION_VALUES", ", ".join(_run_option_value(o) for o in JOB_OPTIONS))
        .replace("$OPTION_VALUES", ", ".join(_option_value(o) for o in JOB_OPTIONS))
        .replace("$ID_POSITION", str(len(JOB_OPTIONS)))
        .replace("$CANCEL_DEPENDENTS", read("cancel_dependents").strip())
        .replace("$FREE_SLOTS", read("free_slots").strip())
        .replace("$LOCK_RUNS", read("lock_runs").strip())
        .replace("$ANNOUNCE_INSERTED", read("announce_inserted").strip())
        .replace("$ADD_DEAD_LETTERS", read("add_dead_letters").strip())
        .replace("$EDIT_ASSIGNMENTS", ",\n        ".join(_edit_assignment(o) for o in JOB_OPTIONS if o.editable))
    )


@cache
def compose(name: str) -> str:
    """The statement ``name``: a file of ``queries/``, or a variant composed from one."""
    if name in _ADD_JOBS_DROPS:
        return _with_options(_without(read("add_jobs"), _ADD_JOBS_DROPS[name]))
    if name in _COMPLETE_JOBS_DROPS:
        return _with_options(_without(read("complete_jobs"), _COMPLETE_JOBS_DROPS[name]))
    if name == "workflow_add_jobs_update_runs":
        # add_jobs_drawn without its answer, then workflow_update_run.sql as one more CTE
        inserts = _without(read("add_jobs"), (*_ADD_JOBS_DROPS["add_jobs_drawn"], "unkeyed"))
        update = read("workflow_update_run").strip()
        return _with_options(
            f"{inserts}\n, updated AS (\n{update}\n    RETURNING r.id\n)\nSELECT count(*) FROM updated CROSS JOIN woken"
        )
    if name == "workflow_add_claimed_jobs_update_runs":
        # the same with some jobs inserted claimed, answering those (a one-time filter: the
        # runs' update and the notifications run whether or not a job was claimed)
        update = read("workflow_update_run").strip()
        return _with_options(
            f"{read('workflow_add_claimed_jobs').strip()}\n, updated AS (\n{update}\n    RETURNING r.id\n)\n"
            "SELECT * FROM inserted\n"
            "WHERE status = 'processing' AND (SELECT count(*) FROM updated CROSS JOIN woken) >= 0"
        )
    return _with_options(read(name))


_TOKENS = re.compile(r"""('(?:[^']|'')*'|"(?:[^"]|"")*")|--[^\n]*|(\s+)""")


def _compacted(match: re.Match[str]) -> str:
    if match.group(1):  # a string literal or a quoted name: as written
        return match.group(1)
    space = match.group(2)
    if space is None:  # a comment
        return ""
    return "\n" if "\n" in space else " "


def compact(sql: str) -> str:
    """``sql`` without its comments, and each run of blanks one space or line break. The
    files explain each statement; what is sent need not: psycopg caches the parsing of a
    statement's placeholders only up to 4 KiB of text (longer ones were parsed again on
    every call), and a shorter statement is less to send. Quoted text is kept as written."""
    return _TOKENS.sub(_compacted, sql).strip()


@dataclass(frozen=True, slots=True)
class Queries:
    """Every statement the backend runs, qualified for one schema."""

    add_jobs: str
    add_jobs_unkeyed: str
    find_idempotency_keys: str
    lock_dependencies: str
    lock_own_dependencies: str
    hold_dependents: str
    get_job: str
    list_jobs: str
    get_events: str
    count_jobs: str
    oldest_pending: str
    beat_worker: str
    remove_worker: str
    list_workers: str
    read_changes: str
    newest_change: str
    cancel_job: str
    retry_job: str
    edit_job: str
    claim_jobs: str
    renew_leases: str
    complete_jobs: str
    workflow_lock_complete_jobs: str
    fail_jobs: str
    release_jobs: str
    set_progress: str
    set_output: str
    reclaim_expired: str
    next_due_in: str
    lock_schedule: str
    record_tick: str
    schedule_states: str
    set_schedule_paused: str
    delete_finished_jobs: str
    count_finished_jobs: str
    delete_old_events: str
    prune_idle_slots: str
    any_ended_window: str
    lock_rate_windows: str
    prune_ended_windows: str
    count_flow_control: str
    lock_unique_key: str
    job_status_age: str
    set_unique_key: str
    workflow_start_runs: str
    workflow_run_by_key: str
    workflow_lock_runs: str
    workflow_update_run: str
    workflow_add_jobs_update_runs: str
    workflow_add_claimed_jobs_update_runs: str
    workflow_draw_job_ids: str
    workflow_cancel_jobs: str
    workflow_retry_jobs: str
    workflow_get_run: str
    workflow_list_runs: str
    workflow_job_run: str
    workflow_expired_runs: str
    save_step: str
    create_token: str
    get_token: str
    lock_token_job: str
    lock_token: str
    complete_token: str
    wait_jobs: str
    wait_ready: str
    wake_due_jobs: str

    @classmethod
    @cache
    def load(cls, schema: str | None) -> Queries:
        """All statements for ``schema`` (cached: each file is read once), without their comments."""
        return cls(**{f.name: qualify(compact(compose(f.name)), schema) for f in fields(cls)})
