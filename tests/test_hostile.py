"""Hostile input, one test per reproduction of issue 10: none of it reaches SQL, none is a 5xx, every
error is our JSON naming the field, and a refused request writes nothing. Both stores."""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime

import pytest
from helpers import add_leads, row_counts
from leadwatch import Api
from leadwatch.devtools.dev import create_app
from leadwatch.errors import ValidationFailed
from leadwatch.handlers import ENDPOINTS
from leadwatch.http.identity import OpenAccess
from leadwatch.integrations.greenapi import GreenApi
from test_greenapi import ACME, HOOK, SOPHIE, message

T1 = {"X-Tenant": "t1"}


def refused(response, status: int, field: str | None = None) -> dict:
    """The response is our JSON error of `status`, naming `field` when given."""
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["success"] is False and body["error"]["code"] and body["error"]["message"]
    if field is not None:
        assert [d["field"] for d in body["error"]["details"]] == [field]
    return body


def b64(position) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


# Cursors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "position"),
    [
        ("/api/alerts/active", {"r": "abc"}),
        (
            "/api/alerts/active",
            {"r": 99999999, "c": "2026-01-01T00:00:00Z", "i": "018f0000-0000-7000-8000-000000000000"},
        ),
        ("/api/alerts/active", {"r": 1, "c": "not a time", "i": "018f0000-0000-7000-8000-000000000000"}),
        ("/api/alerts/active", {"r": 1, "c": "2026-01-01T00:00:00Z", "i": "x"}),
        ("/api/alerts/active", {"o": "2026-01-01T00:00:00Z", "i": "018f0000-0000-7000-8000-000000000000"}),
        ("/api/leads/L1/activities", {"o": "2026-01-01T00:00:00Z", "i": "x"}),
        ("/api/leads/L1/activities", {"o": 5, "i": "018f0000-0000-7000-8000-000000000000"}),
        ("/api/leads/L1/activities", ["o", "i"]),
        ("/api/leads/L1/alerts", {"c": "2026-01-01T00:00:00Z", "i": "x"}),
        ("/api/leads/L1/alerts", {"r": 1, "c": "2026-01-01T00:00:00Z", "i": "018f0000-0000-7000-8000-000000000000"}),
    ],
    ids=[
        "rank-text",
        "rank-overflow",
        "bad-time",
        "bad-id",
        "other-kind",
        "timeline-bad-id",
        "timeline-number",
        "list",
        "lead-alerts-bad-id",
        "lead-alerts-other-kind",
    ],
)
def test_forged_cursor_is_422_cursor(client, store, path, position):
    add_leads(store, tenant="t1", L1={"name": "A"})
    refused(client.get(path, query_string={"cursor": b64(position)}, headers=T1), 422, "cursor")


def test_cursor_that_is_not_base64_json_is_422_cursor(client):
    for cursor in ("%%%", "AAAA", "x" * 500, "é"):
        refused(client.get("/api/alerts/active", query_string={"cursor": cursor}, headers=T1), 422, "cursor")


@pytest.mark.parametrize(
    ("function", "cursor"),
    [
        ("list_active_alerts", {"r": "abc", "c": "2026-01-01T00:00:00Z", "i": "018f0000-0000-7000-8000-000000000000"}),
        ("list_active_alerts", {"r": 1, "c": "yesterday-ish", "i": "018f0000-0000-7000-8000-000000000000"}),
        ("list_active_alerts", {"r": 1}),
        ("list_lead_activities", {"o": "2026-01-01T00:00:00Z", "i": "urn:uuid:018f0000-0000-7000-8000-000000000000"}),
        ("list_lead_alerts", {"c": "not a time", "i": "018f0000-0000-7000-8000-000000000000"}),
    ],
    ids=["rank", "time", "keys", "id", "lead-alerts-time"],
)
def test_sql_functions_refuse_a_forged_cursor_themselves(store, function, cursor):
    """Defence in depth: a caller reaching the SQL function directly gets LW422 `cursor`, not a cast error."""
    add_leads(store, tenant="t1", L1={"name": "A"})
    extra = {"p_lead_id": "L1"} if function.startswith("list_lead_") else {}
    with pytest.raises(ValidationFailed) as raised:
        store._call(function, None, p_tenant="t1", p_cursor=cursor, **extra)
    assert raised.value.details == [{"field": "cursor", "message": "invalid cursor"}]


def test_sql_functions_refuse_an_absurd_limit(store):
    with pytest.raises(ValidationFailed) as raised:
        store._call("list_active_alerts", None, p_tenant="t1", p_limit=2**31 - 1)
    assert raised.value.details[0]["field"] == "limit"


# Text PostgreSQL cannot store ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"leadId": "L1", "channel": "email", "direction": "out", "messageSnippet": "a\\u0000b"}', "messageSnippet"),
        ('{"leadId": "L1", "channel": "email", "direction": "out", "meta": {"n": {"x": ["a\\u0000"]}}}', "meta.n.x[0]"),
        ('{"leadId": "L1", "channel": "email", "direction": "out", "messageSnippet": "\\ud800"}', "messageSnippet"),
        ('{"leadId": "L\\udfff", "channel": "email", "direction": "out"}', "leadId"),
        ('{"leadId": "L1", "channel": "email", "direction": "out", "meta": {"s": "\\ud800"}}', "meta.s"),
        ('{"leadId": "L1", "channel": "email", "direction": "out", "meta": {"v": NaN}}', "meta.v"),
        ('{"leadId": "L1", "channel": "email", "direction": "out", "meta": {"v": -Infinity}}', "meta.v"),
        ('{"leadId": "L1", "channel": "email", "direction": "out", "meta": {"v": 1e999}}', "meta.v"),
        ('{"leadId": "L1", "channel": "email", "direction": "out", "meta": {"a\\u0000": 1}}', "meta"),
    ],
    ids=[
        "nul-snippet",
        "nul-nested-meta",
        "surrogate-snippet",
        "surrogate-lead",
        "surrogate-meta",
        "nan",
        "infinity",
        "overflow",
        "nul-key",
    ],
)
def test_unstorable_text_and_numbers_are_422_naming_the_field(client, db, body, field):
    before = row_counts(db)
    response = client.post("/api/activities/log", headers=T1, data=body, content_type="application/json")
    refused(response, 422, field)
    assert row_counts(db) == before


def test_unstorable_text_in_a_lead_is_422_naming_it(client, db):
    before = row_counts(db)
    response = client.post(
        "/api/leads", headers=T1, data='[{"leadId": "L1", "name": "x\\u0000"}]', content_type="application/json"
    )
    refused(response, 422)
    assert "name" in response.get_json()["error"]["details"][0]["field"]
    assert row_counts(db) == before


def test_nul_in_a_path_parameter_is_422_naming_it(client):
    refused(client.get("/api/leads/%00/activities", headers=T1), 422, "leadId")


def test_nul_in_a_query_parameter_is_422_naming_it(client):
    refused(client.get("/api/alerts/active?lead=%00", headers=T1), 422, "lead")
    refused(client.get("/api/alerts/active?x%00=1", headers=T1), 422, "query")


def test_model_fields_refuse_unstorable_text_whoever_builds_them():
    """The shared input base (models.requests.InputModel) checks every field, so models added later do too."""
    from leadwatch.models.requests import ActivityIn, SendIn, parse

    with pytest.raises(ValidationFailed) as raised:
        parse(SendIn, {"leadId": "L1", "message": "hi\x00"})
    assert raised.value.details[0]["field"] == "message"
    with pytest.raises(ValidationFailed) as raised:
        parse(ActivityIn, {"leadId": "L1", "channel": "call", "direction": "in", "meta": {"k": float("nan")}})
    assert raised.value.details[0]["field"] == "meta"


# Deep nesting, many members, huge numbers ------------------------------------------------------------


POST_ROUTES = sorted({endpoint.path for endpoint in ENDPOINTS if endpoint.method == "POST"})
BODY_ROUTES = {"/api/activities/log", "/api/leads", "/api/whatsapp/send"}  # the routes that read a JSON body


@pytest.mark.parametrize("path", sorted(set(POST_ROUTES) - {"/webhooks/greenapi"}))
def test_deeply_nested_json_is_a_json_error_on_every_json_route(client, db, path):
    """Routes that read a body refuse it (4xx JSON); the others ignore it; none fails."""
    path = path.replace("<alert_id>", "018f0000-0000-7000-8000-000000000000").replace("<lead_id>", "L1")
    for body in ("[" * 3000, "[" * 3000 + "]" * 3000, '{"a":' * 100 + "1" + "}" * 100):
        before = row_counts(db)
        response = client.post(path, headers=T1, data=body, content_type="application/json")
        assert response.status_code < 500 and response.is_json, (path, response.status_code)
        if path in BODY_ROUTES or response.status_code >= 400:
            refused(response, response.status_code)
            assert 400 <= response.status_code < 500 and row_counts(db) == before


def test_objects_with_too_many_members_and_numbers_too_long_are_refused(client):
    meta = {f"k{i}": i for i in range(1001)}
    body = {"leadId": "L1", "channel": "email", "direction": "out", "meta": meta}
    refused(client.post("/api/activities/log", headers=T1, json=body), 422, "meta")
    digits = '{"leadId": "L1", "channel": "email", "direction": "out", "meta": {"n": ' + "9" * 5000 + "}}"
    refused(client.post("/api/activities/log", headers=T1, data=digits, content_type="application/json"), 400)


@pytest.mark.parametrize("limit", ["0", "201", "99999999999999999999", "-1", "1e3", "NaN"])
def test_limits_out_of_range_are_422_limit(client, limit):
    refused(client.get("/api/alerts/active", query_string={"limit": limit}, headers=T1), 422, "limit")


# Path parameters -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "alert_id",
    [
        "urn:uuid:018f0000-0000-7000-8000-000000000000",
        "{018f0000-0000-7000-8000-000000000000}",
        "018f00000000700080000000000000000",
        "018f0000000070008000000000000000",
    ],
    ids=["urn", "braces", "33-hex", "no-hyphens"],
)
@pytest.mark.parametrize("action", ["resolve", "action"])
def test_alert_id_that_is_not_a_canonical_uuid_is_404(client, alert_id, action):
    refused(client.post(f"/api/alerts/{alert_id}/{action}", headers=T1), 404)


# Green-API never blocks ------------------------------------------------------------------------------


@pytest.fixture
def webhook(store, db):
    api = Api(store, OpenAccess(), greenapi=GreenApi((ACME,), attempts=1))
    add_leads(store, SOPHIE_ID={"name": "Sophie Martin", "phone": SOPHIE})
    return create_app(api).test_client()


def rejected(db) -> list[tuple]:
    return db.execute(
        "select tenant_id, instance_id, payload, raw, reason from greenapi_rejected order by id"
    ).fetchall()


def snippets(db) -> list[str]:
    return [r[0] for r in db.execute("select message_snippet from lead_activities order by created_at")]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"timestamp": 100000000000000000000}, "timestamp"),
        ({"timestamp": -5}, "timestamp"),
        ({"senderData": {"chatId": "33612345678@c.us", "senderName": 5}}, "senderName"),
        ({"senderData": {"chatId": "33612345678@c.us", "senderPhoneNumber": [1]}}, "senderPhoneNumber"),
        ({"idMessage": {"nested": True}}, "idMessage"),
        ({"instanceData": {"idInstance": 1}}, "another instance"),
    ],
    ids=["timestamp-1e20", "timestamp-negative", "sender-name-number", "sender-phone-list", "id-object", "instance"],
)
def test_absurd_notification_is_200_kept_whole_and_later_ones_are_processed(webhook, db, caplog, change, reason):
    payload = {**message(id_message="BAD"), **change}
    with caplog.at_level(logging.WARNING, logger="leadwatch.http"):
        response = webhook.post("/webhooks/greenapi", headers=HOOK, json=payload)
    assert response.status_code == 200 and response.get_json()["success"] is True
    assert reason in response.get_json()["rejected"]["reason"]
    assert rejected(db) == [("acme", ACME.id, payload, None, rejected(db)[0][4])]
    assert any('"greenapi": "rejected"' in r.getMessage() for r in caplog.records)
    assert snippets(db) == []

    later = webhook.post("/webhooks/greenapi", headers=HOOK, json=message(id_message="GOOD"))
    assert later.status_code == 200 and snippets(db) == ["Oui, je suis intéressé"]


@pytest.mark.parametrize(
    "body",
    [
        b"\x00\xff not json",
        b'{"typeWebhook": "incomingMessageReceived", "x": "\\u0000"',
        b"[" * 3000,
        b'"just a string"',
    ],
    ids=["binary", "truncated", "deep", "string"],
)
def test_notification_that_is_not_a_json_object_is_kept_as_received(webhook, db, body):
    response = webhook.post("/webhooks/greenapi", headers=HOOK, data=body, content_type="application/json")
    assert response.status_code == 200
    [(tenant, instance, payload, raw, _)] = rejected(db)
    assert (tenant, instance, payload, bytes(raw)) == ("acme", ACME.id, None, body)


def test_nul_and_lone_surrogates_in_message_text_are_cleaned_and_the_message_logged(webhook, db):
    data = {"typeMessage": "textMessage", "textMessageData": {"textMessage": "Oui\u0000 merci \ud800!"}}
    body = json.dumps(message(data=data, sender_name="So\u0000phie"))
    response = webhook.post("/webhooks/greenapi", headers=HOOK, data=body, content_type="application/json")
    assert response.status_code == 200 and "rejected" not in response.get_json()
    assert snippets(db) == ["Oui merci \ufffd!"]


def test_rejected_notifications_are_listed_to_the_tenant_page_by_page(webhook, db):
    for i in range(3):
        webhook.post("/webhooks/greenapi", headers=HOOK, json={**message(id_message=f"B{i}"), "timestamp": "x"})
    webhook.post("/webhooks/greenapi", headers=HOOK, data=b"\x00", content_type="application/json")
    first = webhook.get("/api/greenapi/rejected?limit=3", headers={"X-Tenant": "acme"}).get_json()
    assert [r["payload"] and r["payload"]["idMessage"] for r in first["rejected"]] == [None, "B2", "B1"]
    assert first["rejected"][0]["raw_base64"] == base64.b64encode(b"\x00").decode()
    second = webhook.get(
        "/api/greenapi/rejected",
        query_string={"limit": 3, "cursor": first["next_cursor"]},
        headers={"X-Tenant": "acme"},
    ).get_json()
    assert [r["payload"]["idMessage"] for r in second["rejected"]] == ["B0"] and second["next_cursor"] is None
    other = webhook.get("/api/greenapi/rejected", headers={"X-Tenant": "other"}).get_json()
    assert other["rejected"] == []


def test_a_notification_that_could_not_be_stored_at_all_is_5xx_so_green_api_resends_it(webhook, store, monkeypatch):
    from leadwatch.errors import Unavailable

    def down(self, *args, **kwargs):
        raise Unavailable("the database is unreachable, retry shortly")

    monkeypatch.setattr(type(store), "reject_greenapi", down)
    response = webhook.post("/webhooks/greenapi", headers=HOOK, json={**message(), "timestamp": 10**20})
    assert response.status_code == 503 and response.get_json()["success"] is False


# Defects -------------------------------------------------------------------------------------------------


def test_a_defect_is_500_json_and_one_log_record_with_the_traceback_and_request_id(client, store, caplog, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a defect")

    monkeypatch.setattr(type(store), "list_active_alerts", broken)
    with caplog.at_level(logging.ERROR, logger="leadwatch.http"):
        response = client.get("/api/alerts/active", headers={**T1, "X-Request-Id": "req-42"})
    body = refused(response, 500)
    assert body["error"]["details"] == {"request_id": "req-42"}
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.request_id == "req-42" and record.exc_info and "a defect" in str(record.exc_info[1])


def test_a_request_id_that_is_not_a_plain_token_is_replaced(client):
    response = client.get("/health", headers={"X-Request-Id": "x" * 500})
    assert len(response.headers["X-Request-Id"]) == 32


def test_issued_cursors_pass_the_checks_and_page_on(client, store):
    """The cursors leadwatch hands out pass its own checks, in Python and in SQL."""
    add_leads(store, tenant="t1", L1={"name": "A"})
    for i in range(3):
        client.post(
            "/api/activities/log",
            headers=T1,
            json={
                "leadId": "L1",
                "channel": "email",
                "direction": "out",
                "externalId": f"e{i}",
                "occurredAt": datetime(2026, 1, 1 + i, tzinfo=UTC).isoformat(),
            },
        )
    page = client.get("/api/leads/L1/activities?limit=2", headers=T1).get_json()
    rest = client.get(
        "/api/leads/L1/activities", query_string={"limit": 2, "cursor": page["next_cursor"]}, headers=T1
    ).get_json()
    assert len(page["activities"]) == 2 and len(rest["activities"]) == 1 and rest["next_cursor"] is None
    alerts = client.get("/api/alerts/active?limit=1", headers=T1).get_json()
    assert (
        alerts["next_cursor"] is None
        or client.get(
            "/api/alerts/active", query_string={"limit": 1, "cursor": alerts["next_cursor"]}, headers=T1
        ).status_code
        == 200
    )


def test_preflight_from_an_origin_not_configured_is_403_our_json(client):
    headers = {"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"}
    refused(client.options("/api/activities/log", headers=headers), 403)


def test_a_newline_in_the_path_is_our_json_not_flasks_page(client):
    refused(client.get("/api/leads/%0A/activities", headers=T1), 404)
    refused(client.open("/health", method="PROPFIND"), 405)


def test_a_notification_over_1_mib_is_acknowledged_and_kept_cut(webhook, db):
    body = json.dumps({**message(), "padding": "p" * 1_200_000}).encode()
    response = webhook.post("/webhooks/greenapi", headers=HOOK, data=body, content_type="application/json")
    assert response.status_code == 200 and "over 1024 KiB" in response.get_json()["rejected"]["reason"]
    [(_, _, payload, raw, _)] = rejected(db)
    assert payload is None and bytes(raw) == body[: 1024 * 1024]
