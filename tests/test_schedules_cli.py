"""CLI: ``dqflow schedules`` (list, pause, resume), schedules in ``dqflow check``, ``dqflow cleanup``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cli_support import Result, one_line_error

SCHEDULES = """\
schedules:
  nightly:
    cron: "30 2 * * *"
    timezone: Europe/Berlin
    job: ok
    payload: {n: 1}
    overlap: skip
  hourly: {cron: "@hourly", job: ok, payload: {n: 2}, catch_up: latest}
"""


def _with_schedules(project: Path) -> None:
    path = project / "jobs.yaml"
    path.write_text(path.read_text() + SCHEDULES)


def test_check_lists_schedules_with_next_runs(project: Path, dq: Callable[..., Result]) -> None:
    _with_schedules(project)
    result = dq("check")
    assert result.code == 0, result.err
    assert "nightly" in result.out and "30 2 * * * Europe/Berlin" in result.out and "2 schedules" in result.out
    rows = {row["name"]: row for row in dq("--json", "check").json()["schedules"]}
    assert rows["nightly"]["next_run_local"].endswith(("T02:30:00+01:00", "T02:30:00+02:00", "T03:30:00+02:00"))
    assert (rows["hourly"]["catch_up"], rows["nightly"]["overlap"]) == ("latest", "skip")


def test_pause_and_resume_are_kept(project: Path, dq: Callable[..., Result]) -> None:
    _with_schedules(project)
    listed = dq("--json", "schedules").json()
    assert [(row["name"], row["paused"], row["last_tick"]) for row in listed] == [
        ("hourly", False, None),
        ("nightly", False, None),
    ]
    paused = dq("schedules", "pause", "nightly")
    assert paused.code == 0 and "schedule nightly: paused" in paused.out
    assert [row["paused"] for row in dq("--json", "schedules").json()] == [False, True]
    assert "paused" in dq("schedules").out
    assert dq("--json", "schedules", "resume", "nightly").json()["paused"] is False
    assert [row["paused"] for row in dq("--json", "schedules").json()] == [False, False]


def test_schedules_errors(project: Path, dq: Callable[..., Result]) -> None:
    _with_schedules(project)
    assert "unknown schedule 'weekly' (declared: hourly, nightly)" in one_line_error(dq("schedules", "pause", "weekly"))
    assert "unknown action 'stop'" in one_line_error(dq("schedules", "stop", "nightly"))
    assert "needs the name of a schedule" in one_line_error(dq("schedules", "pause"))


def test_no_schedules(project: Path, dq: Callable[..., Result]) -> None:
    assert dq("schedules").out.strip() == "no schedules declared"
    assert dq("--json", "schedules").json() == []


def test_cleanup_dry_run_then_delete(project: Path, dq: Callable[..., Result]) -> None:
    for n in range(3):
        assert dq("add", "ok", "--payload", f'{{"n": {n}}}').code == 0
    assert dq("cancel", "1").code == 0 and dq("cancel", "2").code == 0
    counted = dq("--json", "cleanup", "--older-than", "0s", "--dry-run").json()
    assert counted["counts"] == {"completed": 0, "failed": 0, "cancelled": 2} and counted["dry_run"] is True
    assert dq("--json", "cleanup", "--older-than", "1d").json()["counts"]["cancelled"] == 0
    result = dq("cleanup", "--older-than", "0s", "--status", "cancelled")
    assert result.code == 0 and "deleted 2 jobs (2 cancelled)" in result.out
    assert dq("--json", "list").json()["jobs"][0]["id"] == 3
    assert "not pending ones" in dq("cleanup", "--older-than", "1d", "--status", "pending").err


def test_cleanup_removes_unused_flow_control_entries(project: Path, dq: Callable[..., Result]) -> None:
    from dqflow.storage import Completion, NewJob, open_storage

    storage = open_storage(f"sqlite:///{project / '.dqflow' / 'queue.db'}")
    storage.setup()
    try:
        storage.add_jobs([NewJob("ok", "{}", rate_key=f"ok:{n}", rate_limit=1, rate_window_ms=1) for n in range(3)])
        claimed = storage.claim_jobs("w", None, 3, 30_000)
        assert storage.settle_jobs([Completion(job.id, job.lease_token) for job in claimed]) == [True] * 3
    finally:
        storage.close()
    assert dq("--json", "cleanup", "--older-than", "0s", "--dry-run").json()["flow_control_rows"] is None
    assert "0 concurrency keys, 3 rate windows kept" in dq("stats").out
    result = dq("cleanup", "--older-than", "1d")
    assert result.code == 0 and "removed 3 unused flow-control entries" in result.out, result.out
    assert dq("--json", "stats").json()["flow_control"] == {"slot_keys": 0, "rate_windows": 0}
    assert dq("--json", "cleanup", "--older-than", "1d").json()["flow_control_rows"] == 0
