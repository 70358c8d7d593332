"""Business hours: working calendars, rules on the business clock, and the SQL arithmetic behind them."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from helpers import active, log
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from leadwatch import Api
from leadwatch.devtools.dev import create_app
from leadwatch.errors import ValidationFailed
from leadwatch.http.identity import VerifiedAccess
from leadwatch.models.desk import RuleIn
from leadwatch.models.requests import ActivityIn
from test_access import ADMIN, AGENT, SETTINGS, bearer, token

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
        skipped = self.local(first.astimezone(UTC)) != local  # the clock never showed it
        if first.utcoffset() == second.utcoffset() or skipped:
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


# The next opening within the spring night's gap (Sunday 02:00 in Paris on 29 March 2026): the start is
# that opening's instant read back on the clock (03:00), outside the range, so Sunday 29 March is not
# the first working day counted from (Sunday 12 April, not 5 April); then with a Monday range as well.
_SPRING_SUNDAY = {"timeZone": "Europe/Paris", "week": {"sun": [["02:00", "03:00"]]}}
_SPRING_SUNDAY_MONDAY = {"timeZone": "Europe/Paris", "week": {"sun": [["02:00", "03:00"]], "mon": [["09:00", "10:00"]]}}


@ARITHMETIC
@given(calendar=calendars(), at=instants, days=st.integers(1, 12))
@example(calendar=_SPRING_SUNDAY, at=datetime(2026, 3, 27, tzinfo=UTC), days=1)
@example(calendar=_SPRING_SUNDAY_MONDAY, at=datetime(2026, 3, 27, tzinfo=UTC), days=1)
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


# Through the rules and the sweep -------------------------------------------------------------------

OFFICE = {"timeZone": "Europe/Paris", "week": {d: [["09:00", "18:00"]] for d in DAYS[:5]}, "holidays": []}
ACME = {"X-Tenant": "acme"}


@pytest.fixture
def calendars(db):
    """Tenants start on the default calendar."""
    db.execute("delete from business_calendars where tenant_id <> '*'")
    yield db
    db.execute("delete from business_calendars where tenant_id <> '*'")


def business(store, rule_type="NoReply3d", **changes):
    store.set_rule("acme", rule_type, RuleIn(clock="business", **changes))


def no_reply(db) -> str | None:
    return active(db).get(("L1", "NoReply3d"))


def stored_due(db, column="no_reply_due_at") -> datetime:
    return db.execute(f"select {column} from lead_state where tenant_id = 'acme' and lead_id = 'L1'").fetchone()[0]


def test_friday_afternoon_outbound_is_unanswered_for_three_working_days_on_wednesday_afternoon(store, calendars):
    db = calendars
    business(store)
    log(store, direction="out", occurredAt=paris(2026, 11, 27, 17))
    assert stored_due(db) == paris(2026, 12, 2, 17)
    store.sweep(now=paris(2026, 11, 30, 17))  # three calendar days: the weekend does not count
    store.sweep(now=paris(2026, 12, 2, 16, 59))
    assert no_reply(db) is None
    store.sweep(now=paris(2026, 12, 2, 17))
    assert no_reply(db) == "med"


def test_friday_evening_outbound_counts_from_monday_morning(store, calendars):
    db = calendars
    business(store)
    log(store, direction="out", occurredAt=paris(2026, 11, 27, 20))
    store.sweep(now=paris(2026, 12, 3, 8, 59))
    assert no_reply(db) is None
    store.sweep(now=paris(2026, 12, 3, 9))
    assert no_reply(db) == "med"


def test_four_working_hours_from_friday_afternoon_end_on_monday_noon(store, calendars):
    db = calendars
    business(store, threshold="4h", escalateAfter="5d", escalatedSeverity="high")
    log(store, direction="out", occurredAt=paris(2026, 11, 27, 17))
    store.sweep(now=paris(2026, 11, 30, 11, 59))
    assert no_reply(db) is None
    store.sweep(now=paris(2026, 11, 30, 12))
    assert no_reply(db) == "med"


def test_the_ladder_climbs_in_working_days_too(store, calendars):
    """NoReply3d escalates after 7 working days: Friday + 7 is the Tuesday of the week after next."""
    db = calendars
    business(store)
    log(store, direction="out", occurredAt=paris(2026, 11, 27, 17))
    store.sweep(now=paris(2026, 12, 2, 17))
    assert stored_due(db) == paris(2026, 12, 8, 17)
    store.sweep(now=paris(2026, 12, 4, 17))  # seven calendar days
    store.sweep(now=paris(2026, 12, 8, 16, 59))
    assert no_reply(db) == "med"
    store.sweep(now=paris(2026, 12, 8, 17))
    assert no_reply(db) == "high"


def test_clocks_follow_the_local_time_across_a_daylight_saving_change(store, calendars):
    db = calendars
    business(store)
    log(store, direction="out", occurredAt=paris(2026, 10, 23, 17))  # CEST; due in CET
    assert stored_due(db) == paris(2026, 10, 28, 17)
    assert stored_due(db).astimezone(UTC).hour == 16


def test_a_calendar_change_moves_the_stored_due_times_at_once(client, store, calendars):
    db = calendars
    business(store)
    log(store, direction="out", occurredAt=paris(2026, 11, 27, 17))
    assert stored_due(db) == paris(2026, 12, 2, 17)
    response = client.put("/api/calendar", headers=ACME, json={**OFFICE, "holidays": ["2026-11-30"]})
    assert response.status_code == 200, response.get_json()
    assert stored_due(db) == paris(2026, 12, 3, 17), "the Monday off does not count"
    assert stored_due(db, "no_contact_due_at") == paris(2026, 12, 4, 17), "NoContact7d stays on the calendar clock"
    store.sweep(now=paris(2026, 12, 2, 17))
    assert no_reply(db) is None


def test_a_clock_change_moves_the_stored_due_times_both_ways(client, store, calendars):
    db = calendars
    log(store, direction="out", occurredAt=paris(2026, 11, 27, 17))
    assert stored_due(db) == paris(2026, 11, 30, 17)
    assert client.put("/api/rules/NoReply3d", headers=ACME, json={"clock": "business"}).status_code == 200
    assert stored_due(db) == paris(2026, 12, 2, 17)
    rules = {r["type"]: r["clock"] for r in client.get("/api/rules", headers=ACME).get_json()["rules"]}
    assert rules["NoReply3d"] == "business" and rules["NoContact7d"] == "calendar"
    assert client.put("/api/rules/NoReply3d", headers=ACME, json={"clock": "calendar"}).status_code == 200
    assert stored_due(db) == paris(2026, 11, 30, 17)


def test_lists_of_activities_use_the_business_clock(store, calendars):
    db = calendars
    business(store, "NoContact7d", threshold="2d", escalateAfter="4d", escalatedSeverity="high")
    store.log_activities(
        "acme",
        [
            ActivityIn(leadId="L1", channel="call", direction="out", occurredAt=paris(2026, 11, 27, 17)),
            ActivityIn(leadId="L2", channel="call", direction="out", occurredAt=paris(2026, 11, 27, 17)),
        ],
    )
    assert stored_due(db, "no_contact_due_at") == paris(2026, 12, 1, 17)


def test_overdue_delay_counts_working_hours(store, calendars):
    """A high alert since Friday 17:00 with a 4h business delay is overdue on Monday at noon."""
    db = calendars
    business(store, "HotLead24h", overdueAfter="4h")
    for minutes in (30, 20, 10):
        log(store, direction="in", occurredAt=datetime.now(UTC) - timedelta(minutes=minutes))
    db.execute("update max_alerts set created_at = %s where type = 'HotLead24h'", [paris(2026, 12, 4, 17)])
    assert store.sweep(now=paris(2026, 12, 7, 11, 59))["overdue"] == 0
    assert store.sweep(now=paris(2026, 12, 7, 12))["overdue"] == 1


# Over HTTP -------------------------------------------------------------------------------------------


def test_a_tenant_that_never_set_a_calendar_works_weekdays_nine_to_six_in_paris(client, calendars):
    calendar = client.get("/api/calendar", headers=ACME).get_json()["calendar"]
    assert calendar == {**OFFICE, "week": {**OFFICE["week"], "sat": [], "sun": []}, "source": "default"}


def test_a_calendar_is_set_and_read_back(client, calendars):
    body = {
        "timeZone": "Asia/Kolkata",
        "week": {"mon": [["14:00", "18:00"], ["09:30", "12:30"]], "sat": [["10:00", "24:00"]]},
        "holidays": ["2026-12-25", "2026-01-26"],
    }
    saved = client.put("/api/calendar", headers=ACME, json=body).get_json()["calendar"]
    assert saved["week"]["mon"] == [["09:30", "12:30"], ["14:00", "18:00"]]
    assert saved["week"]["sun"] == [] and saved["holidays"] == ["2026-01-26", "2026-12-25"]
    assert client.get("/api/calendar", headers=ACME).get_json()["calendar"] == saved
    assert saved["source"] == "tenant"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"timeZone": "Mars/Olympus"}, "timeZone"),
        ({"week": {"mon": [["9:00", "18:00"]]}}, "week"),
        ({"week": {"mon": [["18:00", "09:00"]]}}, "week"),
        ({"week": {"mon": [["09:00", "13:00"], ["12:00", "18:00"]]}}, "week"),
        ({"week": {"mon": [], "tue": []}}, "week"),
        ({"week": {"someday": [["09:00", "18:00"]]}}, "week"),
        ({"holidays": ["2026-02-30"]}, "holidays"),
    ],
    ids=["unknown-zone", "not-hh-mm", "ends-before-it-starts", "overlap", "empty-week", "unknown-day", "no-such-date"],
)
def test_calendars_are_validated_naming_the_field_and_write_nothing(client, calendars, change, field):
    response = client.put("/api/calendar", headers=ACME, json={**OFFICE, **change})
    assert response.status_code == 422, response.get_json()
    assert any(d["field"].startswith(field) for d in response.get_json()["error"]["details"])
    assert calendars.execute("select count(*) from business_calendars where tenant_id <> '*'").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"timeZone": "Mars/Olympus"}, "timeZone"),
        ({"week": {"mon": [["09:00", "25:00"]]}}, "week.mon[0]"),
        ({"week": {"mon": [["09:00", "13:00"], ["12:00", "18:00"]]}}, "week.mon[1]"),
        ({"week": {}}, "week"),
        ({"holidays": ["Christmas"]}, "holidays[0]"),
    ],
    ids=["unknown-zone", "not-hh-mm", "overlap", "empty-week", "not-a-date"],
)
def test_the_sql_checks_calendars_too(postgres_store, calendars, change, field):
    """Whoever calls set_calendar directly (the REST API of Supabase) meets the same rules."""
    with pytest.raises(ValidationFailed) as error:
        postgres_store.set_calendar("acme", {**OFFICE, **change})
    assert field in str(error.value.details)
    assert calendars.execute("select count(*) from business_calendars where tenant_id <> '*'").fetchone()[0] == 0


def test_only_admins_and_platform_staff_change_the_calendar(store, calendars):
    client = create_app(Api(store, VerifiedAccess(SETTINGS))).test_client()
    callers = {
        "agent": (bearer(token(role="agent", sub=AGENT)), 403),
        "manager": (bearer(token(role="manager")), 403),
        "admin": (bearer(token(role="admin", sub=ADMIN)), 200),
        "platform_admin": ({**bearer(token(role="platform_admin", tenant="staff")), "X-Tenant": "acme"}, 200),
    }
    for name, (headers, status) in callers.items():
        assert client.put("/api/calendar", headers=headers, json=OFFICE).status_code == status, name
    assert client.get("/api/calendar", headers=bearer(token(role="agent", sub=AGENT))).status_code == 200
    assert (
        client.get("/api/calendar", headers=bearer(token(role="agent", tenant="other"))).get_json()["calendar"][
            "source"
        ]
        == "default"
    ), "another tenant's calendar is its own"


def test_snooze_until_the_next_working_morning(client, store, calendars):
    log(store, direction="in", occurredAt=datetime.now(UTC) - timedelta(days=8))
    store.sweep()
    alert_id = str(calendars.execute("select id from max_alerts where resolved_at is null").fetchone()[0])
    response = client.post(f"/api/alerts/{alert_id}/snooze", headers=ACME, json={"until": "next_working_morning"})
    assert response.status_code == 200, response.get_json()
    until = datetime.fromisoformat(response.get_json()["alert"]["snoozed_until"]).astimezone(PARIS)
    now = datetime.now(PARIS)
    expected = now.replace(hour=9, minute=0, second=0, microsecond=0)
    if now >= expected or now.weekday() >= 5:
        expected += timedelta(days=1)
        while expected.weekday() >= 5:
            expected += timedelta(days=1)
    assert until == expected


def test_analytics_in_working_hours(client, store, calendars):
    """An alert raised on Friday 17:00 and resolved on Monday 10:00 took 2 working hours (65 on the clock)."""
    log(store, direction="in", occurredAt=datetime.now(UTC) - timedelta(days=8))
    store.sweep()
    calendars.execute(
        "update max_alerts set created_at = %s, resolved_at = %s, resolved_by = 'u', resolution = 'manual'",
        [paris(2026, 11, 27, 17), paris(2026, 11, 30, 10)],
    )
    query = "/api/alerts/analytics?from=2026-11-30&to=2026-11-30&tz=Europe/Paris"
    working = client.get(query + "&clock=business", headers=ACME).get_json()
    assert working["clock"] == "business"
    assert working["time_to_resolve"]["by_type"] == [
        {"type": "NoContact7d", "count": 1, "median_hours": 2.0, "p90_hours": 2.0}
    ]
    assert working["resolved_within_24h"] == {"resolved": 1, "within_24h": 1, "share": 1.0}
    elapsed = client.get(query, headers=ACME).get_json()
    assert elapsed["resolved_within_24h"]["within_24h"] == 0
    assert elapsed["time_to_resolve"]["by_type"][0]["median_hours"] == 65.0


def test_bulk_snooze_until_the_next_working_morning_and_a_word_it_does_not_know(client, store, calendars):
    for lead in ("L1", "L2"):
        log(store, lead=lead, direction="in", occurredAt=datetime.now(UTC) - timedelta(days=8))
    store.sweep()
    ids = [str(i) for (i,) in calendars.execute("select id from max_alerts where resolved_at is null").fetchall()]
    unknown = client.post("/api/alerts/bulk", headers=ACME, json={"action": "snooze", "ids": ids, "until": "someday"})
    assert unknown.status_code == 422
    assert any(d["field"].startswith("until") for d in unknown.get_json()["error"]["details"])
    body = {"action": "snooze", "ids": ids, "until": "next_working_morning"}
    assert client.post("/api/alerts/bulk", headers=ACME, json=body).get_json()["done"] == 2
    [(until,)] = calendars.execute("select distinct snoozed_until from max_alerts where resolved_at is null").fetchall()
    local = until.astimezone(PARIS)
    assert (local.weekday() < 5, local.hour, local.minute) == (True, 9, 0) and until > datetime.now(UTC)
