"""The scheduler on every backend: catch-up modes (bounded), overlap: skip, pause and resume kept in storage.

Each pass is ``Scheduler.run_due(now)`` with a chosen ``now``: no sleeping, no real clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from helpers import make_queue

from dqflow import Queue
from dqflow.schedules.control import schedule_rows, set_paused
from dqflow.schedules.scheduler import Scheduler, tick_key
from dqflow.storage import Completion, TickResult, TickVerdict

T0 = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
JOBS = {"report": {"handler": lambda payload: None, "payload": {"type": "object", "required": ["n"]}}}


def _queue(backend: str, **schedule: Any) -> Queue:
    body = {"cron": "0 * * * *", "job": "report", "payload": {"n": 1}, **schedule}
    return make_queue(backend, JOBS, schedules={"s": body})


def _ticks(queue: Queue) -> list[str]:
    """The ticks of the jobs the schedule added, oldest first."""
    jobs = queue.list_jobs(limit=1000).jobs
    return sorted(job.meta["tick"] for job in jobs if job.meta.get("schedule") == "s")


def test_first_pass_enqueues_only_a_tick_of_the_grace_window(backend: str) -> None:
    queue = _queue(backend)
    scheduler = Scheduler(queue)
    assert scheduler.run_due(T0 + timedelta(minutes=30)) == []  # 12:00 is long past: not a missed tick of its
    [tick] = scheduler.run_due(T0 + timedelta(hours=1, seconds=5))
    assert tick.tick == T0 + timedelta(hours=1) and tick.result.verdict is TickVerdict.ENQUEUED
    job = queue.get_job(tick.result.job_id or 0)
    assert (
        job.payload == {"n": 1} and job.idempotency_key == tick_key("s", tick.tick) == "schedule:s:2030-05-01T13:00:00Z"
    )
    assert job.meta == {"schedule": "s", "tick": "2030-05-01T13:00:00Z"}
    assert scheduler.run_due(T0 + timedelta(hours=1, seconds=30)) == []  # already claimed: not asked again
    queue.close()


def _seed(queue: Queue) -> Scheduler:
    scheduler = Scheduler(queue)
    scheduler.run_due(T0 + timedelta(seconds=1))
    assert _ticks(queue) == ["2030-05-01T12:00:00Z"]
    return scheduler


def test_catch_up_none_drops_missed_ticks(backend: str) -> None:
    queue = _queue(backend, catch_up="none")
    scheduler = _seed(queue)
    [skipped] = scheduler.run_due(T0 + timedelta(hours=3, minutes=30))  # 13, 14, 15 missed
    assert (skipped.tick, skipped.result.verdict) == (T0 + timedelta(hours=3), TickVerdict.SKIPPED)
    scheduler.run_due(T0 + timedelta(hours=4, seconds=2))
    assert _ticks(queue) == ["2030-05-01T12:00:00Z", "2030-05-01T16:00:00Z"]
    queue.close()


def test_catch_up_latest_enqueues_the_newest_missed_tick(backend: str) -> None:
    queue = _queue(backend, catch_up="latest")
    scheduler = _seed(queue)
    scheduler.run_due(T0 + timedelta(hours=3, minutes=30))
    assert _ticks(queue) == ["2030-05-01T12:00:00Z", "2030-05-01T15:00:00Z"]
    queue.close()


def test_catch_up_all_enqueues_each_missed_tick_at_most_the_newest_hundred(backend: str) -> None:
    queue = _queue(backend, catch_up="all")
    scheduler = _seed(queue)
    scheduler.run_due(T0 + timedelta(hours=3, minutes=30))
    assert _ticks(queue) == [f"2030-05-01T{h}:00:00Z" for h in (12, 13, 14, 15)]
    done = scheduler.run_due(T0 + timedelta(hours=3 + 150, minutes=30))  # 150 more missed
    assert len(done) == 100 and all(t.result.verdict is TickVerdict.ENQUEUED for t in done)
    assert done[0].tick == T0 + timedelta(hours=3 + 51) and done[-1].tick == T0 + timedelta(hours=153)
    assert len(_ticks(queue)) == 104
    queue.close()


def test_overlap_skip_waits_for_the_previous_run(backend: str) -> None:
    queue = _queue(backend, overlap="skip")
    scheduler = _seed(queue)
    [tick] = scheduler.run_due(T0 + timedelta(hours=1, seconds=1))
    assert tick.result.verdict is TickVerdict.OVERLAP  # 12:00's job is still pending
    [claimed] = queue.storage.claim_jobs("w", ["report"], 1, 30_000)
    assert queue.storage.settle_jobs([Completion(claimed.id, claimed.lease_token)]) == [True]
    [tick] = scheduler.run_due(T0 + timedelta(hours=2, seconds=1))
    assert tick.result.verdict is TickVerdict.ENQUEUED
    assert _ticks(queue) == ["2030-05-01T12:00:00Z", "2030-05-01T14:00:00Z"]
    queue.close()


def test_overlap_allow_runs_alongside(backend: str) -> None:
    queue = _queue(backend)
    scheduler = _seed(queue)
    scheduler.run_due(T0 + timedelta(hours=1, seconds=1))
    assert _ticks(queue) == ["2030-05-01T12:00:00Z", "2030-05-01T13:00:00Z"]
    queue.close()


def test_pause_and_resume_persist_and_paused_ticks_are_not_caught_up(backend: str) -> None:
    queue = _queue(backend, catch_up="all")
    _seed(queue)
    assert set_paused(queue, "s", True)["paused"] is True
    queue.close()

    queue = _queue(backend, catch_up="all")  # a new Queue (a new process would see the same)
    assert [row["paused"] for row in schedule_rows(queue, T0)] == [True]
    scheduler = Scheduler(queue)
    [tick] = scheduler.run_due(T0 + timedelta(hours=2, seconds=1))
    assert tick.result.verdict is TickVerdict.PAUSED
    assert set_paused(queue, "s", False)["paused"] is False
    assert scheduler.run_due(T0 + timedelta(hours=2, seconds=30)) == []
    scheduler.run_due(T0 + timedelta(hours=3, seconds=1))
    assert _ticks(queue) == ["2030-05-01T12:00:00Z", "2030-05-01T15:00:00Z"]
    [row] = schedule_rows(queue, T0 + timedelta(hours=3, seconds=1))
    assert row["last_tick"] == "2030-05-01T15:00:00+00:00" and row["next_run"] == "2030-05-01T16:00:00+00:00"
    queue.close()


def test_several_schedulers_with_skewed_clocks_enqueue_each_tick_once(backend: str) -> None:
    queues = [_queue(backend, cron="* * * * *", catch_up="all") for _ in range(3)]
    schedulers = [Scheduler(queue) for queue in queues]
    skews = [timedelta(0), timedelta(seconds=3), timedelta(seconds=-2)]
    enqueued: list[datetime] = []
    for second in range(0, 5 * 60 + 10, 10):  # 12:00:01 to 12:05:01
        for scheduler, skew in zip(schedulers, skews, strict=True):
            now = T0 + timedelta(seconds=second + 1) + skew
            enqueued += [t.tick for t in scheduler.run_due(now) if t.result.verdict is TickVerdict.ENQUEUED]
    assert sorted(enqueued) == [T0 + timedelta(minutes=m) for m in range(6)]
    assert len(_ticks(queues[0])) == 6
    for queue in queues:
        queue.close()


def test_a_workflow_schedule_starts_one_run_per_tick(backend: str) -> None:
    workflows = {
        "flow": {
            "input": {"type": "object", "required": ["n"]},
            "steps": {"one": {"job": "report", "payload": {"n": "${input.n}"}}},
        }
    }
    body = {"cron": "0 * * * *", "workflow": "flow", "input": {"n": 5}, "catch_up": "all"}
    queues = [make_queue(backend, JOBS, workflows=workflows, schedules={"s": body}) for _ in range(2)]
    first, second = (Scheduler(queue) for queue in queues)
    [tick] = first.run_due(T0 + timedelta(seconds=1))
    assert tick.result.verdict is TickVerdict.ENQUEUED and tick.result.job_id is not None
    assert second.run_due(T0 + timedelta(seconds=2)) == []  # recorded: not asked again
    # a worker that read the schedule's state before the tick was recorded starts the same run
    assert second._start_run(second.schedules[0], T0).result == TickResult(TickVerdict.TAKEN, tick.result.job_id)
    run = queues[0].get_workflow(tick.result.job_id)
    assert run is not None and run.input == {"n": 5} and run.idempotency_key == "schedule:s:2030-05-01T12:00:00Z"
    set_paused(queues[1], "s", True)
    [paused] = first.run_due(T0 + timedelta(hours=1, seconds=1))
    assert paused.result.verdict is TickVerdict.PAUSED
    set_paused(queues[1], "s", False)
    done = first.run_due(T0 + timedelta(hours=2, seconds=1))
    assert [t.result.verdict for t in done] == [TickVerdict.ENQUEUED]
    assert len(queues[0].list_workflows(limit=100).runs) == 2
    for queue in queues:
        queue.close()
