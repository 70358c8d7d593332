"""The HTTP functions through the real handlers (dev app), over each store and the real database."""

from __future__ import annotations

import json

import httpx
import pytest
import respx
from helpers import ago, later, log
from leadwatch import Api, PostgresStore, SupabaseStore
from leadwatch.devtools.dev import create_app
from leadwatch.http.identity import OpenAccess
from postgrest_fake import SERVICE_KEY, SUPABASE_URL

H = {"X-Tenant": "macrea"}


def counts(db):
    return db.execute(
        "select (select count(*) from lead_activities), (select count(*) from leads), (select count(*) from max_alerts)"
    ).fetchone()


def test_log_activity_answers_the_reference_shape(client, db):
    response = client.post(
        "/api/activities/log",
        headers=H,
        json={
            "leadId": "694d0bed15df5b9e1",
            "channel": "whatsapp",
            "direction": "out",
            "status": "sent",
            "messageSnippet": "Message envoyé (max 100 char)",
            "meta": {"provider": "green-api", "instanceId": "7105440259"},
        },
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["success"] is True and body["alerts"] == {"created": [], "resolved": []}
    activity = body["activity"]
    assert {"id", "lead_id", "channel", "direction", "created_at"} <= activity.keys()
    assert (activity["lead_id"], activity["channel"], activity["direction"]) == ("694d0bed15df5b9e1", "whatsapp", "out")
    assert activity["meta"] == {"provider": "green-api", "instanceId": "7105440259"}
    assert response.headers["Cache-Control"] == "no-store"


def test_reference_end_to_end_over_http(client, db):
    client.post(
        "/api/leads",
        headers=H,
        json={"leadId": "694d0bed15df5b9e1", "name": "Sophie Martin", "email": "sophie.martin@example.com"},
    )
    client.post(
        "/api/activities/log",
        headers=H,
        json={
            "leadId": "694d0bed15df5b9e1",
            "channel": "whatsapp",
            "direction": "out",
            "messageSnippet": "Bonjour, avez-vous reçu notre devis?",
            "occurredAt": ago(days=3, hours=1).isoformat(),
        },
    )
    sweep = client.post("/api/alerts/sweep").get_json()
    assert sweep["success"] is True and sweep["created"]["NoReply3d"] == 1
    assert isinstance(sweep["duration_ms"], float) and "escalated" in sweep and "resolved" in sweep

    listed = client.get("/api/alerts/active", headers=H).get_json()
    assert listed["success"] is True and listed["stats"]["total"] == 1 and listed["next_cursor"] is None
    [alert] = listed["alerts"]
    assert alert["lead_name"] == "Sophie Martin" and alert["suggested_action"]["action"] == "send_whatsapp"

    reply = client.post(
        "/api/activities/log",
        headers=H,
        json={
            "leadId": "694d0bed15df5b9e1",
            "channel": "whatsapp",
            "direction": "in",
            "status": "replied",
            "messageSnippet": "Oui, je suis intéressé",
        },
    ).get_json()
    assert reply["alerts"]["resolved"] == ["NoReply3d"]
    assert client.get("/api/alerts/active", headers=H).get_json()["alerts"] == []


def test_resolve_answers_the_reference_shape_and_is_idempotent(client, store, db):
    log(store, tenant="macrea", direction="in", occurredAt=ago(days=8))
    store.sweep()
    alert_id = db.execute("select id::text from max_alerts").fetchone()[0]
    first = client.post(f"/api/alerts/{alert_id}/resolve", headers=H)
    again = client.post(f"/api/alerts/{alert_id}/resolve", headers=H)
    assert first.status_code == again.status_code == 200
    body = first.get_json()
    assert body["success"] is True and body["message"] == "Alerte résolue"
    assert body["alert"]["id"] == alert_id and body["alert"]["resolved_by"] == "user_manual"
    assert again.get_json()["alert"] == body["alert"]


def test_replayed_external_id_over_http_is_stored_once(client, db):
    payload = {"leadId": "L1", "channel": "whatsapp", "direction": "in", "externalId": "wamid.HBgL"}
    first = client.post("/api/activities/log", headers=H, json=payload)
    retry = client.post("/api/activities/log", headers=H, json=payload)
    assert first.status_code == retry.status_code == 200
    assert retry.get_json()["duplicate"] is True
    assert retry.get_json()["activity"]["id"] == first.get_json()["activity"]["id"]
    assert counts(db)[0] == 1


def test_long_snippet_is_stored_cut_to_100_characters(client, db):
    response = client.post(
        "/api/activities/log",
        headers=H,
        json={"leadId": "L1", "channel": "email", "direction": "in", "messageSnippet": "é" * 250},
    )
    assert response.status_code == 200
    assert response.get_json()["activity"]["message_snippet"] == "é" * 100
    assert db.execute("select message_snippet from lead_activities").fetchone()[0] == "é" * 100


def test_list_paginates_and_filters_over_http(client, store, db):
    for i in range(3):
        log(store, tenant="macrea", lead=f"L{i}", direction="in", occurredAt=ago(days=8 + i))
    store.sweep()
    first = client.get("/api/alerts/active?limit=2", headers=H).get_json()
    assert len(first["alerts"]) == 2 and first["next_cursor"]
    second = client.get(f"/api/alerts/active?limit=2&cursor={first['next_cursor']}", headers=H).get_json()
    assert len(second["alerts"]) == 1 and second["next_cursor"] is None
    only = client.get("/api/alerts/active?lead=L1&type=NoContact7d&severity=med", headers=H).get_json()
    assert [a["lead_id"] for a in only["alerts"]] == ["L1"]


def test_leads_upsert_one_or_many_and_timeline(client, db):
    one = client.post("/api/leads", headers=H, json={"leadId": "A", "name": "Ana", "phone": "+33 6 12 34 56 78"})
    assert one.status_code == 200 and one.get_json()["leads"][0]["phone"] == "+33612345678"
    many = client.post("/api/leads", headers=H, json=[{"leadId": "A", "value": 12000}, {"leadId": "B"}])
    assert many.get_json()["upserted"] == 2
    assert db.execute("select name, value from leads where lead_id = 'A'").fetchone() == ("Ana", 12000)
    client.post("/api/activities/log", headers=H, json={"leadId": "A", "channel": "call", "direction": "out"})
    timeline = client.get("/api/leads/A/activities", headers=H).get_json()
    assert timeline["success"] is True and [a["channel"] for a in timeline["activities"]] == ["call"]
    assert timeline["next_cursor"] is None


def test_health_reports_the_database(client):
    response = client.get("/health")
    assert response.status_code == 200 and response.get_json() == {"status": "ok", "database": "ok"}


# Bad input: a clear JSON error naming the field, and nothing written ---------------------------

LOG = "/api/activities/log"


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"channel": "whatsapp", "direction": "in"}, ["leadId"]),
        ({"leadId": "L1", "channel": "fax", "direction": "in"}, ["channel"]),
        ({"leadId": "L1", "channel": "email", "direction": "sideways"}, ["direction"]),
        ({"leadId": "L1", "channel": "email", "direction": "in", "colour": "red"}, ["colour"]),
        (
            {"leadId": "L1", "channel": "email", "direction": "in", "occurredAt": later(minutes=30).isoformat()},
            ["occurredAt"],
        ),
        ({"leadId": "L1", "channel": "email", "direction": "in", "occurredAt": "yesterday"}, ["occurredAt"]),
        ({"leadId": "", "channel": "sms", "direction": "in", "meta": "x"}, ["leadId", "channel", "meta"]),
    ],
    ids=["missing-lead", "unknown-channel", "unknown-direction", "unknown-field", "future", "bad-date", "several"],
)
def test_invalid_activity_is_422_naming_each_field_and_writes_nothing(client, db, body, fields):
    response = client.post(LOG, headers=H, json=body)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert response.get_json()["success"] is False and error["code"] == "validation_failed"
    assert [d["field"] for d in error["details"]] == fields
    assert counts(db) == (0, 0, 0)


@pytest.mark.parametrize("raw", ["{not json", "", "[1, 2", "\xff"], ids=["broken", "empty", "truncated", "binary"])
def test_malformed_json_is_400_and_writes_nothing(client, db, raw):
    response = client.post(LOG, headers=H, data=raw.encode("latin-1"), content_type="application/json")
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "bad_request"
    assert counts(db) == (0, 0, 0)


def test_json_that_is_not_an_object_is_422(client, db):
    response = client.post(LOG, headers=H, json=["leadId"])
    assert response.status_code == 422 and response.get_json()["error"]["details"][0]["field"] == "body"


def test_body_over_64_kib_is_413_before_parsing(client, db):
    response = client.post(LOG, headers=H, data=b"{" + b" " * (64 * 1024) + b"}", content_type="application/json")
    assert response.status_code == 413 and response.get_json()["error"]["code"] == "payload_too_large"
    assert counts(db) == (0, 0, 0)


def test_missing_tenant_is_400_naming_the_header(client, db):
    response = client.post(LOG, json={"leadId": "L1", "channel": "email", "direction": "in"})
    assert response.status_code == 400
    assert response.get_json()["error"]["details"] == {"header": "X-Tenant"}
    assert counts(db) == (0, 0, 0)


@pytest.mark.parametrize("alert_id", ["00000000-0000-0000-0000-000000000000", "not-a-uuid"])
def test_unknown_alert_is_404(client, alert_id):
    response = client.post(f"/api/alerts/{alert_id}/resolve", headers=H)
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"


def test_another_tenants_alert_is_404_and_stays_active(client, store, db):
    log(store, tenant="other", direction="in", occurredAt=ago(days=8))
    store.sweep()
    alert_id = db.execute("select id::text from max_alerts").fetchone()[0]
    response = client.post(f"/api/alerts/{alert_id}/resolve", headers=H)
    assert response.status_code == 404
    assert db.execute("select resolved_at from max_alerts").fetchone()[0] is None
    assert client.get("/api/alerts/active", headers=H).get_json()["stats"]["total"] == 0


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("severity=urgent", "severity"),
        ("type=Whatever", "type"),
        ("cursor=%%%", "cursor"),
    ],
)
def test_invalid_list_query_is_422(client, query, field):
    response = client.get(f"/api/alerts/active?{query}", headers=H)
    assert response.status_code == 422
    assert response.get_json()["error"]["details"][0]["field"] == field


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"leadId": "A", "phone": "0612"}, "leads[0].phone"),
        ({"leadId": "A", "email": "not-an-email"}, "leads[0].email"),
        ({"leadId": "A", "value": -5}, "leads[0].value"),
        ([{"leadId": "A"}, {"leadId": "A"}], "leads"),
        ([], "leads"),
    ],
    ids=["phone", "email", "value", "duplicate-id", "empty"],
)
def test_invalid_leads_are_422_and_write_nothing(client, db, body, field):
    response = client.post("/api/leads", headers=H, json=body)
    assert response.status_code == 422
    assert response.get_json()["error"]["details"][0]["field"] == field
    assert counts(db) == (0, 0, 0)


def test_phone_of_another_lead_is_409_naming_phone(client, db):
    client.post("/api/leads", headers=H, json={"leadId": "A", "phone": "+33612345678"})
    response = client.post("/api/leads", headers=H, json={"leadId": "B", "phone": "+33612345678"})
    assert response.status_code == 409 and response.get_json()["error"]["details"] == {"field": "phone"}
    assert db.execute("select count(*) from leads").fetchone()[0] == 1


def test_unknown_route_is_404_and_wrong_method_is_405(client):
    assert client.get("/api/nothing", headers=H).status_code == 404
    response = client.delete("/api/alerts/active", headers=H)
    assert response.status_code == 405 and "GET" in response.headers["Allow"]


def test_errors_never_leak_a_stack_trace(client, monkeypatch, store):
    monkeypatch.setattr(type(store), "sweep", lambda *a, **k: 1 / 0)
    response = client.post("/api/alerts/sweep")
    assert response.status_code == 500
    body = response.get_json()
    assert body["error"]["code"] == "internal_error" and "ZeroDivision" not in json.dumps(body)


# Database unreachable: 503 with Retry-After ---------------------------------------------------


def test_unreachable_postgres_is_503_with_retry_after():
    store = PostgresStore("postgresql://postgres@127.0.0.1:9/leadwatch", timeout=0.5)
    client = create_app(Api(store, OpenAccess())).test_client()
    response = client.post(LOG, headers=H, json={"leadId": "L1", "channel": "email", "direction": "in"})
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert response.get_json()["error"]["code"] == "database_unavailable"
    health = client.get("/health")
    assert health.status_code == 503 and health.get_json() == {"status": "degraded", "database": "unreachable"}
    store.close()


def test_unreachable_supabase_is_503_with_retry_after():
    with respx.mock() as router:
        router.post(url__startswith=f"{SUPABASE_URL}/rest/v1/rpc/").mock(side_effect=httpx.ConnectError("refused"))
        client = create_app(Api(SupabaseStore(SUPABASE_URL, SERVICE_KEY), OpenAccess())).test_client()
        response = client.get("/api/alerts/active", headers=H)
        assert response.status_code == 503 and response.headers["Retry-After"]
        assert client.get("/health").status_code == 503


def test_supabase_gateway_error_is_503():
    with respx.mock() as router:
        router.post(url__startswith=f"{SUPABASE_URL}/rest/v1/rpc/").mock(
            return_value=httpx.Response(502, text="<html>Bad gateway</html>")
        )
        client = create_app(Api(SupabaseStore(SUPABASE_URL, SERVICE_KEY), OpenAccess())).test_client()
        assert client.post("/api/alerts/sweep").status_code == 503
