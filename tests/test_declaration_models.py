"""Pydantic models as payload and output schemas: in ``Declaration.build`` and as ``module:Model`` in jobs.yaml."""

from __future__ import annotations

import textwrap
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from dqflow import ConfigError, Declaration, PayloadValidationError, Queue
from dqflow.declaration import load_declaration
from dqflow.testing import MemoryQueue


class Report(BaseModel):
    report_id: str = Field(min_length=1)
    copies: int = Field(default=1, ge=1, multiple_of=1)
    due: datetime | None = None


class ReportDone(BaseModel):
    url: str


def _render(payload: dict[str, object]) -> dict[str, str]:
    return {"url": f"https://r.example/{payload['report_id']}"}


def test_a_model_class_validates_payload_and_output() -> None:
    with MemoryQueue({"report": {"handler": _render, "payload": Report, "output": ReportDone}}) as queue:
        job_id = queue.add("report", {"report_id": "q3", "copies": 2, "due": "2026-12-01T10:00:00Z"})
        with pytest.raises(PayloadValidationError, match="copies"):
            queue.add("report", {"report_id": "q3", "copies": 0})
        with pytest.raises(PayloadValidationError, match="due"):
            queue.add("report", {"report_id": "q3", "due": "tomorrow-ish"})  # format: date-time is enforced
        with pytest.raises(PayloadValidationError, match="report_id"):
            queue.add("report", {"copies": 1})
        queue.run_until_idle()
        queue.assert_completed(job_id, output={"url": "https://r.example/q3"})
        assert queue.job_type("report").output_schema is not None
        with pytest.raises(Exception, match="url"):
            queue.validate_output("report", {"link": "x"})


MODELS = """
from pydantic import BaseModel


class Ticket(BaseModel):
    title: str
    seats: int


def not_a_model():
    return 1
"""


def project(tmp_path: Path, payload: str) -> Path:
    module = f"models_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(MODELS)
    (tmp_path / "jobs.yaml").write_text(
        textwrap.dedent(
            f"""\
            jobs:
              book:
                handler: {module}:not_a_model
                payload: {payload.format(module=module)}
            """
        )
    )
    return tmp_path / "jobs.yaml"


def test_a_model_reference_in_jobs_yaml(tmp_path: Path) -> None:
    config = project(tmp_path, "{module}:Ticket")
    declaration = load_declaration(config, import_handlers=False)  # `dqflow add` imports models, not handlers
    with Queue(declaration, "sqlite:///:memory:") as queue:
        assert queue.add("book", {"title": "Fidelio", "seats": 2}) == 1
        with pytest.raises(PayloadValidationError, match="seats"):
            queue.add("book", {"title": "Fidelio", "seats": "two"})


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            "{module}:Nope",
            r"jobs.yaml:4: jobs.book.payload: payload model models_\w+:Nope: 'models_\w+' has no attribute 'Nope'",
        ),
        ("{module}:not_a_model", r"jobs.yaml:4: .*models_\w+:not_a_model is not a pydantic model .*it is a function"),
        ("no_such_module_xyz:Model", r"jobs.yaml:4: .*cannot import module 'no_such_module_xyz'"),
    ],
)
def test_a_bad_model_reference_names_file_and_line(tmp_path: Path, payload: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_declaration(project(tmp_path, payload))


def test_build_refuses_other_objects_with_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"also a pydantic model class\), got an integer"):
        Declaration.build({"a": {"handler": _render, "payload": 42}})
