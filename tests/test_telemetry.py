"""OpenTelemetry spans (``DQFLOW_OTEL=1``): recorded with the SDK's in-memory exporter.

A job added and run by a real in-process worker gives ``dqflow.add`` →
``dqflow.run`` (parent and child, through ``meta["traceparent"]``), a
``dqflow.claim`` and a ``dqflow.settle`` linked to the run; the handler's own
spans nest under its run. A workflow run is one trace across all its step jobs,
on every backend. Off, nothing is recorded and OpenTelemetry is never imported.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import make_queue, running_worker, wait_until
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from dqflow import Queue, WorkflowStatus
from dqflow.errors import ConfigError
from dqflow.worker import JobContext

TESTS = Path(__file__).parent
APP_CONFIG = TESTS / "app" / "jobs.yaml"
_EXPORTER = InMemorySpanExporter()
_PROVIDER = TracerProvider()
_PROVIDER.add_span_processor(SimpleSpanProcessor(_EXPORTER))
trace.set_tracer_provider(_PROVIDER)  # once per process: the global provider dqflow's spans go to


def _double(payload: Any) -> Any:
    with trace.get_tracer("test").start_as_current_span("handler.inner"):
        return {"n": payload["n"] * 2}


async def _async_double(payload: Any) -> Any:
    await asyncio.sleep(0)
    with trace.get_tracer("test").start_as_current_span("handler.inner"):
        return {"n": payload["n"] * 2}


def _flaky(payload: Any, ctx: JobContext) -> Any:
    if ctx.job.attempts == 1:
        raise RuntimeError("the first attempt fails")
    return None


def _until_cancelled(payload: Any, ctx: JobContext) -> Any:
    deadline = time.monotonic() + 30
    while not ctx.cancelled and time.monotonic() < deadline:
        time.sleep(0.01)


JOBS: dict[str, dict[str, Any]] = {
    "until_cancelled": {"handler": _until_cancelled, "max_attempts": 1},
    "double": {"handler": _double, "max_attempts": 1},
    "async_double": {"handler": _async_double, "max_attempts": 1},
    "flaky": {"handler": _flaky, "max_attempts": 2},
}
N_INPUT = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
LINEAR = {
    "linear": {
        "input": N_INPUT,
        "steps": {
            "a": {"job": "double", "payload": {"n": "${input.n}"}},
            "b": {"job": "async_double", "needs": ["a"], "payload": {"n": "${steps.a.output.n}"}},
            "c": {"job": "double", "needs": ["b"], "payload": {"n": "${steps.b.output.n}"}},
        },
        "returns": {"result": "${steps.c.output.n}"},
    }
}


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Tracing on for queues made in the test; the exporter starts empty."""
    monkeypatch.setenv("DQFLOW_OTEL", "1")
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


@pytest.fixture
def queue(backend: str, spans: InMemorySpanExporter) -> Iterator[Queue]:
    queue = make_queue(backend, JOBS, workflows=LINEAR)
    assert queue.tracing is not None
    yield queue
    queue.close()


def _named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def _one(exporter: InMemorySpanExporter, name: str, **attributes: Any) -> ReadableSpan:
    found = [s for s in _named(exporter, name) if all(s.attributes.get(k) == v for k, v in attributes.items())]
    assert len(found) == 1, [(s.name, dict(s.attributes or {})) for s in exporter.get_finished_spans()]
    return found[0]


def _ids(span: ReadableSpan) -> tuple[int, int]:
    assert span.context is not None
    return span.context.trace_id, span.context.span_id


@pytest.mark.parametrize("job_type", ["double", "async_double"])
def test_a_job_run_is_a_child_of_its_add_and_the_handlers_spans_nest_in_it(
    queue: Queue, spans: InMemorySpanExporter, job_type: str
) -> None:
    job_id = queue.add(job_type, {"n": 2}, meta={"origin": "test"})
    add = _one(spans, "dqflow.add")
    trace_id, add_span_id = _ids(add)
    assert add.kind is SpanKind.PRODUCER
    assert dict(add.attributes or {}) == {
        "messaging.system": "dqflow",
        "messaging.operation.type": "send",
        "messaging.operation.name": "add",
        "messaging.batch.message_count": 1,
        "messaging.destination.name": job_type,
        "dqflow.job.type": job_type,
        "messaging.message.id": str(job_id),
        "dqflow.job.id": job_id,
    }
    meta = queue.require_job(job_id).meta
    assert meta["origin"] == "test"
    assert meta["traceparent"].startswith(f"00-{trace_id:032x}-{add_span_id:016x}-")  # W3C: version, trace, span

    with running_worker(queue) as worker:
        assert queue.wait(job_id, timeout=30).output == {"n": 4}
        wait_until(lambda: _named(spans, "dqflow.settle"), timeout=10)
    run = _one(spans, "dqflow.run", **{"dqflow.job.id": job_id})
    assert run.kind is SpanKind.CONSUMER
    assert run.parent is not None and (run.context.trace_id, run.parent.span_id) == (trace_id, add_span_id)
    assert {k: run.attributes[k] for k in ("messaging.operation.type", "messaging.destination.name")} == {
        "messaging.operation.type": "process",
        "messaging.destination.name": job_type,
    }
    assert run.attributes["dqflow.job.type"] == job_type and run.attributes["dqflow.job.attempt"] == 1
    assert run.attributes["dqflow.job.outcome"] == "completed"
    assert run.attributes["dqflow.worker.id"] == worker.worker_id
    assert run.status.status_code is StatusCode.UNSET

    inner = _one(spans, "handler.inner")
    assert inner.parent is not None and _ids(inner)[0] == trace_id and inner.parent.span_id == _ids(run)[1]

    claim = _one(spans, "dqflow.claim")
    assert claim.kind is SpanKind.CLIENT and claim.attributes["messaging.batch.message_count"] == 1
    assert claim.attributes["messaging.operation.type"] == "receive"
    assert claim.start_time is not None and claim.end_time is not None and claim.start_time <= claim.end_time
    (settle,) = [s for s in _named(spans, "dqflow.settle") if any(link.context == run.context for link in s.links)]
    assert settle.attributes["messaging.batch.message_count"] == 1 and settle.attributes["dqflow.settle.rejected"] == 0
    assert settle.attributes["messaging.operation.type"] == "settle"


def test_each_attempt_has_a_run_span_with_its_outcome(queue: Queue, spans: InMemorySpanExporter) -> None:
    ids = queue.add_many([{"job_type": "flaky", "payload": {}}, {"job_type": "double", "payload": {"n": 1}}])
    add = _one(spans, "dqflow.add")
    assert add.attributes["messaging.batch.message_count"] == 2
    assert list(add.attributes["dqflow.job.types"]) == ["double", "flaky"]
    assert "messaging.destination.name" not in add.attributes
    with running_worker(queue):
        for job_id in ids:
            queue.wait(job_id, timeout=30)
        wait_until(lambda: len(_named(spans, "dqflow.run")) == 3, timeout=10)
    first, second = sorted(
        (s for s in _named(spans, "dqflow.run") if s.attributes["dqflow.job.id"] == ids[0]),
        key=lambda s: s.attributes["dqflow.job.attempt"],
    )
    assert (first.attributes["dqflow.job.outcome"], first.attributes["dqflow.job.failure_reason"]) == (
        "retrying",
        "handler_error",
    )
    assert first.status.status_code is StatusCode.ERROR and first.attributes["error.type"] == "handler_error"
    assert second.attributes["dqflow.job.attempt"] == 2 and second.attributes["dqflow.job.outcome"] == "completed"
    for run in (first, second):  # both attempts are children of the one add
        assert run.parent is not None and run.parent.span_id == _ids(add)[1] and _ids(run)[0] == _ids(add)[0]


def test_a_run_stopped_by_a_cancel_is_dropped(tmp_path: Path, spans: InMemorySpanExporter) -> None:
    with make_queue(f"sqlite:///{tmp_path / 'q.db'}", JOBS) as queue:
        job_id = queue.add("until_cancelled")
        with running_worker(queue):
            wait_until(lambda: queue.require_job(job_id).status.value == "processing", timeout=30)
            queue.cancel(job_id)
            wait_until(lambda: _named(spans, "dqflow.run"), timeout=30)
    run = _one(spans, "dqflow.run")
    assert (run.attributes["dqflow.job.outcome"], run.attributes["dqflow.job.stop_reason"]) == ("dropped", "cancelled")
    assert "dqflow.job.failure_reason" not in run.attributes and run.status.status_code is StatusCode.UNSET


def test_a_workflow_run_is_one_trace_across_its_step_jobs(queue: Queue, spans: InMemorySpanExporter) -> None:
    run_id = queue.start_workflow("linear", {"n": 1})
    start = _one(spans, "dqflow.start_workflow")
    trace_id, start_span_id = _ids(start)
    assert start.kind is SpanKind.PRODUCER
    assert start.attributes["dqflow.workflow.name"] == "linear" and start.attributes["dqflow.workflow.run_id"] == run_id
    with running_worker(queue, concurrency=2):
        wait_until(lambda: queue.require_workflow(run_id).is_finished, timeout=30)
        wait_until(lambda: len(_named(spans, "dqflow.run")) == 3, timeout=10)
    run = queue.require_workflow(run_id)
    assert run.status is WorkflowStatus.COMPLETED and run.output == {"result": 8}
    steps = {span.attributes["dqflow.workflow.step"]: span for span in _named(spans, "dqflow.run")}
    assert sorted(steps) == ["a", "b", "c"]
    for name, span in steps.items():
        assert _ids(span)[0] == trace_id, name
        assert span.parent is not None and span.parent.span_id == start_span_id, name
        assert span.attributes["dqflow.workflow.run_id"] == run_id
        (job_id,) = run.step(name).job_ids
        assert span.attributes["dqflow.job.id"] == job_id
        assert queue.require_job(job_id).meta["traceparent"].split("-")[1] == f"{trace_id:032x}"
    inner = _named(spans, "handler.inner")
    assert len(inner) == 3 and {_ids(s)[0] for s in inner} == {trace_id}


def test_the_trace_crosses_into_a_worker_process(backend: str, spans: InMemorySpanExporter, tmp_path: Path) -> None:
    """The add here, the run in a real worker process with an SDK of its own: one trace."""
    exported = tmp_path / "spans.jsonl"
    script = textwrap.dedent(
        f"""
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

        provider = TracerProvider()
        out = open({str(exported)!r}, "w")
        exporter = ConsoleSpanExporter(out=out, formatter=lambda span: span.to_json(indent=None) + "\\n")
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        from dqflow import Queue
        from dqflow.worker import run_worker

        with Queue.from_yaml({str(APP_CONFIG)!r}, backend={backend!r}) as queue:
            run_worker(queue, drain=True, job_types=["echo"])
        provider.shutdown()
        """
    )
    with Queue.from_yaml(APP_CONFIG, backend=backend) as queue:
        job_id = queue.add("echo", {"n": 1})
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert queue.require_job(job_id).output == {"n": 1, "ok": True}
    trace_id, add_span_id = _ids(_one(spans, "dqflow.add"))
    runs = [span for line in exported.read_text().splitlines() if (span := json.loads(line))["name"] == "dqflow.run"]
    assert len(runs) == 1 and runs[0]["attributes"]["dqflow.job.id"] == job_id
    assert (runs[0]["context"]["trace_id"], runs[0]["parent_id"]) == (f"0x{trace_id:032x}", f"0x{add_span_id:016x}")


def test_a_traceparent_given_in_meta_is_kept(tmp_path: Path, spans: InMemorySpanExporter) -> None:
    given = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with make_queue(f"sqlite:///{tmp_path / 'q.db'}", JOBS) as queue:
        job_id = queue.add("double", {"n": 1}, meta={"traceparent": given})
        assert queue.require_job(job_id).meta == {"traceparent": given}
        with running_worker(queue):
            queue.wait(job_id, timeout=30)
            wait_until(lambda: _named(spans, "dqflow.run"), timeout=10)
    run = _one(spans, "dqflow.run")
    assert run.parent is not None and (f"{run.context.trace_id:032x}", f"{run.parent.span_id:016x}") == (
        "0af7651916cd43dd8448eb211c80319c",
        "b7ad6b7169203331",
    )


def test_tracing_off_records_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DQFLOW_OTEL", raising=False)
    _EXPORTER.clear()
    with make_queue(f"sqlite:///{tmp_path / 'q.db'}", JOBS, workflows=LINEAR) as queue:
        assert queue.tracing is None
        job_id = queue.add("double", {"n": 1})
        run_id = queue.start_workflow("linear", {"n": 1})
        with running_worker(queue):
            queue.wait(job_id, timeout=30)
            wait_until(lambda: queue.require_workflow(run_id).is_finished, timeout=30)
        assert "traceparent" not in queue.require_job(job_id).meta
        assert all("trace" not in step for step in queue.storage.get_workflow_run(run_id).model_dump()["steps"])
    assert {s.name for s in _EXPORTER.get_finished_spans()} == {"handler.inner"}  # the handler's own only


def test_tracing_off_never_imports_opentelemetry(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, sys
        os.environ.pop("DQFLOW_OTEL", None)
        from dqflow import Declaration, Queue
        from dqflow.worker import run_worker

        def double(payload):
            return {{"n": payload["n"] * 2}}

        queue = Queue(Declaration.build({{"double": {{"handler": double}}}}), backend="sqlite:///{tmp_path}/q.db")
        job_id = queue.add("double", {{"n": 1}})
        run_worker(queue, drain=True, poll_interval=0.05)
        assert queue.require_job(job_id).output == {{"n": 2}}
        print(sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry"))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_bad_switch_value_is_an_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DQFLOW_OTEL", "maybe")
    with pytest.raises(ConfigError, match=r"DQFLOW_OTEL: 'maybe' is neither on \(1, true, yes, on\) nor off"):
        make_queue(f"sqlite:///{tmp_path / 'q.db'}", JOBS)
    assert not (tmp_path / "q.db").exists()  # nothing opened


def test_tracing_on_without_opentelemetry_says_which_extra_to_install(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.modules["opentelemetry"] = None  # as if it were not installed
        os.environ["DQFLOW_OTEL"] = "1"
        from dqflow import Declaration, Queue
        from dqflow.errors import ConfigError
        try:
            Queue(Declaration.build({{"t": {{"handler": "json:dumps"}}}}), backend="sqlite:///{tmp_path}/q.db")
        except ConfigError as exc:
            print(exc)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "DQFLOW_OTEL: tracing is on but OpenTelemetry is not installed (opentelemetry): pip install 'dqflow[otel]'"
    )
    assert not (tmp_path / "q.db").exists()
