"""Optional OpenTelemetry spans: ``pip install 'dqflow[otel]'`` and set ``DQFLOW_OTEL=1``.

Off (the default) a ``Queue`` holds ``tracing = None``: OpenTelemetry is never
imported and each traced place costs one ``is None`` check. On, a ``Queue`` and
its workers record, with the globally configured tracer provider:

* ``dqflow.add`` (producer): one per ``add`` / ``add_many`` call; its W3C trace
  context goes into each new job's ``meta["traceparent"]`` (a ``traceparent``
  the caller put in ``meta`` is kept);
* ``dqflow.start_workflow`` (producer): one per ``start_workflow`` /
  ``start_workflows`` call; its trace context is kept in each run's step state,
  so every step job joins its run's trace (the runs of one batch share it);
* ``dqflow.claim`` (client): one per claim that returned jobs;
* ``dqflow.run`` (consumer): one per attempt, a child of the job's producer
  context, current while the handler runs (its own spans nest under it);
* ``dqflow.settle`` (client): one per batch of outcomes written, linked to the
  batch's run spans.

Attributes follow OpenTelemetry's messaging conventions (``messaging.system``
``dqflow``, ``messaging.operation.type`` / ``.name``, ``messaging.destination.name``
the job type, ``messaging.message.id`` the job id) plus ``dqflow.*`` ones.
Payloads, outputs and error messages are never recorded.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from dqflow.errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.trace import Span, TracerProvider

    from dqflow.record import JobRecord

__all__ = ["ENV", "TRACE_KEYS", "Adding", "Tracing", "tracing_from_env", "with_trace"]

ENV = "DQFLOW_OTEL"
"""The switch: ``1`` (``true``, ``yes``, ``on``) turns tracing on; unset, empty or ``0`` leaves it off."""

TRACE_KEYS = ("traceparent", "tracestate")
"""The W3C trace context headers dqflow carries in a job's ``meta``."""

_ON = frozenset({"1", "true", "yes", "on"})
_OFF = frozenset({"", "0", "false", "no", "off"})
_SYSTEM = "dqflow"
_MAX_LINKS = 128  # the SDK's default span limit: more would be dropped anyway

T = TypeVar("T")


def tracing_from_env(environ: Mapping[str, str] | None = None) -> Tracing | None:
    """A ``Tracing`` when ``DQFLOW_OTEL`` turns tracing on, else None (nothing imported).

    A value that is neither on nor off, or tracing on without OpenTelemetry
    installed, is a ``ConfigError`` naming the variable.
    """
    value = (os.environ if environ is None else environ).get(ENV, "").strip().lower()
    if value in _OFF:
        return None
    if value not in _ON:
        raise ConfigError(f"{value!r} is neither on (1, true, yes, on) nor off (0, false, no, off)", key=ENV)
    try:
        return Tracing()
    except ImportError as exc:
        raise ConfigError(
            f"tracing is on but OpenTelemetry is not installed ({exc.name}): pip install 'dqflow[otel]'", key=ENV
        ) from None


def with_trace(meta: Any, carrier: Mapping[str, str]) -> Any:
    """``meta`` with the trace context ``carrier`` added, unless it carries a ``traceparent`` already
    (or is not a mapping: ``Queue`` reports that)."""
    if not carrier or (meta is not None and (not isinstance(meta, Mapping) or "traceparent" in meta)):
        return meta
    return {**(meta or {}), **carrier}


def trace_carrier(meta: Mapping[str, Any] | None) -> dict[str, str]:
    """The W3C headers of a job's ``meta`` (string values only), for extraction."""
    if not meta or "traceparent" not in meta:
        return {}
    return {key: value for key in TRACE_KEYS if isinstance(value := meta.get(key), str)}


class Adding:
    """A ``dqflow.add`` or ``dqflow.start_workflow`` span in progress: ``carrier`` is its trace context."""

    def __init__(self, span: Span, carrier: dict[str, str]) -> None:
        self.span = span
        self.carrier = carrier

    def added(self, job_ids: Sequence[int]) -> None:
        """Record the ids stored (one: ``messaging.message.id``)."""
        if len(job_ids) == 1:
            self.span.set_attribute("messaging.message.id", str(job_ids[0]))
            self.span.set_attribute("dqflow.job.id", job_ids[0])

    def started(self, run_ids: Sequence[int]) -> None:
        """Record the workflow runs' ids (one: ``dqflow.workflow.run_id``)."""
        if len(run_ids) == 1:
            self.span.set_attribute("dqflow.workflow.run_id", run_ids[0])


class Tracing:
    """Records dqflow's spans with the global tracer provider (or ``tracer_provider``)."""

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace import Link, SpanKind, Status, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        from dqflow import __version__

        self._context = context
        self._trace = trace
        self._link = Link
        self._kind = SpanKind
        self._status = Status
        self._status_error = StatusCode.ERROR
        self._propagator = TraceContextTextMapPropagator()
        self._tracer = trace.get_tracer("dqflow", __version__, tracer_provider)

    @staticmethod
    def now() -> int:
        """A span timestamp (ns since the epoch), taken before a call whose span is recorded after it."""
        return time.time_ns()

    # -- producers -------------------------------------------------------------------

    @contextmanager
    def adding(self, job_types: Sequence[str]) -> Iterator[Adding]:
        """The ``dqflow.add`` span of adding jobs of ``job_types`` (one per job), current in the block."""
        attributes: dict[str, Any] = {
            "messaging.system": _SYSTEM,
            "messaging.operation.type": "send",
            "messaging.operation.name": "add",
            "messaging.batch.message_count": len(job_types),
        }
        kinds = sorted(set(job_types))
        if len(kinds) == 1:
            attributes["messaging.destination.name"] = kinds[0]
            attributes["dqflow.job.type"] = kinds[0]
        elif kinds:
            attributes["dqflow.job.types"] = kinds
        with self._producing("dqflow.add", attributes) as adding:
            yield adding

    @contextmanager
    def starting_workflow(self, name: str, runs: int = 1) -> Iterator[Adding]:
        """The ``dqflow.start_workflow`` span of starting ``runs`` runs, current in the block;
        its carrier is the runs' trace."""
        attributes: dict[str, Any] = {
            "messaging.system": _SYSTEM,
            "messaging.operation.type": "send",
            "messaging.operation.name": "start_workflow",
            "dqflow.workflow.name": name,
        }
        if runs > 1:
            attributes["messaging.batch.message_count"] = runs
        with self._producing("dqflow.start_workflow", attributes) as adding:
            yield adding

    @contextmanager
    def _producing(self, name: str, attributes: dict[str, Any]) -> Iterator[Adding]:
        with self._tracer.start_as_current_span(
            name,
            kind=self._kind.PRODUCER,
            attributes=attributes,
            record_exception=False,  # exception messages may quote payloads
            set_status_on_exception=False,
        ) as span:
            carrier: dict[str, str] = {}
            self._propagator.inject(carrier)
            try:
                yield Adding(span, carrier)
            except BaseException as exc:
                self._failed(span, exc)
                raise

    # -- the worker ------------------------------------------------------------------

    def claimed(self, start_ns: int, jobs: Sequence[JobRecord], worker_id: str) -> None:
        """A ``dqflow.claim`` span from ``start_ns`` to now (recorded only when jobs came back)."""
        if not jobs:
            return
        attributes: dict[str, Any] = {
            "messaging.system": _SYSTEM,
            "messaging.operation.type": "receive",
            "messaging.operation.name": "claim",
            "messaging.batch.message_count": len(jobs),
            "dqflow.worker.id": worker_id,
        }
        self._tracer.start_span(
            "dqflow.claim", kind=self._kind.CLIENT, attributes=attributes, start_time=start_ns
        ).end()

    def start_run(self, job: JobRecord, worker_id: str) -> Span:
        """The ``dqflow.run`` span of one attempt: a child of the job's producer context, if it has one."""
        attributes: dict[str, Any] = {
            "messaging.system": _SYSTEM,
            "messaging.operation.type": "process",
            "messaging.operation.name": "run",
            "messaging.destination.name": job.job_type,
            "messaging.message.id": str(job.id),
            "dqflow.job.id": job.id,
            "dqflow.job.type": job.job_type,
            "dqflow.job.attempt": job.attempts,
            "dqflow.worker.id": worker_id,
        }
        if job.workflow_run_id is not None:
            attributes["dqflow.workflow.run_id"] = job.workflow_run_id
            attributes["dqflow.workflow.step"] = job.workflow_step or ""
        carrier = trace_carrier(job.meta)
        parent = self._propagator.extract(carrier) if carrier else self._context.Context()
        return self._tracer.start_span("dqflow.run", context=parent, kind=self._kind.CONSUMER, attributes=attributes)

    def within(self, span: Span, call: Callable[[], T]) -> Callable[[], T]:
        """``call`` made to run with ``span`` current (on whichever thread calls it)."""
        ctx = self._trace.set_span_in_context(span)

        def traced() -> T:
            token = self._context.attach(ctx)
            try:
                return call()
            finally:
                self._context.detach(token)

        return traced

    def end_run(self, span: Span, outcome: str, reason: str | None = None) -> None:
        """End a ``dqflow.run`` span: ``outcome`` is ``completed``, ``retrying``, ``failed``, ``dropped``
        (the handler was stopped: the job was cancelled or its lease lost) or ``abandoned`` (shutdown);
        ``reason`` the failure reason, or why the handler was stopped."""
        span.set_attribute("dqflow.job.outcome", outcome)
        if outcome in ("retrying", "failed"):
            span.set_attribute("dqflow.job.failure_reason", reason or "handler_error")
            span.set_attribute("error.type", reason or "handler_error")
            span.set_status(self._status(self._status_error, reason or "handler_error"))
        elif reason is not None:
            span.set_attribute("dqflow.job.stop_reason", reason)
        span.end()

    def settled(
        self, start_ns: int, runs: Sequence[Span | None], applied: Sequence[bool] | None, error: BaseException | None
    ) -> None:
        """A ``dqflow.settle`` span from ``start_ns`` to now for a batch of ``len(runs)`` outcomes,
        linked to their run spans; ``applied`` the flags storage returned (None when the write failed)."""
        attributes: dict[str, Any] = {
            "messaging.system": _SYSTEM,
            "messaging.operation.type": "settle",
            "messaging.operation.name": "settle",
            "messaging.batch.message_count": len(runs),
        }
        if applied is not None:
            attributes["dqflow.settle.rejected"] = sum(not ok for ok in applied)
        links = [self._link(span.get_span_context()) for span in runs[:_MAX_LINKS] if span is not None]
        span = self._tracer.start_span(
            "dqflow.settle", kind=self._kind.CLIENT, attributes=attributes, links=links, start_time=start_ns
        )
        if error is not None:
            self._failed(span, error)
        span.end()

    def _failed(self, span: Span, exc: BaseException) -> None:
        kind = f"{type(exc).__module__}.{type(exc).__qualname__}"
        span.set_attribute("error.type", kind)
        span.set_status(self._status(self._status_error, type(exc).__name__))
