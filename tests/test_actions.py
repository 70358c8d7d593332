"""Suggested actions: each alert type's action runs on its channel, an action that cannot run says so
in the list before any click, the dev outbox stands in for a missing provider (and only in dev), and
a call's outcome counts as contact or not.

The database is real, through each store; Green-API is faked with respx where a tenant has an instance.
"""

from __future__ import annotations

import inspect
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from helpers import active, add_leads, ago, log, row_counts
from leadwatch import Api
from leadwatch.config import GreenApiInstance, Settings
from leadwatch.devtools.dev import create_app
from leadwatch.devtools.outbox import DevOutbox
from leadwatch.http.identity import OpenAccess
from leadwatch.integrations.email_out import EmailChannel
from leadwatch.integrations.greenapi import GreenApi

ROOT = Path(__file__).resolve().parents[1]
API_URL = "https://7103.api.greenapi.com"
ACME = GreenApiInstance(id="7103000001", token="token-acme", api_url=API_URL, webhook_token="hook-acme", tenant="acme")
ACME_HEADERS = {"X-Tenant": "acme"}
FROM = "Acme Sales <sales@acme.example>"


class RecordingSender:
    """An email sender (the EmailSender interface) that records what it is given."""

    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []

    def send(self, message: EmailMessage) -> None:
        self.sent.append(message)


def make_client(store, *, greenapi=(), outbox=False, email=None, espo_url=None):
    """A dev app whose Api sends email through `email` (an EmailSender, from FROM) when given."""
    channel = EmailChannel(email, FROM) if email is not None else None
    api = Api(store, OpenAccess(), greenapi=GreenApi(greenapi, attempts=1), email=channel, espo_url=espo_url)
    if outbox:
        api.outbox = DevOutbox()
    return create_app(api).test_client(), api


def listed(client, tenant="acme"):
    response = client.get("/api/alerts/active", headers={"X-Tenant": tenant})
    assert response.status_code == 200, response.get_json()
    return {(a["lead_id"], a["type"]): a for a in response.get_json()["alerts"]}


def silent(store, lead, days=8, **fields):
    """A lead of acme silent for `days` days (NoContact7d once swept)."""
    add_leads(store, **{lead: fields})
    log(store, lead=lead, direction="in", occurredAt=ago(days=days))
    store.sweep()


def prefers(store, lead, channel, other, **fields):
    """A lead whose last 3 inbound came on `channel` while our last 2 outbound used `other`
    (PreferredChannel, raised at ingest)."""
    add_leads(store, **{lead: fields})
    log(store, lead=lead, channel=other, direction="out", occurredAt=ago(days=2, hours=12))
    log(store, lead=lead, channel=other, direction="out", occurredAt=ago(days=2))
    for hours in (40, 20, 1):
        log(store, lead=lead, channel=channel, direction="in", occurredAt=ago(hours=hours))


# The outbox ------------------------------------------------------------------------------------


def test_outbox_keeps_whatsapp_and_email_messages_newest_first():
    outbox = DevOutbox()
    id_message = outbox.send_message(outbox.instance, "33612345678@c.us", "Bonjour Sophie")
    email = EmailMessage()
    email["To"], email["Subject"] = "sophie@example.com", "Relance"
    email.set_content("Bonjour Sophie, par e-mail.")
    outbox.send(email)
    newest, oldest = outbox.messages()
    assert (oldest.channel, oldest.to, oldest.subject, oldest.text) == (
        "whatsapp",
        "33612345678@c.us",
        None,
        "Bonjour Sophie",
    )
    assert oldest.external_id == id_message and id_message.startswith("DEV")
    assert (newest.channel, newest.to, newest.subject, newest.text) == (
        "email",
        "sophie@example.com",
        "Relance",
        "Bonjour Sophie, par e-mail.",
    )
    assert newest.external_id == email["Message-ID"] and newest.at >= oldest.at
    assert newest.to_json()["externalId"] == email["Message-ID"]
    outbox.clear()
    assert outbox.messages() == []


def test_a_retried_whatsapp_action_with_its_idempotency_key_sends_once(store, db):
    """The Idempotency-Key guard covers every send an action runs, a WhatsApp one too: the retry answers
    the first run's answer (replayed) and nothing more is sent or logged."""
    client, api = make_client(store, outbox=True)
    silent(store, "SOPHIE", name="Sophie Martin", phone="+33612345678")
    alert = listed(client)[("SOPHIE", "NoContact7d")]
    headers = {**ACME_HEADERS, "Idempotency-Key": "action-wa-1"}
    first = client.post(f"/api/alerts/{alert['id']}/action", headers=headers)
    assert first.status_code == 200, first.get_json()
    before = row_counts(db)
    retry = client.post(f"/api/alerts/{alert['id']}/action", headers=headers)
    assert retry.status_code == 200, retry.get_json()
    assert retry.get_json() == {**first.get_json(), "replayed": True}
    assert len(api.outbox.messages()) == 1 and row_counts(db) == before
    unkeyed = client.post(f"/api/alerts/{alert['id']}/action", headers=ACME_HEADERS)
    assert unkeyed.status_code == 409 and unkeyed.get_json()["error"]["details"]["field"] == "id"


def test_outbox_keeps_at_most_its_limit_dropping_the_oldest():
    outbox = DevOutbox(limit=2)
    for text in ("one", "two", "three"):
        outbox.send_message(outbox.instance, "33612345678@c.us", text)
    assert [m.text for m in outbox.messages()] == ["three", "two"]


def test_dev_outbox_takes_the_whatsapp_follow_up_and_the_alert_clears(store, db):
    client, _api = make_client(store, outbox=True)
    silent(store, "SOPHIE", name="Sophie Martin", phone="+33612345678")
    alert = listed(client)[("SOPHIE", "NoContact7d")]
    assert alert["suggested_action"] | {"label": None, "params": None} == {
        "label": None,
        "params": None,
        "action": "send_whatsapp",
        "channel": "whatsapp",
        "available": True,
        "reason": None,
    }
    response = client.post(f"/api/alerts/{alert['id']}/action", headers=ACME_HEADERS)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["sent"]["channel"] == "whatsapp" and body["alerts"]["resolved"] == ["NoContact7d"]
    [kept] = client.get("/dev/outbox").get_json()["messages"]
    assert (kept["channel"], kept["to"]) == ("whatsapp", "33612345678@c.us")
    assert kept["text"] == body["sent"]["message"] and kept["text"].startswith("Bonjour Sophie Martin")
    assert body["activity"]["external_id"] == f"33612345678@c.us/{kept['externalId']}"
    assert body["activity"]["meta"]["provider"] == "dev-outbox"
    assert active(db) == {}


def test_a_tenant_with_green_api_sends_there_even_with_an_outbox(store, db, http_mock):
    route = http_mock.post(f"{API_URL}/waInstance{ACME.id}/sendMessage/{ACME.token}")
    route.return_value = httpx.Response(200, json={"idMessage": "BAE5REAL"})
    client, _api = make_client(store, greenapi=(ACME,), outbox=True)
    silent(store, "SOPHIE", name="Sophie Martin", phone="+33612345678")
    alert = listed(client)[("SOPHIE", "NoContact7d")]
    assert client.post(f"/api/alerts/{alert['id']}/action", headers=ACME_HEADERS).status_code == 200
    assert route.call_count == 1 and client.get("/dev/outbox").get_json()["messages"] == []


def test_without_an_outbox_there_is_no_dev_outbox_route(store):
    client, _ = make_client(store)
    response = client.get("/dev/outbox")
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"


def test_deployed_functions_never_use_the_outbox(db, database_url, monkeypatch):
    """functions/main.py as the cloud loads it: no outbox to fall back on, so a tenant without
    Green-API sees its WhatsApp action unavailable, running it is refused and writes nothing, and
    there is no /dev/outbox. Nothing in the settings can name an outbox."""
    import functions_framework
    from leadwatch.stores.store import PostgresStore

    assert "outbox" not in inspect.signature(Api.from_settings).parameters
    assert not [name for name in Settings.__dataclass_fields__ if "outbox" in name]
    store = PostgresStore(database_url)
    silent(store, "SOPHIE", name="Sophie Martin", phone="+33612345678")
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SUPABASE_SERVICE_KEY", "cloud-service-key")
    source = str(ROOT / "functions" / "main.py")
    alerts = functions_framework.create_app(target="alerts", source=source).test_client()
    auth = {"Authorization": "Bearer cloud-service-key", "X-Tenant": "acme"}
    [alert] = alerts.get("/api/alerts/active", headers=auth).get_json()["alerts"]
    assert (alert["suggested_action"]["available"], alert["suggested_action"]["reason"]) == (
        False,
        "whatsapp_not_configured",
    )
    before = row_counts(db)
    response = alerts.post(f"/api/alerts/{alert['id']}/action", headers=auth)
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "whatsapp_not_configured"
    assert row_counts(db) == before
    assert alerts.get("/dev/outbox", headers=auth).status_code == 404


def test_deployed_functions_run_email_actions_once_an_smtp_server_is_configured(db, database_url, monkeypatch):
    """functions/main.py with LEADWATCH_SMTP_URL: Api.from_settings builds the SMTP sender, so an email
    follow-up is available outside leadwatch dev (and unavailable without the setting)."""
    import functions_framework
    from leadwatch.stores.store import PostgresStore

    store = PostgresStore(database_url)
    db.execute(
        """insert into alert_rules (tenant_id, type, threshold, severity, escalate_after, escalated_severity,
                                    messages, action)
           select 'acme', type, threshold, severity, escalate_after, escalated_severity, messages,
                  jsonb_set(action, '{action}', '"send_email"')
           from alert_rules where tenant_id = '*' and type = 'NoContact7d'"""
    )
    silent(store, "SOPHIE", name="Sophie Martin", email="sophie@example.com")
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SUPABASE_SERVICE_KEY", "cloud-service-key")
    source = str(ROOT / "functions" / "main.py")
    auth = {"Authorization": "Bearer cloud-service-key", "X-Tenant": "acme"}

    def suggested() -> tuple[bool, str | None]:
        alerts = functions_framework.create_app(target="alerts", source=source).test_client()
        [alert] = alerts.get("/api/alerts/active", headers=auth).get_json()["alerts"]
        return alert["suggested_action"]["available"], alert["suggested_action"]["reason"]

    assert suggested() == (False, "email_not_configured")
    monkeypatch.setenv("LEADWATCH_SMTP_URL", "smtp://leadwatch:s3cret@mail.example.com:587")
    monkeypatch.setenv("LEADWATCH_EMAIL_FROM", FROM)
    assert suggested() == (True, None)


# Available or not, before any click -------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "lead", "kind", "channel", "reason"),
    [
        ({"outbox": True}, {"name": "Sans téléphone"}, "NoContact7d", "whatsapp", "no_phone"),
        ({}, {"phone": "+33612345678"}, "NoContact7d", "whatsapp", "whatsapp_not_configured"),
        ({"outbox": True}, {"value": 50000}, "HighValueRisk", "call", "no_phone"),
    ],
    ids=["no-phone", "whatsapp-not-configured", "call-without-phone"],
)
def test_an_action_that_cannot_run_says_why_in_the_list_and_running_it_writes_nothing(
    store, db, setup, lead, kind, channel, reason
):
    client, _ = make_client(store, **setup)
    silent(store, "L1", days=8 if kind == "NoContact7d" else 4, **lead)
    alert = listed(client)[("L1", kind)]
    action = alert["suggested_action"]
    assert (action["channel"], action["available"], action["reason"]) == (channel, False, reason)
    before = row_counts(db)
    response = client.post(f"/api/alerts/{alert['id']}/action", headers=ACME_HEADERS)
    assert response.status_code == 409 and response.get_json()["error"]["code"] == reason
    assert row_counts(db) == before and (("L1", kind) in active(db))


def test_call_lead_is_available_with_a_phone_and_the_list_carries_it(store):
    client, _ = make_client(store)
    silent(store, "BIG", days=4, name="Chloé Dubois", value=50000, phone="+33656789012")
    alert = listed(client)[("BIG", "HighValueRisk")]
    assert alert["lead_phone"] == "+33656789012"
    assert alert["suggested_action"]["action"] == "call_lead"
    assert (alert["suggested_action"]["channel"], alert["suggested_action"]["available"]) == ("call", True)
    response = client.post(f"/api/alerts/{alert['id']}/action", headers=ACME_HEADERS)
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "action_is_a_call"


def test_lead_url_links_to_espocrm_only_when_espo_url_is_set(store):
    silent(store, "694d0bed15df5b9e1", name="Sophie Martin")
    without, _ = make_client(store)
    assert "lead_url" not in listed(without)[("694d0bed15df5b9e1", "NoContact7d")]
    with_espo, _ = make_client(store, espo_url="https://crm.example.com/")
    alert = listed(with_espo)[("694d0bed15df5b9e1", "NoContact7d")]
    assert alert["lead_url"] == "https://crm.example.com/#Lead/view/694d0bed15df5b9e1"


# switch_channel ----------------------------------------------------------------------------------


def test_switch_channel_sends_on_whatsapp_when_the_lead_prefers_it_and_the_alert_clears(store, db):
    client, _ = make_client(store, outbox=True)
    prefers(store, "P", "whatsapp", "email", name="Paul Petit", phone="+33611111111", email="paul@example.com")
    alert = listed(client)[("P", "PreferredChannel")]
    action = alert["suggested_action"]
    assert (action["action"], action["channel"], action["available"]) == ("switch_channel", "whatsapp", True)
    body = client.post(f"/api/alerts/{alert['id']}/action", headers=ACME_HEADERS).get_json()
    assert body["sent"]["channel"] == "whatsapp" and "PreferredChannel" in body["alerts"]["resolved"]
    assert body["sent"]["message"].startswith("Bonjour Paul Petit, je vous recontacte par ici")
    [kept] = client.get("/dev/outbox").get_json()["messages"]
    assert kept["to"] == "33611111111@c.us"
    assert ("P", "PreferredChannel") not in active(db)


def test_switch_channel_to_email_is_unavailable_until_an_email_sender_is_configured(store, db, http_mock):
    without_email, _ = make_client(store, greenapi=(ACME,))
    prefers(store, "P", "email", "whatsapp", name="Paul Petit", phone="+33611111111", email="paul@example.com")
    alert = listed(without_email)[("P", "PreferredChannel")]
    assert alert["suggested_action"]["channel"] == "email"
    assert (alert["suggested_action"]["available"], alert["suggested_action"]["reason"]) == (
        False,
        "email_not_configured",
    )
    sender = RecordingSender()
    with_email, _ = make_client(store, greenapi=(ACME,), email=sender)
    assert listed(with_email)[("P", "PreferredChannel")]["suggested_action"]["available"] is True
    response = with_email.post(f"/api/alerts/{alert['id']}/action", headers=ACME_HEADERS)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    [message] = sender.sent
    assert (message["To"], message["From"]) == ("Paul Petit <paul@example.com>", FROM)
    assert (body["sent"]["channel"], body["sent"]["to"]) == ("email", "paul@example.com")
    assert message["Subject"] == "Recontacter sur son canal préféré"
    assert message.get_content().startswith("Bonjour Paul Petit")
    assert body["activity"]["channel"] == "email" and body["activity"]["external_id"] == message["Message-ID"]
    assert ("P", "PreferredChannel") not in active(db)


def test_email_follow_up_goes_to_the_dev_outbox_without_a_sender(store):
    client, _ = make_client(store, outbox=True)
    prefers(store, "P", "email", "whatsapp", name="Paul Petit", email="paul@example.com")
    alert = listed(client)[("P", "PreferredChannel")]
    assert alert["suggested_action"]["available"] is True
    assert client.post(f"/api/alerts/{alert['id']}/action", headers=ACME_HEADERS).status_code == 200
    [kept] = client.get("/dev/outbox").get_json()["messages"]
    assert (kept["channel"], kept["to"], kept["subject"]) == (
        "email",
        "Paul Petit <paul@example.com>",
        "Recontacter sur son canal préféré",  # PreferredChannel has no subject: its label stands in
    )


def test_switch_channel_to_email_without_an_address_is_unavailable(store):
    client, _ = make_client(store, outbox=True)
    prefers(store, "P", "email", "whatsapp", name="Paul Petit")
    db_alert = listed(client)[("P", "PreferredChannel")]
    assert db_alert["suggested_action"]["reason"] == "no_email"


# A call's outcome ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "resolves"),
    [("answered", True), ("voicemail", True), ("no_answer", False)],
    ids=["reached", "voicemail", "no-answer"],
)
def test_a_logged_call_resolves_the_silence_unless_nobody_answered(store, db, status, resolves):
    client, _ = make_client(store)
    silent(store, "BIG", days=8, value=50000, phone="+33656789012")
    assert set(active(db)) == {("BIG", "NoContact7d"), ("BIG", "HighValueRisk")}
    response = client.post(
        "/api/activities/log",
        headers=ACME_HEADERS,
        json={"leadId": "BIG", "channel": "call", "direction": "out", "status": status, "messageSnippet": "Appel"},
    )
    assert response.status_code == 200 and response.get_json()["activity"]["status"] == status
    assert set(active(db)) == (set() if resolves else {("BIG", "NoContact7d"), ("BIG", "HighValueRisk")})
    store.sweep()  # nor does the next sweep count an unanswered call as the last contact
    assert set(active(db)) == (set() if resolves else {("BIG", "NoContact7d"), ("BIG", "HighValueRisk")})


# A tenant's choice of action --------------------------------------------------------------------


def test_a_tenant_may_follow_up_by_email_instead_of_whatsapp(store, db):
    client, _ = make_client(store, outbox=True)
    response = client.put(
        "/api/rules/NoContact7d",
        headers=ACME_HEADERS,
        json={"action": "send_email", "actionLabel": {"fr": "Relancer par e-mail"}},
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["rule"]["action"]["action"] == "send_email"
    silent(store, "SOPHIE", name="Sophie Martin", email="sophie@example.com")
    alert = listed(client)[("SOPHIE", "NoContact7d")]
    action = alert["suggested_action"]
    assert (action["action"], action["label"], action["channel"], action["available"]) == (
        "send_email",
        "Relancer par e-mail",
        "email",
        True,
    )
    body = client.post(f"/api/alerts/{alert['id']}/action", headers=ACME_HEADERS).get_json()
    assert body["sent"]["channel"] == "email" and body["alerts"]["resolved"] == ["NoContact7d"]
    [kept] = client.get("/dev/outbox").get_json()["messages"]
    assert (kept["channel"], kept["to"], kept["subject"]) == (
        "email",
        "Sophie Martin <sophie@example.com>",
        "Des nouvelles de votre projet ?",  # the rule's email subject (its label names the button)
    )
    assert kept["text"].startswith("Bonjour Sophie Martin, je reviens vers vous")
    # another tenant keeps the default
    add_leads(store, tenant="other", L={"phone": "+33622222222"})
    log(store, tenant="other", lead="L", direction="in", occurredAt=ago(days=8))
    store.sweep()
    assert listed(client, "other")[("L", "NoContact7d")]["suggested_action"]["action"] == "send_whatsapp"


@pytest.mark.parametrize(
    "changes",
    [{"action": "send_fax"}, {"action": None}, {"actionLabel": {"de": "Anrufen"}}],
    ids=["unknown-action", "null-action", "unknown-locale"],
)
def test_an_unknown_action_is_refused_naming_the_field_and_changes_nothing(store, db, changes):
    client, _ = make_client(store)
    before = row_counts(db)
    response = client.put("/api/rules/NoContact7d", headers=ACME_HEADERS, json=changes)
    assert response.status_code == 422
    assert next(d["field"] for d in response.get_json()["error"]["details"]).startswith(next(iter(changes)))
    assert row_counts(db) == before


def test_set_rule_itself_refuses_an_unknown_action(db):
    with pytest.raises(Exception, match="action must be send_whatsapp"):
        db.execute("select set_rule('acme', 'NoContact7d', '{\"action\": \"send_fax\"}'::jsonb)")
