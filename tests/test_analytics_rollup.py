"""GET /api/alerts/analytics from day summaries: the same answer as computing the whole range live.

The reference is `alert_analytics_live` (the query before summaries existed, everything computed
from the history on each call), asked in the same test as the endpoint. Every comparison leaves out
`open_by_age`, which reads now() and is computed live in both.
"""

from __future__ import annotations

import random
import subprocess
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from helpers import LEADWATCH, act_as, leadwatch_env
from leadwatch import Api
from leadwatch.devtools.dev import create_app
from leadwatch.http.identity import VerifiedAccess
from test_access import SETTINGS, bearer, token

AGENT, OTHER = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
NOW = datetime.now(UTC)  # set again by `history` from the database's clock, when the test runs
TYPES = ("NoContact7d", "NoReply3d", "StaleLead30d")
# A whole-hour zone, half-hour and quarter-hour ones, one west of UTC, one 14 hours east.
ZONES = ("UTC", "Europe/Paris", "Asia/Kathmandu", "America/St_Johns", "Pacific/Kiritimati")
DAYS = 12


@pytest.fixture
def history(db):
    """~300 alerts over the last 12 days on leads owned by AGENT, OTHER, nobody (owner null) or not in
    the directory; resolved 0-300 h later (ties included), some escalated; a few in the last 5 minutes.
    Written with explicit times, the recording triggers off (as test_analytics does). "Now" is the
    database's clock as the test starts (not when the module was imported, maybe minutes before and
    on the other side of a midnight): the summaries and the live part are cut by that clock."""
    global NOW  # noqa: PLW0603 -- the tests read "now" as the database saw it when the fixture ran
    NOW = db.execute("select clock_timestamp()").fetchone()[0]
    rng = random.Random(12)
    active: set[tuple[str, str]] = set()
    db.execute("set session_replication_role = replica")
    try:
        for i in range(8):
            owner = (AGENT, OTHER, None)[i % 3]
            db.execute(
                "insert into leads (tenant_id, lead_id, name, owner_id) values ('acme', %s, %s, %s)",
                [f"L{i}", f"Lead {i}", owner],
            )
        for n in range(300):
            lead = f"L{rng.randrange(10)}"  # L8, L9: not in the directory
            created = NOW - timedelta(minutes=rng.randrange(2, DAYS * 24 * 60))
            if n < 4:
                created = NOW - timedelta(minutes=rng.randrange(1, 4))  # inside the live window
            hours = rng.choice([rng.randrange(0, 300 * 60) / 60, 24.0, 6.0, 6.0])
            resolved = created + timedelta(hours=hours) if rng.random() < 0.8 else None
            if resolved is not None and resolved > NOW:
                resolved = None
            escalated = (
                created + timedelta(hours=1) if rng.random() < 0.3 and created < NOW - timedelta(hours=1) else None
            )
            kind = rng.choice(TYPES)
            if resolved is None and (lead, kind) in active:  # one active alert per lead and type
                resolved = created + (NOW - created) / 2
            if resolved is None:
                active.add((lead, kind))
            (alert_id,) = db.execute(
                "insert into max_alerts (tenant_id, lead_id, type, severity, message, created_at, escalated_at,"
                " resolved_at, resolved_by, resolution) values ('acme', %s, %s, %s, 'm', %s, %s, %s, %s, %s)"
                " returning id",
                [
                    lead,
                    kind,
                    "high" if escalated else "med",
                    created,
                    escalated,
                    resolved,
                    resolved and "system",
                    resolved and "rule",
                ],
            ).fetchone()
            for event, at in (("created", created), ("escalated", escalated), ("resolved", resolved)):
                if at is not None:
                    db.execute(
                        "insert into alert_events (tenant_id, alert_id, lead_id, type, event, severity, actor, at)"
                        " values ('acme', %s, %s, %s, %s, 'med', 'system', %s)",
                        [alert_id, lead, kind, event, at],
                    )
    finally:
        db.execute("set session_replication_role = origin")


def _range(tz: str) -> tuple[date, date]:
    today = NOW.astimezone(ZoneInfo(tz)).date()
    return today - timedelta(days=DAYS), today


def live(db, tz: str, claims: dict | None = None) -> dict:
    """The figures computed live from the whole history (as the service, or as the user of `claims`)."""
    start, end = _range(tz)
    with db.transaction():
        if claims:
            act_as(db, claims)
        (figures,) = db.execute("select alert_analytics_live('acme', %s, %s, %s)", [start, end, tz]).fetchone()
    figures.pop("open_by_age")
    return figures


def summarised(client, tz: str, headers: dict | None = None) -> dict:
    start, end = _range(tz)
    response = client.get(
        f"/api/alerts/analytics?from={start}&to={end}&tz={tz}", headers=headers or {"X-Tenant": "acme"}
    )
    assert response.status_code == 200, response.json
    figures = dict(response.json)
    for key in ("success", "open_by_age"):
        figures.pop(key)
    return figures


def summarisable_days(db, tz: str) -> int:
    """The days of `_range(tz)` that have a summary once summarised: the summaries reach 5 minutes
    ago, so in the first 5 minutes of a local day that day has none yet."""
    start, end = _range(tz)
    (open_day,) = db.execute("select ((now() - interval '5 minutes') at time zone %s)::date", [tz]).fetchone()
    return (min(end, open_day) - start).days + 1


def summary_days(db, tz: str) -> int:
    return db.execute(
        "select count(*) from alert_day_rollups where tz = %s and owner_key = '*' and type_key = '*'", [tz]
    ).fetchone()[0]


@pytest.mark.parametrize("tz", ZONES)
def test_summarised_analytics_equal_the_live_computation_in_every_zone(client, db, history, tz):
    first = summarised(client, tz)  # summarises the closed days and today so far
    assert summary_days(db, tz) == summarisable_days(db, tz) >= DAYS
    assert first == live(db, tz)
    assert first["resolved_within_24h"]["resolved"] > 150 and len(first["time_to_resolve"]["by_owner"]) == 3

    assert summarised(client, tz) == live(db, tz)  # from the summaries
    # An alert created now lands in the live part, on top of the summaries.
    db.execute(
        "insert into max_alerts (tenant_id, lead_id, type, severity, message)"
        " values ('acme', 'L0', 'HotLead24h', 'med', 'now')"
    )
    after = summarised(client, tz)
    assert after == live(db, tz)
    assert after["per_day"][-1]["created"] == first["per_day"][-1]["created"] + 1


def test_an_agent_gets_the_summarised_figures_of_their_own_leads(store, db, history):
    client = create_app(Api(store, VerifiedAccess(SETTINGS))).test_client()
    claims = {"role": "authenticated", "sub": AGENT, "app_metadata": {"tenant_id": "acme", "role": "agent"}}
    agent = bearer(token("agent", sub=AGENT))

    for tz in ("Europe/Paris", "Asia/Kathmandu"):
        everyone = summarised(client, tz, bearer(token("admin")))  # the summaries made on an admin's call

        mine = summarised(client, tz, agent)

        assert mine == live(db, tz, claims)
        assert [o["owner_id"] for o in mine["time_to_resolve"]["by_owner"]] == [AGENT]
        assert 0 < mine["resolved_within_24h"]["resolved"] < everyone["resolved_within_24h"]["resolved"]


def test_merging_a_lead_into_another_owners_lead_redoes_the_summaries(client, db, history):
    before = summarised(client, "Europe/Paris")

    db.execute("select merge_lead('acme', 'L0', 'L1')")  # AGENT's L0 into OTHER's L1: its history changes owner

    after = summarised(client, "Europe/Paris")
    assert after == live(db, "Europe/Paris")
    assert after["time_to_resolve"]["by_owner"] != before["time_to_resolve"]["by_owner"]


def test_retention_deleting_history_redoes_the_summaries(client, db, history):
    before = summarised(client, "America/St_Johns")

    db.execute("insert into retention_policies (tenant_id, resolved_alerts_after) values ('acme', '5 days')")
    assert db.execute("select apply_retention('acme', 50000)").fetchone()[0]["alerts"] > 0

    after = summarised(client, "America/St_Johns")
    assert after == live(db, "America/St_Johns")
    assert after["per_day"] != before["per_day"]


def test_a_lead_changing_owner_redoes_the_summaries(client, db, history):
    before = summarised(client, "UTC")

    db.execute("update leads set owner_id = %s where tenant_id = 'acme' and lead_id = 'L2'", [AGENT])  # was nobody's

    after = summarised(client, "UTC")
    assert after == live(db, "UTC")
    assert after["time_to_resolve"]["by_owner"] != before["time_to_resolve"]["by_owner"]


def test_a_lead_entering_the_directory_with_history_redoes_the_summaries(client, db, history):
    before = summarised(client, "UTC")

    db.execute("insert into leads (tenant_id, lead_id, name, owner_id) values ('acme', 'L9', 'Lead 9', %s)", [OTHER])

    after = summarised(client, "UTC")
    assert after == live(db, "UTC")
    assert after["time_to_resolve"]["by_owner"] != before["time_to_resolve"]["by_owner"]


def test_an_alert_reopened_after_its_day_was_summarised_leaves_that_days_figures(client, db, history):
    created, resolved = NOW - timedelta(days=6), NOW - timedelta(days=5)
    db.execute("set session_replication_role = replica")
    (alert,) = db.execute(
        "insert into max_alerts (tenant_id, lead_id, type, severity, message, created_at, resolved_at, resolved_by,"
        " resolution) values ('acme', 'L0', 'HighValueRisk', 'med', 'm', %s, %s, 'system', 'activity') returning id",
        [created, resolved],
    ).fetchone()
    for event, at in (("created", created), ("resolved", resolved)):
        db.execute(
            "insert into alert_events (tenant_id, alert_id, lead_id, type, event, severity, actor, at)"
            " values ('acme', %s, 'L0', 'HighValueRisk', %s, 'med', 'system', %s)",
            [alert, event, at],
        )
    db.execute("set session_replication_role = origin")
    before = summarised(client, "Europe/Paris")

    db.execute(  # as a corrected WhatsApp message does; the alert trigger records 'reopened'
        "update max_alerts set resolved_at = null, resolved_by = null, resolution = null where id = %s", [alert]
    )

    after = summarised(client, "Europe/Paris")
    assert after == live(db, "Europe/Paris")
    assert after["resolved_within_24h"]["resolved"] == before["resolved_within_24h"]["resolved"] - 1


def test_a_summarised_day_is_read_from_its_summary(client, db, history):
    """The summaries are what the answer reads (a test that the path above is not the live one)."""
    start, _ = _range("UTC")
    summarised(client, "UTC")
    db.execute(
        "update alert_day_rollups set created = created + 1000 where tz = 'UTC' and day = %s"
        " and owner_key = '*' and type_key = '*'",
        [start],
    )

    assert summarised(client, "UTC")["per_day"][0]["created"] == live(db, "UTC")["per_day"][0]["created"] + 1000


def test_the_nightly_job_summarises_the_days_closed_since(db, history):
    start, _end = _range("Europe/Paris")
    db.execute("select summarise_alert_days('acme', %s, %s, 'Europe/Paris')", [start, start + timedelta(days=2)])
    assert summary_days(db, "Europe/Paris") == 3

    assert db.execute("select summarise_recent_alert_days()").fetchone()[0] == 1

    assert summary_days(db, "Europe/Paris") == summarisable_days(db, "Europe/Paris")


def test_the_retain_command_summarises_the_days_closed_since(db, history, database_url):
    """`leadwatch retain` runs the same nightly batch as the scheduled route, its last summaries included."""
    start, _end = _range("Europe/Paris")
    db.execute("select summarise_alert_days('acme', %s, %s, 'Europe/Paris')", [start, start])

    retained = subprocess.run(
        [*LEADWATCH, "retain"], capture_output=True, text=True, env=leadwatch_env(DATABASE_URL=database_url), timeout=60
    )

    assert retained.returncode == 0, retained.stderr
    assert summary_days(db, "Europe/Paris") == summarisable_days(db, "Europe/Paris")


def test_the_nightly_retention_run_summarises_the_days_closed_since(client, db, history):
    start, _end = _range("Europe/Paris")
    db.execute("select summarise_alert_days('acme', %s, %s, 'Europe/Paris')", [start, start])

    assert client.post("/api/retention/run", headers={"X-Tenant": "acme"}).get_json()["more"] is False

    assert summary_days(db, "Europe/Paris") == summarisable_days(db, "Europe/Paris")
