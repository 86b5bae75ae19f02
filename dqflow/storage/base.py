"""The storage contract: the one interface every backend implements.

The queue API and the worker runtime talk only to ``Storage``. Each backend
(SQLite, PostgreSQL, Redis) implements every method with the semantics written
here, and ``tests/conformance`` proves it for all three.

Conventions shared by every backend:

* Payloads and outputs arrive already validated and serialised to JSON text;
  backends store them as JSON and hand them back parsed in ``JobRecord``.
* Timestamps are timezone-aware UTC ``datetime`` values.
* Every change of a job's status (added, processing, completed, failed,
  retried, cancelled, edited, reclaimed) appends its entry to the job's event
  history in the same atomic step (transaction or Lua script) as the change
  itself. Lease renewals, progress and output writes, and shutdown hand-backs
  (``Release``) record none.
* Worker writes (settled outcomes, progress, output, lease renewal) are
  **fenced**: they apply only while the job is ``processing`` with the same
  ``lease_token`` the claim handed out. Each claim, reclaim, cancel and retry
  bumps the token, so a worker that lost its job can no longer touch it.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeAlias, get_args

from dqflow.durable.model import NewToken, TokenRecord, iso
from dqflow.enums import JobStatus
from dqflow.enums import TagMode as TagMode  # re-exported: the backends and dqflow.storage take it from here
from dqflow.errors import DependencyError
from dqflow.storage.changes import Change
from dqflow.storage.workflows import NewWorkflowRun, RunChange, WorkflowAdvancer, WorkflowFilter

if TYPE_CHECKING:  # the records are SQLModel models: loaded by backends when they build one
    from dqflow.record import JobEvent, JobRecord
    from dqflow.workflow_record import WorkflowPage, WorkflowRun


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to insert. ``run_at=None`` means now."""

    job_type: str
    payload_json: str
    priority: int = 0
    run_at: datetime | None = None
    max_attempts: int = 3
    timeout_ms: int | None = None
    retry_delay_ms: int = 10_000
    retry_backoff: str = "exponential"
    retry_max_delay_ms: int | None = None
    retry_jitter: bool = True
    tags: tuple[str, ...] = ()
    idempotency_key: str | None = None
    meta_json: str = "{}"
    workflow_run_id: int | None = None  # a workflow step job: its run, step and fan-out index
    workflow_step: str | None = None
    workflow_item: int | None = None
    depends_on: tuple[int, ...] = ()  # ids of jobs this one waits for (kept in a table of its own)
    concurrency_key: str | None = None  # with concurrency_limit: at most that many such jobs processing at once
    concurrency_limit: int | None = None
    rate_key: str | None = None  # with rate_limit, rate_window_ms: at most that many starts per window
    rate_limit: int | None = None
    rate_window_ms: int | None = None
    dead_letter_json: str | None = None  # the job to add when this one fails for good (DeadLetter.spec_json)


class OptionKind(StrEnum):
    """How a job option's value is held in ``NewJob`` (matches its ``JobRecord`` column type)."""

    INT32 = "int32"  # Integer column
    INT = "int"  # BigInteger column
    BOOL = "bool"
    TEXT = "text"
    TIME = "time"  # aware datetime; None means now where the column is required
    JSON_TEXT = "json_text"  # serialised JSON (``*_json`` fields)
    STRINGS = "strings"  # a tuple of strings stored as a JSON array (tags)


@dataclass(frozen=True, slots=True)
class JobOption:
    """One field of ``NewJob``: the ``JobRecord`` column it fills and how."""

    name: str  # the NewJob field, also the ``edit_job`` key
    column: str  # the JobRecord field (``payload_json`` fills ``payload``)
    kind: OptionKind
    nullable: bool  # None is stored as null (else None means the column's default)
    editable: bool


def _option(name: str, kind: OptionKind, *, nullable: bool = False, editable: bool = True) -> JobOption:
    return JobOption(name, name.removesuffix("_json"), kind, nullable, editable)


_K = OptionKind
JOB_OPTIONS: tuple[JobOption, ...] = (
    _option("job_type", _K.TEXT, editable=False),
    _option("payload_json", _K.JSON_TEXT),
    _option("priority", _K.INT32),
    _option("run_at", _K.TIME),
    _option("max_attempts", _K.INT32),
    _option("timeout_ms", _K.INT, nullable=True),
    _option("retry_delay_ms", _K.INT),
    _option("retry_backoff", _K.TEXT),
    _option("retry_max_delay_ms", _K.INT, nullable=True),
    _option("retry_jitter", _K.BOOL),
    _option("tags", _K.STRINGS),
    _option("idempotency_key", _K.TEXT, nullable=True, editable=False),
    _option("meta_json", _K.JSON_TEXT),
    _option("workflow_run_id", _K.INT, nullable=True, editable=False),  # a workflow step job: its run,
    _option("workflow_step", _K.TEXT, nullable=True, editable=False),  # step
    _option("workflow_item", _K.INT32, nullable=True, editable=False),  # and fan-out index
    _option("concurrency_key", _K.TEXT, nullable=True, editable=False),  # flow control (migration 0008)
    _option("concurrency_limit", _K.INT32, nullable=True, editable=False),
    _option("rate_key", _K.TEXT, nullable=True, editable=False),
    _option("rate_limit", _K.INT32, nullable=True, editable=False),
    _option("rate_window_ms", _K.INT, nullable=True, editable=False),
    _option("dead_letter_json", _K.JSON_TEXT, nullable=True, editable=False),
)
"""Every job option, in ``NewJob`` order: the one table backends build their inserts,
edits and codecs from. A literal, so that importing the contract does not load
SQLAlchemy; ``tests/test_job_options.py`` proves it matches ``NewJob`` and the
``JobRecord`` columns (a new option: a ``NewJob`` field, a column, a row here)."""

EDITABLE_FIELDS = frozenset(option.name for option in JOB_OPTIONS if option.editable)
"""Fields ``edit_job`` accepts (values as in ``NewJob``; ``*_json`` fields are JSON text)."""


def dependency_problem(index: int | None, dependency: int, status: str | None, job_id: int | None = None) -> str:
    """Why job ``index`` of a batch (or, retried, job ``job_id``) cannot wait for job
    ``dependency`` (its status, None: no such job)."""
    what = "does not exist" if status is None else f"is {status} and will never complete"
    if job_id is not None:
        return f"job {job_id} depends on job {dependency}, which {what}: retry job {dependency} first"
    return f"job {index} of the batch: depends_on job {dependency}, which {what}"


def unfinished_dependencies(
    index: int | None, depends_on: Sequence[int], statuses: Mapping[int, str], *, job_id: int | None = None
) -> list[int]:
    """The ids of ``depends_on`` (of job ``index`` of a batch, or of job ``job_id`` being
    retried) not completed yet, given the status of each existing one;
    ``DependencyError`` for one missing, failed or cancelled."""
    unfinished = []
    for dependency in depends_on:
        status = statuses.get(dependency)
        if status is None or status in ("failed", "cancelled"):
            raise DependencyError(dependency_problem(index, dependency, status, job_id))
        if status != "completed":
            unfinished.append(dependency)
    return unfinished


DEAD_LETTER_FIELDS = (
    "job_type",
    "priority",
    "max_attempts",
    "timeout_ms",
    "retry_delay_ms",
    "retry_backoff",
    "retry_max_delay_ms",
    "retry_jitter",
)
"""The keys of ``NewJob.dead_letter_json``: the ``NewJob`` fields of the dead-letter job."""


def dependency_cancel_data(dependency: int) -> dict[str, Any]:
    """The data of the ``cancelled`` event of a job cancelled because ``dependency`` failed or was cancelled."""
    return {"previous_status": "waiting", "reason": "dependency_failed", "dependency_id": dependency}


@dataclass(frozen=True, slots=True)
class AddResult:
    """Outcome of one inserted job: its id, and False when an idempotency key matched."""

    job_id: int
    created: bool


@dataclass(frozen=True, slots=True)
class Completion:
    """A fenced completion. ``output_json=None`` leaves the stored output as it is.

    ``workflow_run_id``: the job's run, for a workflow step job (``JobRecord.workflow_run_id``).
    The worker always gives it: a backend locks the run first (PostgreSQL) or reads it
    beforehand (Redis, which needs it), and plain jobs skip that work. SQLite and
    PostgreSQL also move the run of a step job settled without it.
    """

    job_id: int
    lease_token: int
    output_json: str | None = None
    workflow_run_id: int | None = None


FAILURE_TEXT_LIMIT = 65_536
"""Most characters of a failure's ``error`` or ``traceback`` that storage keeps.

The worker bounds both well below this; storage cuts anything longer (saying so in
the kept text) so that no caller can put megabytes into a job's history.
"""


def bounded_text(text: str, limit: int = FAILURE_TEXT_LIMIT) -> str:
    """``text`` itself, or its start plus a note of how much was cut, within ``limit``."""
    if len(text) <= limit:
        return text
    keep = limit - 80  # room for the note
    return text[:keep] + f"\n[... {len(text) - keep:,} more characters cut by dqflow storage]"


@dataclass(frozen=True, slots=True)
class Failure:
    """A fenced failed attempt. ``retry_at`` set: back to pending then; None: failed for good.

    ``error`` and ``traceback`` are cut to ``FAILURE_TEXT_LIMIT`` characters.
    """

    job_id: int
    lease_token: int
    error: str
    reason: str
    retry_at: datetime | None = None
    traceback: str | None = None
    workflow_run_id: int | None = None  # as in ``Completion``

    def __post_init__(self) -> None:
        if len(self.error) > FAILURE_TEXT_LIMIT:
            object.__setattr__(self, "error", bounded_text(self.error))
        if self.traceback is not None and len(self.traceback) > FAILURE_TEXT_LIMIT:
            object.__setattr__(self, "traceback", bounded_text(self.traceback))


@dataclass(frozen=True, slots=True)
class Release:
    """A fenced hand-back of a claimed job (shutdown, or jobs claimed ahead that a worker gives up).

    ``started=False`` refunds the attempt and keeps the job's place in line (its
    ``run_at``); a started job is runnable from now."""

    job_id: int
    lease_token: int
    started: bool


@dataclass(frozen=True, slots=True)
class Wait:
    """A fenced wait of a durable handler: the job becomes ``waiting`` until ``until``
    (a sleep), or until token ``token_id`` is completed (or times out at ``until``;
    None: no timeout). The attempt is refunded."""

    job_id: int
    lease_token: int
    until: datetime | None
    token_id: str | None = None

    def __post_init__(self) -> None:
        if self.until is None and self.token_id is None:
            raise ValueError(f"job {self.job_id}: a wait needs a time (until) or a token")

    @property
    def kind(self) -> str:
        """``sleep`` or ``token``."""
        return "sleep" if self.token_id is None else "token"

    def wait_json(self) -> str:
        """The job's stored ``wait`` (``JobWait``) as JSON text."""
        until = None if self.until is None else iso(self.until)
        return json.dumps({"kind": self.kind, "until": until, "token_id": self.token_id})


Outcome: TypeAlias = Completion | Failure | Release | Wait
"""How an attempt ended, as the worker reports it to ``Storage.settle_jobs``.

A new kind of outcome (waiting, snoozed, completed-then-promote) is a new
dataclass here plus its branch in each backend's ``settle_jobs``.
"""

OUTCOME_KINDS: tuple[type[Outcome], ...] = get_args(Outcome)


def outcomes_by_kind(outcomes: Sequence[Outcome]) -> dict[type[Outcome], list[int]]:
    """Input positions of the outcomes to try, grouped by kind (first kind seen first).

    Only the first outcome of each job in a batch is tried; later ones are left out
    (their flags stay False), so the result does not depend on the order in which a
    backend writes the kinds. ``TypeError`` for an unknown kind.
    """
    groups: dict[type[Outcome], list[int]] = {}
    seen: set[int] = set()
    for position, outcome in enumerate(outcomes):
        kind = type(outcome)
        if kind not in OUTCOME_KINDS:
            raise TypeError(f"settle_jobs takes {', '.join(k.__name__ for k in OUTCOME_KINDS)}, not {kind.__name__}")
        if outcome.job_id in seen:
            continue
        seen.add(outcome.job_id)
        groups.setdefault(kind, []).append(position)
    return groups


@dataclass(frozen=True, slots=True)
class Lease:
    """A job a worker holds: id and the fencing token of its claim."""

    job_id: int
    lease_token: int


@dataclass(frozen=True, slots=True)
class StepClaim:
    """Eager dispatch: the settling worker asks to claim, in the same atomic step, the
    workflow step jobs its settle creates (``Storage.settle_and_claim``).

    A linear run's next step then starts on the worker that ran the one before, with no
    trip through the queue: no claim of its own, no wait for a poll or a wake-up. Such a
    job goes ahead of pending jobs of any priority (it continues a run already started);
    a worker that must not do so passes no ``StepClaim`` (``eager_steps: false``).
    """

    worker_id: str
    job_types: frozenset[str] | None  # the types the worker runs (None: any)
    limit: int  # jobs to claim at most
    lease_ms: int

    def takes(self, job: NewJob, now: float) -> bool:
        """Whether ``job`` may be claimed at once: a type the worker runs, due now, and held
        back by nothing a claim enforces (no concurrency key, rate key or dependency)."""
        return (
            (self.job_types is None or job.job_type in self.job_types)
            and job.concurrency_key is None
            and job.rate_key is None
            and not job.depends_on
            and (job.run_at is None or job.run_at.timestamp() <= now)
        )

    def pick(self, jobs: Sequence[NewJob], now: float) -> list[int]:
        """Positions of the jobs to claim: the first ``limit`` that ``takes``, in order."""
        picked: list[int] = []
        for position, job in enumerate(jobs):
            if len(picked) >= self.limit:
                break
            if self.takes(job, now):
                picked.append(position)
        return picked


@dataclass(frozen=True, slots=True)
class ReclaimedJob:
    """A job whose lease expired: put back to ``pending`` or, attempts used up, ``failed``."""

    job_id: int
    status: JobStatus


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Filters of ``list_jobs``. Results are newest first (id descending)."""

    statuses: tuple[JobStatus, ...] = ()
    job_type: str | None = None
    tags: tuple[str, ...] = ()
    tag_mode: TagMode = TagMode.ALL
    created_after: datetime | None = None
    created_before: datetime | None = None
    limit: int = 100
    cursor: int | None = None  # only ids below this one


@dataclass(frozen=True, slots=True)
class UniqueRule:
    """When a job with the same unique ``key`` blocks a new one (``add_unique``).

    The newest job added with ``key`` is a duplicate while its status is one of
    ``statuses`` (empty: any) and it was added less than ``within_ms`` ago (None: ever).
    """

    key: str
    within_ms: int | None = None
    statuses: tuple[JobStatus, ...] = ()


def is_duplicate(rule: UniqueRule, status: str, age_ms: float) -> bool:
    """Whether the newest job of ``rule.key`` (its status, its age) blocks a new one."""
    if rule.statuses and status not in {s.value for s in rule.statuses}:
        return False
    return rule.within_ms is None or age_ms < rule.within_ms


class TickVerdict(StrEnum):
    """What ``claim_tick`` did with a schedule's tick."""

    ENQUEUED = "enqueued"  # its job was added now
    TAKEN = "taken"  # this tick (or a later one) was claimed before: nothing done
    PAUSED = "paused"  # the schedule is paused: recorded, no job
    OVERLAP = "overlap"  # the previous tick's job is unfinished: recorded, no job
    SKIPPED = "skipped"  # recorded without a job (a missed tick not caught up)


@dataclass(frozen=True, slots=True)
class TickResult:
    """Outcome of ``claim_tick``: the verdict and, when a job was added, its id."""

    verdict: TickVerdict
    job_id: int | None = None


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """What storage keeps of a schedule: its last claimed tick, the job of its last run, paused or not."""

    name: str
    last_tick: datetime | None = None
    last_job_id: int | None = None
    paused: bool = False


UNFINISHED_STATUSES = frozenset({JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.WAITING})
"""The statuses of a job still to run (``claim_tick(skip_while_unfinished=True)`` skips a tick then)."""


FINISHED_STATUSES = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)
"""The statuses clean-up may delete (``delete_finished_jobs``): a job in any other is live."""


def finished_statuses(statuses: Sequence[JobStatus | str]) -> tuple[JobStatus, ...]:
    """``statuses`` checked: each completed, failed or cancelled (``ValueError`` naming a live one)."""
    checked = []
    for status in statuses:
        value = JobStatus(status)
        if value not in FINISHED_STATUSES:
            raise ValueError(f"clean-up deletes only completed, failed or cancelled jobs, not {value.value} ones")
        checked.append(value)
    return tuple(dict.fromkeys(checked))


@dataclass(frozen=True, slots=True)
class FlowControlCounts:
    """How much flow-control bookkeeping storage holds (``dqflow stats``): concurrency keys
    with a stored count (SQLite stores none: it counts processing jobs) and rate windows."""

    slot_keys: int
    rate_windows: int


@dataclass(slots=True)
class JobPage:
    """One page of ``list_jobs``; pass ``next_cursor`` back for the next page."""

    jobs: list[JobRecord] = field(default_factory=list)
    next_cursor: int | None = None


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker as it registers itself in storage (``dqflow stats``, ``dqflow health``).

    ``last_seen`` is set by the storage (its clock) on every beat; ignored when writing.
    """

    worker_id: str
    host: str
    pid: int
    started_at: datetime
    concurrency: int
    job_types: tuple[str, ...]
    last_seen: datetime | None = None


WORKER_FORGET_AFTER_S = 86_400
"""A worker not seen for this long (it died without unregistering) leaves the registry
at the next beat of any worker."""


class Storage(ABC):
    """Where jobs live. Implementations must be safe to call from several threads."""

    #: display form of the backend URL (no password)
    url: str

    #: moves workflow runs when their step jobs end (set by the Queue: ``set_workflow_advancer``)
    workflow_advancer: WorkflowAdvancer | None = None

    #: how many ``settle_jobs`` calls one worker may have in flight at once: more than one
    #: where calls run side by side (a connection pool, Redis), so that one batch's work in
    #: the worker overlaps another's on the server; 1 where writes take turns anyway
    concurrent_settles: int = 1

    # -- lifecycle -----------------------------------------------------------------

    @abstractmethod
    def setup(self) -> None:
        """Make sure the storage is usable: create the SQLite schema, check PostgreSQL
        migrations (``NotMigratedError`` if missing), load Redis scripts."""

    @abstractmethod
    def close(self) -> None:
        """Release connections. Safe to call twice."""

    # -- producing -----------------------------------------------------------------

    @abstractmethod
    def add_jobs(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[AddResult]:
        """Insert jobs in one round trip; results in input order.

        A job whose ``idempotency_key`` already exists is not inserted: its
        result carries the existing id and ``created=False``. Each inserted job
        gets an ``added`` event. ``connection`` (PostgreSQL) runs the insert
        inside the caller's transaction. Idle workers are woken.

        ``depends_on``: a job whose dependencies have not all completed is stored
        ``waiting`` (not claimable) instead of pending. Every id must name an
        existing job that is not failed or cancelled, else ``DependencyError``
        and nothing of the batch is stored (a job may only depend on jobs added
        by an earlier call).
        """

    @abstractmethod
    def add_unique(self, job: NewJob, rule: UniqueRule) -> AddResult:
        """Add ``job`` unless a duplicate under ``rule`` exists, atomically (one transaction /
        script): then the duplicate's id with ``created=False``. Otherwise as ``add_jobs``
        (its idempotency key is honoured too), and the new job becomes ``rule.key``'s newest."""

    # -- dependencies ---------------------------------------------------------------
    # Every backend writes these in the same transaction / script as the change
    # that triggers them:
    # * the completion of a job's last unfinished dependency makes it pending,
    #   runnable now, with a ``ready`` event;
    # * a job that fails for good (settled, or its lease expired on its last
    #   attempt) or is cancelled cancels its waiting dependents, and theirs in
    #   turn, with ``failure_reason = dependency_failed`` and a ``cancelled``
    #   event naming the dependency.

    # -- flow control (docs/FLOW_CONTROL.md) ------------------------------------------
    # * ``concurrency_key``: ``claim_jobs`` never lets more than ``concurrency_limit`` jobs
    #   with one key be processing; every way out of processing (settled, reclaimed,
    #   cancelled, released) frees the slot in the same atomic step.
    # * ``rate_key``: ``claim_jobs`` starts at most ``rate_limit`` jobs with one key per
    #   fixed window of ``rate_window_ms`` (windows aligned to the epoch).
    # * A job held back by either stays pending and does not hold back other jobs (claim
    #   order holds among the claimable ones). ``next_due_in`` leaves out jobs waiting
    #   for a slot (a freed slot wakes workers) and counts one waiting for a window as
    #   due when the window ends.
    # * ``dead_letter_json``: a job that fails for good (a settled ``Failure`` without
    #   ``retry_at``, or its lease expired on its last attempt) adds, in the same atomic
    #   step, a pending job of ``DEAD_LETTER_FIELDS`` from it whose payload is the
    #   envelope ``dqflow/schemas/dead_letter.json`` (original_id, job_type, payload,
    #   error_history, failure_reason, failed_at, attempts), with an ``added`` event.

    # -- reading -------------------------------------------------------------------

    @abstractmethod
    def get_job(self, job_id: int) -> JobRecord | None:
        """The job, or None."""

    @abstractmethod
    def list_jobs(self, job_filter: JobFilter) -> JobPage:
        """Jobs matching the filter, newest first, with keyset paging."""

    @abstractmethod
    def get_events(self, job_id: int) -> list[JobEvent]:
        """The job's history, oldest first (empty for an unknown id)."""

    @abstractmethod
    def count_jobs(self) -> dict[tuple[str, JobStatus], int]:
        """How many jobs there are per (job type, status); pairs with none are left out.
        For dashboards and metrics: exact, and cheap enough to ask every few seconds."""

    @abstractmethod
    def oldest_pending(self) -> JobRecord | None:
        """The pending job added first (lowest id), or None: how far behind the queue is."""

    # -- workers (a registry for operators; never on the job path) -------------------

    @abstractmethod
    def beat_worker(self, worker: WorkerInfo) -> None:
        """Record that ``worker`` is alive: insert or replace its entry with ``last_seen``
        = now; entries not seen for ``WORKER_FORGET_AFTER_S`` are removed in the same step."""

    @abstractmethod
    def remove_worker(self, worker_id: str) -> None:
        """Drop a worker's entry (it stopped cleanly). Unknown ids are ignored."""

    @abstractmethod
    def list_workers(self) -> list[WorkerInfo]:
        """Every registered worker, the most recently seen first."""

    # -- managing ------------------------------------------------------------------

    @abstractmethod
    def cancel_job(self, job_id: int) -> JobRecord:
        """Cancel a pending, waiting or processing job (bumps the lease token so the
        running worker's writes are rejected). ``JobNotFoundError`` /
        ``InvalidJobStateError`` otherwise. Returns the updated record."""

    @abstractmethod
    def retry_job(self, job_id: int, *, reset_steps: bool = False) -> JobRecord:
        """Put a failed or cancelled job back to pending, runnable now: attempts reset
        to 0; failure reason, progress, output, wait, lease and finish timestamps
        cleared; ``last_retried_at`` set; a ``retried`` event. Completed durable steps
        are kept unless ``reset_steps``. Errors as ``cancel_job``.

        A job added with ``depends_on`` whose dependencies have not all completed
        goes back to ``waiting`` instead; if one of them is failed or cancelled,
        ``DependencyError`` (retry that one first) and nothing changes."""

    @abstractmethod
    def edit_job(self, job_id: int, changes: Mapping[str, Any]) -> JobRecord:
        """Change fields (keys from ``EDITABLE_FIELDS``) of a pending job; records an
        ``edited`` event listing the changed fields. Errors as ``cancel_job``."""

    # -- working -------------------------------------------------------------------

    @abstractmethod
    def claim_jobs(self, worker_id: str, job_types: Sequence[str] | None, limit: int, lease_ms: int) -> list[JobRecord]:
        """Atomically claim up to ``limit`` ready jobs (pending, ``run_at`` due),
        highest priority first, then oldest. Each becomes ``processing`` with
        attempts+1, output and progress cleared (a new attempt starts with
        neither), a new ``lease_token``, ``locked_by``/``locked_at``,
        ``lease_expires_at = now + lease_ms``, ``started_at`` and a
        ``processing`` event. Jobs held back by their concurrency key or rate
        window are passed over (see "flow control" above). Returns the updated records."""

    @abstractmethod
    def renew_leases(self, worker_id: str, leases: Sequence[Lease], lease_ms: int) -> set[int]:
        """Extend the leases still held; return the ids still held (a missing id was
        cancelled or taken over: its handler should stop)."""

    @abstractmethod
    def settle_jobs(self, outcomes: Sequence[Outcome]) -> list[bool]:
        """Fenced: write a batch of outcomes atomically, each with its event; one flag
        per item in input order: applied, or rejected (the job is no longer
        ``processing`` under that token, or an earlier item of the batch is for the
        same job: only a job's first outcome in a batch is tried).

        * ``Completion``: completed (progress kept, output stored when given,
          ``failure_reason`` and lease cleared, a ``completed`` event).
        * ``Failure``: an entry joins ``error_history`` (attempt, error, reason, at,
          traceback, and the output and progress the attempt stored),
          ``failure_reason`` and ``last_failed_at`` set; pending at ``retry_at`` when
          given (output and progress cleared), else ``failed`` (both kept). A
          ``failed`` event with ``will_retry``.
        * ``Release``: handed back to pending, runnable now, lease cleared and token
          bumped; the attempt is refunded when ``started`` is False. No event.
        * ``Wait``: ``waiting`` with ``wait`` set and ``wake_at = until``, the attempt
          refunded, lease cleared and token bumped, a ``waiting`` event (the ``wait``);
          idle workers woken (their next due time may be earlier now). A token wait
          whose token is no longer pending (completed meanwhile, or expired) is made
          pending at once instead (a ``ready`` event).
        """

    def settle_and_claim(self, outcomes: Sequence[Outcome], claim: StepClaim) -> tuple[list[bool], list[JobRecord]]:
        """``settle_jobs``, and in the same atomic step claim for ``claim.worker_id`` up to
        ``claim.limit`` of the workflow step jobs this settle creates (``StepClaim.pick``,
        in creation order), as ``claim_jobs`` would: ``processing``, attempt 1, a lease of
        ``claim.lease_ms``, a ``processing`` event after its ``added`` one. Returns the
        flags and the claimed records. A backend that cannot claims none."""
        return self.settle_jobs(outcomes), []

    @abstractmethod
    def set_progress(self, job_id: int, lease_token: int, progress: int) -> bool:
        """Fenced progress write (0..100)."""

    @abstractmethod
    def set_output(self, job_id: int, lease_token: int, output_json: str) -> bool:
        """Fenced output write (last write wins)."""

    # -- durable handlers (dqflow/durable; docs/DURABLE.md) -----------------------------

    @abstractmethod
    def save_step(self, job_id: int, lease_token: int, name: str, step_json: str) -> bool:
        """Fenced: store the entry ``step_json`` (``{"result", "completed_at"}``) as step
        ``name`` of the job (a step already stored under that name is replaced)."""

    @abstractmethod
    def create_token(self, job_id: int, lease_token: int, name: str, step_json: str, token: NewToken) -> bool:
        """Fenced: insert the pending token and store step ``name`` (the token's id) in one
        atomic step; False (nothing stored) when the job is no longer held."""

    @abstractmethod
    def get_token(self, token_id: str) -> TokenRecord | None:
        """The token, or None."""

    @abstractmethod
    def complete_token(self, token_id: str, data_json: str) -> TokenRecord:
        """Store the data of a pending token (already validated) and, if its job waits for
        it, make the job pending now (a ``ready`` event, workers woken), atomically.
        ``TokenNotFoundError``; ``TokenAlreadyCompletedError``; ``TokenExpiredError``
        when it expired, its timeout passed, or its job is finished (cancelled). Nothing
        changes on an error. Returns the completed token."""

    @abstractmethod
    def wake_due_jobs(self) -> int:
        """Make pending every waiting durable job whose ``wake_at`` is due (a ``ready``
        event; ``wait`` and ``wake_at`` cleared); a token wait's pending token is marked
        expired in the same atomic step. Returns how many woke."""

    @abstractmethod
    def reclaim_expired(self) -> list[ReclaimedJob]:
        """Jobs ``processing`` whose lease expired: back to pending (a ``reclaimed``
        event), or ``failed`` with reason ``lease_expired`` when attempts are used
        up. Token bumped either way."""

    @abstractmethod
    def next_due_in(self, job_types: Sequence[str] | None) -> float | None:
        """Seconds until the earliest pending job is due, or a waiting durable job's
        ``wake_at`` (0 if one is ready now), None if there is neither. A job waiting for a
        concurrency slot is left out; one waiting for its rate window is due when the window ends."""

    @abstractmethod
    def wait_for_jobs(self, timeout: float, job_types: Sequence[str] | None) -> None:
        """Block up to ``timeout`` seconds or until new work may be ready
        (NOTIFY, a Redis wake-up key, a SQLite data change)."""

    def wait_and_claim(
        self, worker_id: str, job_types: Sequence[str] | None, limit: int, lease_ms: int, timeout: float
    ) -> list[JobRecord]:
        """What an idle worker calls: ``wait_for_jobs(timeout)``, then ``claim_jobs`` (same
        rules, same fencing). A backend may claim on the worker's behalf while it waits
        (Redis: the add that makes a job ready claims it for an idle worker and hands it
        over, so the job starts without another round trip)."""
        self.wait_for_jobs(timeout, job_types)
        return self.claim_jobs(worker_id, job_types, limit, lease_ms)

    # -- schedules (dqflow/schedules; docs/SCHEDULES.md) ---------------------------------

    @abstractmethod
    def claim_tick(
        self, schedule: str, tick: datetime, job: NewJob | None, *, skip_while_unfinished: bool = False
    ) -> TickResult:
        """Claim ``tick`` of ``schedule`` once for all workers, atomically (one transaction / script).

        ``TAKEN`` (nothing changes) when the schedule's last claimed tick is ``tick`` or
        later. Otherwise ``tick`` becomes its last tick and: ``PAUSED`` when it is
        paused; ``SKIPPED`` when ``job`` is None; ``OVERLAP`` when
        ``skip_while_unfinished`` and the job of its last run is still pending,
        waiting or processing; else ``job`` is added (``add_jobs`` rules; its
        idempotency key, if any, also guards the tick) and becomes the last run:
        ``ENQUEUED`` with its id (``TAKEN`` with the existing id if the key matched).
        A schedule storage has not seen starts unpaused with no last tick."""

    @abstractmethod
    def schedule_states(self) -> dict[str, ScheduleState]:
        """Every schedule storage has a state for, by name."""

    @abstractmethod
    def set_schedule_paused(self, schedule: str, paused: bool) -> ScheduleState:
        """Pause or resume ``schedule`` (kept until changed); its state after the change."""

    # -- clean-up (worker/_pruner.py, dqflow cleanup) ----------------------------------------
    # A job's finish time is when it became completed, failed or cancelled (its
    # ``completed_at``, ``last_failed_at`` or ``cancelled_at``). A job still needed by
    # a ``waiting`` dependent is never deleted.

    @abstractmethod
    def delete_finished_jobs(
        self, statuses: Sequence[JobStatus], before: datetime, *, job_type: str | None = None, limit: int = 500
    ) -> int:
        """Delete up to ``limit`` jobs in ``statuses`` (from ``FINISHED_STATUSES``) that
        finished before ``before`` (of ``job_type`` only, when given), oldest finish
        first, with their events and dependency links, in one short transaction or
        script; how many were deleted. Call again while it returns ``limit``."""

    @abstractmethod
    def delete_old_events(self, before: datetime, *, limit: int = 500) -> int:
        """Delete the events (the history) of up to ``limit`` jobs that finished before
        ``before``; the jobs stay. Jobs are taken by finish time from where the last call
        stopped (a position kept in storage), so each history is deleted once; how many
        jobs were visited (``limit``: call again)."""

    @abstractmethod
    def count_finished_jobs(
        self, statuses: Sequence[JobStatus], before: datetime, *, job_type: str | None = None
    ) -> int:
        """How many jobs ``delete_finished_jobs`` would delete with no limit (a dry run)."""

    @abstractmethod
    def prune_flow_control(self, *, limit: int = 500) -> int:
        """Delete flow-control bookkeeping of keys not in use: up to ``limit`` concurrency-slot
        rows no job holds and up to ``limit`` rate windows that have ended; how many were
        deleted. A claim reads a missing slot row as a free key and a missing window as a
        fresh one, so this never lets a claim admit more than a limit (docs/FLOW_CONTROL.md)."""

    @abstractmethod
    def count_flow_control(self) -> FlowControlCounts:
        """How many concurrency keys and rate windows storage keeps bookkeeping for."""

    # -- change feed (live updates; see storage/changes.py) ------------------------------

    @abstractmethod
    def change_cursor(self) -> str:
        """The cursor of the newest change: ``read_changes(after=it)`` answers only later ones."""

    @abstractmethod
    def read_changes(self, after: str, limit: int = 500) -> list[Change]:
        """Changes after the cursor ``after``, oldest first, at most ``limit``.
        Never skips one that a later read could still return (a change whose
        transaction commits late is answered in order, once it has)."""

    @abstractmethod
    def wait_for_changes(self, after: str, timeout: float) -> None:
        """Block up to ``timeout`` seconds or until changes after ``after`` may exist.

        ``close`` from another thread ends a wait (or feed read) in progress safely: it
        returns or raises ``StorageError``, and never runs on a closed connection."""

    # -- workflows (storage/workflows.py) -------------------------------------------------
    # A step job (``workflow_run_id`` set) that completes, fails for good (settled, or its
    # lease expired on its last attempt) or is cancelled moves its run in the same atomic
    # step: the backend locks the run, calls ``workflow_advancer.job_ended`` and writes the
    # ``Advance``; after the commit it calls ``workflow_advancer.committed``. Plain jobs
    # pay nothing for this (no extra round trip).

    def set_workflow_advancer(self, advancer: WorkflowAdvancer | None) -> None:
        """Give the storage what moves workflow runs (the ``Queue`` does, when it opens it)."""
        self.workflow_advancer = advancer

    @abstractmethod
    def create_workflow_runs(self, runs: Sequence[NewWorkflowRun], plan: RunChange) -> list[tuple[int, bool]]:
        """Store new runs, each in the state ``plan`` returns for it (``planned_starts``: called
        before anything is written), all of them atomically in one round trip; per run, in
        order, ``(run id, True)``. A run whose ``idempotency_key`` a stored run or an earlier
        run of the batch has: ``(that run's id, False)``, nothing of it written. ``[]``: ``[]``."""

    @abstractmethod
    def change_workflow_run(self, run_id: int, change: RunChange) -> WorkflowRun:
        """Lock the run, call ``change`` with its state, write the ``Advance`` atomically;
        return the updated run. ``WorkflowRunNotFoundError`` for an unknown id; whatever
        ``change`` raises leaves everything as it was."""

    @abstractmethod
    def get_workflow_run(self, run_id: int) -> WorkflowRun | None:
        """The run, or None."""

    @abstractmethod
    def list_workflow_runs(self, run_filter: WorkflowFilter) -> WorkflowPage:
        """Runs matching the filter, newest first, with keyset paging."""
