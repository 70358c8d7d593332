"""WhatsApp through Green-API: the webhook, phone → lead matching, EspoCRM lookup, and sends.

Green-API and EspoCRM are faked with respx using payloads shaped as Green-API's documentation
shows them (shared/reference/GREENAPI.md); the database is real, through each store.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest
from helpers import active, add_leads, ago, assert_counts_exact, later, log
from leadwatch import Api, ConfigError, Unavailable, load_settings
from leadwatch.config import GreenApiInstance
from leadwatch.devtools.dev import create_app
from leadwatch.http.identity import OpenAccess
from leadwatch.integrations.espo import EspoCrm
from leadwatch.integrations.greenapi import GreenApi

API_URL = "https://7103.api.greenapi.com"
ESPO_URL = "https://crm.example.com"
ACME = GreenApiInstance(id="7103000001", token="token-acme", api_url=API_URL, webhook_token="hook-acme", tenant="acme")
OTHER = GreenApiInstance(
    id="7103000002", token="token-other", api_url=API_URL, webhook_token="hook-other", tenant="other"
)
SOPHIE = "+33612345678"
HOOK = {"Authorization": "Bearer hook-acme"}
NOW = int(datetime.now(UTC).timestamp())


def message(
    kind="incomingMessageReceived",
    *,
    instance=ACME,
    chat="33612345678@c.us",
    id_message="F7AEC1B7086ECDC7E6E45923F5EDB825",
    timestamp=NOW - 60,
    data=None,
    sender_name="Sophie",
    **sender,
) -> dict:
    return {
        "typeWebhook": kind,
        "instanceData": {"idInstance": int(instance.id), "wid": "33700000000@c.us", "typeInstance": "whatsapp"},
        "timestamp": timestamp,
        "idMessage": id_message,
        "senderData": {
            "chatId": chat,
            "sender": chat,
            "chatName": sender_name,
            "senderName": sender_name,
            "senderContactName": "",
            **sender,
        },
        "messageData": data
        or {"typeMessage": "textMessage", "textMessageData": {"textMessage": "Oui, je suis intéressé"}},
    }


def status(value: str, id_message: str, chat="33612345678@c.us", instance=ACME) -> dict:
    return {
        "typeWebhook": "outgoingMessageStatus",
        "chatId": chat,
        "instanceData": {"idInstance": int(instance.id), "wid": "33700000000@c.us", "typeInstance": "whatsapp"},
        "timestamp": NOW,
        "idMessage": id_message,
        "status": value,
        "sendByApi": True,
    }


@pytest.fixture
def whatsapp(store, db, http_mock):
    """(client, store, db, http_mock) with two Green-API instances, acme's lead Sophie known by phone."""
    api = Api(store, OpenAccess(), greenapi=GreenApi((ACME, OTHER), attempts=3))
    add_leads(store, SOPHIE_ID={"name": "Sophie Martin", "phone": SOPHIE})
    return create_app(api).test_client(), store, db, http_mock


def hook(client, payload, headers=HOOK):
    return client.post("/webhooks/greenapi", headers=headers, json=payload)


def activities(db):
    return db.execute(
        "select tenant_id, lead_id, channel, direction, status, message_snippet, occurred_at, external_id "
        "from lead_activities order by created_at"
    ).fetchall()


# The webhook ---------------------------------------------------------------------------------


def test_incoming_message_is_an_inbound_activity_of_the_lead_with_that_phone(whatsapp):
    client, _store, db, _ = whatsapp
    response = hook(client, message())
    assert response.status_code == 200 and response.get_json()["success"] is True
    [row] = activities(db)
    assert row[:6] == ("acme", "SOPHIE_ID", "whatsapp", "in", "received", "Oui, je suis intéressé")
    assert row[6] == datetime.fromtimestamp(NOW - 60, UTC)
    assert row[7] == "33612345678@c.us/F7AEC1B7086ECDC7E6E45923F5EDB825"


@pytest.mark.parametrize("kind", ["outgoingMessageReceived", "outgoingAPIMessageReceived"])
def test_outgoing_messages_are_outbound_activities(whatsapp, kind):
    client, _store, db, _ = whatsapp
    assert hook(client, message(kind)).status_code == 200
    assert activities(db)[0][3] == "out"


@pytest.mark.parametrize(
    ("data", "text"),
    [
        ({"typeMessage": "textMessage", "textMessageData": {"textMessage": "Bonjour"}}, "Bonjour"),
        (
            {
                "typeMessage": "extendedTextMessage",
                "extendedTextMessageData": {
                    "text": "Voir https://x.fr",
                    "description": "",
                    "title": "",
                    "previewType": "None",
                },
            },
            "Voir https://x.fr",
        ),
        (
            {
                "typeMessage": "quotedMessage",
                "extendedTextMessageData": {"text": "Oui pour mardi", "stanzaId": "B1"},
                "quotedMessage": {"stanzaId": "B1", "participant": "33612345678@c.us", "typeMessage": "textMessage"},
            },
            "Oui pour mardi",
        ),
        (
            {
                "typeMessage": "imageMessage",
                "fileMessageData": {
                    "downloadUrl": "https://do.green-api.com/x.jpg",
                    "caption": "Le plan",
                    "fileName": "x.jpg",
                    "jpegThumbnail": "",
                    "mimeType": "image/jpeg",
                },
            },
            "Le plan",
        ),
        (
            {
                "typeMessage": "videoMessage",
                "fileMessageData": {
                    "downloadUrl": "https://do.green-api.com/v.mp4",
                    "caption": "Visite",
                    "mimeType": "video/mp4",
                },
            },
            "Visite",
        ),
        (
            {
                "typeMessage": "documentMessage",
                "fileMessageData": {
                    "downloadUrl": "https://do.green-api.com/d.pdf",
                    "caption": "Devis signé",
                    "fileName": "devis.pdf",
                    "mimeType": "application/pdf",
                },
            },
            "Devis signé",
        ),
        (
            {
                "typeMessage": "audioMessage",
                "fileMessageData": {
                    "downloadUrl": "https://do.green-api.com/a.ogg",
                    "caption": "",
                    "mimeType": "audio/ogg",
                },
            },
            None,
        ),
        (
            {
                "typeMessage": "stickerMessage",
                "fileMessageData": {"downloadUrl": "https://do.green-api.com/s.webp", "mimeType": "image/webp"},
            },
            None,
        ),
        (
            {"typeMessage": "editedMessage", "editedMessageData": {"textMessage": "Plutôt jeudi", "stanzaId": "B2"}},
            "Plutôt jeudi",
        ),
        (
            {
                "typeMessage": "pollMessage",
                "pollMessageData": {
                    "name": "Quel créneau ?",
                    "options": [{"optionName": "9h"}],
                    "multipleAnswers": False,
                },
            },
            "Quel créneau ?",
        ),
        (
            {
                "typeMessage": "locationMessage",
                "locationMessageData": {
                    "nameLocation": "Agence Lyon",
                    "address": "1 rue X",
                    "latitude": 45.7,
                    "longitude": 4.8,
                },
            },
            "Agence Lyon",
        ),
        (
            {
                "typeMessage": "contactMessage",
                "contactMessageData": {"displayName": "Paul Dupont", "vcard": "BEGIN:VCARD"},
            },
            "Paul Dupont",
        ),
        (
            {
                "typeMessage": "reactionMessage",
                "extendedTextMessageData": {"text": "👍"},
                "quotedMessage": {"stanzaId": "B3"},
            },
            "👍",
        ),
        ({"typeMessage": "deletedMessage", "deletedMessageData": {"stanzaId": "B4"}}, None),
        ({"typeMessage": "textMessage", "textMessageData": {"textMessage": "{{SWE001}}"}}, None),
    ],
    ids=[
        "text",
        "extended",
        "quoted",
        "image",
        "video",
        "document",
        "audio",
        "sticker",
        "edited",
        "poll",
        "location",
        "contact",
        "reaction",
        "deleted",
        "placeholder",
    ],
)
def test_text_is_read_from_the_field_of_each_message_type(whatsapp, data, text):
    client, _store, db, _ = whatsapp
    assert hook(client, message(data=data)).status_code == 200
    assert activities(db)[0][5] == text


def test_long_message_is_stored_cut_to_100_characters(whatsapp):
    client, _store, db, _ = whatsapp
    data = {"typeMessage": "textMessage", "textMessageData": {"textMessage": "a" * 500}}
    assert hook(client, message(data=data)).status_code == 200
    assert activities(db)[0][5] == "a" * 100


def test_redelivered_notification_is_stored_once(whatsapp):
    client, _store, db, _ = whatsapp
    first, again = hook(client, message()), hook(client, message())
    assert first.status_code == again.status_code == 200
    assert again.get_json()["duplicate"] is True
    assert len(activities(db)) == 1


def test_same_id_message_in_another_chat_is_another_message(whatsapp):
    client, _store, db, _ = whatsapp
    hook(client, message())
    hook(client, message(chat="33699999999@c.us", sender_name="Paul"))
    assert len(activities(db)) == 2


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "hook-acme"}],
    ids=["missing", "wrong", "no-bearer-scheme"],
)
def test_wrong_or_missing_token_is_401_and_stores_nothing(whatsapp, headers):
    client, _store, db, _ = whatsapp
    response = hook(client, message(), headers=headers)
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "unauthorized"
    assert activities(db) == []


def test_two_instances_store_for_two_tenants(whatsapp):
    client, _store, db, _ = whatsapp
    hook(client, message())
    hook(client, message(instance=OTHER, id_message="OTHER1"), headers={"Authorization": "Bearer hook-other"})
    assert sorted(r[0] for r in activities(db)) == ["acme", "other"]


def test_delivery_statuses_update_the_outbound_and_only_move_forward(whatsapp):
    client, _store, db, _ = whatsapp
    hook(client, message("outgoingAPIMessageReceived", id_message="OUT1"))
    for value in ("delivered", "read", "delivered"):
        assert hook(client, status(value, "OUT1")).status_code == 200
    assert activities(db)[0][4] == "read"


def test_status_of_a_message_never_logged_is_acknowledged(whatsapp):
    client, _store, _db, _ = whatsapp
    response = hook(client, status("read", "UNKNOWN"))
    assert response.status_code == 200 and response.get_json()["found"] is False


@pytest.mark.parametrize("failure", ["failed", "noAccount"])
def test_failed_send_does_not_count_as_contact(whatsapp, failure):
    """A send that failed neither clears NoContact7d nor starts NoReply3d."""
    client, store, db, _ = whatsapp
    log(store, lead="SOPHIE_ID", direction="in", occurredAt=ago(days=8))
    store.sweep()
    sent = hook(client, message("outgoingAPIMessageReceived", id_message="OUT2")).get_json()
    assert sent["alerts"]["resolved"] == ["NoContact7d"]
    answered = hook(client, status(failure, "OUT2")).get_json()
    assert answered["reopened"] == ["NoContact7d"]
    assert active(db) == {("SOPHIE_ID", "NoContact7d"): "med"}
    assert store.sweep(now=later(days=4))["created"]["NoReply3d"] == 0
    assert_counts_exact(db)


def test_a_failed_send_stays_failed_when_a_later_status_says_yellow_card(whatsapp):
    """A failure is final: a yellowCard (which counts as contact) after `failed` does not count the send again."""
    client, store, db, _ = whatsapp
    log(store, lead="SOPHIE_ID", direction="in", occurredAt=ago(days=8))
    store.sweep()
    hook(client, message("outgoingAPIMessageReceived", id_message="OUT3"))
    assert hook(client, status("failed", "OUT3")).get_json()["reopened"] == ["NoContact7d"]
    answered = hook(client, status("yellowCard", "OUT3")).get_json()
    assert answered["activity"]["status"] == "failed" and answered["reopened"] == []
    assert [r[4] for r in activities(db) if r[3] == "out"] == ["failed"]
    assert active(db) == {("SOPHIE_ID", "NoContact7d"): "med"}
    assert store.sweep(now=later(days=4))["created"]["NoReply3d"] == 0
    assert_counts_exact(db)


def test_incoming_call_is_one_inbound_call_activity_per_call(whatsapp):
    client, _store, db, _ = whatsapp
    for call_status in ("offer", "hangUp"):
        payload = {
            "typeWebhook": "incomingCall",
            "from": "33612345678@c.us",
            "status": call_status,
            "instanceData": {"idInstance": int(ACME.id), "wid": "33700000000@c.us", "typeInstance": "whatsapp"},
            "timestamp": NOW,
            "idMessage": "CALL-1",
        }
        assert hook(client, payload).status_code == 200
    [row] = activities(db)
    assert row[1:4] == ("SOPHIE_ID", "call", "in")


@pytest.mark.parametrize(
    "payload",
    [
        {"typeWebhook": "stateInstanceChanged", "stateInstance": "notAuthorized"},
        {"typeWebhook": "quotaExceeded", "quotaData": {"description": "Monthly quota exceeded"}},
        {"typeWebhook": "deviceInfo", "deviceData": {"platform": "android"}},
    ],
    ids=["state", "quota", "unknown-type"],
)
def test_instance_notifications_are_acknowledged_not_stored(whatsapp, payload):
    client, _store, db, _ = whatsapp
    payload = {
        **payload,
        "instanceData": {"idInstance": int(ACME.id), "wid": "33700000000@c.us", "typeInstance": "whatsapp"},
        "timestamp": NOW,
    }
    response = hook(client, payload)
    assert response.status_code == 200 and response.get_json()["ignored"] == payload["typeWebhook"]
    assert activities(db) == []


def test_group_chats_are_ignored(whatsapp):
    client, _store, db, _ = whatsapp
    response = hook(client, message(chat="120363043968066561@g.us", sender="33612345678@c.us"))
    assert response.get_json()["ignored"] == "group chat" and activities(db) == []


def test_lid_chat_uses_sender_phone_number(whatsapp):
    client, _store, db, _ = whatsapp
    hook(client, message(chat="123456789012345@lid", senderPhoneNumber="33612345678"))
    assert activities(db)[0][1] == "SOPHIE_ID"


def test_device_suffix_is_ignored_when_matching_the_phone(whatsapp):
    client, _store, db, _ = whatsapp
    hook(client, message(chat="33612345678:3@c.us"))
    assert activities(db)[0][1] == "SOPHIE_ID"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (json.dumps({"instanceData": {"idInstance": int(ACME.id)}}).encode(), "typeWebhook"),
        (json.dumps({**message(), "timestamp": "yesterday"}).encode(), "timestamp"),
        (json.dumps({**message(), "senderData": {}}).encode(), "senderData.chatId"),
        (json.dumps({**message(), "messageData": {}}).encode(), "messageData.typeMessage"),
    ],
    ids=["not-json", "not-object", "no-type", "bad-timestamp", "no-chat", "no-message-type"],
)
def test_malformed_notification_is_acknowledged_and_kept_whole_as_rejected(whatsapp, body, reason):
    """Never 400: Green-API would resend it for a day, holding every later notification behind it."""
    client, _store, db, _ = whatsapp
    response = client.post("/webhooks/greenapi", headers=HOOK, data=body, content_type="application/json")
    assert response.status_code == 200 and reason in response.get_json()["rejected"]["reason"]
    assert activities(db) == []
    kept = db.execute("select tenant_id, instance_id, payload, raw, reason from greenapi_rejected").fetchall()
    assert len(kept) == 1 and kept[0][:2] == ("acme", ACME.id) and reason in kept[0][4]
    payload, raw = kept[0][2], kept[0][3]
    assert (payload == json.loads(body)) if raw is None else (bytes(raw) == body)


def test_storage_failure_is_5xx_then_redelivery_stores_once(whatsapp, monkeypatch):
    client, store, db, _ = whatsapp
    real = type(store).log_whatsapp
    calls = []

    def failing_once(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise Unavailable("the database is unreachable, retry shortly")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(type(store), "log_whatsapp", failing_once)
    first = hook(client, message())
    assert first.status_code == 503 and activities(db) == []
    assert hook(client, message()).status_code == 200
    assert hook(client, message()).status_code == 200
    assert len(activities(db)) == 1


# Phone → lead ------------------------------------------------------------------------------


def test_unknown_number_becomes_a_provisional_lead_then_merges_into_the_real_one(whatsapp):
    client, store, db, _ = whatsapp
    hook(client, message(chat="33655555555@c.us", sender_name="Julien", id_message="J1", timestamp=NOW - 9 * 86400))
    assert db.execute(
        "select lead_id, name, phone, provisional from leads where phone = '+33655555555'"
    ).fetchone() == ("wa:+33655555555", "Julien", "+33655555555", True)
    store.sweep()
    assert active(db) == {("wa:+33655555555", "NoContact7d"): "med"}

    merged = client.post(
        "/api/leads",
        headers={"X-Tenant": "acme"},
        json={"leadId": "CRM-42", "name": "Julien Roux", "phone": "+33655555555"},
    ).get_json()
    assert merged["merged"] == ["CRM-42"]
    assert db.execute("select lead_id from leads where phone = '+33655555555'").fetchall() == [("CRM-42",)]
    assert activities(db)[0][1] == "CRM-42"
    assert active(db) == {("CRM-42", "NoContact7d"): "med"}
    assert db.execute("select count(*) from lead_state where lead_id like 'wa:%'").fetchone()[0] == 0
    hook(client, message(chat="33655555555@c.us", id_message="J2"))  # the next message finds the real lead
    assert [r[1] for r in activities(db)] == ["CRM-42", "CRM-42"] and active(db) == {}
    assert_counts_exact(db)


def test_real_lead_cannot_take_another_real_leads_phone(whatsapp):
    client, _store, _db, _ = whatsapp
    response = client.post("/api/leads", headers={"X-Tenant": "acme"}, json={"leadId": "X", "phone": SOPHIE})
    assert response.status_code == 409


@pytest.fixture
def with_espo(store, db, http_mock):
    api = Api(store, OpenAccess(), greenapi=GreenApi((ACME,)), espo=EspoCrm(ESPO_URL, "espo-key"))
    return create_app(api).test_client(), db, http_mock


def test_unknown_number_is_looked_up_in_espocrm_and_cached(with_espo):
    client, db, http = with_espo
    espo = http.get(f"{ESPO_URL}/api/v1/Lead").respond(
        json={
            "total": 1,
            "list": [
                {
                    "id": "6571f0c2a1b2c3d4e",
                    "name": "Camille Leroy",
                    "emailAddress": "camille@example.com",
                    "phoneNumber": "+33 6 44 44 44 44",
                    "assignedUserId": "1",
                }
            ],
        }
    )
    hook(client, message(chat="33644444444@c.us", id_message="C1"))
    hook(client, message(chat="33644444444@c.us", id_message="C2"))
    assert espo.call_count == 1
    request = espo.calls[0].request
    assert request.headers["X-Api-Key"] == "espo-key" and request.url.params["where[0][value]"] == "+33644444444"
    assert db.execute(
        "select lead_id, name, email, provisional from leads where phone = '+33644444444'"
    ).fetchone() == ("6571f0c2a1b2c3d4e", "Camille Leroy", "camille@example.com", False)
    assert [r[1] for r in activities(db)] == ["6571f0c2a1b2c3d4e"] * 2


@pytest.mark.parametrize(
    "answer",
    [httpx.Response(200, json={"total": 0, "list": []}), httpx.Response(500), httpx.ConnectError("down")],
    ids=["not-found", "error", "down"],
)
def test_number_espocrm_does_not_know_is_kept_as_provisional(with_espo, answer):
    client, db, http = with_espo
    route = http.get(f"{ESPO_URL}/api/v1/Lead")
    route.side_effect = answer if isinstance(answer, Exception) else None
    if not isinstance(answer, Exception):
        route.return_value = answer
    assert hook(client, message(chat="33633333333@c.us")).status_code == 200
    assert db.execute("select provisional from leads where phone = '+33633333333'").fetchone() == (True,)


# Sending --------------------------------------------------------------------------------------


def send_route(http, *responses):
    route = http.post(f"{API_URL}/waInstance{ACME.id}/sendMessage/{ACME.token}")
    route.side_effect = list(responses)
    return route


def _silent_sophie(store, db, days=8):
    log(store, lead="SOPHIE_ID", direction="in", occurredAt=ago(days=days))
    store.sweep()
    return db.execute("select id::text from max_alerts where lead_id = 'SOPHIE_ID'").fetchone()[0]


def test_alert_action_sends_the_template_and_logs_it_once(whatsapp):
    client, store, db, http = whatsapp
    alert_id = _silent_sophie(store, db)
    route = send_route(http, httpx.Response(200, json={"idMessage": "BAE5F4886F6F2D05"}))
    response = client.post(f"/api/alerts/{alert_id}/action", headers={"X-Tenant": "acme"})
    assert response.status_code == 200
    body = response.get_json()
    sent = json.loads(route.calls[0].request.content)
    assert sent == {"chatId": "33612345678@c.us", "message": body["sent"]["message"]}
    assert body["sent"]["message"].startswith("Bonjour Sophie Martin, je reviens vers vous")
    assert body["alerts"]["resolved"] == ["NoContact7d"] and active(db) == {}
    assert body["activity"]["external_id"] == "33612345678@c.us/BAE5F4886F6F2D05"
    # Green-API then notifies the same message: it is the same activity
    echo = hook(client, message("outgoingAPIMessageReceived", id_message="BAE5F4886F6F2D05"))
    assert echo.get_json()["duplicate"] is True
    assert len([r for r in activities(db) if r[3] == "out"]) == 1


def test_tenant_template_override_is_sent_in_english(whatsapp):
    client, store, db, http = whatsapp
    db.execute("""insert into alert_rules (tenant_id, type, threshold, severity, escalate_after, escalated_severity,
                                           locale, messages, action)
                  select 'acme', type, threshold, severity, escalate_after, escalated_severity, 'en', messages,
                         jsonb_set(action, '{text,en}', '"Hi {name}, any news?"')
                  from alert_rules where tenant_id = '*' and type = 'NoContact7d'""")
    alert_id = _silent_sophie(store, db)
    send_route(http, httpx.Response(200, json={"idMessage": "EN1"}))
    body = client.post(f"/api/alerts/{alert_id}/action", headers={"X-Tenant": "acme"}).get_json()
    assert body["sent"]["message"] == "Hi Sophie Martin, any news?"


def test_chat_assistant_send_logs_the_message(whatsapp):
    client, _store, db, http = whatsapp
    route = send_route(http, httpx.Response(200, json={"idMessage": "CHAT1"}))
    response = client.post(
        "/api/whatsapp/send",
        headers={"X-Tenant": "acme"},
        json={"leadId": "SOPHIE_ID", "message": "Votre devis est prêt."},
    )
    assert response.status_code == 200 and route.call_count == 1
    assert activities(db)[0][3:6] == ("out", "sent", "Votre devis est prêt.")


@pytest.mark.parametrize(
    ("answers", "status", "code", "attempts"),
    [
        ([httpx.Response(400, json={"message": "Instance not authorized"})], 502, "whatsapp_rejected", 1),
        ([httpx.Response(401, text="Unauthorized")], 502, "whatsapp_token_rejected", 1),
        ([httpx.Response(403, text="Forbidden")], 502, "whatsapp_instance_rejected", 1),
        (
            [httpx.Response(466, json={"correspondentsStatus": {"description": "Monthly quota exceeded"}})],
            502,
            "whatsapp_quota_exceeded",
            1,
        ),
        ([httpx.Response(429)] * 3, 503, "whatsapp_rate_limited", 3),
        ([httpx.Response(502)] * 3, 502, "whatsapp_unavailable", 3),
        ([httpx.ReadTimeout("slow")], 504, "whatsapp_timeout", 1),
    ],
    ids=["400", "401", "403", "466-quota", "429-retried", "5xx-retried", "timeout"],
)
def test_green_api_errors_name_the_cause_log_a_failed_send_and_resolve_nothing(
    whatsapp, answers, status, code, attempts
):
    client, store, db, http = whatsapp
    alert_id = _silent_sophie(store, db)
    route = send_route(http, *answers)
    response = client.post(f"/api/alerts/{alert_id}/action", headers={"X-Tenant": "acme"})
    assert response.status_code == status and response.get_json()["error"]["code"] == code
    assert route.call_count == attempts
    if status == 503:
        assert response.headers["Retry-After"]
    assert active(db) == {("SOPHIE_ID", "NoContact7d"): "med"}
    failed = [r for r in activities(db) if r[3] == "out"]
    assert [r[4] for r in failed] == ["failed"]


def test_transient_errors_are_retried_until_the_send_succeeds(whatsapp):
    client, _store, db, http = whatsapp
    route = send_route(http, httpx.Response(429), httpx.Response(503), httpx.Response(200, json={"idMessage": "OK3"}))
    response = client.post(
        "/api/whatsapp/send", headers={"X-Tenant": "acme"}, json={"leadId": "SOPHIE_ID", "message": "Bonjour"}
    )
    assert response.status_code == 200 and route.call_count == 3
    assert [r[4] for r in activities(db)] == ["sent"]


def test_call_action_is_not_sent_on_whatsapp(whatsapp):
    """A call is made by a person: the action route says so (409 action_is_a_call) and sends nothing."""
    client, store, db, http = whatsapp
    route = send_route(http, httpx.Response(200, json={"idMessage": "NEVER"}))
    add_leads(store, BIG={"value": 50000, "phone": "+33611111111"})
    log(store, lead="BIG", direction="in", occurredAt=ago(days=4))
    store.sweep()
    alert_id = db.execute("select id::text from max_alerts where type = 'HighValueRisk'").fetchone()[0]
    response = client.post(f"/api/alerts/{alert_id}/action", headers={"X-Tenant": "acme"})
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "action_is_a_call"
    assert route.call_count == 0 and active(db) == {("BIG", "HighValueRisk"): "high"}


def test_lead_without_phone_is_422_and_unconfigured_tenant_is_409(whatsapp):
    client, store, _db, _http = whatsapp
    add_leads(store, NOPHONE={"name": "Sans téléphone"})
    response = client.post(
        "/api/whatsapp/send", headers={"X-Tenant": "acme"}, json={"leadId": "NOPHONE", "message": "x"}
    )
    assert response.status_code == 422 and response.get_json()["error"]["details"][0]["field"] == "phone"
    add_leads(store, tenant="nowhere", L={"phone": "+33622222222"})
    response = client.post("/api/whatsapp/send", headers={"X-Tenant": "nowhere"}, json={"leadId": "L", "message": "x"})
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "whatsapp_not_configured"


def test_send_to_unknown_lead_is_404_and_empty_message_is_422(whatsapp):
    client, _store, _db, _http = whatsapp
    assert (
        client.post(
            "/api/whatsapp/send", headers={"X-Tenant": "acme"}, json={"leadId": "NOBODY", "message": "x"}
        ).status_code
        == 404
    )
    assert (
        client.post(
            "/api/whatsapp/send", headers={"X-Tenant": "acme"}, json={"leadId": "SOPHIE_ID", "message": ""}
        ).status_code
        == 422
    )


# Configuration ------------------------------------------------------------------------------


def test_several_instances_from_json():
    settings = load_settings(
        {
            "LEADWATCH_GREENAPI_INSTANCES": json.dumps(
                [
                    {
                        "instanceId": "1101",
                        "token": "a",
                        "webhookToken": "wa",
                        "tenant": "acme",
                        "apiUrl": "https://1101.api.greenapi.com/",
                    },
                    {"instanceId": 1102, "token": "b", "webhookToken": "wb", "tenant": "other"},
                ]
            )
        }
    )
    assert [(i.id, i.tenant, i.api_url) for i in settings.greenapi_instances] == [
        ("1101", "acme", "https://1101.api.greenapi.com"),
        ("1102", "other", "https://api.green-api.com"),
    ]


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"LEADWATCH_GREENAPI_INSTANCES": "{"}, "LEADWATCH_GREENAPI_INSTANCES"),
        (
            {"LEADWATCH_GREENAPI_INSTANCES": '[{"instanceId": "1", "token": "a", "webhookToken": "w"}]'},
            "LEADWATCH_GREENAPI_INSTANCES[0].tenant",
        ),
        ({"LEADWATCH_GREENAPI_INSTANCES": '[{"id": "1"}]'}, "unknown fields"),
        (
            {"GREENAPI_INSTANCE_ID": "1", "GREENAPI_TOKEN": "t", "GREENAPI_WEBHOOK_TOKEN": "w"},
            "LEADWATCH_GREENAPI_TENANT",
        ),
        ({"ESPO_URL": "https://crm.example.com"}, "ESPO_API_KEY"),
    ],
    ids=["not-json", "missing-tenant", "unknown-field", "single-without-tenant", "espo-half"],
)
def test_bad_whatsapp_configuration_names_the_variable(env, named):
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("]", r"\]")):
        load_settings(env)
