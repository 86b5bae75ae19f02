"""Jobs in Redis: a hash per job, sorted-set indexes, one atomic Lua script per change.

Every key of a queue starts with the hash tag ``{prefix}`` (default ``{dqflow}``),
so one queue lives in one Redis Cluster slot and the scripts run unchanged there.
The layout is described in ``docs/REDIS.md`` and at the top of ``lua/_lib.lua``.

URL: ``redis://[user:password@]host[:port][/db][?prefix=name]`` or ``rediss://``
(TLS); or hand in your own redis-py client (``RedisStorage(client, prefix=...)``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis

from dqflow.durable.model import NewToken, TokenRecord, shown_token_status
from dqflow.errors import (
    ConfigError,
    DependencyError,
    InvalidJobStateError,
    JobNotFoundError,
    StorageError,
    TokenAlreadyCompletedError,
    TokenExpiredError,
    TokenJobFinishedError,
    TokenNotFoundError,
)
from dqflow.record import JobEvent, JobRecord, JobStatus
from dqflow.storage.base import (
    EDITABLE_FIELDS,
    JOB_OPTIONS,
    WORKER_FORGET_AFTER_S,
    AddResult,
    Completion,
    Failure,
    FlowControlCounts,
    JobFilter,
    JobPage,
    Lease,
    NewJob,
    OptionKind,
    Outcome,
    ReclaimedJob,
    Release,
    ScheduleState,
    StepClaim,
    Storage,
    TagMode,
    TickResult,
    UniqueRule,
    Wait,
    WorkerInfo,
    dependency_problem,
    finished_statuses,
    outcomes_by_kind,
)
from dqflow.storage.changes import Change
from dqflow.storage.redis import _layout, _schedules, changes
from dqflow.storage.redis._alarm import Alarm
from dqflow.storage.redis._workflows import Claiming, Ending, RedisWorkflows
from dqflow.storage.redis.codec import (
    added_event,
    as_text,
    check_int,
    encode_option,
    event_from_json,
    from_us,
    pairs_to_dict,
    record_from_hash,
    tag_set,
    tags_json,
    to_us,
)
from dqflow.storage.redis.scripts import Script, load_all
from dqflow.storage.workflows import JobEnd, NewWorkflowRun, RunChange, RunNotice, WorkflowFilter
from dqflow.urls import redact_url
from dqflow.workflow_record import WorkflowPage, WorkflowRun

T = TypeVar("T")

DEFAULT_PREFIX = "dqflow"
_RECLAIM_BATCH = 500
_LIST_SCAN_BUDGET = 5_000  # candidates one list step looks at before yielding Redis
_DEFAULT_OPTIONS: dict[str, Any] = {"socket_timeout": 30.0, "socket_connect_timeout": 5.0}


def _token(token_id: str, fields: Mapping[str, str]) -> TokenRecord:
    """A ``TokenRecord`` from a token hash (times in us, JSON as text, absent = null)."""
    times = {name: from_us(fields[name]) if name in fields else None for name in _TOKEN_TIMES}
    json_values = {name: json.loads(fields[name]) if name in fields else None for name in ("schema", "data")}
    return TokenRecord.from_storage(
        {
            "id": token_id,
            "job_id": int(fields["job_id"]),
            "status": fields["status"],
            "signal": fields.get("signal"),
            **json_values,
            **times,
        }
    )


_TOKEN_TIMES = ("timeout_at", "created_at", "completed_at")


def _split_url(url: str) -> tuple[str, str | None, str]:
    """Return (URL for redis-py without ``prefix``, the prefix if given, display URL)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ConfigError(
            f"not a Redis URL: {redact_url(url)!r} (use redis://host:port/db or rediss://...)", key="backend"
        )
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = None
    rest = []
    for name, value in query:
        if name == "prefix":
            prefix = value
        else:
            rest.append((name, value))
    clean = urlunsplit(parts._replace(query=urlencode(rest)))
    return clean, prefix, redact_url(url)


def _check_prefix(prefix: str) -> str:
    if not prefix or "{" in prefix or "}" in prefix:
        raise ConfigError(
            f"invalid Redis key prefix {prefix!r}: use a non-empty name without braces (it becomes the hash tag)",
            key="prefix",
        )
    return prefix


# Options add_many.lua places itself (ready/delayed sets, tag indexes, id, idempotency
# index); every other option is stored as a plain hash field, whatever it is.
_PLACED = frozenset({"job_type", "payload_json", "priority", "run_at", "tags", "idempotency_key"})
_PLAIN_OPTIONS = [option for option in JOB_OPTIONS if option.name not in _PLACED]
_OPTIONS = {option.name: option for option in JOB_OPTIONS}


def _spec_of(job: NewJob) -> tuple[Any, ...]:
    """The ``add_many`` spec of a job: everything it stores except payload and idempotency key."""
    priority = job.priority
    # the common case in a few comparisons; anything unusual gets the full check and message
    if not (type(priority) is int and -(2**31) <= priority < 2**31):
        check_int("priority", priority, int32=True)
    plain: list[Any] = []
    for option in _PLAIN_OPTIONS:
        value = encode_option(option, getattr(job, option.name))
        if value is not None:
            plain += (option.column, value)
    tags = job.tags
    if tags:
        unique, signature = tag_set(tags)
        tag_args: tuple[Any, ...] = (tags_json(tags), signature, len(unique), *unique)
    else:
        tag_args = ("[]", "", 0)
    return (
        job.job_type,
        priority,
        "" if job.run_at is None else to_us(job.run_at, "run_at"),
        *tag_args,
        len(plain) // 2,
        *plain,
    )


def _add_args(jobs: Sequence[NewJob]) -> list[Any]:
    """Arguments of ``lua/add_many.lua``: the distinct specs, then (spec[=key], payload) per job."""
    specs: dict[tuple[Any, ...], str] = {}
    rows: list[Any] = []
    for job in jobs:
        spec = _spec_of(job)
        number = specs.get(spec)
        if number is None:
            number = specs[spec] = str(len(specs) + 1)
        key = job.idempotency_key
        rows += (number if key is None else f"{number}={key}", job.payload_json)
    args: list[Any] = [len(specs)]
    for spec in specs:
        args += spec
    args.append(len(jobs))
    args += rows
    waiting = [(position, job.depends_on) for position, job in enumerate(jobs, 1) if job.depends_on]
    if waiting:
        args.append(len(waiting))
        for position, depends_on in waiting:
            args += (position, len(depends_on), *depends_on)
    return args


class RedisStorage(Storage):
    """Jobs in Redis. Safe to share between threads (redis-py pools connections)."""

    concurrent_settles = 2  # a script per batch, atomic on its own; one batch planned while another runs

    def __init__(self, url_or_client: str | Any, *, prefix: str | None = None, **options: Any) -> None:
        self._own_clients = isinstance(url_or_client, str)
        if isinstance(url_or_client, str):
            clean, url_prefix, self.url = _split_url(url_or_client)
            settings = {**_DEFAULT_OPTIONS, **options}
            try:
                self._client: Any = redis.Redis.from_url(clean, decode_responses=True, **settings)
                blocking = {**settings, "socket_timeout": None}
                self._blocking: Any = redis.Redis.from_url(clean, decode_responses=True, **blocking)
                # builds (does not connect) a connection: unknown options fail here, not on first use
                self._client.connection_pool.make_connection()
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"invalid Redis URL or option for {self.url}: {exc}", key="backend") from exc
            prefix = prefix if prefix is not None else url_prefix
            self._decoded = True
        else:
            if options:
                raise ConfigError(f"options {sorted(options)} apply to a URL, not to your own client", key="backend")
            self._client = url_or_client
            self._blocking = self._dedicated_client(url_or_client)
            self._decoded = bool(self._connection_kwargs(url_or_client).get("decode_responses", False))
            self.url = self._describe(url_or_client)
        self.prefix = _check_prefix(prefix if prefix is not None else DEFAULT_PREFIX)
        self._key = "{" + self.prefix + "}"
        self._alarm = Alarm(self._key)  # ends short waits on time (redis/_alarm.py)
        self._scripts: dict[str, Script] = load_all()
        self._closed = False
        #: candidates one list step may look at before it hands Redis back (then resumes)
        self.list_scan_budget = _LIST_SCAN_BUDGET
        #: index entries the last ``list_jobs`` looked at (for tests and diagnostics)
        self.last_list_scanned = 0
        self._workflows = RedisWorkflows(self)
        self._flow_cursor = 0  # where prune_flow_control's HSCAN of the rate windows goes on

    # -- connections -----------------------------------------------------------------

    @staticmethod
    def _connection_kwargs(client: Any) -> dict[str, Any]:
        pool = getattr(client, "connection_pool", None)
        return dict(getattr(pool, "connection_kwargs", {}) or {})

    def _dedicated_client(self, client: Any) -> Any:
        """A client of its own for blocking waits (no socket timeout shorter than the wait)."""
        pool = getattr(client, "connection_pool", None)
        if not isinstance(pool, redis.ConnectionPool):
            return client  # e.g. a cluster client: blocking calls share its pools
        kwargs = {**pool.connection_kwargs, "socket_timeout": None}
        return redis.Redis(connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **kwargs))

    def _describe(self, client: Any) -> str:
        kwargs = self._connection_kwargs(client)
        pool = getattr(client, "connection_pool", None)
        tls = isinstance(pool, redis.ConnectionPool) and issubclass(pool.connection_class, redis.SSLConnection)
        scheme = "rediss" if tls else "redis"
        if "path" in kwargs:
            return f"unix://{kwargs['path']}"
        return f"{scheme}://{kwargs.get('host', '?')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"

    def _guard(self, what: str, call: Callable[[], T]) -> T:
        """Run a Redis call; turn driver errors into ``StorageError`` naming the server."""
        try:
            return call()
        except redis.exceptions.ConnectionError as exc:
            raise StorageError(f"Redis at {self.url} is not reachable while trying to {what}: {exc}") from exc
        except redis.exceptions.TimeoutError as exc:
            raise StorageError(f"Redis at {self.url} did not answer in time while trying to {what}: {exc}") from exc
        except redis.exceptions.RedisError as exc:
            raise StorageError(f"Redis at {self.url} refused to {what}: {exc}") from exc
        except (ValueError, OSError) as exc:
            if not self._closed:
                raise
            # close() from another thread under a blocking read: its socket went away
            raise StorageError(f"the Redis storage for {self.url} is closed (while trying to {what})") from exc

    def _run(self, name: str, what: str, *args: Any) -> Any:
        script = self._scripts[name]
        result = self._guard(what, lambda: script(self._client, self._key, *args))
        return result if self._decoded else as_text(result)

    def _record(self, flat: Sequence[str]) -> JobRecord:
        return record_from_hash(pairs_to_dict(flat))

    # -- lifecycle -------------------------------------------------------------------

    def setup(self) -> None:
        def load() -> None:
            info = self._client.info("server")
            version = str(info.get("redis_version", "0") if isinstance(info, dict) else "0")
            major_minor = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
            if major_minor and major_minor < (6, 2):
                raise StorageError(f"Redis at {self.url} is version {version}; dqflow needs 6.2 or newer")
            for script in self._scripts.values():
                script.load(self._client)
            self._check_layout()

        self._guard("load the dqflow Lua scripts", load)

    def _check_layout(self) -> None:
        """Refuse a newer key layout; upgrade an older one (``redis/_layout.py``) and record it."""
        _layout.check_and_upgrade(self._client, self._key, self.url, self._run)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._own_clients:
            self._client.close()
        if self._blocking is not self._client:
            self._blocking.close()

    # -- producing -------------------------------------------------------------------

    def add_jobs(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[AddResult]:
        if connection is not None:
            raise StorageError("connection= is only supported by the PostgreSQL backend")
        if not jobs:
            return []
        flat = self._run("add_many", "add jobs", *_add_args(jobs))
        if flat and int(flat[0]) == -1:
            raise DependencyError(dependency_problem(int(flat[1]), int(flat[2]), str(flat[3]) or None))
        return [AddResult(int(flat[k]), flat[k + 1] == 1) for k in range(0, len(flat), 2)]

    def add_unique(self, job: NewJob, rule: UniqueRule) -> AddResult:
        statuses = ",".join(status.value for status in rule.statuses)
        within = "" if rule.within_ms is None else rule.within_ms
        flat = self._run("add_unique", "add a unique job", rule.key, within, statuses, *_add_args([job]))
        if int(flat[0]) == -1:
            raise DependencyError(dependency_problem(int(flat[1]), int(flat[2]), str(flat[3]) or None))
        return AddResult(int(flat[0]), flat[1] == 1)

    # -- reading ---------------------------------------------------------------------

    def get_job(self, job_id: int) -> JobRecord | None:
        fields = self._guard(f"read job {job_id}", lambda: self._client.hgetall(f"{self._key}:job:{int(job_id)}"))
        if not fields:
            return None
        return record_from_hash(fields if self._decoded else as_text(fields))

    def list_jobs(self, job_filter: JobFilter) -> JobPage:
        limit = job_filter.limit
        if limit <= 0:
            return JobPage([], None)
        statuses = [JobStatus(s).value for s in job_filter.statuses]
        tags, signature = tag_set(job_filter.tags)
        mode = TagMode(job_filter.tag_mode).value if tags else ""
        tail: list[Any] = [
            len(statuses),
            *statuses,
            "" if job_filter.job_type is None else "=" + job_filter.job_type,
            mode,
            signature if mode == "exact" else "",
            len(tags),
            *tags,
        ]
        after = "" if job_filter.created_after is None else to_us(job_filter.created_after, "created_after")
        before = "" if job_filter.created_before is None else to_us(job_filter.created_before, "created_before")
        top: Any = "+inf" if job_filter.cursor is None else int(job_filter.cursor)
        want = limit + 1
        found: list[Any] = []
        self.last_list_scanned = 0
        while True:
            step = self._run("list", "list jobs", top, after, before, want - len(found), self.list_scan_budget, *tail)
            self.last_list_scanned += int(step[2])
            found.extend(step[3:])
            if step[0] != 2:
                break
            top = step[1]
        jobs = [self._record(flat) for flat in found[:limit]]
        return JobPage(jobs, jobs[-1].id if len(found) > limit else None)

    def get_events(self, job_id: int) -> list[JobEvent]:
        job_id = int(job_id)

        def read() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            pipe.hmget(f"{self._key}:job:{job_id}", "added_event", "created_at")
            pipe.lrange(f"{self._key}:events:{job_id}", 0, -1)
            return list(pipe.execute())

        (added, created), entries = as_text(self._guard(f"read the events of job {job_id}", read))
        events = [event_from_json(job_id, entry) for entry in entries]
        if added is not None:  # the `added` event lives in the job hash (see add_many.lua)
            events.insert(0, added_event(job_id, int(added), created))
        return events

    # -- managing --------------------------------------------------------------------

    def oldest_pending(self) -> JobRecord | None:
        for _ in range(3):  # the first pending id may start running between the two reads
            first = self._guard(
                "read the oldest pending job", lambda: self._client.zrange(f"{self._key}:status:pending", 0, 0)
            )
            if not first:
                return None
            record = self.get_job(int(as_text(first[0])))
            if record is not None and record.status is JobStatus.PENDING:
                return record
        return None

    # -- workers ---------------------------------------------------------------------

    def beat_worker(self, worker: WorkerInfo) -> None:
        started_us = round(worker.started_at.timestamp() * 1_000_000)
        self._run(
            "worker_beat",
            "record a worker's beat",
            worker.worker_id,
            worker.host,
            worker.pid,
            started_us,
            worker.concurrency,
            json.dumps(list(worker.job_types)),
            WORKER_FORGET_AFTER_S,
        )

    def remove_worker(self, worker_id: str) -> None:
        self._run("worker_remove", "remove a worker", worker_id)

    def list_workers(self) -> list[WorkerInfo]:
        def read() -> list[dict[str, str]]:
            ids = as_text(list(self._client.zrevrange(f"{self._key}:workers", 0, -1)))
            pipe = self._client.pipeline(transaction=False)
            for worker_id in ids:
                pipe.hgetall(f"{self._key}:worker:{worker_id}")
            return [as_text(found) for found in pipe.execute()] if ids else []

        def micros(value: str) -> datetime:
            return datetime.fromtimestamp(int(value) / 1_000_000, UTC)

        return [
            WorkerInfo(
                worker_id=found["worker_id"],
                host=found["host"],
                pid=int(found["pid"]),
                started_at=micros(found["started_at"]),
                last_seen=micros(found["last_seen"]),
                concurrency=int(found["concurrency"]),
                job_types=tuple(json.loads(found["job_types"])),
            )
            for found in self._guard("list workers", read)
            if found  # pruned between the two reads
        ]

    def count_jobs(self) -> dict[tuple[str, JobStatus], int]:
        # Each status and each job type has its own sorted set of ids: one ZINTERCARD per pair.
        def read() -> dict[tuple[str, JobStatus], int]:
            types = sorted(as_text(list(self._client.smembers(f"{self._key}:types"))))
            pairs = [(job_type, status) for job_type in types for status in JobStatus]
            pipe = self._client.pipeline(transaction=False)
            for job_type, status in pairs:
                pipe.zintercard(2, [f"{self._key}:status:{status.value}", f"{self._key}:type:{job_type}"])
            counts = pipe.execute() if pairs else []
            return {pair: int(count) for pair, count in zip(pairs, counts, strict=True) if count}

        return self._guard("count jobs", read)

    def _managed(self, job_id: int, reply: list[Any], allowed: str) -> JobRecord:
        if reply[0] == "missing":
            raise JobNotFoundError(job_id)
        if reply[0] == "state":
            raise InvalidJobStateError(f"job {job_id} is {reply[1]}: {allowed}")
        if reply[0] == "dependency":
            raise DependencyError(dependency_problem(None, int(reply[1]), str(reply[2]) or None, job_id))
        return self._record(reply[1])

    def cancel_job(self, job_id: int) -> JobRecord:
        job_id = int(job_id)
        if self.workflow_advancer is not None:
            key = f"{self._key}:job:{job_id}"
            run_id = self._guard(f"read job {job_id}", lambda: self._client.hget(key, "workflow_run_id"))
            if run_id is not None:
                return self._cancel_step_job(job_id)
        reply = self._run("cancel", f"cancel job {job_id}", job_id)
        return self._managed(job_id, reply, "only pending, waiting or processing jobs can be cancelled")

    def retry_job(self, job_id: int, *, reset_steps: bool = False) -> JobRecord:
        job_id = int(job_id)
        reply = self._run("retry", f"retry job {job_id}", job_id, 1 if reset_steps else 0)
        return self._managed(job_id, reply, "only failed or cancelled jobs can be retried")

    def edit_job(self, job_id: int, changes: Mapping[str, Any]) -> JobRecord:
        job_id = int(job_id)
        unknown = set(changes) - EDITABLE_FIELDS
        if unknown:
            raise InvalidJobStateError(f"cannot edit {', '.join(sorted(unknown))}")
        pairs: list[Any] = []
        tail: list[Any] = []
        for name, value in changes.items():
            option = _OPTIONS[name]
            if option.kind is OptionKind.TIME and not option.nullable and value is None:
                pairs += [option.column, "now"]
                continue
            encoded = encode_option(option, value)
            if encoded is None:
                pairs += [f"-{option.column}", ""]  # absent: null, or the empty default
            else:
                pairs += [option.column, encoded]
            if option.kind is OptionKind.STRINGS:
                unique, signature = tag_set(value)
                tail = [signature, len(unique), *unique]
        fields = json.dumps(sorted(_OPTIONS[name].column for name in changes))
        reply = self._run("edit", f"edit job {job_id}", job_id, fields, len(pairs) // 2, *pairs, *tail)
        return self._managed(job_id, reply, "only pending jobs can be edited")

    # -- working ---------------------------------------------------------------------

    def claim_jobs(self, worker_id: str, job_types: Sequence[str] | None, limit: int, lease_ms: int) -> list[JobRecord]:
        if limit <= 0:
            return []
        types = list(job_types) if job_types else []
        flat = self._run("claim", "claim jobs", worker_id, int(limit), int(lease_ms), len(types), *types, "")
        return [self._record(job) for job in flat]

    def wait_and_claim(
        self, worker_id: str, job_types: Sequence[str] | None, limit: int, lease_ms: int, timeout: float
    ) -> list[JobRecord]:
        """Claim; if nothing is ready, register as idle and block on this worker's inbox
        and the wake-up lists. An add of a job this worker takes claims it for the worker
        and pushes it to the inbox (``add_many.lua``): the pop returns it, ready to run."""
        if limit <= 0 or timeout <= 0:
            return super().wait_and_claim(worker_id, job_types, limit, lease_ms, timeout)
        types = list(job_types) if job_types else []
        wait_ms = max(1, int(timeout * 1000))
        args = (worker_id, int(limit), int(lease_ms), len(types), *types, wait_ms)
        flat = self._run("claim", "claim jobs", *args)
        if flat:
            return [self._record(job) for job in flat]
        inbox = f"{self._key}:inbox:{worker_id}"
        wake = [f"{self._key}:wake:{t}" for t in types] if types else [f"{self._key}:wake"]
        popped = as_text(
            self._guard(
                "wait for new jobs", lambda: self._alarm.blpop(self._blocking, self._client, [inbox, *wake], timeout)
            )
        )
        if popped is not None and popped[0] == inbox:
            return [self._record(job) for job in json.loads(popped[1])]
        # woken or timed out: stop being idle, take a hand-off that raced the wake-up, claim
        return self.claim_jobs(worker_id, job_types, limit, lease_ms)

    def renew_leases(self, worker_id: str, leases: Sequence[Lease], lease_ms: int) -> set[int]:
        if not leases:
            return set()
        args: list[Any] = [int(lease_ms), len(leases)]
        for lease in leases:
            args += [lease.job_id, lease.lease_token]
        return {int(job_id) for job_id in self._run("renew", "renew leases", *args)}

    def settle_jobs(self, outcomes: Sequence[Outcome]) -> list[bool]:
        if not outcomes:
            return []
        if self.workflow_advancer is not None and any(
            isinstance(item, (Completion, Failure)) and item.workflow_run_id is not None for item in outcomes
        ):
            return self._settle_with_steps(outcomes)
        return self._settle(outcomes)

    def settle_and_claim(self, outcomes: Sequence[Outcome], claim: StepClaim) -> tuple[list[bool], list[JobRecord]]:
        """``settle_jobs``; the step jobs its runs' advances insert that ``claim`` may take are
        written by ``workflow.lua`` already claimed (never in a ready or pending set), their
        records built here from what the plan holds (no read)."""
        steps = self.workflow_advancer is not None and any(
            isinstance(item, (Completion, Failure)) and item.workflow_run_id is not None for item in outcomes
        )
        if not steps or claim.limit <= 0:
            return self.settle_jobs(outcomes), []
        claiming = Claiming(claim)
        return self._settle_with_steps(outcomes, claiming), claiming.records

    def _settle_with_steps(self, outcomes: Sequence[Outcome], claiming: Claiming | None = None) -> list[bool]:
        """Step jobs that end (completed, failed for good) go through workflow.lua with their
        runs; the rest (retries, releases, plain jobs) through settle.lua. ``claiming``: the
        claim their runs' new jobs are claimed for (``settle_and_claim``)."""
        applied = [False] * len(outcomes)
        seen: set[int] = set()
        steps: list[int] = []
        rest: list[int] = []
        for position, item in enumerate(outcomes):
            if item.job_id in seen:
                continue  # only a job's first outcome in a batch is tried
            seen.add(item.job_id)
            ends = isinstance(item, Completion) or (isinstance(item, Failure) and item.retry_at is None)
            if ends and isinstance(item, (Completion, Failure)) and item.workflow_run_id is not None:
                steps.append(position)
            else:
                rest.append(position)
        notices: list[RunNotice] = []
        items = [cast("Completion | Failure", outcomes[p]) for p in steps]
        flags = self._workflows.settle(items, notices, claiming)
        for position, flag in zip(steps, flags, strict=True):
            applied[position] = flag
        if rest:
            for position, flag in zip(rest, self._settle([outcomes[p] for p in rest]), strict=True):
                applied[position] = flag
        self._committed(notices)
        return applied

    def _settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        args: list[Any] = [len(outcomes)]
        for item in outcomes:
            if isinstance(item, Completion):
                if item.output_json is None:
                    args += ["c", item.job_id, item.lease_token, 0, ""]
                else:
                    args += ["c", item.job_id, item.lease_token, 1, item.output_json]
            elif isinstance(item, Failure):
                retry_at = "" if item.retry_at is None else to_us(item.retry_at, "retry_at")
                traceback = "" if item.traceback is None else "=" + item.traceback  # '' = none
                args += ["f", item.job_id, item.lease_token, item.error, item.reason, retry_at, traceback]
            elif isinstance(item, Release):
                args += ["r", item.job_id, item.lease_token, 1 if item.started else 0]
            elif isinstance(item, Wait):
                wake_at = "" if item.until is None else to_us(item.until, "until")
                args += ["w", item.job_id, item.lease_token, item.wait_json(), wake_at, item.token_id or ""]
            else:
                outcomes_by_kind([item])  # raises the TypeError naming the accepted kinds
        return [flag == 1 for flag in self._run("settle", "settle jobs", *args)]

    def set_progress(self, job_id: int, lease_token: int, progress: int) -> bool:
        check_int("progress", progress)
        if not 0 <= progress <= 100:
            raise ValueError(f"progress must be between 0 and 100, not {progress}")
        return bool(self._run("progress", f"store the progress of job {job_id}", job_id, lease_token, progress) == 1)

    def set_output(self, job_id: int, lease_token: int, output_json: str) -> bool:
        return bool(self._run("output", f"store the output of job {job_id}", job_id, lease_token, output_json) == 1)

    def reclaim_expired(self) -> list[ReclaimedJob]:
        reclaimed: list[ReclaimedJob] = []
        steps = self.workflow_advancer is not None
        if steps:
            reclaimed += self._expire_step_jobs()
        while True:
            flat = self._run("reclaim", "reclaim expired leases", _RECLAIM_BATCH, "1" if steps else "0")
            reclaimed += [ReclaimedJob(int(flat[k]), JobStatus(flat[k + 1])) for k in range(0, len(flat), 2)]
            if len(flat) < 2 * _RECLAIM_BATCH:
                return reclaimed

    def next_due_in(self, job_types: Sequence[str] | None) -> float | None:
        types = list(job_types) if job_types else []
        micros = int(self._run("next_due", "find the next due job", len(types), *types))
        return None if micros < 0 else micros / 1_000_000

    # -- durable handlers ----------------------------------------------------------------

    def save_step(self, job_id: int, lease_token: int, name: str, step_json: str) -> bool:
        member = f"{json.dumps(name)}:{step_json}"
        return bool(
            self._run("step", f"store a step of job {job_id}", job_id, lease_token, member, "", "", "", "") == 1
        )

    def create_token(self, job_id: int, lease_token: int, name: str, step_json: str, token: NewToken) -> bool:
        member = f"{json.dumps(name)}:{step_json}"
        timeout_at = "" if token.timeout_at is None else to_us(token.timeout_at, "timeout_at")
        args = (job_id, lease_token, member, token.id, token.signal or "", token.schema_json or "", timeout_at)
        return bool(self._run("step", f"create a token for job {job_id}", *args) == 1)

    def get_token(self, token_id: str) -> TokenRecord | None:
        reply = self._run("get_token", f"read token {token_id}", token_id)
        if not reply:
            return None
        fields = pairs_to_dict(reply[0])
        fields["status"] = shown_token_status(fields["status"], reply[1] or None)
        return _token(token_id, fields)

    def complete_token(self, token_id: str, data_json: str) -> TokenRecord:
        reply = self._run("complete_token", f"complete token {token_id}", token_id, data_json)
        if reply[0] == "ok":
            return _token(token_id, pairs_to_dict(reply[1]))
        if reply[0] == "missing":
            raise TokenNotFoundError(token_id)
        if reply[0] == "completed":
            raise TokenAlreadyCompletedError(f"token {token_id} was already completed: its data is kept")
        if reply[0] == "expired":
            raise TokenExpiredError(f"token {token_id} expired (its timeout passed): job {reply[1]} went on without it")
        raise TokenJobFinishedError(token_id, reply[1], None if reply[2] == "gone" else reply[2])

    def wake_due_jobs(self) -> int:
        woken = 0
        while True:
            batch = int(self._run("wake", "wake due jobs", _RECLAIM_BATCH))
            woken += batch
            if batch < _RECLAIM_BATCH:
                return woken

    def wait_for_jobs(self, timeout: float, job_types: Sequence[str] | None) -> None:
        if timeout <= 0:
            return
        keys = [f"{self._key}:wake:{t}" for t in job_types] if job_types else [f"{self._key}:wake"]
        self._guard("wait for new jobs", lambda: self._alarm.blpop(self._blocking, self._client, keys, timeout))

    # -- workflows (redis/_workflows.py) ----------------------------------------------------

    def _committed(self, notices: list[RunNotice]) -> None:
        if notices and self.workflow_advancer is not None:
            self.workflow_advancer.committed(notices)

    def _cancel_step_job(self, job_id: int) -> JobRecord:
        """Cancel a workflow step job and move its run, in one script."""
        problem: list[str] = []

        def plan(jobs: dict[int, dict[str, str]]) -> list[Ending | None]:
            job = jobs[job_id]
            problem[:] = [] if job["status"] in ("pending", "waiting", "processing") else [job["status"] or ""]
            if problem or job["workflow_run_id"] is None:
                return [None]
            index = None if job["workflow_item"] is None else int(job["workflow_item"])
            end = JobEnd(job_id, job["workflow_step"] or "", index, "cancelled", reason="cancelled")
            guard = [str(job_id), job["status"], job["lease_token"] or "0", ""]
            return [Ending(["x", str(job_id)], int(job["workflow_run_id"]), end, guard)]

        notices: list[RunNotice] = []
        self._workflows.jobs_ended(plan, [job_id], notices, f"cancel job {job_id}")
        if problem == [""]:
            raise JobNotFoundError(job_id)
        if problem:
            raise InvalidJobStateError(
                f"job {job_id} is {problem[0]}: only pending, waiting or processing jobs can be cancelled"
            )
        self._committed(notices)
        record = self.get_job(job_id)
        if record is None:  # pragma: no cover - jobs are never deleted
            raise JobNotFoundError(job_id)
        return record

    def _expire_step_jobs(self) -> list[ReclaimedJob]:
        """Step jobs whose lease expired on their last attempt: failed, their runs moved (workflow.lua)."""

        def candidates() -> list[Any]:
            seconds, micros = self._client.time()
            now = int(seconds) * 1_000_000 + int(micros)
            return list(
                self._client.zrangebyscore(f"{self._key}:processing", "-inf", f"({now}", start=0, num=_RECLAIM_BATCH)
            )

        ids = [int(i) for i in as_text(self._guard("find expired leases", candidates))]
        if not ids:
            return []
        extra = ("attempts", "max_attempts", "locked_by")

        def read() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            for job_id in ids:
                pipe.hmget(f"{self._key}:job:{job_id}", *extra)
            return list(pipe.execute())

        more = {job_id: as_text(row) for job_id, row in zip(ids, self._guard("read expired jobs", read), strict=True)}

        def plan(jobs: dict[int, dict[str, str]]) -> list[Ending | None]:
            planned: list[Ending | None] = []
            for job_id, job in jobs.items():
                attempts, max_attempts, locked_by = more[job_id]
                last = attempts is not None and max_attempts is not None and int(attempts) >= int(max_attempts)
                if job["status"] != "processing" or job["workflow_run_id"] is None or not last:
                    planned.append(None)
                    continue
                error = (
                    f"worker {locked_by or ''} stopped renewing its lease"
                    f" and the job has used all {max_attempts} attempts"
                )
                index = None if job["workflow_item"] is None else int(job["workflow_item"])
                end = JobEnd(job_id, job["workflow_step"] or "", index, "failed", None, "lease_expired", error)
                guard = [str(job_id), "processing", job["lease_token"] or "0", ""]
                planned.append(Ending(["e", str(job_id)], int(job["workflow_run_id"]), end, guard))
            return planned

        notices: list[RunNotice] = []
        flags = self._workflows.jobs_ended(plan, ids, notices, "fail expired step jobs")
        self._committed(notices)
        return [ReclaimedJob(job_id, JobStatus.FAILED) for job_id, flag in zip(ids, flags, strict=True) if flag]

    def create_workflow_runs(self, runs: Sequence[NewWorkflowRun], plan: RunChange) -> list[tuple[int, bool]]:
        notices: list[RunNotice] = []
        results = self._workflows.create(runs, plan, notices)
        self._committed(notices)
        return results

    def change_workflow_run(self, run_id: int, change: RunChange) -> WorkflowRun:
        notices: list[RunNotice] = []
        self._workflows.change(int(run_id), change, notices)
        self._committed(notices)
        run = self._workflows.get(int(run_id))
        assert run is not None
        return run

    def get_workflow_run(self, run_id: int) -> WorkflowRun | None:
        return self._workflows.get(int(run_id))

    def list_workflow_runs(self, run_filter: WorkflowFilter) -> WorkflowPage:
        return self._workflows.page(run_filter)

    # -- change feed (redis/changes.py) -------------------------------------------------

    # -- schedules (redis/_schedules.py) ------------------------------------------------

    def claim_tick(
        self, schedule: str, tick: datetime, job: NewJob | None, *, skip_while_unfinished: bool = False
    ) -> TickResult:
        add_args = [] if job is None else _add_args([job])
        args = _schedules.claim_args(schedule, tick, job, skip_while_unfinished, add_args)
        return _schedules.tick_result(self._run("claim_tick", f"claim a tick of schedule {schedule}", *args))

    def schedule_states(self) -> dict[str, ScheduleState]:
        entries = self._guard("read schedules", lambda: self._client.hgetall(f"{self._key}:schedules"))
        return _schedules.states(as_text(entries))

    def set_schedule_paused(self, schedule: str, paused: bool) -> ScheduleState:
        text = self._run("set_paused", f"pause or resume schedule {schedule}", schedule, int(paused))
        return _schedules.state_of(schedule, str(text))

    # -- clean-up (lua/prune.lua) -----------------------------------------------------------

    def delete_finished_jobs(
        self, statuses: Sequence[JobStatus], before: datetime, *, job_type: str | None = None, limit: int = 500
    ) -> int:
        wanted = [status.value for status in finished_statuses(statuses)]
        if limit <= 0 or not wanted:
            return 0
        args = (to_us(before, "before"), limit, job_type or "", "delete", 0, *wanted)
        return int(self._run("prune", "delete finished jobs", *args)[0])

    def delete_old_events(self, before: datetime, *, limit: int = 500) -> int:
        if limit <= 0:
            return 0
        return int(self._run("prune_events", "delete old job events", to_us(before, "before"), limit))

    def count_flow_control(self) -> FlowControlCounts:
        def read() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            pipe.hlen(f"{self._key}:conc:active")
            pipe.hlen(f"{self._key}:rate:end")
            return cast(list[Any], pipe.execute())

        slots, windows = self._guard("count flow-control entries", read)
        return FlowControlCounts(int(slots), int(windows))

    def prune_flow_control(self, *, limit: int = 500) -> int:
        # HSCAN of the rate windows from where the last call stopped (whole when it wraps),
        # a script per batch that deletes those ended by its clock; at most 10 x limit looked at
        if limit <= 0:
            return 0
        deleted, looked = 0, 0
        while deleted < limit and looked < 10 * limit:
            cursor, batch = self._guard(
                "scan the rate windows",
                lambda: self._client.hscan(f"{self._key}:rate:end", self._flow_cursor, count=limit),
            )
            self._flow_cursor = int(cursor)
            keys = [as_text(key) for key in batch][: limit - deleted]
            looked += max(len(batch), 1)
            if keys:
                deleted += int(self._run("prune_flow", "prune ended rate windows", *keys))
            if self._flow_cursor == 0:
                break
        return deleted

    def count_finished_jobs(
        self, statuses: Sequence[JobStatus], before: datetime, *, job_type: str | None = None
    ) -> int:
        wanted = [status.value for status in finished_statuses(statuses)]
        total, offset = 0, 0
        while wanted and offset >= 0:  # a page per call: no long script
            page = self._run(
                "prune", "count finished jobs", to_us(before, "before"), 1000, job_type or "", "count", offset, *wanted
            )
            total += int(page[0])
            offset = int(page[1])
        return total

    def change_cursor(self) -> str:
        return changes.change_cursor(self)

    def read_changes(self, after: str, limit: int = 500) -> list[Change]:
        return changes.read_changes(self, after, limit)

    def wait_for_changes(self, after: str, timeout: float) -> None:
        changes.wait_for_changes(self, after, timeout)
