"""Cron ticks in a zone (dqflow.schedules.cron): aliases, and DST in Europe/Berlin as docs/SCHEDULES.md says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from dqflow.schedules.cron import CronError, CronTimes

BERLIN = ZoneInfo("Europe/Berlin")


def _ticks(cron: str, start: datetime, end: datetime, zone: ZoneInfo = BERLIN) -> list[str]:
    """The ticks in (start, end] as local wall times with their offset."""
    return [
        t.astimezone(zone).strftime("%m-%d %H:%M%z") for t in CronTimes(cron, zone).between(start, end, newest=1000)
    ]


def test_a_daily_time_in_the_skipped_hour_runs_once_shifted_by_the_gap() -> None:
    # 2026-03-29: clocks jump from 02:00 CET to 03:00 CEST; 02:30 does not exist that day
    ticks = _ticks("30 2 * * *", datetime(2026, 3, 27, tzinfo=UTC), datetime(2026, 3, 31, 12, tzinfo=UTC))
    assert ticks == ["03-27 02:30+0100", "03-28 02:30+0100", "03-29 03:30+0200", "03-30 02:30+0200", "03-31 02:30+0200"]


def test_a_daily_time_in_the_repeated_hour_runs_once_at_its_first_occurrence() -> None:
    # 2026-10-25: clocks fall back from 03:00 CEST to 02:00 CET; 02:30 happens twice
    ticks = _ticks("30 2 * * *", datetime(2026, 10, 24, tzinfo=UTC), datetime(2026, 10, 26, 12, tzinfo=UTC))
    assert ticks == ["10-24 02:30+0200", "10-25 02:30+0200", "10-26 02:30+0100"]
    assert CronTimes("30 2 * * *", BERLIN).next_after(datetime(2026, 10, 25, 0, 30, tzinfo=UTC)) == datetime(
        2026, 10, 26, 1, 30, tzinfo=UTC
    )


def test_an_hourly_schedule_runs_every_real_hour_across_both_changes() -> None:
    spring = _ticks("0 * * * *", datetime(2026, 3, 28, 23, 30, tzinfo=UTC), datetime(2026, 3, 29, 2, 30, tzinfo=UTC))
    assert spring == ["03-29 01:00+0100", "03-29 03:00+0200", "03-29 04:00+0200"]  # 02:00 does not exist
    autumn = _ticks("0 * * * *", datetime(2026, 10, 24, 22, 30, tzinfo=UTC), datetime(2026, 10, 25, 2, 30, tzinfo=UTC))
    assert autumn == ["10-25 01:00+0200", "10-25 02:00+0200", "10-25 02:00+0100", "10-25 03:00+0100"]


def test_every_minute_skips_nothing_and_repeats_nothing_in_utc_terms() -> None:
    cron = CronTimes("* * * * *", BERLIN)
    for start in (datetime(2026, 3, 29, 0, 30, tzinfo=UTC), datetime(2026, 10, 25, 0, 30, tzinfo=UTC)):
        ticks = cron.between(start, start + timedelta(hours=2), newest=1000)
        assert ticks == [start + timedelta(minutes=m) for m in range(1, 121)]


def test_next_after_and_at_or_before_agree() -> None:
    cron = CronTimes("*/15 9-17 * * 1-5", BERLIN)
    at = datetime(2026, 3, 27, 16, 50, tzinfo=UTC)  # a Friday, 17:50 in Berlin
    upcoming = cron.next_after(at)
    assert upcoming.astimezone(BERLIN).strftime("%a %H:%M") == "Mon 09:00"
    assert cron.at_or_before(upcoming) == upcoming
    assert (
        cron.at_or_before(upcoming - timedelta(microseconds=1)).astimezone(BERLIN).strftime("%a %H:%M") == "Fri 17:45"
    )


@pytest.mark.parametrize(
    ("alias", "fields"),
    [("@hourly", "0 * * * *"), ("@daily", "0 0 * * *"), ("@weekly", "0 0 * * 0"), ("@YEARLY", "0 0 1 1 *")],
)
def test_aliases(alias: str, fields: str) -> None:
    assert CronTimes(alias, BERLIN).fields == fields


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("* * * *", "must have 5 fields"),
        ("0 * * * * *", "must have 5 fields"),
        ("61 * * * *", "not a valid expression"),
        ("* * * * mon-fry", "not a valid expression"),
        ("0 0 30 2 *", "never matches"),
        ("@fortnightly", "must have 5 fields"),
    ],
)
def test_bad_expressions_say_why(cron: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        CronTimes(cron, BERLIN)
