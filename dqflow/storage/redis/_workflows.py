"""Redis's half of workflow runs (storage/workflows.py): optimistic, version-guarded advances.

Lua cannot run the Python that plans a run, so each change is planned in Python
from the run's state, then applied by ``lua/workflow.lua`` only if nothing it
was planned from has moved: the run's ``version`` and each step job's status,
lease token and run. Each run of a call is guarded on its own: a run whose
guards fail gets nothing written and is answered ``conflict``; it is read and
planned again (at most ``MAX_ATTEMPTS`` times). The script draws the ids of the
jobs an advance inserts and fills them into the stored step state (planned with
placeholders), and answers the first one, so the process knows the state it wrote.
The plan goes as flat ARGV (no JSON for the script to decode), the step state as text
pieces around the holes for those ids (no search of the text in Lua), each step's text
encoded only where the advance does not know it (``Advance.step_texts``).

A worker's settle plans from what it already holds: the step job as it claimed it
(the script checks it still holds it) and the run as this process last wrote it
(:class:`~dqflow.storage.run_states.WrittenRunStates`; read when unknown). A worker that settles a run's step
usually settles the next one too: a linear chain costs one script call per step,
no read. A run that another process moved meanwhile conflicts once, then is read;
while such conflicts are frequent (several workers on the same runs), runs are read
before planning, as if unknown.

Eager dispatch (``settle_and_claim``): a settle's plan marks the new jobs its ``StepClaim``
may take, and ``workflow.lua`` writes the first of them, up to the claim's limit, already
claimed for the settling worker; ``_move`` knows which from the runs applied, and builds
their records from the plan and the script's clock (``Claiming``), with no read. A run
planned again after a conflict claims only what the calls before it left of the limit.

Keys (all under the queue's ``{prefix}``): ``P:wfrun:<id>`` (hash: the
``WorkflowRun`` columns, timestamps in µs), ``P:wfrun_id`` (counter),
``P:wfruns`` and ``P:wfruns:name:<name>`` / ``P:wfruns:status:<status>``
(sorted sets of run ids, score = id), ``P:wfrun_idempotency`` (hash: key → id).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import TYPE_CHECKING, Any, NamedTuple

from dqflow.errors import StorageError, WorkflowRunNotFoundError
from dqflow.json_values import loads
from dqflow.storage.base import JOB_OPTIONS, Completion, Failure, NewJob, StepClaim
from dqflow.storage.redis.codec import HashRecords, as_text, encode_option, from_us, tag_set, tags_json
from dqflow.storage.run_states import WrittenRunStates
from dqflow.storage.workflows import (
    Advance,
    JobEnd,
    NewWorkflowRun,
    RunChange,
    RunNotice,
    RunState,
    WorkflowFilter,
    encode_step,
    planned_starts,
    run_from_fields,
    state_from_fields,
)
from dqflow.workflow_record import WorkflowPage, WorkflowRun

if TYPE_CHECKING:
    from dqflow.record import JobRecord
    from dqflow.storage.redis.backend import RedisStorage

MAX_ATTEMPTS = 200
"""How often a change is computed again after a conflict before it gives up (each conflict
means another change of the run went through: the runs always make progress)."""

TRUST_LIMIT = 64
"""How far ``RedisWorkflows._judge``'s count goes either way: a change of pattern turns it
within a batch or two."""

_STATE_FIELDS = ("id", "name", "status", "input", "tags", "steps", "version")
"""The run hash fields a ``RunState`` is read from."""

# options the script writes itself (id, type, payload, priority, the run, times) or a step job never has
_PLACED = frozenset({"job_type", "payload_json", "priority", "run_at", "idempotency_key", "workflow_run_id"})
_SHARED = tuple(o for o in JOB_OPTIONS if o.name not in _PLACED and o.name != "workflow_item")
_ITEM = next(o for o in JOB_OPTIONS if o.name == "workflow_item")
_shared_values = attrgetter("job_type", "priority", *(o.name for o in _SHARED))
_JobShape = tuple[str, str, list[str], list[str], list[HashRecords]]
_shapes: dict[tuple[Any, ...], _JobShape] = {}


def _shape(key: tuple[Any, ...]) -> _JobShape:
    """Type, priority, hash fields and tag index keys of jobs with these option values, and a
    place for the maker of their records when claimed (``_claimed_records``; memoised: a step
    job's options come from its type's declaration, so a few shapes serve every job)."""
    shape = _shapes.get(key)
    if shape is None:
        fields: list[str] = []
        tags: tuple[str, ...] = ()
        for option, value in zip(_SHARED, key[2:], strict=True):
            if option.name == "tags":
                tags = value
                continue
            encoded = encode_option(option, value)
            if encoded is not None:
                fields += (option.column, str(encoded))
        tag_keys: list[str] = []
        if tags:
            unique, signature = tag_set(tags)
            fields += ("tags", tags_json(tags), "tagset", signature)
            tag_keys = [f":tagset:{signature}", *(f":tag:{tag}" for tag in unique)]
        shape = (key[0], str(key[1]), fields, tag_keys, [])
        if len(_shapes) >= 256:
            _shapes.clear()
        _shapes[key] = shape
    return shape


_CLAIMED_VARYING = (
    "id",
    "payload",
    "workflow_run_id",
    "workflow_item",
    "run_at",
    "created_at",
    "updated_at",
    "locked_by",
    "locked_at",
    "lease_expires_at",
    "started_at",
)
"""The fields of a claimed step job's hash that are not its shape's (``workflow.lua`` writes them)."""


def _claimed_records(shape: _JobShape) -> HashRecords:
    """The maker of the records of the jobs of ``shape`` as ``workflow.lua`` stores them claimed."""
    made = shape[4]
    if not made:
        job_type, priority, fields, _, _ = shape
        it = iter(fields)
        stored = dict(zip(it, it, strict=True))
        stored.update(job_type=job_type, status="processing", priority=priority, attempts="1", lease_token="1")
        made.append(HashRecords(stored, _CLAIMED_VARYING))
    return made[0]


_JOB_IDS = '"job_ids":['


def _optional(value: str | None) -> str:
    """An optional text as ``workflow.lua`` reads it: '' for none, else '=' and the text."""
    return "" if value is None else "=" + value


def _around_ids(step: dict[str, Any], text: str) -> tuple[str, str]:
    """A step's JSON text before and after the contents of its ``job_ids`` list."""
    if text.count(_JOB_IDS) == 1:  # only the step's own key (none of its values holds one)
        at = text.index(_JOB_IDS) + len(_JOB_IDS)
        return text[:at], text[text.index("]", at) :]
    items = list(step.items())
    at = next(position for position, (name, _) in enumerate(items) if name == "job_ids")
    head, tail = encode_step(dict(items[:at])), encode_step(dict(items[at + 1 :]))
    return head[:-1] + ("," if at else "") + _JOB_IDS, "]" + ("," if len(tail) > 2 else "") + tail[1:]


_HOLE = "\x00"


def _holes(job_ids: list[int], holes: list[str]) -> str:
    """The contents of a ``job_ids`` list, each run of consecutive placeholders -k, -k-1, ... a
    ``_HOLE`` (its k and count appended to ``holes``)."""
    parts: list[str] = []
    position, count = 0, len(job_ids)
    while position < count:
        job_id = job_ids[position]
        if job_id >= 0:
            parts.append(str(job_id))
            position += 1
            continue
        end = position + 1
        while end < count and job_ids[end] == job_ids[end - 1] - 1:
            end += 1
        parts.append(_HOLE)
        holes += (str(-job_id), str(end - position))
        position = end
    return ",".join(parts)


def _step_state(advance: Advance) -> tuple[list[str], int]:
    """A run's step state as ``workflow.lua`` reads it: the count of holes, the text up to the
    first one, then per hole the first new job it names (k of placeholder -k), how many, and the
    text after it: the script fills in the ids it draws, with no search of the text. Each step
    is encoded on its own, only where ``advance.step_texts`` does not know it (the steps the
    advance changed). Also answers the text's length."""
    steps = advance.steps
    texts = advance.step_texts
    if texts is None or len(texts) != len(steps):
        texts = advance.step_texts = [None] * len(steps)
    marked: list[str] = []
    holes: list[str] = []
    for index, step in enumerate(steps):
        text = texts[index]
        if text is None:
            text = texts[index] = encode_step(step)
        job_ids = step["job_ids"]
        if job_ids and min(job_ids) < 0:
            before, after = _around_ids(step, text)
            text = before + _holes(job_ids, holes) + after
        marked.append(text)
    # a JSON text holds no NUL (a string escapes it): it marks the holes
    text = "[" + ",".join(marked) + "]"
    if not holes:
        return ["0", text], len(text)
    pieces = text.split(_HOLE)
    args = [str(len(pieces) - 1), pieces[0]]
    for hole, piece in enumerate(pieces[1:]):
        args += (holes[2 * hole], holes[2 * hole + 1], piece)
    return args, len(text)


class Claiming:
    """A ``StepClaim`` being served by one settle (``RedisStorage.settle_and_claim``): what is
    left of its limit over the settle's script calls (a run planned again after a conflict
    claims from what the calls before it left), and the records of the jobs claimed."""

    __slots__ = ("claim", "lease_us", "left", "now", "records", "worker")

    def __init__(self, claim: StepClaim) -> None:
        self.claim = claim
        self.worker = claim.worker_id
        self.left = claim.limit
        self.lease_us = int(claim.lease_ms) * 1000
        self.now = time.time()
        self.records: list[JobRecord] = []

    def claimed(self, job_id: int, run_id: int, job: NewJob, shape: _JobShape, item: str, now_s: str) -> None:
        """Add the record of a job ``workflow.lua`` stored claimed, from its hash as the script
        wrote it (its shape's fields, the claim's), read as ``get_job`` reads it."""
        values = {
            "id": str(job_id),
            "payload": job.payload_json,
            "workflow_run_id": str(run_id),
            "workflow_item": item or None,
            "run_at": now_s,
            "created_at": now_s,
            "updated_at": now_s,
            "locked_by": self.worker,
            "locked_at": now_s,
            "lease_expires_at": str(int(now_s) + self.lease_us),
            "started_at": now_s,
        }
        self.records.append(_claimed_records(shape).record(values))
        self.left -= 1


class _Plan:
    """One ``workflow.lua`` call being built, as its flat ARGV (no JSON for the script to decode):
    the job shapes the new jobs share (each sent once), the runs to guard and move, the runs to
    create. ``lua/workflow.lua`` describes the layout."""

    __slots__ = (
        "_shape_at",
        "_shape_list",
        "claimable",
        "claiming",
        "create_count",
        "creates",
        "events",
        "new_jobs",
        "picks",
        "run_count",
        "runs",
        "shapes",
    )

    def __init__(self, claiming: Claiming | None = None) -> None:
        #: the events and job ids the script draws in one go: one per completion and per new job
        self.events = 0
        self.new_jobs = 0
        self.shapes: list[str] = ["0"]
        self._shape_at: dict[tuple[Any, ...], int] = {}
        self._shape_list: list[_JobShape] = []
        self.runs: list[str] = []
        self.run_count = 0
        self.creates: list[str] = []
        self.create_count = 0
        #: eager dispatch: the claim served, and per run the new jobs it may claim (position,
        #: job, shape, fan-out index), how many in all
        self.claiming = claiming
        self.picks: list[list[tuple[int, NewJob, _JobShape, str]]] = []
        self.claimable = 0

    def run(self, run_id: int, state: RunState | None, group: Sequence[Ending], advance: Advance | None) -> int:
        """Add a run: its guards (its version and status as read, none without ``state``; its jobs'),
        its jobs' ends and its move (none without ``advance``). Answers the size of its step state."""
        record = [str(run_id), "", ""] if state is None else [str(run_id), str(state.version), state.status.value]
        record.append(str(len(group)))
        for ending in group:
            record += ending.guard
        record.append(str(len(group)))
        for ending in group:
            op = ending.op
            if op[0] == "c":
                self.events += 1
            record += op
        if self.claiming is not None:
            self.picks.append([])
        size = self._move(record, advance)
        self.runs.append(str(len(record)))
        self.runs += record
        self.run_count += 1
        return size

    def create(self, run: NewWorkflowRun, advance: Advance) -> None:
        """Add a run to create, then move to its planned state."""
        record = [run.name, run.input_json, json.dumps(list(run.tags)), _optional(run.idempotency_key)]
        self._move(record, advance)
        self.creates.append(str(len(record)))
        self.creates += record
        self.create_count += 1

    def _move(self, record: list[str], advance: Advance | None) -> int:
        """Append what the script writes for one run's advance; its new jobs keep their placeholders
        in the step state (the script draws their ids and fills them in). Answers the state's size."""
        if advance is None:
            record.append("0")
            return 0
        new_jobs = advance.new_jobs
        self.new_jobs += len(new_jobs)
        self.events += len(new_jobs)
        record += ("1", advance.status.value, str(len(new_jobs)))
        claiming = self.claiming
        if claiming is None or claiming.left <= 0:
            for job in new_jobs:
                record += self._job(job)
        else:
            claim, now, picks = claiming.claim, claiming.now, self.picks[-1]
            for position, job in enumerate(new_jobs):
                entry = self._job(job)
                if claim.takes(job, now):  # the script claims it if the limit is not reached yet
                    picks.append((position, job, self._shape_list[int(entry[0]) - 1], entry[2]))
                    entry = ("-" + entry[0], entry[1], entry[2])
                record += entry
            self.claimable += len(picks)
        output, reason, error = advance.output_json, advance.failure_reason, advance.error
        cancels, retries = advance.cancel_job_ids, advance.retry_job_ids
        if output is None and reason is None and error is None and not cancels and not retries:
            record.append("0")  # a step's usual move: none of these
        else:
            record += ("1", _optional(output), _optional(reason), _optional(error))
            record += (_optional(advance.cancel_reason), str(len(cancels)), *map(str, cancels))
            record += (str(len(retries)), *map(str, retries))
        pieces, size = _step_state(advance)
        record += pieces
        return size

    def _job(self, job: NewJob) -> tuple[str, str, str]:
        """A new job: its shape's place (1-based), its payload and its fan-out index ('' = none)."""
        key = _shared_values(job)
        at = self._shape_at.get(key)
        if at is None:
            shape = _shape(key)
            job_type, priority, fields, tag_keys, _ = shape
            self.shapes += (job_type, priority, str(len(fields)), *fields, str(len(tag_keys)), *tag_keys)
            self._shape_list.append(shape)
            at = self._shape_at[key] = len(self._shape_at) + 1
            self.shapes[0] = str(at)
        item = job.workflow_item
        return str(at), job.payload_json, "" if item is None else str(encode_option(_ITEM, item))

    def args(self) -> list[str]:
        """The script's ARGV: the ids to draw, the shapes, the runs, the creates."""
        claiming = self.claiming
        if claiming is None or not self.claimable:
            counts = [str(self.events), str(self.new_jobs)]
        else:  # and a `processing` event per job it claims
            left = claiming.left
            claim = claiming.claim
            events = self.events + min(left, self.claimable)
            counts = ["c", claim.worker_id, str(int(claim.lease_ms)), str(left), str(events), str(self.new_jobs)]
        return [*counts, *self.shapes, str(self.run_count), *self.runs, str(self.create_count), *self.creates]


def _moved_state(state: RunState, advance: Advance, first_job: int) -> RunState:
    """``state`` after ``advance`` was written, its new jobs numbered from ``first_job``."""
    return advance.written_state(state, range(first_job, first_job + len(advance.new_jobs)))


class Ending(NamedTuple):
    """A step job's end as ``workflow.lua`` applies it: its op, its run, its ``JobEnd``, and the
    guard of the job (id, status, lease token ('' = any), run id ('' = any)) it needs to hold."""

    op: list[Any]
    run_id: int
    end: JobEnd
    guard: list[str]


class RedisWorkflows:
    """The workflow half of one ``RedisStorage``."""

    def __init__(self, storage: RedisStorage) -> None:
        self._storage = storage
        self._key = storage._key
        #: how many computed changes were refused as stale and computed again (diagnostics)
        self.conflicts = 0
        #: running runs as this process last wrote them (``settle`` plans from them)
        self._known = WrittenRunStates()
        #: held - 3 x stale over recent settles, within +-TRUST_LIMIT (see ``_judge``)
        self._trust = 0

    # -- reading ---------------------------------------------------------------------

    def _hashes(self, run_ids: Sequence[int]) -> list[dict[str, str]]:
        client = self._storage._client

        def read() -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for run_id in run_ids:
                pipe.hgetall(f"{self._key}:wfrun:{run_id}")
            return list(pipe.execute())

        return self._text(self._storage._guard("read workflow runs", read)) if run_ids else []

    @staticmethod
    def _record(fields: dict[str, str]) -> WorkflowRun:
        decoded: dict[str, Any] = dict(fields)
        for name in ("created_at", "updated_at", "completed_at"):
            decoded[name] = from_us(fields[name]) if fields.get(name) else None
        return run_from_fields(decoded)

    def get(self, run_id: int) -> WorkflowRun | None:
        found = self._hashes([run_id])[0]
        return self._record(found) if found else None

    def page(self, run_filter: WorkflowFilter) -> WorkflowPage:
        """Newest first from the name index (or one status's, or every run's), the rest filtered as they come."""
        client = self._storage._client
        wanted = {status.value for status in run_filter.statuses}
        if run_filter.name is not None:
            index = f"{self._key}:wfruns:name:{run_filter.name}"
        elif len(wanted) == 1:
            index = f"{self._key}:wfruns:status:{next(iter(wanted))}"
        else:
            index = f"{self._key}:wfruns"
        top = "+inf" if run_filter.cursor is None else f"({run_filter.cursor}"
        runs: list[WorkflowRun] = []
        more = False
        while True:

            def step(high: str = top) -> Any:
                return client.zrevrangebyscore(index, high, "-inf", start=0, num=200)

            ids = as_text(self._storage._guard("list workflow runs", step))
            if not ids:
                break
            for fields in self._hashes([int(i) for i in ids]):
                if fields and (not wanted or fields["status"] in wanted):
                    if len(runs) == run_filter.limit:
                        more = True
                        break
                    runs.append(self._record(fields))
            if more or len(ids) < 200:
                break
            top = f"({ids[-1]}"
        return WorkflowPage(runs=runs, next_cursor=runs[-1].id if more and runs else None)

    def _read_states(self, pipe: Any, run_ids: Sequence[int]) -> None:
        """Queue the reads of the runs' states on ``pipe`` (``_decoded_states`` reads the replies)."""
        for run_id in run_ids:
            pipe.hmget(f"{self._key}:wfrun:{run_id}", *_STATE_FIELDS)

    def _decoded_states(self, run_ids: Sequence[int], rows: Sequence[Any]) -> dict[int, RunState]:
        """The states of the runs that exist, from the replies of ``_read_states``."""
        states: dict[int, RunState] = {}
        for run_id, row in zip(run_ids, self._text(rows), strict=True):
            if row[0] is not None:
                states[run_id] = state_from_fields(dict(zip(_STATE_FIELDS, row, strict=True)))
        return states

    def _read(self, run_ids: Sequence[int], job_ids: Sequence[int] = ()) -> list[Any]:
        """The runs' state fields (as ``_read_states`` queues them), then the jobs' stored
        outputs, in one script call (``lua/read_runs.lua``)."""
        args = [len(_STATE_FIELDS), *_STATE_FIELDS, len(run_ids), *run_ids, *job_ids]
        return list(self._storage._run("read_runs", "read workflow runs", *args))

    def _states(self, run_ids: Sequence[int]) -> dict[int, RunState]:
        ids = sorted(set(run_ids))
        if not ids:
            return {}
        return self._decoded_states(ids, self._read(ids))

    # -- what this process last wrote --------------------------------------------------------

    def _judge(self, held: int, stale: int) -> None:
        """Count how often the known states held (or would have) against how often they were
        stale: planning from a stale one wastes the plan and a round trip, so ``settle``
        trusts them only while they hold at least three times in four (another process
        settling the same runs, e.g. several workers on one chain, makes them stale)."""
        self._trust = max(-TRUST_LIMIT, min(TRUST_LIMIT, self._trust + held - 3 * stale))

    # -- applying ----------------------------------------------------------------------

    def _apply(self, plan: _Plan) -> list[Any]:
        return list(self._storage._run("workflow", "move workflow runs", *plan.args()))

    def _move(
        self,
        endings: Sequence[Ending],
        states: dict[int, RunState],
        notices: list[RunNotice],
        claiming: Claiming | None = None,
    ) -> set[int]:
        """End the jobs and move their runs (from ``states``, as read or known) in one script call;
        each run's part is written only if its guards hold. Answers the runs whose guards failed
        (nothing of them written). With ``claiming``, the new jobs it may take are claimed by the
        script (up to what is left of its limit) and their records added to it."""
        advancer = self._storage.workflow_advancer
        by_run: dict[int, list[Ending]] = {}
        for ending in endings:
            by_run.setdefault(ending.run_id, []).append(ending)
        plan = _Plan(claiming)
        planned: list[tuple[RunState | None, Advance | None, int]] = []
        for run_id, group in by_run.items():
            state, advance = states.get(run_id), None
            if state is not None and advancer is not None:
                advance = advancer.job_ended(state, [e.end for e in group])
                if not advance.changed:
                    advance = None
            planned.append((state, advance, plan.run(run_id, state, group, advance)))
        reply = self._apply(plan)
        conflicts: set[int] = set()
        for run_id, (state, advance, size), answer in zip(by_run, planned, reply[1:], strict=True):
            if answer == "conflict":
                conflicts.add(run_id)
                self._known.forget(run_id)
            elif state is not None and advance is not None:
                self._known.keep(_moved_state(state, advance, int(answer)), size)
                notices.extend(RunNotice(run_id, state.name, s, advance.failure_reason) for s in advance.notices)
        if claiming is not None and plan.claimable:
            # the script claimed the first of the jobs it may take, up to the limit, in the order
            # written (the runs it applied, in plan order): the same ones, from what the plan holds
            now_s = reply[0]
            for run_id, answer, picks in zip(by_run, reply[1:], plan.picks, strict=True):
                if answer == "conflict" or not picks:
                    continue
                first = int(answer)
                for position, job, shape, item in picks:
                    if claiming.left <= 0:
                        return conflicts
                    claiming.claimed(first + position, run_id, job, shape, item, now_s)
        return conflicts

    def _until_applied(self, attempt: Callable[[], list[Any] | None], what: str) -> list[Any]:
        for tries in range(MAX_ATTEMPTS):
            reply = attempt()
            if reply is not None and reply[0] != "conflict":
                return reply
            self.conflicts += 1
            if tries >= 2:  # many writers on one run: step aside a little, at random
                time.sleep(random.uniform(0, min(0.02, 0.001 * tries)))
        raise StorageError(f"Redis at {self._storage.url}: {what} kept conflicting with other changes; try again")

    # -- the contract's operations ----------------------------------------------------------

    def create(
        self, runs: Sequence[NewWorkflowRun], plan: RunChange, notices: list[RunNotice]
    ) -> list[tuple[int, bool]]:
        """Plan the runs' starts, then store them in one script call that draws their ids itself."""
        advances = planned_starts(runs, plan)
        if not runs:
            return []
        call = _Plan()
        for run, advance in zip(runs, advances, strict=True):
            call.create(run, advance)
        reply = self._apply(call)
        results: list[tuple[int, bool]] = []
        for index, (run, advance) in enumerate(zip(runs, advances, strict=True)):
            run_id, created = int(reply[2 * index + 1]), reply[2 * index + 2] == "1"
            results.append((run_id, created))
            if created:
                notices.extend(RunNotice(run_id, run.name, s, advance.failure_reason) for s in advance.notices)
        return results

    def change(self, run_id: int, change: RunChange, notices: list[RunNotice]) -> None:
        found: list[RunNotice] = []

        def attempt() -> list[Any]:
            state = self._states([run_id]).get(run_id)
            if state is None:
                raise WorkflowRunNotFoundError(run_id)
            advance = change(state)
            found[:] = [RunNotice(run_id, state.name, s, advance.failure_reason) for s in advance.notices]
            plan = _Plan()
            plan.run(run_id, state, (), advance if advance.changed else None)
            return self._apply(plan)[1:]

        self._until_applied(attempt, f"changing workflow run {run_id}")
        self._known.forget(run_id)
        notices.extend(found)

    def jobs_ended(
        self,
        ops: Callable[[dict[int, dict[str, str]]], list[Ending | None]],
        job_ids: Sequence[int],
        notices: list[RunNotice],
        what: str,
        run_ids: Sequence[int] = (),
        claiming: Claiming | None = None,
    ) -> list[bool]:
        """End step jobs and move their runs in one script, retried (the runs that conflicted) until applied.

        ``run_ids``: the runs the jobs are expected to belong to (read with the jobs).

        ``ops`` gets the hash fields of the jobs still to plan (by id, in ``job_ids`` order: all of
        them, then those of the runs that conflicted) and answers per job, in that order, its
        ``Ending``, or None for a job it leaves alone (not held). ``claiming``: the claim the runs' new jobs are
        claimed for (``_move``).
        """
        flags = [False] * len(job_ids)
        client = self._storage._client
        fields = ("status", "lease_token", "workflow_run_id", "workflow_step", "workflow_item", "output")
        pending = list(range(len(job_ids)))
        known = sorted(set(run_ids))
        for tries in range(MAX_ATTEMPTS):
            ids = [job_ids[p] for p in pending]

            def read(ids: list[int] = ids, runs: list[int] = known) -> list[Any]:
                pipe = client.pipeline(transaction=False)  # the jobs and the runs they are expected to belong to
                for job_id in ids:
                    pipe.hmget(f"{self._key}:job:{job_id}", *fields)
                self._read_states(pipe, runs)
                return list(pipe.execute())

            replies = self._text(self._storage._guard("read step jobs", read))
            rows = replies[: len(ids)]
            jobs = {job_id: dict(zip(fields, row, strict=True)) for job_id, row in zip(ids, rows, strict=True)}
            states = self._decoded_states(known, replies[len(ids) :])
            planned = ops(jobs)
            chosen = [(p, e) for p, e in zip(pending, planned, strict=True) if e is not None]
            for p, ending in zip(pending, planned, strict=True):
                flags[p] = ending is not None
            if not chosen:
                return flags
            states.update(self._states([e.run_id for _, e in chosen if e.run_id not in states]))
            conflicts = self._move([e for _, e in chosen], states, notices, claiming)
            if not conflicts:
                return flags
            self.conflicts += 1
            pending = [p for p, e in chosen if e.run_id in conflicts]
            known = sorted(conflicts)
            if tries >= 2:  # many writers on one run: step aside a little, at random
                time.sleep(random.uniform(0, min(0.02, 0.001 * tries)))
        raise StorageError(f"Redis at {self._storage.url}: {what} kept conflicting with other changes; try again")

    def settle(
        self, items: Sequence[Completion | Failure], notices: list[RunNotice], claiming: Claiming | None = None
    ) -> list[bool]:
        """End step jobs that completed or failed for good (each naming its run), their runs moved.

        Planned first from what the worker holds: the job as claimed (``workflow.lua`` checks
        it is still processing under that lease token, in that run) and each run as this
        process last wrote it (read if unknown, or while those states keep turning out stale:
        ``_judge``). The runs whose guards fail then go the way of ``jobs_ended``: jobs and
        runs read, planned again, until applied. ``claiming``: the claim the runs' new jobs
        are claimed for in the same script calls (eager dispatch), its limit over all of them.
        """
        runs = {item.workflow_run_id for item in items if item.workflow_run_id is not None}
        known = {run_id: state for run_id in runs if (state := self._known.get(run_id)) is not None}
        trusted = self._trust >= 0
        states = dict(known) if trusted else {}
        unknown = sorted(runs - states.keys())
        kept = [item.job_id for item in items if isinstance(item, Completion) and item.output_json is None]
        stored: dict[int, str | None] = {}
        if unknown or kept:
            replies = self._read(unknown, kept)
            states.update(self._decoded_states(unknown, replies[: len(unknown)]))
            stored = dict(zip(kept, replies[len(unknown) :], strict=True))
            if not trusted:  # would the known states have held? What was read tells.
                versions = {run_id: state.version for run_id, state in states.items()}
                held = sum(1 for run_id, state in known.items() if versions.get(run_id) == state.version)
                self._judge(held, len(known) - held)
        endings = [_held_ending(item, states, stored) for item in items]
        conflicts = self._move(endings, states, notices, claiming)
        if trusted:
            stale = len(conflicts & known.keys())
            self._judge(len(known) - stale, stale)
        if not conflicts:
            return [True] * len(items)
        self.conflicts += 1
        again = [p for p, item in enumerate(items) if item.workflow_run_id in conflicts]
        retried = [items[p] for p in again]
        ids = [item.job_id for item in retried]
        flags = [True] * len(items)
        retried_flags = self.jobs_ended(
            settle_ops(retried), ids, notices, "settle step jobs", sorted(conflicts), claiming
        )
        for p, flag in zip(again, retried_flags, strict=True):
            flags[p] = flag
        return flags

    def _text(self, value: Any) -> Any:
        return value if self._storage._decoded else as_text(value)


def _place(state: RunState | None, job_id: int) -> tuple[str, int | None]:
    """The step of ``state`` whose jobs include ``job_id``, and the job's fan-out index ('' if none)."""
    if state is not None:
        for step in state.steps:
            job_ids = step["job_ids"]
            if job_id in job_ids:
                return step["name"], job_ids.index(job_id) if step["outputs"] is not None else None
    return "", None


def _ending(
    item: Completion | Failure, run_id: int, step: str, index: int | None, stored: str | None, guard: list[str]
) -> Ending:
    """The ``Ending`` of a completion or failure for good (``stored``: the job's output as stored)."""
    if isinstance(item, Completion):
        text = item.output_json if item.output_json is not None else stored
        output = loads(text)
        has = "0" if item.output_json is None else "1"
        op: list[Any] = ["c", guard[0], has, item.output_json or ""]
        return Ending(op, run_id, JobEnd(item.job_id, step, index, "completed", output), guard)
    traceback = "" if item.traceback is None else "=" + item.traceback
    op = ["f", guard[0], item.error, item.reason, traceback]
    return Ending(op, run_id, JobEnd(item.job_id, step, index, "failed", None, item.reason, item.error), guard)


def _held_ending(item: Completion | Failure, states: dict[int, RunState], stored: dict[int, str | None]) -> Ending:
    """The ``Ending`` of a step job as the worker holds it (its run named by the item)."""
    run_id = item.workflow_run_id or 0
    step, index = _place(states.get(run_id), item.job_id)
    guard = [str(item.job_id), "processing", str(item.lease_token), str(run_id)]
    return _ending(item, run_id, step, index, stored.get(item.job_id), guard)


def settle_ops(items: Sequence[Completion | Failure]) -> Callable[[dict[int, dict[str, str]]], list[Ending | None]]:
    """The ``jobs_ended`` planner of a batch of step-job completions and failures for good."""

    by_id = {item.job_id: item for item in items}

    def plan(jobs: dict[int, dict[str, str]]) -> list[Ending | None]:
        planned: list[Ending | None] = []
        for job_id, job in jobs.items():
            item = by_id[job_id]
            token = job["lease_token"] or "0"
            if job["status"] != "processing" or token != str(item.lease_token) or job["workflow_run_id"] is None:
                planned.append(None)
                continue
            index = None if job["workflow_item"] is None else int(job["workflow_item"])
            guard = [str(item.job_id), "processing", token, ""]
            planned.append(
                _ending(item, int(job["workflow_run_id"]), job["workflow_step"] or "", index, job["output"], guard)
            )
        return planned

    return plan
