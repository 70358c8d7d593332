"""The team directory: admins add and list members; users see only what row-level security shows."""

from __future__ import annotations

import pytest
from leadwatch import Api
from leadwatch.devtools.dev import create_app
from leadwatch.http.identity import VerifiedAccess
from test_access import ADMIN, AGENT, SETTINGS, bearer, token

ACME = {"X-Tenant": "acme"}
ANA = {
    "userId": AGENT,
    "name": "Ana",
    "role": "agent",
    "phone": "+33612345678",
    "locale": "en",
    "timeZone": "America/New_York",
    "quietHours": {"start": "21:00", "end": "07:30"},
    "notifications": ["high_alert", "digest"],
    "whatsapp": True,
}


def test_an_admin_adds_a_member_and_lists_the_directory(client, store, db):
    response = client.post("/api/members", headers=ACME, json=ANA)
    assert response.status_code == 200, response.get_json()
    member = response.get_json()["member"]
    assert member["user_id"] == AGENT and member["phone"] == "+33612345678" and member["locale"] == "en"
    assert member["time_zone"] == "America/New_York" and member["quiet_hours"] == {"start": "21:00", "end": "07:30"}
    assert member["notifications"] == ["high_alert", "digest"] and member["whatsapp"] is True
    client.post("/api/members", headers=ACME, json={"userId": ADMIN, "name": "Bea", "role": "manager"})
    listed = client.get("/api/members", headers=ACME).get_json()["members"]
    assert [m["name"] for m in listed] == ["Ana", "Bea"]
    bea = listed[1]
    assert bea["locale"] == "fr" and bea["time_zone"] == "Europe/Paris" and bea["whatsapp"] is False
    assert bea["quiet_hours"] == {"start": "20:00", "end": "08:00"}, "quiet from 20:00 to 08:00 unless asked"
    assert client.get("/api/members", headers={"X-Tenant": "other"}).get_json()["members"] == []


def test_posting_a_member_again_replaces_them(client, store, db):
    client.post("/api/members", headers=ACME, json=ANA)
    again = client.post("/api/members", headers=ACME, json={**ANA, "name": "Ana B.", "quietHours": None})
    assert again.get_json()["member"]["name"] == "Ana B." and again.get_json()["member"]["quiet_hours"] is None
    assert db.execute("select count(*) from team_members").fetchone()[0] == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"phone": "0612345678"}, "phone"),
        ({"timeZone": "Mars/Olympus"}, "timeZone"),
        ({"role": "owner"}, "role"),
        ({"locale": "de"}, "locale"),
        ({"quietHours": {"start": "25:00", "end": "08:00"}}, "quietHours.start"),
        ({"notifications": ["everything"]}, "notifications.0"),
        ({"phone": None, "whatsapp": True}, "body"),
    ],
    ids=["phone-not-e164", "unknown-zone", "unknown-role", "unknown-locale", "bad-clock", "unknown-kind", "no-phone"],
)
def test_an_invalid_member_is_refused_naming_the_field_and_nothing_is_written(client, db, change, field):
    response = client.post("/api/members", headers=ACME, json={**ANA, **change})
    assert response.status_code == 422
    assert field in [d["field"] for d in response.get_json()["error"]["details"]], response.get_json()
    assert db.execute("select count(*) from team_members").fetchone()[0] == 0


def test_only_admins_manage_the_directory(store, db):
    verified = create_app(Api(store, VerifiedAccess(SETTINGS))).test_client()
    admin, agent = bearer(token(role="admin")), bearer(token(role="agent", sub=AGENT))
    assert verified.post("/api/members", headers=agent, json=ANA).status_code == 403
    assert verified.get("/api/members", headers=agent).status_code == 403
    assert verified.post("/api/members", headers=admin, json=ANA).status_code == 200
    assert len(verified.get("/api/members", headers=admin).get_json()["members"]) == 1
    other_admin = bearer(token(role="admin", tenant="other"))
    assert verified.get("/api/members", headers=other_admin).get_json()["members"] == []
