"""``schedules:`` in jobs.yaml: compiled when right, refused with file, line and key when not."""

from __future__ import annotations

from pathlib import Path

import pytest

from dqflow.declaration import DeclarationError, load_declaration
from dqflow.errors import ConfigError

HEAD = """\
jobs:
  report:
    handler: sched_decl_svc:report
    payload: {type: object, required: [day], properties: {day: {type: integer}}}
workflows:
  nightly_flow:
    input: {type: object, required: [region], properties: {region: {type: string}}}
    steps:
      one: {job: report, payload: {day: 1}}
schedules:
"""


def _load(tmp_path: Path, schedules: str) -> object:
    (tmp_path / "sched_decl_svc.py").write_text("def report(payload):\n    return None\n")
    path = tmp_path / "jobs.yaml"
    path.write_text(HEAD + schedules)
    return load_declaration(path)


def _problems(tmp_path: Path, schedules: str) -> list[tuple[int | None, str | None, str]]:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, schedules)
    error = caught.value
    found = error.problems if isinstance(error, DeclarationError) else [error]
    assert all(p.file == str(tmp_path / "jobs.yaml") for p in found)
    return [(p.line, p.key, p.reason) for p in found]


def test_a_good_schedules_section_compiles(tmp_path: Path) -> None:
    declaration = _load(
        tmp_path,
        """\
  daily_report:
    cron: "30 2 * * *"
    timezone: Europe/Berlin
    job: report
    payload: {day: 1}
    overlap: skip
    catch_up: all
    tags: [cron, cron]
    priority: 5
  flow:
    cron: "@daily"
    workflow: nightly_flow
    input: {region: eu}
""",
    )
    schedules = declaration.schedules  # type: ignore[attr-defined]
    daily = schedules["daily_report"]
    assert (daily.job, daily.payload, daily.overlap, daily.catch_up) == ("report", {"day": 1}, "skip", "all")
    assert (daily.tags, daily.priority, daily.timezone, daily.target) == (("cron",), 5, "Europe/Berlin", "job report")
    flow = schedules["flow"]
    assert (flow.workflow, flow.input, flow.timezone, flow.target) == (
        "nightly_flow",
        {"region": "eu"},
        "UTC",
        "workflow nightly_flow",
    )


def test_bad_schedules_are_refused_each_with_file_line_and_key(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        """\
  bad_cron:
    cron: "61 * * * *"
    job: report
    payload: {day: 1}
  bad_zone:
    cron: "@hourly"
    timezone: Europe/Atlantis
    job: report
    payload: {day: 1}
  bad_payload:
    cron: "@hourly"
    job: report
    payload: {day: monday}
  bad_input:
    cron: "@daily"
    workflow: nightly_flow
    input: {}
  unknown_job:
    cron: "@daily"
    job: nope
  both:
    cron: "@daily"
    job: report
    workflow: nightly_flow
  typo:
    cron: "@daily"
    job: report
    payload: {day: 1}
    catchup: all
  bad_choice:
    cron: "@daily"
    job: report
    payload: {day: 1}
    overlap: queue
""",
    )
    by_key = {key: (line, reason) for line, key, reason in problems}
    assert by_key["schedules.bad_cron.cron"][0] == 12
    assert "not a valid expression" in by_key["schedules.bad_cron.cron"][1]
    assert by_key["schedules.bad_zone.timezone"][0] == 17
    assert "unknown time zone 'Europe/Atlantis'" in by_key["schedules.bad_zone.timezone"][1]
    assert by_key["schedules.bad_payload.payload"][0] == 23
    assert "payload schema of report" in by_key["schedules.bad_payload.payload"][1]
    assert "monday" in by_key["schedules.bad_payload.payload"][1]
    assert by_key["schedules.bad_input.input"][0] == 27
    assert "region" in by_key["schedules.bad_input.input"][1]
    assert by_key["schedules.unknown_job.job"][0] == 30
    assert "unknown job type 'nope'" in by_key["schedules.unknown_job.job"][1]
    assert "exactly one of `job`" in by_key["schedules.both"][1]
    assert by_key["schedules.typo.catchup"][0] == 39
    assert "did you mean 'catch_up'" in by_key["schedules.typo.catchup"][1]
    assert by_key["schedules.bad_choice.overlap"][0] == 44
    assert len(problems) == 8


def test_schedules_must_be_a_mapping_of_names(tmp_path: Path) -> None:
    [(line, key, reason)] = _problems(tmp_path, "  - cron: '@daily'\n")
    assert (line, key) == (10, "schedules") and "expected a mapping" in reason
    [(line, key, reason)] = _problems(tmp_path, "  'bad name!': {cron: '@daily', job: report, payload: {day: 1}}\n")
    assert (line, key) == (11, "schedules.bad name!") and "invalid schedule name" in reason


def test_overlap_skip_is_for_job_schedules(tmp_path: Path) -> None:
    flow = "  flow:\n    cron: '@daily'\n    workflow: nightly_flow\n    input: {region: eu}\n    overlap: skip\n"
    [(line, key, reason)] = _problems(tmp_path, flow)
    assert (line, key) == (15, "schedules.flow.overlap") and "job schedules only" in reason
