"""Business hours: working calendars, rules on the business clock, and the SQL arithmetic behind them."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTE = timedelta(minutes=1)

# Zones with daylight-saving changes at night (Paris, New York), a 30-minute offset with changes
# (St John's), a 30-minute offset without (Kolkata), a 30-minute change (Lord Howe), and UTC.
ZONES = ("Europe/Paris", "America/New_York", "America/St_Johns", "Asia/Kolkata", "Australia/Lord_Howe", "UTC")
# Days just before 2026's clock changes in those zones, and one quiet day.
AROUND = (
    datetime(2026, 3, 6, tzinfo=UTC),
    datetime(2026, 3, 27, tzinfo=UTC),
    datetime(2026, 4, 3, tzinfo=UTC),
    datetime(2026, 10, 2, tzinfo=UTC),
    datetime(2026, 10, 23, tzinfo=UTC),
    datetime(2026, 10, 30, tzinfo=UTC),
    datetime(2026, 6, 12, tzinfo=UTC),
)


# The oracle: the definitions, minute by minute on the calendar's local clock -----------------------


class Oracle:
    """Working time as the documentation defines it, walked one local minute (or one day) at a time."""

    def __init__(self, calendar: dict) -> None:
        self.zone = ZoneInfo(calendar["timeZone"])
        self.holidays = {date.fromisoformat(h) for h in calendar.get("holidays", [])}
        self.ranges = [
            [(_minutes(start), _minutes(end)) for start, end in calendar["week"].get(day, [])] for day in DAYS
        ]

    def local(self, at: datetime) -> datetime:
        return at.astimezone(self.zone).replace(tzinfo=None)

    def instant(self, local: datetime) -> datetime:
        """A local time as an instant, as PostgreSQL reads it: a time skipped by a clock change takes
        the offset in force before it, a time lived twice the offset in force after it."""
        first, second = local.replace(tzinfo=self.zone, fold=0), local.replace(tzinfo=self.zone, fold=1)
        if first.utcoffset() == second.utcoffset() or self.local(first) != local:
            return first.astimezone(UTC)
        return second.astimezone(UTC)

    def working_day(self, day: date) -> bool:
        return day not in self.holidays and bool(self.ranges[day.weekday()])

    def working(self, local: datetime) -> bool:
        minute = local.hour * 60 + local.minute
        return local.date() not in self.holidays and any(s <= minute < e for s, e in self.ranges[local.weekday()])

    def next_opening(self, at: datetime) -> datetime:
        local = self.local(at)
        if self.working(local):
            return at
        while not self.working(local):
            local += MINUTE
        return self.instant(local)

    def add_minutes(self, at: datetime, minutes: int) -> datetime:
        local, counted = self.local(at), 0
        while True:
            if self.working(local):
                counted += 1
                if counted == minutes:
                    return self.instant(local + MINUTE)
            local += MINUTE

    def add_days(self, at: datetime, days: int) -> datetime:
        start = self.local(self.next_opening(at))
        day, counted = start.date(), 0
        while counted < days:
            day += timedelta(days=1)
            counted += self.working_day(day)
        return self.next_opening(self.instant(datetime.combine(day, start.time())))

    def minutes_between(self, start: datetime, end: datetime) -> int:
        local, last, counted = self.local(start), self.local(end), 0
        while local < last:
            counted += self.working(local)
            local += MINUTE
        return counted


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


# Strategies -----------------------------------------------------------------------------------------


@st.composite
def calendars(draw) -> dict:
    """A random week (0 to 3 ranges a day on a 30-minute grid, nights included) with a few holidays."""
    week: dict[str, list[list[str]]] = {}
    for day in DAYS:
        count = draw(st.integers(0, 3))
        points = sorted(draw(st.sets(st.integers(0, 48), min_size=2 * count, max_size=2 * count)))
        week[day] = [[_hhmm(points[i] * 30), _hhmm(points[i + 1] * 30)] for i in range(0, len(points), 2)]
    if not any(week.values()):
        week["wed"] = [["10:00", "12:30"]]
    holidays = draw(st.lists(st.dates(date(2026, 2, 25), date(2026, 12, 20)), max_size=6))
    return {"timeZone": draw(st.sampled_from(ZONES)), "week": week, "holidays": [h.isoformat() for h in holidays]}


instants = st.builds(
    lambda base, minutes: base + timedelta(minutes=minutes), st.sampled_from(AROUND), st.integers(0, 6 * 1440)
)


def _week_minutes(calendar: dict) -> int:
    return sum(_minutes(e) - _minutes(s) for ranges in calendar["week"].values() for s, e in ranges)


@pytest.fixture(scope="module")
def sql(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


def _one(sql, query: str, *params):
    return sql.execute(query, params).fetchone()[0]


ARITHMETIC = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@ARITHMETIC
@given(calendar=calendars(), at=instants, data=st.data())
def test_working_minutes_added_in_sql_match_the_minute_by_minute_oracle(sql, calendar, at, data):
    """`Nh`/`Nm` on the business clock: the earliest instant by which that much working time has passed."""
    minutes = data.draw(st.integers(1, min(3 * _week_minutes(calendar), 12000)), label="minutes")
    if minutes % 1440 == 0:  # whole days are working days, checked below
        minutes += 1
    got = _one(
        sql,
        "select public.clock_add(c, true, %s, make_interval(mins => %s)) from public.parse_calendar('t', %s) c",
        at,
        minutes,
        json.dumps(calendar),
    )
    assert got == Oracle(calendar).add_minutes(at, minutes)


@ARITHMETIC
@given(calendar=calendars(), at=instants, days=st.integers(1, 12))
def test_working_days_added_in_sql_match_the_day_by_day_oracle(sql, calendar, at, days):
    """`Nd` on the business clock: the same local clock time N working days later, outside hours moved on."""
    got = _one(
        sql,
        "select public.clock_add(c, true, %s, make_interval(days => %s)) from public.parse_calendar('t', %s) c",
        at,
        days,
        json.dumps(calendar),
    )
    assert got == Oracle(calendar).add_days(at, days)


@ARITHMETIC
@given(calendar=calendars(), at=instants, minutes=st.integers(0, 20 * 1440))
def test_working_time_between_two_instants_in_sql_matches_the_oracle(sql, calendar, at, minutes):
    """What analytics count on the business clock: working seconds between two instants."""
    end = at + timedelta(minutes=minutes)
    got = _one(
        sql,
        "select public.working_seconds_between(c, %s, %s) from public.parse_calendar('t', %s) c",
        at,
        end,
        json.dumps(calendar),
    )
    assert got == Oracle(calendar).minutes_between(at, end) * 60


@ARITHMETIC
@given(calendar=calendars(), at=instants)
def test_next_opening_in_sql_matches_the_oracle(sql, calendar, at):
    got = _one(sql, "select public.next_opening(c, %s) from public.parse_calendar('t', %s) c", at, json.dumps(calendar))
    assert got == Oracle(calendar).next_opening(at)


PARIS = ZoneInfo("Europe/Paris")


def paris(*args: int) -> datetime:
    return datetime(*args, tzinfo=PARIS)


@pytest.mark.parametrize(
    ("start", "span", "due"),
    [
        (paris(2026, 12, 11, 17), "3 days", paris(2026, 12, 16, 17)),
        (paris(2026, 12, 11, 20), "3 days", paris(2026, 12, 17, 9)),
        (paris(2026, 12, 11, 17), "4 hours", paris(2026, 12, 14, 12)),
        (paris(2026, 12, 11, 17), "1 hour", paris(2026, 12, 11, 18)),
        (paris(2026, 12, 24, 17), "1 day", paris(2026, 12, 28, 17)),  # Christmas Day is a holiday
    ],
    ids=["friday-17h-plus-3d", "friday-20h-plus-3d", "friday-17h-plus-4h", "to-the-closing", "over-christmas"],
)
def test_documented_examples_on_a_paris_office_week(sql, start, span, due):
    calendar = {
        "timeZone": "Europe/Paris",
        "week": {d: [["09:00", "18:00"]] for d in DAYS[:5]},
        "holidays": ["2026-12-25"],
    }
    got = _one(
        sql,
        "select public.clock_add(c, true, %s, %s::interval) from public.parse_calendar('t', %s) c",
        start,
        span,
        json.dumps(calendar),
    )
    assert got == due
    assert time(9) <= due.time() <= time(18)
