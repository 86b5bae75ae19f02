"""Runs attempts: a handler on a thread, as a task or in a child process, turned into ONE outcome.

Everything that may be slow or is user code runs off the event loop: a sync or
isolated handler's result is validated and encoded on its handler thread, an
async handler's result on a small pool of threads. The loop only starts runs,
keeps their timers and hands each settled attempt to ``on_settled`` once; the
first thing that settles an attempt (its result, its timeout) wins.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dqflow.declaration import RetryPolicy
from dqflow.durable.context import WaitRequested
from dqflow.errors import ValidationFailed
from dqflow.queue import Queue
from dqflow.queue.events import JOB_PROCESSING
from dqflow.record import FailureReason, JobRecord
from dqflow.storage import Completion, Failure, Wait
from dqflow.worker._attempt import Attempt, Settled
from dqflow.worker._errors import ERROR_LIMIT, cut, error_message, traceback_text
from dqflow.worker.context import JobContext, WriteStats
from dqflow.worker.handlers import HandlerInfo, handler_arguments, inspect_handler
from dqflow.worker.isolation import HandlerFailed, prewarm, run_in_process
from dqflow.worker.threads import HandlerThreads, ThreadResult, Work

log = logging.getLogger("dqflow.worker")

_SMOOTHING = 0.2  # weight of the newest sample in a moving average


class Executor:
    """Runs up to ``concurrency`` attempts at once; reports each as one ``Settled`` (or none, if dropped).

    ``on_change`` is called on the loop when a slot frees or an attempt is dropped.
    """

    def __init__(
        self,
        queue: Queue,
        loop: asyncio.AbstractEventLoop,
        concurrency: int,
        stats: WriteStats,
        worker_id: str,
        on_settled: Callable[[Settled], None],
        on_change: Callable[[], None],
    ) -> None:
        self._queue = queue
        self._loop = loop
        self._stats = stats
        self._worker_id = worker_id
        self._on_settled = on_settled
        self._on_change = on_change
        self._concurrency = concurrency
        self._tracing = queue.tracing
        self._handlers: dict[str, HandlerInfo] = {}
        self.active: dict[int, Attempt] = {}  # running, outcome not decided yet
        self.occupied = 0  # slots in use (an attempt settled by its timeout may still occupy a thread)
        self._slots = threading.Lock()  # a slot is taken on the loop or on a thread that waited for work
        self.run_time: float | None = None  # seconds a slot is held per job, a moving average (None: none ran)
        self.last_turn = 0.0  # time.monotonic() when a job last started or ended
        self._source: Callable[[], Attempt | None] = lambda: None
        # one thread per slot, and one more to wait for new work (``wait_for_work``)
        self._threads: HandlerThreads[Attempt] = HandlerThreads(concurrency + 1, loop, self._threads_done, self._pull)
        # results of async handlers are validated here, never on the loop
        self._outputs = ThreadPoolExecutor(min(4, concurrency), thread_name_prefix="dqflow-output")
        if any(spec.isolation == "process" for spec in queue.declaration.job_types.values()):
            prewarm()

    def shutdown(self) -> None:
        self._threads.shutdown()
        self._outputs.shutdown(wait=False, cancel_futures=True)

    # -- starting --------------------------------------------------------------------

    def prepare(self, job: JobRecord) -> Attempt:
        """The attempt for a job just claimed (it may wait in the fetcher's buffer before it starts)."""
        attempt = Attempt(job, JobContext(self._queue, job, self._stats))
        spec = self._queue.declaration.job_types[job.job_type]
        # with tracing on, every run starts on the loop, inside its span
        plain = spec.isolation != "process" and not self._handler(job.job_type).is_async
        attempt.on_thread = plain and self._tracing is None
        return attempt

    def pull_from(self, source: Callable[[], Attempt | None]) -> None:
        """Where a handler thread that finished a job takes the next one (``on_thread`` ones only)."""
        self._source = source

    @property
    def free(self) -> int:
        """Slots free now."""
        return self._concurrency - self.occupied

    @property
    def concurrency(self) -> int:
        """Slots in all."""
        return self._concurrency

    def take_slot(self) -> bool:
        """Take a free slot for an attempt about to start (False: none is free); from any thread."""
        with self._slots:
            if self.occupied >= self._concurrency:
                return False
            self.occupied += 1
            return True

    def give_slot_back(self) -> None:
        """A slot taken by ``take_slot`` for an attempt that did not start after all."""
        with self._slots:
            self.occupied -= 1

    def start(self, attempt: Attempt) -> None:
        """Run the attempt's handler in the slot taken for it (``take_slot``; the worker only
        claims types it has handlers for)."""
        job = attempt.job
        attempt.started_at = self.last_turn = time.monotonic()
        self._began(attempt)
        spec = self._queue.declaration.job_types[job.job_type]
        info = self._handler(job.job_type)
        if self._tracing is not None:
            self._start_traced(attempt, spec.handler_ref if spec.isolation == "process" else None, info)
        elif spec.isolation == "process":
            self._threads.submit(attempt, functools.partial(self._run_isolated, spec.handler_ref, attempt))
        elif info.is_async:
            attempt.task = asyncio.ensure_future(info.func(*handler_arguments(info, job.payload, attempt.ctx)))
            attempt.task.add_done_callback(functools.partial(self._task_done, attempt))
        else:
            self._threads.submit(attempt, functools.partial(self._run_sync, info, attempt))

    def wait_for_work(
        self,
        wait: Callable[[], list[JobRecord]],
        done: asyncio.Future[Claimed],
        *,
        may_start: Callable[[], bool] | None,
    ) -> None:
        """Block a spare handler thread in ``wait`` (it claims and returns jobs); ``done`` gets them.

        With ``may_start`` (the caller saw a free slot and nothing buffered), the thread runs
        the first job itself if it is a plain sync one, ``may_start()`` still holds and a slot
        is still free (``take_slot``: jobs a settle claimed may have taken it meanwhile): a job
        that wakes an idle worker starts on the thread that received it, without going through
        the loop and another thread. That job holds its slot before ``done`` is resolved
        (``Claimed.started``).
        """

        def run() -> Work[Attempt] | None:
            try:
                attempts = [self.prepare(job) for job in wait()]
            except BaseException as exc:
                self._loop.call_soon_threadsafe(_resolve, done, exc)
                return None
            first = attempts[0] if attempts and attempts[0].on_thread else None
            if first is None or may_start is None or not may_start() or not self.take_slot():
                self._loop.call_soon_threadsafe(self._claimed, Claimed(None, attempts), done)
                return None
            first.started_at = time.monotonic()
            self._loop.call_soon_threadsafe(self._claimed, Claimed(first, attempts[1:]), done)
            return first, functools.partial(self._run_sync, self._handlers[first.job.job_type], first)

        self._threads.submit_wait(run)

    def _claimed(self, claimed: Claimed, done: asyncio.Future[Claimed]) -> None:
        """On the loop: a wait's jobs came; the one its thread started runs in a slot from now."""
        started = claimed.started
        if started is not None:  # its slot was taken on the thread
            self.last_turn = started.started_at
            self._began(started)
        _resolve(done, claimed)

    def _began(self, attempt: Attempt) -> None:
        """The attempt's handler started (here, or on a thread that took it from the buffer)."""
        job = attempt.job
        self.active[job.id] = attempt
        events = self._queue.events
        if events.has_listeners(JOB_PROCESSING):
            events.emit(
                JOB_PROCESSING,
                {"job_id": job.id, "job_type": job.job_type, "attempt": job.attempts, "worker_id": self._worker_id},
            )
        if job.timeout_ms is not None:  # from when it started, even if the loop hears of it later
            left = job.timeout_ms / 1000 - (time.monotonic() - attempt.started_at)
            attempt.timer = self._loop.call_later(max(0.0, left), self._timed_out, attempt)

    def _pull(self) -> tuple[Attempt, Callable[[], Settled | None]] | None:
        """On a handler thread that just finished: the next buffered job to run at once, if any."""
        attempt = self._source()
        if attempt is None:
            return None
        attempt.started_at = time.monotonic()
        info = self._handlers[attempt.job.job_type]
        return attempt, functools.partial(self._run_sync, info, attempt)

    def _start_traced(self, attempt: Attempt, isolated_ref: str | None, info: HandlerInfo) -> None:
        """``start`` with tracing on: the attempt's ``dqflow.run`` span is current where its handler runs."""
        tracing = self._tracing
        assert tracing is not None
        job = attempt.job
        span = attempt.span = tracing.start_run(job, self._worker_id)
        if isolated_ref is not None:  # the child process runs outside the span; its result is judged here
            self._threads.submit(attempt, functools.partial(self._run_isolated, isolated_ref, attempt))
        elif info.is_async:
            arguments = handler_arguments(info, job.payload, attempt.ctx)
            # a task runs in a copy of the context current when it is created: the span's
            attempt.task = tracing.within(span, lambda: asyncio.ensure_future(info.func(*arguments)))()
            attempt.task.add_done_callback(functools.partial(self._task_done, attempt))
        else:
            self._threads.submit(attempt, tracing.within(span, functools.partial(self._run_sync, info, attempt)))

    def _handler(self, job_type: str) -> HandlerInfo:
        info = self._handlers.get(job_type)
        if info is None:
            handler = self._queue.declaration.job_types[job_type].handler
            assert handler is not None, job_type  # Worker checked: only types with handlers are claimed
            info = self._handlers[job_type] = inspect_handler(handler)
        return info

    # -- stopping --------------------------------------------------------------------

    def lost(self, attempt: Attempt) -> None:
        """This worker no longer holds the attempt's job (cancelled, taken over): stop its handler.

        Its attempt is dropped when the handler returns; one not started yet never starts.
        """
        if attempt.job.id in self.active:
            log.info("job %s was cancelled or taken over: stopping its handler", attempt.job.id)
        attempt.ctx.cancel("cancelled")
        if attempt.task is not None:
            attempt.task.cancel()

    def abandon_all(self) -> list[Attempt]:
        """Shutdown: stop every running handler and settle nothing for it; return their attempts."""
        attempts = list(self.active.values())
        self.active.clear()
        for attempt in attempts:
            attempt.settled = True  # whatever the handler still returns is dropped
            if attempt.span is not None and self._tracing is not None:
                self._tracing.end_run(attempt.span, "abandoned", "shutdown")
            if attempt.timer is not None:
                attempt.timer.cancel()
            attempt.ctx.cancel("shutdown")
            if attempt.task is not None:
                attempt.task.cancel()
        return attempts

    def _timed_out(self, attempt: Attempt) -> None:
        if attempt.settled:
            return
        attempt.ctx.cancel("timeout")  # a thread sees ctx.cancelled; a child process is killed
        if attempt.task is not None:
            attempt.task.cancel()
            # A task that swallows its cancellation keeps running, abandoned: its slot is free
            # now (a thread cannot be abandoned: it still occupies one of the pool's threads).
            self._free_slot(attempt)
        message = f"timed out after {attempt.job.timeout_ms} ms"
        self._settle(attempt, _failure(attempt, FailureReason.TIMEOUT, message, TimeoutError(message)))

    # -- results (handler threads and the output pool) ----------------------------------

    def _run_sync(self, info: HandlerInfo, attempt: Attempt) -> Settled | None:
        try:
            result = info.func(*handler_arguments(info, attempt.job.payload, attempt.ctx))
        except BaseException as exc:
            return self._raised(attempt, exc)
        return self._returned(attempt, result)

    def _run_isolated(self, handler_ref: str, attempt: Attempt) -> Settled | None:
        try:
            result = run_in_process(handler_ref, attempt.job, attempt.ctx)
        except BaseException as exc:
            return self._raised(attempt, exc)
        return self._returned(attempt, result)

    def _returned(self, attempt: Attempt, result: Any) -> Settled | None:
        """The handler returned: complete with its output (validated here, off the loop)."""
        job, ctx = attempt.job, attempt.ctx
        if ctx.cancelled:
            return None
        if ctx.output_was_set:
            return Settled(
                attempt, Completion(job.id, job.lease_token, ctx.output_json, job.workflow_run_id), output=ctx.output
            )
        if result is None:
            return Settled(attempt, Completion(job.id, job.lease_token, None, job.workflow_run_id))
        try:
            output_json = self._queue.validate_output(job.job_type, result)
        except ValidationFailed as exc:
            return _failure(attempt, FailureReason.INVALID_OUTPUT, cut(str(exc), ERROR_LIMIT), exc)
        return Settled(attempt, Completion(job.id, job.lease_token, output_json, job.workflow_run_id), output=result)

    def _raised(self, attempt: Attempt, exc: BaseException) -> Settled | None:
        if attempt.ctx.cancelled:
            return None  # stopped on purpose (timeout, cancel, shutdown): nothing to write for it
        if isinstance(exc, WaitRequested):  # a durable handler waits: its slot frees, no attempt counted
            job = attempt.job
            return Settled(attempt, Wait(job.id, job.lease_token, exc.until, exc.token_id))
        if isinstance(exc, HandlerFailed):  # an isolated handler: its child formatted both
            return _failure(attempt, FailureReason.HANDLER_ERROR, str(exc), exc, exc.traceback)
        return _failure(attempt, FailureReason.HANDLER_ERROR, error_message(exc), exc, traceback_text(exc))

    # -- back on the loop --------------------------------------------------------------

    def _threads_done(self, results: list[ThreadResult[Attempt]]) -> None:
        for attempt, ok, value, then in results:
            if not ok:  # a bug of ours around the handler call: never lose the job silently
                value = _failure(attempt, FailureReason.HANDLER_ERROR, f"worker error: {error_message(value)}", value)
            self._settle(attempt, value)
            if then is None:
                self._free_slot(attempt)
            else:  # the thread went on with a buffered job: it takes over the slot
                self._note_run_time(attempt, then.started_at)
                attempt.holds_slot = False
                self._began(then)
                self._on_change()

    def _task_done(self, attempt: Attempt, task: asyncio.Future[Any]) -> None:
        self._free_slot(attempt)
        if attempt.settled:
            return
        if task.cancelled():
            self._settle(attempt, None)
            return
        error = task.exception()
        judge = (
            functools.partial(self._raised, attempt, error)
            if error is not None
            else functools.partial(self._returned, attempt, task.result())
        )
        future = self._loop.run_in_executor(self._outputs, judge)
        future.add_done_callback(functools.partial(self._judged, attempt))

    def _judged(self, attempt: Attempt, future: asyncio.Future[Settled | None]) -> None:
        if future.cancelled():
            return  # the worker is shutting down
        error = future.exception()
        if error is not None:
            self._settle(attempt, _failure(attempt, FailureReason.HANDLER_ERROR, f"worker error: {error}", error))
        else:
            self._settle(attempt, future.result())

    def _settle(self, attempt: Attempt, settled: Settled | None) -> None:
        """Decide the attempt's outcome once (None: dropped, nothing written)."""
        if attempt.settled:
            return
        attempt.settled = True
        if attempt.timer is not None:
            attempt.timer.cancel()
        self.active.pop(attempt.job.id, None)
        if attempt.span is not None and self._tracing is not None:
            self._tracing.end_run(attempt.span, *_run_outcome(attempt, settled))
        if settled is None:
            log.info(
                "job %s: handler stopped (%s); nothing written for this attempt",
                attempt.job.id,
                attempt.ctx.cancel_reason,
            )
            self._on_change()  # a drain may be waiting for this attempt to end
            return
        self._on_settled(settled)

    def _free_slot(self, attempt: Attempt) -> None:
        if not attempt.holds_slot:
            return
        attempt.holds_slot = False
        with self._slots:
            self.occupied -= 1
        self._note_run_time(attempt, time.monotonic())
        self._on_change()

    def slowed(self, seconds: float) -> None:
        """Every slot has been held ``seconds`` with no job ending: jobs take that long now."""
        self.run_time = max(self.run_time or 0.0, seconds)

    def _note_run_time(self, attempt: Attempt, ended: float) -> None:
        self.last_turn = ended
        held = ended - attempt.started_at
        self.run_time = held if self.run_time is None else self.run_time + _SMOOTHING * (held - self.run_time)


@dataclass(frozen=True, slots=True)
class Claimed:
    """What a wait for work brought: the job its thread started (if any), the others to start."""

    started: Attempt | None
    waiting: list[Attempt]

    @property
    def jobs(self) -> list[JobRecord]:
        """Every job claimed, in claim order."""
        first = [] if self.started is None else [self.started.job]
        return first + [attempt.job for attempt in self.waiting]


def _resolve(future: asyncio.Future[Claimed], result: Claimed | BaseException) -> None:
    if future.done():  # given up on (a shutdown that stopped waiting for it)
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


def _run_outcome(attempt: Attempt, settled: Settled | None) -> tuple[str, str | None]:
    """How an attempt ended, for its ``dqflow.run`` span: (outcome, failure reason or why it was dropped)."""
    if settled is None:
        return "dropped", attempt.ctx.cancel_reason
    outcome = settled.outcome
    if isinstance(outcome, Completion):
        return "completed", None
    if isinstance(outcome, Wait):
        return "waiting", outcome.kind
    return ("retrying" if outcome.retry_at is not None else "failed"), outcome.reason


def _failure(
    attempt: Attempt,
    reason: FailureReason,
    message: str,
    exception: BaseException | None,
    traceback: str | None = None,
) -> Settled:
    """A failed attempt: back to pending after its retry delay, or failed for good; logged with its traceback."""
    job = attempt.job
    retry_at = None
    if job.attempts < job.max_attempts:
        policy = RetryPolicy(
            delay=job.retry_delay_ms / 1000,
            backoff="fixed" if job.retry_backoff == "fixed" else "exponential",
            max_delay=None if job.retry_max_delay_ms is None else job.retry_max_delay_ms / 1000,
            jitter=job.retry_jitter,
        )
        retry_at = datetime.now(UTC) + timedelta(seconds=policy.delay_for(job.attempts))
    level, what = (
        (logging.WARNING, "failed, will retry") if retry_at is not None else (logging.ERROR, "failed for good")
    )
    if log.isEnabledFor(level):
        log.log(
            level,
            "job %s (%s) attempt %d of %d %s: %s: %s%s",
            job.id,
            job.job_type,
            job.attempts,
            job.max_attempts,
            what,
            reason.value,
            message,
            f"\n{traceback}" if traceback else "",
        )
    failure = Failure(
        job.id,
        job.lease_token,
        message,
        reason.value,
        retry_at,
        traceback=traceback,
        workflow_run_id=job.workflow_run_id,
    )
    return Settled(attempt, failure, exception=exception)
