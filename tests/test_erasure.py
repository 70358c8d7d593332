"""A lead erased (GDPR article 17) from every table, the history and the outbox; exported (articles 15, 20).

The world below fills every table that can hold a lead through the real paths (activities on every
channel, alerts raised by ingest and the sweep, a snooze, an overdue mark, webhook deliveries, WhatsApp
pushes, morning digests, Green-API dead letters, an email reply and an unreadable email kept aside, an
email sent with an Idempotency-Key, analytics summaries). After the erasure a scan driven
by the catalog reads every text, varchar, jsonb (and bytea) column of every table in `public`, so a
table added later is covered too, and finds the lead nowhere.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from helpers import add_leads, ago, allow_history_rewrite, assert_counts_exact, later, log, postgrest_claims
from leadwatch import Api
from leadwatch.devtools.dev import create_app
from leadwatch.http.identity import OpenAccess, VerifiedAccess
from leadwatch.integrations.email_out import EmailChannel, SmtpSender, SmtpTarget
from postgrest_fake import SERVICE_KEY
from test_access import SETTINGS, bearer, token
from test_analytics_rollup import live, summarised
from test_email import FROM, HOOK, TOKEN, hook, reply, smtp  # noqa: F401  (smtp: the email test's SMTP server)

TARGET = "erase-me-7Qx"
KEEP = "keep-me-4Rw"
NAME, EMAIL, PHONE = "Zoé Effacée-Targetname", "zoe.targetname@example.org", "+33612345678"
KEEP_NAME, KEEP_PHONE, KEEP_EMAIL = "Kept Person", "+33699887766", "kept@example.org"
AGENT, OTHER_AGENT, MANAGER, ADMIN = "u-agent-1", "u-agent-2", "u-manager-1", "u-admin-1"
CHAT = PHONE.lstrip("+") + "@c.us"
HEADERS = {"X-Tenant": "acme"}
SECRET = "whsec_" + "A" * 32
ALL_EVENTS = [
    "alert.created",
    "alert.escalated",
    "alert.overdue",
    "alert.snoozed",
    "alert.reopened",
    "alert.resolved",
    "digest.daily",
]


def _digest_morning() -> datetime:
    """Today 08:00:30 in Paris (the default digest hour), in UTC."""
    paris = datetime.now(ZoneInfo("Europe/Paris")).replace(hour=8, minute=0, second=30, microsecond=0)
    return paris.astimezone(UTC)


def _insert_past_history(db, lead: str, days_ago: int) -> None:
    """A resolved alert of a closed day with its history, written with explicit times (triggers off,
    as test_analytics_rollup does): what the analytics' day summaries count."""
    created = datetime.now(UTC) - timedelta(days=days_ago, hours=3)
    resolved = created + timedelta(hours=5)
    db.execute("set session_replication_role = replica")
    try:
        (alert_id,) = db.execute(
            "insert into max_alerts (tenant_id, lead_id, type, severity, message, created_at, resolved_at,"
            " resolved_by, resolution) values ('acme', %s, 'HotLead24h', 'high', 'm', %s, %s, 'system', 'activity')"
            " returning id",
            [lead, created, resolved],
        ).fetchone()
        for event, at in (("created", created), ("resolved", resolved)):
            db.execute(
                "insert into alert_events (tenant_id, alert_id, lead_id, type, event, severity, actor, at)"
                " values ('acme', %s, %s, 'HotLead24h', %s, 'high', 'system', %s)",
                [alert_id, lead, event, at],
            )
    finally:
        db.execute("set session_replication_role = origin")


def _mailer(store, smtp):  # noqa: F811
    """The dev app with email: sends through the loopback SMTP server, inbound on the tenant's webhook token."""
    _inbox, port = smtp
    channel = EmailChannel(SmtpSender(SmtpTarget("127.0.0.1", port, "plain"), timeout=5), FROM, (("acme", TOKEN),))
    return create_app(Api(store, OpenAccess(), email=channel)).test_client()


def _unreadable_email(address: str) -> bytes:
    """A message with no From header (kept in email_rejected), the sender's address in its Reply-To."""
    return f"Subject: Re: Votre devis\r\nReply-To: {address.upper()}\r\n\r\nMerci, je reviens vers vous.\r\n".encode()


@pytest.fixture
def world(store, db, smtp):  # noqa: F811
    """Tenant acme: TARGET (owned by AGENT, high value) and KEEP (OTHER_AGENT's), each present in every
    table that can hold a lead. Answers the analytics the tenant showed before the erasure."""
    add_leads(
        store,
        **{
            TARGET: {"name": NAME, "email": EMAIL, "phone": PHONE, "ownerId": AGENT, "value": 50000},
            KEEP: {"name": KEEP_NAME, "email": KEEP_EMAIL, "phone": KEEP_PHONE, "ownerId": OTHER_AGENT},
        },
    )
    for member in (
        {"user_id": AGENT, "name": "Agent One", "role": "agent", "phone": "+33700000001"},
        {"user_id": OTHER_AGENT, "name": "Agent Two", "role": "agent", "phone": "+33700000002"},
        {"user_id": MANAGER, "name": "Manager", "role": "manager", "phone": "+33700000003"},
    ):
        store.upsert_member(
            "acme",
            {
                **member,
                "locale": "fr",
                "time_zone": "Europe/Paris",
                "quiet_start": None,
                "quiet_end": None,
                "notifications": ["high_alert", "overdue", "digest"],
                "whatsapp": True,
            },
        )
    store.create_webhook("acme", "https://hooks.example.com/leadwatch", ALL_EVENTS, SECRET)

    # Old activities on every channel: the sweep finds the silences.
    log(store, lead=TARGET, channel="other", direction="in", occurredAt=ago(days=22), messageSnippet="Salon 2026")
    log(
        store,
        lead=TARGET,
        channel="whatsapp",
        direction="in",
        occurredAt=ago(days=21),
        messageSnippet=f"Bonjour, ici {NAME}",
        externalId=f"{CHAT}/3EB0AAA1",
        meta={"chatId": CHAT, "senderName": NAME},
    )
    log(store, lead=TARGET, channel="email", direction="out", occurredAt=ago(days=20), meta={"to": EMAIL})
    log(store, lead=KEEP, channel="call", direction="in", occurredAt=ago(days=20))
    store.sweep()  # NoContact7d, NoReply3d, HighValueRisk for TARGET; NoContact7d for KEEP
    alerts = {a["type"]: a["id"] for a in store.list_lead_alerts("acme", TARGET, _lead_alerts_query())["alerts"]}
    store.snooze_alert("acme", alerts["NoReply3d"], later(days=3), "u-admin-1")
    store.sweep(now=later(hours=25))  # the high alerts become overdue (pushes to the manager)
    store.set_digest_settings("acme", 8, "Europe/Paris")
    assert store.write_daily_digests(_digest_morning())["digests"] >= 2

    # Dead letters from TARGET's number (JSON and raw bytes), and one from KEEP's.
    store.reject_greenapi(
        "acme",
        "1101000001",
        "unknown typeMessage",
        payload={"typeWebhook": "incomingMessageReceived", "senderData": {"chatId": CHAT, "senderName": NAME}},
    )
    store.reject_greenapi("acme", "1101000001", "the body is not valid JSON", raw=f'{{"chatId": "{CHAT}", '.encode())
    store.reject_greenapi(
        "acme", "1101000001", "unknown typeMessage", payload={"senderData": {"chatId": KEEP_PHONE[1:] + "@c.us"}}
    )

    # Closed days the analytics summarise, for both leads.
    _insert_past_history(db, TARGET, 4)
    _insert_past_history(db, KEEP, 5)

    # Recent inbound on three channels: resolves the silences, raises HotLead24h (high) by ingest.
    for hours, channel in ((5, "whatsapp"), (4, "email"), (3, "call")):
        log(store, lead=TARGET, channel=channel, direction="in", occurredAt=ago(hours=hours))

    # Email: a send to TARGET kept for its Idempotency-Key (it answers the burst), TARGET's reply, an
    # unreadable message carrying TARGET's address (kept whole), and one carrying KEEP's.
    mailer = _mailer(store, smtp)
    sent = mailer.post(
        "/api/email/send",
        headers={"X-Tenant": "acme", "Idempotency-Key": "devis-erase-1"},
        json={"leadId": TARGET, "subject": "Votre devis", "message": f"Bonjour {NAME}, votre devis est prêt."},
    )
    assert sent.status_code == 200, sent.get_json()
    answered = reply(
        "Merci, je regarde.", sender=f"{NAME} <{EMAIL}>", message_id="<zoe-1@example.org>",
        when=datetime.now(UTC) + timedelta(hours=1),  # a date in the future: when it arrived, after the send
    )  # fmt: skip
    assert "activity" in hook(mailer, answered.as_bytes()).get_json()
    assert "rejected" in hook(mailer, _unreadable_email(EMAIL)).get_json()
    assert "rejected" in hook(mailer, _unreadable_email(KEEP_EMAIL)).get_json()
    # Two more messages: a burst again after the send (HotLead24h active when the lead is erased).
    for channel in ("whatsapp", "call"):
        log(store, lead=TARGET, channel=channel, direction="in")
    return alerts


def _lead_alerts_query():
    from leadwatch.models.desk import LeadAlertsQuery

    return LeadAlertsQuery()


def _texts(db) -> dict[tuple[str, str], list[str]]:
    """Every text-like column of every table of `public`, as text: {(table, column): [values]}."""
    columns = db.execute(
        """select c.table_name, c.column_name, c.data_type
           from information_schema.columns c
           join information_schema.tables t on t.table_schema = c.table_schema and t.table_name = c.table_name
           where c.table_schema = 'public' and t.table_type = 'BASE TABLE'
             and c.data_type in ('text', 'character varying', 'character', 'jsonb', 'json', 'bytea', 'ARRAY')
           order by 1, 2"""
    ).fetchall()
    found = {}
    for table, column, kind in columns:
        value = f"encode(\"{column}\", 'escape')" if kind == "bytea" else f'"{column}"::text'
        rows = db.execute(f'select {value} from public."{table}" where "{column}" is not null').fetchall()
        found[(table, column)] = [r[0] for r in rows]
    return found


def _mentions(db, *needles: str) -> dict[tuple[str, str], int]:
    """Where any of `needles` appears (case-insensitive), by (table, column): how many values."""
    lowered = [n.lower() for n in needles]
    hits = {}
    for place, values in _texts(db).items():
        count = sum(1 for v in values if any(n in v.lower() for n in lowered))
        if count:
            hits[place] = count
    return hits


NEEDLES = (TARGET, NAME, EMAIL, PHONE, PHONE.lstrip("+"))


def _letters_from(db, phone: str) -> int:
    return db.execute(
        "select count(*) from greenapi_rejected where payload::text like %s", [f"%{phone[1:]}%"]
    ).fetchone()[0]


def _emails_from(db, address: str) -> int:
    return db.execute(
        "select count(*) from email_rejected where encode(raw, 'escape') ilike %s", [f"%{address}%"]
    ).fetchone()[0]


def _alert_deliveries_of(db, lead: str) -> int:
    return db.execute(
        "select count(*) from webhook_deliveries where payload -> 'data' -> 'alert' ->> 'lead_id' = %s", [lead]
    ).fetchone()[0]


def _export(client, lead: str) -> dict:
    response = client.get(f"/api/leads/{lead}/export", headers=HEADERS)
    assert response.status_code == 200, response.json
    document = response.json["export"]
    document.pop("exported_at")
    return document


def test_an_erased_lead_is_found_in_no_table_while_the_rest_of_the_tenant_is_untouched(client, db, world):
    before = _mentions(db, *NEEDLES)
    expected_places = {
        ("leads", "name"),
        ("lead_activities", "meta"),
        ("max_alerts", "lead_id"),
        ("alert_events", "lead_id"),
        ("webhook_deliveries", "payload"),
        ("member_pushes", "text"),
        ("member_digests", "digest"),
        ("greenapi_rejected", "payload"),
        ("greenapi_rejected", "raw"),
        ("email_rejected", "raw"),
        ("email_sends", "answer"),
        ("lead_state", "lead_id"),
    }
    assert expected_places <= set(before), "the world holds the lead everywhere the erasure must reach"
    assert summarised(client, "UTC") == live(db, "UTC")  # summaries made, the lead's closed day among them
    summaries = db.execute("select count(*) from alert_day_rollups where tenant_id = 'acme'").fetchone()[0]
    assert summaries > 0
    live_before = live(db, "UTC")
    kept_export = _export(client, KEEP)
    kept_letters = _letters_from(db, KEEP_PHONE)
    kept_emails = _emails_from(db, KEEP_EMAIL)
    kept_deliveries = _alert_deliveries_of(db, KEEP)
    assert kept_deliveries > 0

    response = client.delete(f"/api/leads/{TARGET}", headers=HEADERS)

    assert response.status_code == 200, response.json
    erasure = response.json["erasure"]
    counts = erasure["counts"]
    assert counts["leads"] == 1 and counts["lead_state"] == 1
    assert counts["lead_activities"] == 10
    assert counts["max_alerts"] >= 5 and counts["alert_events"] > counts["max_alerts"]
    assert counts["alert_counts"] >= 1  # the active HotLead24h (and the snoozed NoReply3d) left the counts
    for kind in ("webhook_deliveries", "member_pushes", "member_digests", "alert_day_rollups"):
        assert counts[kind] > 0, kind
    assert counts["greenapi_rejected"] == 2
    assert counts["email_rejected"] == 1 and counts["email_sends"] == 1
    assert erasure["lead_hash"] == hashlib.sha256(f"acme:{TARGET}".encode()).hexdigest()

    assert _mentions(db, *NEEDLES) == {}
    # KEEP: its export whole, its dead letter kept, its line still in the manager's digest.
    assert _export(client, KEEP) == kept_export
    assert _letters_from(db, KEEP_PHONE) == kept_letters == 1
    assert _emails_from(db, KEEP_EMAIL) == kept_emails == 1
    assert _alert_deliveries_of(db, KEEP) == kept_deliveries
    (manager_digest,) = db.execute("select digest from member_digests where user_id = %s", [MANAGER]).fetchone()
    assert [a["lead_id"] for a in manager_digest["first"]] == [KEEP]
    # The counts and the analytics: the tenant's figures equal the live computation, without the lead.
    assert_counts_exact(db)
    after = summarised(client, "UTC")
    assert after == live(db, "UTC")
    assert after != live_before
    assert after["resolved_within_24h"]["resolved"] < live_before["resolved_within_24h"]["resolved"], (
        "the lead's resolutions no longer count"
    )


def test_erasing_twice_answers_404_and_changes_nothing_more(client, db, world):
    first = client.delete(f"/api/leads/{TARGET}", headers=HEADERS)
    rows = {t: db.execute(f"select count(*) from {t}").fetchone()[0] for t in ("webhook_deliveries", "lead_erasures")}

    again = client.delete(f"/api/leads/{TARGET}", headers=HEADERS)

    assert first.status_code == 200
    assert again.status_code == 404
    assert again.json["error"] == {"code": "not_found", "message": "lead not found", "details": {"field": "leadId"}}
    assert {t: db.execute(f"select count(*) from {t}").fetchone()[0] for t in rows} == rows
    assert client.get(f"/api/leads/{TARGET}/export", headers=HEADERS).status_code == 404


def test_lead_erased_is_queued_to_every_endpoint_with_only_the_hash(client, db, world, store):
    store.create_webhook("acme", "https://second.example.com/hooks", ["digest.daily"], SECRET, enabled=False)
    store.create_webhook("other", "https://other.example.com/hooks", ALL_EVENTS, SECRET)

    erasure = client.delete(f"/api/leads/{TARGET}", headers=HEADERS).json["erasure"]

    rows = db.execute(
        "select d.tenant_id, w.url, d.payload, d.status from webhook_deliveries d"
        " join webhook_endpoints w on w.tenant_id = d.tenant_id and w.id = d.endpoint_id"
        " where d.event_type = 'lead.erased' order by w.url"
    ).fetchall()
    assert [(tenant, url, status) for tenant, url, _, status in rows] == [
        ("acme", "https://hooks.example.com/leadwatch", "pending"),
        ("acme", "https://second.example.com/hooks", "pending"),  # sent once it is enabled again
    ]
    payload = rows[0][2]
    assert payload == {
        "type": "lead.erased",
        "timestamp": payload["timestamp"],
        "data": {
            "erasure": {"id": erasure["id"], "lead_hash": erasure["lead_hash"], "erased_at": payload["timestamp"]}
        },
    }
    claimed = [d for d in store.claim_webhook_deliveries(now=later(seconds=1)) if d["payload"]["type"] == "lead.erased"]
    assert len(claimed) == 1 and claimed[0]["url"] == "https://hooks.example.com/leadwatch"


def test_a_later_activity_starts_a_new_lead_with_no_past(client, db, world, store):
    client.delete(f"/api/leads/{TARGET}", headers=HEADERS)

    logged = log(store, lead=TARGET, channel="email", direction="in", messageSnippet="Bonjour")

    assert logged["alerts"] == {"created": [], "resolved": []}
    timeline = client.get(f"/api/leads/{TARGET}/activities", headers=HEADERS).json
    assert [a["message_snippet"] for a in timeline["activities"]] == ["Bonjour"]
    assert client.get(f"/api/leads/{TARGET}/alerts", headers=HEADERS).json["alerts"] == []
    document = _export(client, TARGET)
    assert document["lead"] is None and len(document["activities"]) == 1 and document["alerts"] == []
    assert document["greenapi_rejected"] == [] and document["email_rejected"] == [] and document["email_sends"] == []
    assert datetime.fromisoformat(document["state"]["entered_at"]) > ago(minutes=5)
    store.sweep(now=later(days=8))  # a silence counted from the new lead's first activity only
    types = {a["type"] for a in client.get(f"/api/leads/{TARGET}/alerts", headers=HEADERS).json["alerts"]}
    assert types == {"NoContact7d"}


def test_the_export_holds_everything_about_the_lead(client, world):
    document = _export(client, TARGET)

    assert document["tenant_id"] == "acme" and document["lead_id"] == TARGET
    assert (
        document["lead"]["name"] == NAME and document["lead"]["email"] == EMAIL and document["lead"]["phone"] == PHONE
    )
    assert document["state"]["lead_id"] == TARGET and document["state"]["last_inbound_at"] is not None
    assert sorted({a["channel"] for a in document["activities"]}) == ["call", "email", "other", "whatsapp"]
    assert len(document["activities"]) == 10
    occurred = [a["occurred_at"] for a in document["activities"]]
    assert occurred == sorted(occurred), "oldest first"
    by_type = {a["type"]: a for a in document["alerts"]}
    assert {"NoContact7d", "NoReply3d", "HighValueRisk", "HotLead24h"} <= set(by_type)
    assert by_type["NoReply3d"]["snoozed_until"] is not None
    assert {"created", "snoozed"} <= {e["event"] for e in by_type["NoReply3d"]["events"]}
    assert "overdue" in {e["event"] for a in document["alerts"] for e in a["events"]}
    assert all(a["lead_name"] == NAME for a in document["alerts"])
    assert sorted(r["reason"] for r in document["greenapi_rejected"]) == [
        "the body is not valid JSON",
        "unknown typeMessage",
    ]
    [rejected] = document["email_rejected"]
    assert base64.b64decode(rejected["raw_base64"]) == _unreadable_email(EMAIL) and "From" in rejected["reason"]
    [send] = document["email_sends"]
    assert send["idempotency_key"] == "devis-erase-1"
    assert send["answer"]["sent"]["to"] == EMAIL
    assert send["answer"]["sent"]["message"] == f"Bonjour {NAME}, votre devis est prêt."


@pytest.mark.parametrize(
    ("path", "method"),
    [(f"/api/leads/{TARGET}", "delete"), (f"/api/leads/{TARGET}/export", "get")],
    ids=["erase", "export"],
)
def test_bad_lead_ids_and_unknown_leads(client, world, path, method):
    unknown = getattr(client, method)(path.replace(TARGET, "nobody-here"), headers=HEADERS)
    too_long = getattr(client, method)(path.replace(TARGET, "x" * 201), headers=HEADERS)
    no_tenant = getattr(client, method)(path)

    assert unknown.status_code == 404 and unknown.json["error"]["details"] == {"field": "leadId"}
    assert too_long.status_code == 422 and too_long.json["error"]["details"][0]["field"] == "leadId"
    assert no_tenant.status_code == 400


# Who may erase and export ------------------------------------------------------------------------


@pytest.fixture
def verified(store, db):
    """The handlers as deployed (every caller verified) over the store under test."""
    add_leads(store, **{TARGET: {"name": NAME, "phone": PHONE, "ownerId": AGENT}})
    add_leads(store, tenant="other", **{TARGET: {"name": "Same id, other tenant"}})
    log(store, lead=TARGET, direction="in")
    log(store, tenant="other", lead=TARGET, direction="in")
    return create_app(Api(store, VerifiedAccess(SETTINGS))).test_client()


def _erase(client, credential: str, tenant: str | None = None, lead: str = TARGET):
    headers = bearer(credential) | ({"X-Tenant": tenant} if tenant else {})
    return client.delete(f"/api/leads/{lead}", headers=headers)


@pytest.mark.parametrize("role", ["agent", "manager"])
def test_agents_and_managers_may_neither_erase_nor_export(verified, db, role):
    sub = AGENT if role == "agent" else MANAGER  # the agent owns the lead, and still may not
    erased = _erase(verified, token(role, sub=sub))
    exported = verified.get(f"/api/leads/{TARGET}/export", headers=bearer(token(role, sub=sub)))
    listed = verified.get("/api/erasures", headers=bearer(token(role, sub=sub)))

    assert (erased.status_code, exported.status_code, listed.status_code) == (403, 403, 403)
    assert db.execute("select count(*) from leads where lead_id = %s", [TARGET]).fetchone()[0] == 2


def test_another_tenants_lead_is_404_and_stays(verified, db):
    only_other = "only-in-other"
    db.execute("insert into leads (tenant_id, lead_id, name) values ('other', %s, 'Other only')", [only_other])

    response = _erase(verified, token("admin", sub=ADMIN), lead=only_other)
    exported = verified.get(f"/api/leads/{only_other}/export", headers=bearer(token("admin", sub=ADMIN)))
    foreign = _erase(verified, token("admin", tenant="other", sub=ADMIN), tenant="acme")

    assert response.status_code == 404 and exported.status_code == 404
    assert foreign.status_code == 403, "X-Tenant is not the admin's tenant"
    assert db.execute("select count(*) from leads where tenant_id = 'other'").fetchone()[0] == 2


@pytest.mark.parametrize(
    ("credential", "tenant", "requested_by"),
    [
        (lambda: token("admin", sub=ADMIN), None, ADMIN),
        (lambda: token("platform_admin", tenant=None, sub="u-staff"), "acme", "u-staff"),
        (lambda: SERVICE_KEY, "acme", "service"),
    ],
    ids=["admin", "platform-staff", "service-key"],
)
def test_admins_platform_staff_and_the_service_erase_in_their_tenant_only(
    verified, db, credential, tenant, requested_by
):
    response = _erase(verified, credential(), tenant)

    assert response.status_code == 200, response.json
    assert response.json["erasure"]["requested_by"] == requested_by
    assert db.execute("select tenant_id from leads where lead_id = %s", [TARGET]).fetchall() == [("other",)]
    assert db.execute("select count(*) from lead_activities where tenant_id = 'other'").fetchone()[0] == 1


def test_erasures_are_listed_to_the_tenants_admins_only(verified, db, store):
    for n in range(3):
        add_leads(store, **{f"gone-{n}": {"name": f"Gone {n}"}})
        assert _erase(verified, token("admin", sub=ADMIN), lead=f"gone-{n}").status_code == 200
    admin = bearer(token("admin", sub=ADMIN))

    first = verified.get("/api/erasures?limit=2", headers=admin).json
    second = verified.get(f"/api/erasures?limit=2&cursor={first['next_cursor']}", headers=admin).json
    other = verified.get("/api/erasures", headers=bearer(token("admin", tenant="other", sub=ADMIN))).json

    hashes = [e["lead_hash"] for e in first["erasures"] + second["erasures"]]
    assert hashes == [hashlib.sha256(f"acme:gone-{n}".encode()).hexdigest() for n in (2, 1, 0)]
    assert second["next_cursor"] is None
    assert first["erasures"][0]["counts"]["leads"] == 1 and first["erasures"][0]["requested_by"] == ADMIN
    assert other == {"success": True, "erasures": [], "next_cursor": None}
    bad = verified.get("/api/erasures?limit=0", headers=admin)
    assert bad.status_code == 422 and bad.json["error"]["details"][0]["field"] == "limit"


@pytest.mark.parametrize(
    ("claims", "visible"),
    [
        ({"role": "admin", "tenant_id": "acme"}, 1),
        ({"role": "manager", "tenant_id": "acme"}, 0),
        ({"role": "agent", "tenant_id": "acme"}, 0),
        ({"role": "admin", "tenant_id": "other"}, 0),
        ({"role": "platform_admin"}, 1),
        ({}, 0),
    ],
    ids=["admin", "manager", "agent", "other-tenant-admin", "platform-staff", "no-role"],
)
def test_erasure_records_are_read_through_row_level_security(postgres_store, db, claims, visible):
    add_leads(postgres_store, **{TARGET: {"name": NAME}})
    postgres_store.erase_lead("acme", TARGET, "service")

    with db.transaction():
        db.execute("set local role authenticated")
        postgrest_claims(db, {"sub": "u-1", "role": "authenticated", "app_metadata": claims})
        rows = db.execute("select lead_hash, counts from lead_erasures").fetchall()
        refused = [
            db.execute("select has_table_privilege('authenticated', 'lead_erasures', %s)", [p]).fetchone()[0]
            for p in ("insert", "update", "delete", "truncate")
        ]

    assert len(rows) == visible
    assert refused == [False, False, False, False]


def test_erase_lead_cannot_be_called_around_the_api_by_an_agent(postgres_store, db):
    """The database checks the role first: an agent calling erase_lead directly (as Supabase's REST API runs a
    user's call: role authenticated, their claims) is refused too."""
    add_leads(postgres_store, **{TARGET: {"name": NAME, "ownerId": AGENT}})
    claims = {"sub": AGENT, "role": "authenticated", "app_metadata": {"tenant_id": "acme", "role": "agent"}}
    with db.transaction():
        db.execute("set local role authenticated")
        postgrest_claims(db, claims)
        with pytest.raises(psycopg.Error) as caught, db.transaction():
            db.execute("select erase_lead('acme', %s)", [TARGET])
    assert caught.value.sqlstate == "LW403"
    assert db.execute("select count(*) from leads").fetchone()[0] == 1


@pytest.mark.parametrize(
    ("payload", "raw", "erased"),
    [
        ({"senderData": {"chatId": CHAT}}, None, True),
        ({"chatId": CHAT, "idMessage": "3EB0"}, None, True),
        (None, f"chatId={PHONE[1:]}@c.us&garbage\x00".encode(), True),
        ({"senderData": {"chatId": "1" + CHAT}}, None, False),  # a longer number that holds it
        ({"senderData": {"chatId": PHONE[1:] + "9@c.us"}}, None, False),
        (None, b"\xff\xfe not ours", False),
    ],
    ids=["sender", "chat", "raw-bytes", "longer-before", "longer-after", "raw-other"],
)
def test_dead_letters_go_when_they_carry_the_leads_number_and_only_then(client, store, db, payload, raw, erased):
    add_leads(store, **{TARGET: {"name": NAME, "phone": PHONE}})
    store.reject_greenapi("acme", "1101000001", "unreadable", payload=payload, raw=raw)

    counts = client.delete(f"/api/leads/{TARGET}", headers=HEADERS).json["erasure"]["counts"]

    assert counts["greenapi_rejected"] == int(erased)
    assert db.execute("select count(*) from greenapi_rejected").fetchone()[0] == int(not erased)


@pytest.mark.parametrize("locale", ["fr", "en"])
def test_a_push_naming_the_lead_goes_even_when_its_event_is_gone(client, store, db, locale):
    """Retention may have removed the event a push was written for: the push's text still names the lead."""
    add_leads(store, **{TARGET: {"name": NAME, "ownerId": AGENT, "value": 50000}, KEEP: {"name": KEEP_NAME}})
    store.upsert_member(
        "acme",
        {"user_id": AGENT, "name": "Agent One", "role": "agent", "phone": "+33700000001", "locale": locale,
         "time_zone": "Europe/Paris", "quiet_start": None, "quiet_end": None,
         "notifications": ["high_alert"], "whatsapp": True},
    )  # fmt: skip
    log(store, lead=TARGET, direction="out", occurredAt=ago(days=4))
    store.sweep()  # HighValueRisk (high): a push to the owner
    db.execute(
        "insert into member_pushes (tenant_id, user_id, kind, phone, text, next_attempt_at)"
        " values ('acme', %s, 'high_alert', '+33700000001', %s, now())",
        [AGENT, f"Alerte haute sur {KEEP_NAME} — Lead à forte valeur"],
    )
    with db.transaction():
        allow_history_rewrite(db)
        db.execute("delete from alert_events")
    pushes = db.execute("select text from member_pushes where text like %s", [f"%{NAME}%"]).fetchall()
    assert len(pushes) == 1

    counts = client.delete(f"/api/leads/{TARGET}", headers=HEADERS).json["erasure"]["counts"]

    assert counts["member_pushes"] == 1
    assert [t for (t,) in db.execute("select text from member_pushes")] == [
        f"Alerte haute sur {KEEP_NAME} — Lead à forte valeur"
    ]


def test_an_admin_exports_through_row_level_security(verified):
    """The export reads as the caller: an admin's JWT sees the lead's rows of their tenant, not the other's."""
    response = verified.get(f"/api/leads/{TARGET}/export", headers=bearer(token("admin", sub=ADMIN)))

    assert response.status_code == 200, response.json
    document = response.json["export"]
    assert document["tenant_id"] == "acme" and document["lead"]["name"] == NAME
    assert [a["tenant_id"] for a in document["activities"]] == ["acme"]


@pytest.mark.parametrize(
    ("raw", "erased"),
    [
        (f"Reply-To: {NAME} <{EMAIL}>\r\n\r\nbody".encode(), True),
        (f"Sender: {EMAIL.upper()}\r\n\r\nbody".encode(), True),
        (f"X-Original-To: <{EMAIL}>\r\n\r\n\xff\xfe binary".encode("latin-1"), True),
        (f"\r\n\r\nwrite to {EMAIL}.".encode(), True),  # the end of a sentence
        (f"Reply-To: x{EMAIL}\r\n\r\nbody".encode(), False),  # a longer address that holds it
        (f"Reply-To: {EMAIL}.uk\r\n\r\nbody".encode(), False),
        (f"Reply-To: {EMAIL.replace('.', '-')}\r\n\r\nbody".encode(), False),  # a dot is a dot
        (b"Reply-To: someone@example.org\r\n\r\nbody", False),
    ],
    ids=["reply-to", "upper-case", "binary", "sentence-end", "longer-before", "longer-after", "dot", "other"],
)
def test_rejected_emails_go_when_they_carry_the_leads_address_and_only_then(client, store, db, raw, erased):
    add_leads(store, **{TARGET: {"name": NAME, "email": EMAIL}})
    store.reject_email("acme", "the message has no From header", raw)

    counts = client.delete(f"/api/leads/{TARGET}", headers=HEADERS).json["erasure"]["counts"]

    assert counts["email_rejected"] == int(erased)
    assert db.execute("select count(*) from email_rejected").fetchone()[0] == int(not erased)


def test_a_lead_made_from_an_unknown_sender_takes_its_emails_and_sends_with_it(store, db, smtp):  # noqa: F811
    """The lead the webhook made from an unknown address (`email:<address>`): its reply, its unreadable email and
    the send to it go; another tenant's send to the same address stays."""
    mailer = _mailer(store, smtp)
    stranger = "New.Person@Example.net"
    first = hook(mailer, reply("Bonjour", sender=f"New Person <{stranger}>", message_id="<np-1@x.net>").as_bytes())
    lead_id = first.get_json()["lead"]["lead_id"]
    hook(mailer, _unreadable_email(stranger))
    sent = mailer.post(
        "/api/email/send",
        headers={"X-Tenant": "acme", "Idempotency-Key": "np-1"},
        json={"leadId": lead_id, "subject": "Bienvenue", "message": "Bonjour, merci de votre message."},
    )
    assert sent.status_code == 200, sent.get_json()
    db.execute(
        "insert into email_sends (tenant_id, idempotency_key, request_hash, answer) values ('other', 'np-1', 'h', %s)",
        [json.dumps({"sent": {"to": stranger.lower()}})],
    )

    counts = mailer.delete(f"/api/leads/{lead_id}", headers=HEADERS).get_json()["erasure"]["counts"]

    assert (counts["leads"], counts["email_rejected"], counts["email_sends"]) == (1, 1, 1)
    assert db.execute("select tenant_id from email_sends").fetchall() == [("other",)]
    assert _mentions(db, stranger, lead_id) == {("email_sends", "answer"): 1}  # the other tenant's


@pytest.mark.parametrize(
    ("role", "sees"), [("admin", True), ("manager", False), ("agent", False)], ids=["admin", "manager", "agent"]
)
def test_only_admins_read_a_leads_sends_and_only_through_the_export(postgres_store, db, role, sees):
    """email_sends is the service's: a user's JWT reads a lead's sends only through list_lead_email_sends (what the
    export calls), and only as an admin of the tenant."""
    add_leads(postgres_store, **{TARGET: {"name": NAME, "email": EMAIL, "ownerId": AGENT}})
    answer = {"sent": {"to": EMAIL, "subject": "Devis", "message": "Votre devis"}}
    db.execute(
        "insert into email_sends (tenant_id, idempotency_key, request_hash, answer) values ('acme', 'k-1', 'h', %s)",
        [json.dumps(answer)],
    )
    claims = {"sub": AGENT, "role": "authenticated", "app_metadata": {"tenant_id": "acme", "role": role}}
    with db.transaction():
        db.execute("set local role authenticated")
        postgrest_claims(db, claims)
        with pytest.raises(psycopg.errors.InsufficientPrivilege), db.transaction():
            db.execute("select * from email_sends")
        if sees:
            (sends,) = db.execute("select list_lead_email_sends('acme', %s)", [TARGET]).fetchone()
        else:
            with pytest.raises(psycopg.Error) as caught, db.transaction():
                db.execute("select list_lead_email_sends('acme', %s)", [TARGET])
            sends = caught.value.sqlstate

    if sees:
        assert sends == [{"idempotency_key": "k-1", "claimed_at": sends[0]["claimed_at"], "answer": answer}]
    else:
        assert sends == "LW403"
