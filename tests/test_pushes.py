"""WhatsApp pushes to people: a high alert to its lead's owner, an overdue alert to the managers,
held through quiet hours — through the respx Green-API fake, on both stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from helpers import add_leads, ago, later, log
from leadwatch import Api
from leadwatch.config import GreenApiInstance
from leadwatch.devtools.dev import create_app
from leadwatch.http.identity import OpenAccess
from leadwatch.integrations.greenapi import GreenApi
from leadwatch.jobs.notifications import push_whatsapp

API_URL = "https://7103.api.greenapi.com"
ACME = GreenApiInstance(id="7103000001", token="token-acme", api_url=API_URL, webhook_token="hook-acme", tenant="acme")
HEADERS = {"X-Tenant": "acme"}
OWNER, MANAGER, OTHER = "u-owner", "u-manager", "u-other"


@pytest.fixture
def team(store, db, http_mock):
    """acme's directory: the owner (en, no quiet hours), a manager (fr), an agent; a Green-API fake."""
    client = create_app(Api(store, OpenAccess(), greenapi=GreenApi((ACME,), attempts=2))).test_client()
    base = {"whatsapp": True, "quietHours": None, "notifications": ["high_alert", "overdue"]}
    for member in (
        {"userId": OWNER, "name": "Olga", "role": "agent", "phone": "+33611111111", "locale": "en"},
        {"userId": MANAGER, "name": "Marc", "role": "manager", "phone": "+33622222222", "locale": "fr"},
        {"userId": OTHER, "name": "Oscar", "role": "agent", "phone": "+33633333333"},
    ):
        assert client.post("/api/members", headers=HEADERS, json={**base, **member}).status_code == 200
    route = http_mock.post(f"{API_URL}/waInstance{ACME.id}/sendMessage/{ACME.token}")
    route.return_value = httpx.Response(200, json={"idMessage": "BAE5F4886F1F2D3A"})
    return client, route


def hot_lead(store, lead="L1") -> None:
    for minutes in (30, 20, 10):
        log(store, lead=lead, direction="in", occurredAt=ago(minutes=minutes))


def sent(route) -> list[tuple[str, str]]:
    import json

    return [(json.loads(c.request.content)["chatId"], json.loads(c.request.content)["message"]) for c in route.calls]


def test_a_high_alert_created_is_pushed_to_its_leads_owner_in_their_locale(team, store, db):
    _, route = team
    add_leads(store, L1={"name": "Ana Lima", "ownerId": OWNER})
    hot_lead(store)
    assert push_whatsapp(store, GreenApi((ACME,))) == {"claimed": 1, "sent": 1, "retrying": 0, "failed": 0}
    [(chat, text)] = sent(route)
    assert chat == "33611111111@c.us" and text.startswith("High alert on Ana Lima")
    assert push_whatsapp(store, GreenApi((ACME,)))["claimed"] == 0, "once"


def test_an_overdue_alert_is_pushed_to_the_managers_only(team, store, db):
    _, route = team
    add_leads(store, L1={"name": "Ana Lima"})  # no owner: nobody told at creation
    hot_lead(store)
    store.sweep(now=later(hours=25))
    result = push_whatsapp(store, GreenApi((ACME,)), now=later(hours=25))
    assert result["sent"] == 1
    [(chat, text)] = sent(route)
    assert chat == "33622222222@c.us" and text.startswith("En retard : alerte haute sur Ana Lima")


def test_quiet_hours_hold_a_push_until_they_end(team, store, db):
    client, route = team
    hour = datetime.now(UTC).hour
    quiet = {"start": f"{(hour - 1) % 24:02d}:00", "end": f"{(hour + 2) % 24:02d}:00"}
    owner = {"userId": OWNER, "name": "Olga", "role": "agent", "phone": "+33611111111", "timeZone": "UTC"}
    client.post("/api/members", headers=HEADERS, json={**owner, "whatsapp": True, "quietHours": quiet})
    add_leads(store, L1={"name": "Ana Lima", "ownerId": OWNER})
    hot_lead(store)
    assert push_whatsapp(store, GreenApi((ACME,)))["claimed"] == 0, "held, not sent"
    [(due,)] = db.execute("select next_attempt_at from member_pushes where status = 'pending'").fetchall()
    assert due.astimezone(UTC).hour == (hour + 2) % 24 and due.minute == 0 and due > datetime.now(UTC)
    assert push_whatsapp(store, GreenApi((ACME,)), now=due)["sent"] == 1
    assert len(sent(route)) == 1


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ("2026-11-23 21:30", "2026-11-24 08:00"),  # evening: the next morning
        ("2026-11-23 07:10", "2026-11-23 08:00"),  # early morning: the same morning
        ("2026-11-23 12:00", "2026-11-23 12:00"),  # daytime: at once
        ("2026-11-23 20:00", "2026-11-24 08:00"),  # quiet from 20:00 sharp
    ],
)
def test_push_due_at_follows_the_members_quiet_hours_in_their_time_zone(db, local, expected):
    [(due,)] = db.execute(
        "select push_due_at((%s::timestamp at time zone 'Europe/Paris'), 'Europe/Paris', '20:00', '08:00')"
        " at time zone 'Europe/Paris'",
        [local],
    ).fetchall()
    assert due == datetime.fromisoformat(expected)


def test_a_green_api_failure_is_retried_later_not_dropped(team, store, db):
    _, route = team
    route.side_effect = [httpx.Response(500), httpx.Response(500), httpx.Response(200, json={"idMessage": "X1"})]
    add_leads(store, L1={"name": "Ana Lima", "ownerId": OWNER})
    hot_lead(store)
    t0 = later(minutes=1)
    assert push_whatsapp(store, GreenApi((ACME,), attempts=2), now=t0)["retrying"] == 1
    assert push_whatsapp(store, GreenApi((ACME,), attempts=2), now=t0 + timedelta(seconds=5))["sent"] == 1


def test_the_deliver_route_sends_the_pushes_too(team, store, db):
    client, route = team
    add_leads(store, L1={"name": "Ana Lima", "ownerId": OWNER})
    hot_lead(store)
    body = client.post("/api/notifications/deliver").get_json()
    assert body["pushes"]["sent"] == 1 and len(sent(route)) == 1
