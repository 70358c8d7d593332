"""The morning digest: what it tells an agent and a manager (fr and en) against a hand-built history,
when it is written (the tenant's hour in its time zone, once a day), and how it leaves — signed to a
loopback receiver as `digest.daily`, and as one WhatsApp message through the respx Green-API fake.

Time is passed in (`now`): the history is inserted at known times around Tuesday 24 November 2026.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from helpers import add_leads, ago, allow_history_rewrite, log
from leadwatch import Api
from leadwatch.config import GreenApiInstance
from leadwatch.devtools.dev import create_app
from leadwatch.http.identity import OpenAccess, VerifiedAccess
from leadwatch.integrations.greenapi import GreenApi
from leadwatch.jobs.notifications import push_whatsapp
from test_access import SETTINGS, bearer, token
from test_notifications import Receiver, deliver

API_URL = "https://7103.api.greenapi.com"
ACME = GreenApiInstance(id="7103000001", token="token-acme", api_url=API_URL, webhook_token="hook-acme", tenant="acme")
HEADERS = {"X-Tenant": "acme"}
AGENT, OTHER, MANAGER, IDLE = "u-agent", "u-other", "u-manager", "u-idle"

MORNING = datetime(2026, 11, 24, 7, 0, 30, tzinfo=UTC)  # Tuesday, 08:00:30 in Paris (the default hour)
SINCE, UNTIL = datetime(2026, 11, 23, 7, tzinfo=UTC), datetime(2026, 11, 24, 7, tzinfo=UTC)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# The hand-built history: every alert and event at a known time (UTC). The window of Tuesday's
# digest is [Monday 07:00, Tuesday 07:00) UTC — 08:00 to 08:00 in Paris.
ALERTS = {
    "A1": {
        "lead": "L1",
        "type": "NoReply3d",
        "severity": "high",
        "created": "2026-11-23 10:00",
        "message": "No reply in 3 days",
    },
    "A2": {
        "lead": "L2",
        "type": "NoContact7d",
        "severity": "high",
        "created": "2026-11-20 09:00",  # before the window: not new
        "escalated": "2026-11-23 12:00",
        "overdue": "2026-11-24 06:00",
        "message": "No contact in 7 days",
    },
    "A3": {
        "lead": "L3",
        "type": "HotLead24h",
        "severity": "high",
        "created": "2026-11-23 15:00",
        "message": "Hot lead",
    },
    "A4": {
        "lead": "L4",
        "type": "StaleLead30d",
        "severity": "low",
        "created": "2026-11-10 09:00",
        "resolved": "2026-11-23 18:00",  # resolved yesterday
        "message": "Stale for 30 days",
    },
    "A5": {
        "lead": "L1",
        "type": "PreferredChannel",
        "severity": "low",
        "created": "2026-11-23 06:59",
        "message": "Prefers WhatsApp",
    },
    "A6": {
        "lead": "L2",
        "type": "HighValueRisk",
        "severity": "med",
        "created": "2026-11-23 11:00",  # new, but snoozed: not to act on
        "snoozed": "2026-11-26 09:00",
        "message": "High value at risk",
    },
    "A7": {
        "lead": "L3",
        "type": "NoReply3d",
        "severity": "med",
        "created": "2026-11-24 07:00",
        "message": "No reply in 3 days",
    },
    "A8": {
        "lead": "L4",
        "type": "NoReply3d",
        "severity": "low",
        "created": "2026-11-21 09:00",
        "message": "No reply in 3 days",
    },
}
# (lead, name, owner)
LEADS = {
    "L1": ("Ana Lima", AGENT),
    "L2": ("Bruno Costa", AGENT),
    "L3": ("Chloé Martin", OTHER),
    "L4": ("Dario Rossi", AGENT),
}


def build_history(store, db) -> dict[str, str]:
    """The leads, the alerts and their events as ALERTS says; answers {name: alert id}."""
    add_leads(store, **{lead: {"name": name, "ownerId": owner} for lead, (name, owner) in LEADS.items()})
    add_leads(store, L9={"name": "Idle Lead", "ownerId": IDLE})
    ids = {}
    with db.transaction():
        allow_history_rewrite(db)
        for name, a in ALERTS.items():
            ids[name] = str(
                db.execute(
                    "insert into max_alerts (tenant_id, lead_id, type, severity, message, created_at, escalated_at,"
                    " resolved_at, resolved_by, resolution, snoozed_until, overdue_at)"
                    " values ('acme', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) returning id",
                    [
                        a["lead"],
                        a["type"],
                        a["severity"],
                        a["message"],
                        utc(a["created"]),
                        a.get("escalated") and utc(a["escalated"]),
                        a.get("resolved") and utc(a["resolved"]),
                        "u-agent" if a.get("resolved") else None,
                        "manual" if a.get("resolved") else None,
                        a.get("snoozed") and utc(a["snoozed"]),
                        a.get("overdue") and utc(a["overdue"]),
                    ],
                ).fetchone()[0]
            )
        db.execute("delete from alert_events")  # the triggers' 'created' rows carry the real time: ours replace them
        for name, a in ALERTS.items():
            for event in ("created", "escalated", "overdue", "resolved"):
                if a.get(event):
                    db.execute(
                        "insert into alert_events (tenant_id, alert_id, lead_id, type, event, severity, actor, at)"
                        " values ('acme', %s, %s, %s, %s, %s, 'system', %s)",
                        [ids[name], a["lead"], a["type"], event, a["severity"], utc(a[event])],
                    )
    return ids


@pytest.fixture
def greenapi_route(http_mock):
    route = http_mock.post(f"{API_URL}/waInstance{ACME.id}/sendMessage/{ACME.token}")
    route.return_value = httpx.Response(200, json={"idMessage": "BAE5F4886F1F2D3A"})
    return route


@pytest.fixture
def receiver(http_mock):
    http_mock.route(host="127.0.0.1").pass_through()
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def app(store):
    return create_app(Api(store, OpenAccess(), greenapi=GreenApi((ACME,), attempts=2))).test_client()


def member(client, user_id, name, role, locale="en", phone="+33611111111", **extra) -> None:
    body = {"userId": user_id, "name": name, "role": role, "locale": locale, "phone": phone, "whatsapp": True}
    body["notifications"] = ["digest"]
    response = client.post("/api/members", headers=HEADERS, json={**body, **extra})
    assert response.status_code == 200, response.get_json()


def register(client, receiver, events=("digest.daily",)) -> None:
    response = client.post("/api/webhooks", headers=HEADERS, json={"url": receiver.url, "events": list(events)})
    assert response.status_code == 201, response.get_json()
    receiver.secret = response.get_json()["webhook"]["secret"]


def digests(db) -> dict[str, dict | None]:
    return dict(db.execute("select user_id, digest from member_digests order by user_id").fetchall())


def pushes(db) -> dict[str, str]:
    return dict(db.execute("select user_id, text from member_pushes where kind = 'digest'").fetchall())


def first(digest) -> list[tuple]:
    return [(a["lead_name"], a["severity"], a["type"], a["owner_id"]) for a in digest["first"]]


# What it tells ------------------------------------------------------------------------------------

AGENT_FIRST = [
    ("Ana Lima", "high", "NoReply3d", AGENT),  # A1
    ("Bruno Costa", "high", "NoContact7d", AGENT),  # A2 (high, older)
    ("Ana Lima", "low", "PreferredChannel", AGENT),  # A5
    ("Dario Rossi", "low", "NoReply3d", AGENT),  # A8
]
MANAGER_FIRST = [
    ("Chloé Martin", "high", "HotLead24h", OTHER),  # A3 (high, newest)
    ("Ana Lima", "high", "NoReply3d", AGENT),  # A1
    ("Bruno Costa", "high", "NoContact7d", AGENT),  # A2
    ("Chloé Martin", "med", "NoReply3d", OTHER),  # A7
    ("Ana Lima", "low", "PreferredChannel", AGENT),  # A5 (A8, older, is the sixth: left out)
]
TEXTS = {
    ("agent", "en"): "Leadwatch morning digest, 2026-11-24\n"
    "New since yesterday: 2 · Escalated: 1 · Overdue: 1 · Resolved yesterday: 1\n"
    "To act on first (4 in all):\n"
    "1. High — Ana Lima: No reply in 3 days\n"
    "2. High — Bruno Costa: No contact in 7 days\n"
    "3. Low — Ana Lima: Prefers WhatsApp\n"
    "4. Low — Dario Rossi: No reply in 3 days",
    ("agent", "fr"): "Leadwatch, point du matin du 24/11/2026\n"
    "Nouvelles depuis hier : 2 · Escaladées : 1 · En retard : 1 · Résolues hier : 1\n"
    "À traiter en premier (4 en tout) :\n"
    "1. Haute — Ana Lima : No reply in 3 days\n"
    "2. Haute — Bruno Costa : No contact in 7 days\n"
    "3. Basse — Ana Lima : Prefers WhatsApp\n"
    "4. Basse — Dario Rossi : No reply in 3 days",
    ("manager", "en"): "Leadwatch morning digest, 2026-11-24\n"
    "New since yesterday: 3 · Escalated: 1 · Overdue: 1 · Resolved yesterday: 1\n"
    "To act on first (6 in all):\n"
    "1. High — Chloé Martin: Hot lead\n"
    "2. High — Ana Lima: No reply in 3 days\n"
    "3. High — Bruno Costa: No contact in 7 days\n"
    "4. Medium — Chloé Martin: No reply in 3 days\n"
    "5. Low — Ana Lima: Prefers WhatsApp",
    ("manager", "fr"): "Leadwatch, point du matin du 24/11/2026\n"
    "Nouvelles depuis hier : 3 · Escaladées : 1 · En retard : 1 · Résolues hier : 1\n"
    "À traiter en premier (6 en tout) :\n"
    "1. Haute — Chloé Martin : Hot lead\n"
    "2. Haute — Ana Lima : No reply in 3 days\n"
    "3. Haute — Bruno Costa : No contact in 7 days\n"
    "4. Moyenne — Chloé Martin : No reply in 3 days\n"
    "5. Basse — Ana Lima : Prefers WhatsApp",
}


@pytest.mark.parametrize("locale", ["en", "fr"])
def test_an_agents_digest_tells_their_own_leads_and_a_managers_the_whole_tenant(app, store, db, locale):
    build_history(store, db)
    member(app, AGENT, "Alice", "agent", locale=locale)
    member(app, MANAGER, "Marc", "manager", locale=locale, phone="+33622222222")
    assert store.write_daily_digests(MORNING) == {"digests": 2, "empty": 0, "deliveries": 0, "pushes": 2}

    written = digests(db)
    agent, manager = written[AGENT], written[MANAGER]
    for digest in (agent, manager):
        assert digest["day"] == "2026-11-24" and digest["time_zone"] == "Europe/Paris"
        assert datetime.fromisoformat(digest["since"]) == SINCE and datetime.fromisoformat(digest["until"]) == UNTIL
    counts = ("new", "escalated", "overdue", "resolved", "to_act_on")
    assert {k: agent[k] for k in counts} == {"new": 2, "escalated": 1, "overdue": 1, "resolved": 1, "to_act_on": 4}
    assert {k: manager[k] for k in counts} == {"new": 3, "escalated": 1, "overdue": 1, "resolved": 1, "to_act_on": 6}
    assert agent["scope"] == "own_leads" and manager["scope"] == "tenant"
    assert agent["recipient"] == {"user_id": AGENT, "name": "Alice", "role": "agent", "locale": locale}
    assert first(agent) == AGENT_FIRST
    assert first(manager) == MANAGER_FIRST
    assert [a["overdue"] for a in manager["first"]] == [False, False, True, False, False]

    texts = pushes(db)
    assert texts[AGENT] == TEXTS[("agent", locale)]
    assert texts[MANAGER] == TEXTS[("manager", locale)]


def test_the_five_to_act_on_come_in_the_dashboards_order_and_an_admin_is_told_the_whole_tenant(app, store, db):
    """The manager's and the admin's five are the first five of GET /api/alerts/active (snoozed left out there too)."""
    build_history(store, db)
    member(app, MANAGER, "Marc", "manager")
    member(app, "u-admin", "Ada", "admin")
    store.write_daily_digests(MORNING)
    listed = app.get("/api/alerts/active?limit=5", headers=HEADERS).get_json()["alerts"]
    written = digests(db)
    assert [a["id"] for a in written[MANAGER]["first"]] == [a["id"] for a in listed]
    assert [a["id"] for a in written["u-admin"]["first"]] == [a["id"] for a in listed]
    assert written["u-admin"]["scope"] == "tenant" and written["u-admin"]["to_act_on"] == 6


def test_nobody_with_nothing_to_act_on_is_sent_anything(app, store, db, receiver, greenapi_route):
    build_history(store, db)
    register(app, receiver)
    member(app, IDLE, "Ivan", "agent")  # owns L9, which has no alert
    member(app, "u-nobody", "Nina", "agent", phone="+33633333333")  # owns nothing
    assert store.write_daily_digests(MORNING) == {"digests": 0, "empty": 2, "deliveries": 0, "pushes": 0}
    assert digests(db) == {IDLE: None, "u-nobody": None}, "looked at once, for the day"
    assert deliver(store, now=MORNING)["claimed"] == 0 and receiver.received == []
    assert push_whatsapp(store, GreenApi((ACME,)), now=MORNING)["claimed"] == 0 and not greenapi_route.called
    assert store.write_daily_digests(MORNING + timedelta(hours=3))["empty"] == 0, "not looked at again that day"


def test_members_who_did_not_ask_for_the_digest_get_none(app, store, db):
    build_history(store, db)
    member(app, MANAGER, "Marc", "manager", notifications=["high_alert", "overdue"])
    assert store.write_daily_digests(MORNING) == {"digests": 0, "empty": 0, "deliveries": 0, "pushes": 0}


# When ---------------------------------------------------------------------------------------------


def test_the_digest_waits_for_the_tenants_hour_in_its_time_zone_then_comes_once(app, store, db):
    build_history(store, db)
    member(app, MANAGER, "Marc", "manager")
    response = app.put("/api/digest", headers=HEADERS, json={"hour": 7, "timeZone": "America/New_York"})
    assert response.get_json() == {
        "success": True,
        "digest": {"hour": 7, "time_zone": "America/New_York", "default": False},
    }
    seven_in_new_york = datetime(2026, 11, 24, 12, tzinfo=UTC)  # EST: UTC-5
    assert store.write_daily_digests(MORNING)["digests"] == 0, "08:00 in Paris is 02:00 in New York"
    assert store.write_daily_digests(seven_in_new_york - timedelta(seconds=1))["digests"] == 0, "06:59:59"
    assert store.write_daily_digests(seven_in_new_york)["digests"] == 1
    assert store.write_daily_digests(seven_in_new_york + timedelta(hours=5))["digests"] == 0, "once a day"
    [(day, digest)] = db.execute("select day, digest from member_digests").fetchall()
    assert str(day) == "2026-11-24" and digest["time_zone"] == "America/New_York"
    assert datetime.fromisoformat(digest["until"]) == seven_in_new_york
    assert datetime.fromisoformat(digest["since"]) == seven_in_new_york - timedelta(days=1)
    assert digest["new"] == 2, "New York's window: A3 and A7, not A1 nor A6 (before Monday 12:00 UTC)"
    assert store.write_daily_digests(seven_in_new_york + timedelta(days=1))["digests"] == 1, "and again the next day"


def test_the_default_hour_is_eight_in_paris(app, store, db):
    build_history(store, db)
    member(app, MANAGER, "Marc", "manager")
    assert app.get("/api/digest", headers=HEADERS).get_json()["digest"] == {
        "hour": 8,
        "time_zone": "Europe/Paris",
        "default": True,
    }
    assert store.write_daily_digests(MORNING - timedelta(minutes=1))["digests"] == 0, "07:59:30 in Paris"
    assert store.write_daily_digests(MORNING)["digests"] == 1


def test_a_digest_at_the_morning_hour_is_not_held_by_the_default_quiet_hours_but_an_earlier_one_is(
    app, store, db, greenapi_route
):
    build_history(store, db)
    member(app, AGENT, "Alice", "agent", quietHours={"start": "20:00", "end": "08:00"}, timeZone="Europe/Paris")
    member(app, MANAGER, "Marc", "manager", phone="+33622222222")  # the default quiet hours: 20:00-08:00 Paris
    store.write_daily_digests(MORNING)
    due = dict(db.execute("select user_id, next_attempt_at from member_pushes").fetchall())
    assert due == {AGENT: MORNING, MANAGER: MORNING}, "08:00 is the end of the quiet hours, not inside them"

    app.put("/api/digest", headers=HEADERS, json={"hour": 6, "timeZone": "Europe/Paris"})
    six = datetime(2026, 11, 25, 5, tzinfo=UTC)  # Wednesday 06:00 in Paris
    store.write_daily_digests(six)
    held = db.execute(
        "select next_attempt_at from member_pushes where user_id = %s and next_attempt_at > %s", [AGENT, MORNING]
    )
    assert held.fetchone()[0] == datetime(2026, 11, 25, 7, tzinfo=UTC), "held until 08:00 in Paris, not dropped"
    assert push_whatsapp(store, GreenApi((ACME,)), now=six)["claimed"] == 2, "Tuesday's two, not Wednesday's"


# Once ---------------------------------------------------------------------------------------------


def test_a_rerun_writes_nothing_twice(app, store, db, receiver):
    build_history(store, db)
    register(app, receiver)
    member(app, AGENT, "Alice", "agent")
    member(app, MANAGER, "Marc", "manager")
    assert store.write_daily_digests(MORNING) == {"digests": 2, "empty": 0, "deliveries": 2, "pushes": 2}
    assert store.write_daily_digests(MORNING) == {"digests": 0, "empty": 0, "deliveries": 0, "pushes": 0}
    assert store.write_daily_digests(MORNING + timedelta(minutes=1))["digests"] == 0
    assert db.execute("select count(*) from webhook_deliveries").fetchone()[0] == 2
    assert db.execute("select count(*) from member_pushes").fetchone()[0] == 2


def test_two_concurrent_runs_write_one_digest_per_member_and_day(postgres_store, db, database_url, receiver):
    app = create_app(Api(postgres_store, OpenAccess())).test_client()
    build_history(postgres_store, db)
    register(app, receiver)
    member(app, AGENT, "Alice", "agent")
    member(app, MANAGER, "Marc", "manager")
    results: list[dict] = []
    with psycopg.connect(database_url) as first_run:  # holds its digests uncommitted ...
        results.append(first_run.execute("select write_daily_digests(%s)", [MORNING]).fetchone()[0])
        racer = threading.Thread(target=lambda: results.append(postgres_store.write_daily_digests(MORNING)))
        racer.start()  # ... while a second run computes the same ones and waits on their key
        racer.join(timeout=1)
        assert racer.is_alive(), "the second run waits for the first"
        first_run.commit()
    racer.join(timeout=30)
    assert [r["digests"] for r in results] == [2, 0]
    assert [r["deliveries"] for r in results] == [2, 0] and [r["pushes"] for r in results] == [2, 0]
    assert db.execute("select count(*) from webhook_deliveries").fetchone()[0] == 2
    assert db.execute("select count(*) from member_digests").fetchone()[0] == 2


# How it leaves ------------------------------------------------------------------------------------


def test_the_digest_arrives_signed_as_digest_daily_and_as_one_whatsapp_message(
    app, store, db, receiver, greenapi_route
):
    build_history(store, db)
    register(app, receiver, events=["digest.daily", "alert.created"])
    member(app, AGENT, "Alice", "agent", locale="en", phone="+33611111111")
    member(app, MANAGER, "Marc", "manager", locale="fr", phone="+33622222222", whatsapp=False)
    store.write_daily_digests(MORNING)

    assert deliver(store, now=MORNING) == {"claimed": 2, "delivered": 2, "retrying": 0, "failed": 0, "disabled": 0}
    assert all(r["valid"] for r in receiver.received) and len(set(receiver.ids())) == 2
    assert {r["type"] for r in receiver.received} == {"digest.daily"}
    told = {r["payload"]["data"]["digest"]["recipient"]["user_id"]: r["payload"] for r in receiver.received}
    written = digests(db)
    assert told[AGENT]["data"]["digest"] == written[AGENT] and told[MANAGER]["data"]["digest"] == written[MANAGER]
    assert datetime.fromisoformat(told[AGENT]["timestamp"]) == MORNING

    assert push_whatsapp(store, GreenApi((ACME,)), now=MORNING) == {"claimed": 1, "sent": 1, "retrying": 0, "failed": 0}
    [call] = greenapi_route.calls  # the manager did not ask for WhatsApp
    sent = json.loads(call.request.content)
    assert sent == {"chatId": "33611111111@c.us", "message": TEXTS[("agent", "en")]}


def test_the_deliver_route_writes_the_digests_come_due_and_sends_them(app, store, db, receiver, greenapi_route):
    add_leads(store, L1={"name": "Ana Lima", "ownerId": AGENT})
    log(store, lead="L1", direction="in", occurredAt=ago(days=8))
    store.sweep()  # a live alert on Alice's lead
    register(app, receiver)
    member(app, AGENT, "Alice", "agent", quietHours=None)  # told whatever the time the test runs at
    app.put("/api/digest", headers=HEADERS, json={"hour": 0, "timeZone": "UTC"})  # due since midnight
    body = app.post("/api/notifications/deliver").get_json()
    assert body["digests"] == {"digests": 1, "empty": 0, "deliveries": 1, "pushes": 1}
    assert body["delivered"] == 1 and body["pushes"]["sent"] == 1
    assert [r["type"] for r in receiver.received] == ["digest.daily"] and receiver.received[0]["valid"]
    [call] = greenapi_route.calls
    assert json.loads(call.request.content)["message"].startswith("Leadwatch morning digest, ")
    again = app.post("/api/notifications/deliver").get_json()
    assert again["digests"]["digests"] == 0 and again["claimed"] == 0 and len(greenapi_route.calls) == 1


# The settings route --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"hour": 24, "timeZone": "UTC"}, "hour"),
        ({"hour": -1, "timeZone": "UTC"}, "hour"),
        ({"hour": 8, "timeZone": "Mars/Olympus"}, "timeZone"),
        ({"timeZone": "UTC"}, "hour"),
        ({"hour": 8}, "timeZone"),
        ({"hour": "8am", "timeZone": "UTC"}, "hour"),
    ],
    ids=["hour-24", "hour-negative", "unknown-zone", "no-hour", "no-zone", "hour-not-a-number"],
)
def test_invalid_digest_settings_are_refused_naming_the_field_and_nothing_is_written(app, db, body, field):
    response = app.put("/api/digest", headers=HEADERS, json=body)
    assert response.status_code == 422
    assert field in [d["field"] for d in response.get_json()["error"]["details"]]
    assert db.execute("select count(*) from digest_settings").fetchone()[0] == 0


def test_only_admins_read_and_set_the_digest_hour(store, db):
    verified = create_app(Api(store, VerifiedAccess(SETTINGS))).test_client()
    body = {"hour": 9, "timeZone": "Europe/Paris"}
    for role in ("agent", "manager"):
        assert verified.put("/api/digest", headers=bearer(token(role=role)), json=body).status_code == 403
        assert verified.get("/api/digest", headers=bearer(token(role=role))).status_code == 403
    admin = bearer(token(role="admin"))
    assert verified.put("/api/digest", headers=admin, json=body).status_code == 200
    assert verified.get("/api/digest", headers=admin).get_json()["digest"]["hour"] == 9
    other = bearer(token(role="admin", tenant="other"))
    assert verified.get("/api/digest", headers=other).get_json()["digest"]["default"] is True
