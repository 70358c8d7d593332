"""Outgoing webhooks: the outbox the database fills, the signed deliverer, retries, the admins' routes.

Every delivery is received by a real threaded HTTP server on loopback that verifies its signature
with the `standardwebhooks` library; the deliverer reaches it as a deployment whose operator allowed
127.0.0.0/8 (LEADWATCH_WEBHOOK_ALLOWED_NETWORKS), or as the dev server does (loopback allowed).
Time is passed in (`now`), never slept, except for a receiver slower than the deliverer's timeout.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest
from helpers import add_leads, ago, later, log
from leadwatch import Api
from leadwatch.config import load_settings
from leadwatch.devtools.dev import create_app
from leadwatch.egress import Egress
from leadwatch.http.identity import VerifiedAccess
from leadwatch.jobs import notifications
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from test_access import AGENT, SETTINGS, bearer, token

ACME = {"X-Tenant": "acme"}
ALERT_EVENTS = [
    "alert.created",
    "alert.escalated",
    "alert.overdue",
    "alert.snoozed",
    "alert.reopened",
    "alert.resolved",
]
SCHEDULE = [  # waits before attempts 2..8
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
]


LOOPBACK_ALLOWED = {"LEADWATCH_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"}


def deliver(store, **options) -> dict:
    """The deliverer of a deployment whose operator allowed the loopback receivers of these tests."""
    return notifications.deliver(store, egress=Egress.from_settings(load_settings(LOOPBACK_ALLOWED)), **options)


class Receiver:
    """A webhook receiver on 127.0.0.1: verifies each request's signature, answers from a script."""

    def __init__(self) -> None:
        self.secret: str | None = None
        self.received: list[dict] = []  # {id, type, payload, valid}
        self.answers: list[int | str] = []  # next answers (a status, or "slow"); then 200
        self.always: int | None = None
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = dict(self.headers.items())
                try:
                    Webhook(receiver.secret).verify(body, headers)
                    valid = True
                except WebhookVerificationError:
                    valid = False
                payload = json.loads(body)
                with receiver.lock:
                    receiver.received.append(
                        {
                            "id": headers.get("webhook-id"),
                            "type": payload["type"],
                            "payload": payload,
                            "valid": valid,
                            "raw": (body, headers),
                        }
                    )
                    answer = receiver.answers.pop(0) if receiver.answers else (receiver.always or 200)
                if answer == "slow":
                    time.sleep(0.6)
                    answer = 200
                self.send_response(int(answer))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def ids(self) -> list[str]:
        return [r["id"] for r in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(http_mock):
    """A started receiver; respx (in front of Supabase's REST API) lets loopback traffic through."""
    http_mock.route(host="127.0.0.1").pass_through()
    server = Receiver()
    yield server
    server.close()


def register(client, receiver, events=ALERT_EVENTS, url=None) -> dict:
    response = client.post("/api/webhooks", headers=ACME, json={"url": url or receiver.url, "events": events})
    assert response.status_code == 201, response.get_json()
    webhook = response.get_json()["webhook"]
    receiver.secret = webhook["secret"]
    return webhook


def silent_lead(store, db, lead="L1", days=8) -> str:
    log(store, lead=lead, direction="in", occurredAt=ago(days=days))
    store.sweep()
    return str(db.execute("select id from max_alerts where lead_id = %s and resolved_at is null", [lead]).fetchone()[0])


def refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks"  # nothing listens there any more


def delivery(db, column: str = "*"):
    return db.execute(f"select {column} from webhook_deliveries").fetchone()


# Each event, once, signed ------------------------------------------------------------------------


def test_every_alert_event_arrives_once_with_a_valid_signature_and_the_alert_as_listed(client, store, db, receiver):
    register(client, receiver)
    add_leads(store, L1={"name": "Ana", "ownerId": AGENT})
    log(store, direction="in", occurredAt=ago(days=7, minutes=1))
    store.sweep()  # created (med)
    [(alert_id,)] = db.execute("select id::text from max_alerts").fetchall()
    store.sweep(now=later(days=7))  # escalated to high
    client.post(f"/api/alerts/{alert_id}/snooze", headers=ACME, json={"for": "2d"})  # snoozed
    store.sweep(now=later(days=7, hours=1))  # reopened, then overdue
    client.post(f"/api/alerts/{alert_id}/resolve", headers=ACME)  # resolved

    sent = deliver(store, now=later(days=8))
    assert sent == {"claimed": 6, "delivered": 6, "retrying": 0, "failed": 0, "disabled": 0}
    assert sorted(r["type"] for r in receiver.received) == sorted(ALERT_EVENTS)
    assert all(r["valid"] for r in receiver.received)
    assert len(set(receiver.ids())) == 6
    by_type = {r["type"]: r["payload"]["data"] for r in receiver.received}
    created = by_type["alert.created"]
    assert created["alert"]["id"] == alert_id and created["alert"]["lead_name"] == "Ana"
    assert created["alert"]["owner_id"] == AGENT and created["alert"]["type"] == "NoContact7d"
    assert created["event"]["event"] == "created" and created["event"]["actor"] == "system"
    assert by_type["alert.snoozed"]["event"]["actor"] == "user_manual"
    assert by_type["alert.resolved"]["alert"]["resolved_at"] is not None
    assert deliver(store, now=later(days=9))["claimed"] == 0, "each once"
    assert len(receiver.received) == 6


def test_an_endpoint_receives_only_the_event_types_it_asked_for_and_only_its_tenants(client, store, db, receiver):
    register(client, receiver, events=["alert.resolved"])
    alert_id = silent_lead(store, db)
    log(store, tenant="other", lead="X", direction="in", occurredAt=ago(days=8))
    store.sweep()
    assert db.execute("select count(*) from webhook_deliveries").fetchone()[0] == 0
    client.post(f"/api/alerts/{alert_id}/resolve", headers=ACME)
    assert deliver(store)["delivered"] == 1
    assert [r["type"] for r in receiver.received] == ["alert.resolved"]


def test_the_delivery_is_written_in_the_events_transaction_and_rolled_back_with_it(
    client, store, db, receiver, database_url
):
    register(client, receiver, events=["alert.created"])
    log(store, direction="in", occurredAt=ago(days=8))
    with psycopg.connect(database_url) as conn:  # one transaction, abandoned after the sweep
        conn.execute("select sweep_alerts()")
        assert conn.execute("select count(*) from webhook_deliveries").fetchone()[0] == 1
        conn.rollback()
    assert db.execute("select count(*) from max_alerts").fetchone()[0] == 0
    assert db.execute("select count(*) from webhook_deliveries").fetchone()[0] == 0


# Retries -----------------------------------------------------------------------------------------


def test_a_receiver_answering_500_then_200_gets_it_on_the_retry_with_the_same_webhook_id(client, store, db, receiver):
    register(client, receiver, events=["alert.created"])
    receiver.answers = [500]
    silent_lead(store, db)
    t0 = later(minutes=1)
    assert deliver(store, now=t0) == {"claimed": 1, "delivered": 0, "retrying": 1, "failed": 0, "disabled": 0}
    assert deliver(store, now=t0 + timedelta(seconds=4))["claimed"] == 0, "not before its retry"
    assert deliver(store, now=t0 + timedelta(seconds=5))["delivered"] == 1
    first, second = receiver.received
    assert first["id"] == second["id"] and first["valid"] and second["valid"]
    assert first["payload"] == second["payload"]
    status, attempts, last_status = delivery(db, "status, attempts, last_status")
    assert (status, attempts, last_status) == ("delivered", 2, 200)


def test_refused_connections_are_retried_on_the_schedule_for_about_a_day_then_fail(client, store, db, receiver):
    register(client, receiver, events=["alert.created"], url=refused_url())
    silent_lead(store, db)
    at = later(minutes=1)
    for attempt, wait in enumerate([timedelta(0), *SCHEDULE], start=1):
        at = at + wait
        if attempt > 1:
            assert deliver(store, now=at - timedelta(seconds=1))["claimed"] == 0, f"attempt {attempt} not due yet"
        outcome = deliver(store, now=at)
        assert outcome["claimed"] == 1, attempt
        assert outcome["failed" if attempt == 8 else "retrying"] == 1, attempt
    status, attempts, last_error = delivery(db, "status, attempts, last_error")
    assert (status, attempts, last_error) == ("failed", 8, "refused")
    assert timedelta(hours=24) < sum(SCHEDULE, timedelta(0)) < timedelta(hours=30)
    assert deliver(store, now=at + timedelta(days=2))["claimed"] == 0, "failed for good"


def test_a_receiver_slower_than_the_timeout_is_retried(client, store, db, receiver):
    register(client, receiver, events=["alert.created"])
    receiver.answers = ["slow"]
    silent_lead(store, db)
    t0 = later(minutes=1)
    assert deliver(store, now=t0, timeout=0.2)["retrying"] == 1
    last_error, next_at = delivery(db, "last_error, next_attempt_at")
    assert last_error == "timeout" and next_at == t0 + timedelta(seconds=5)
    assert deliver(store, now=t0 + timedelta(seconds=5), timeout=5)["delivered"] == 1
    assert len(set(receiver.ids())) == 1


def test_410_gone_fails_the_delivery_and_disables_the_endpoint(client, store, db, receiver):
    webhook = register(client, receiver, events=["alert.created", "alert.resolved"])
    receiver.always = 410
    alert_id = silent_lead(store, db)
    assert deliver(store) == {"claimed": 1, "delivered": 0, "retrying": 0, "failed": 1, "disabled": 1}
    [listed] = client.get("/api/webhooks", headers=ACME).get_json()["webhooks"]
    assert listed["id"] == webhook["id"] and listed["enabled"] is False and "410" in listed["disabled_reason"]
    client.post(f"/api/alerts/{alert_id}/resolve", headers=ACME)
    assert db.execute("select count(*) from webhook_deliveries").fetchone()[0] == 1, "no delivery for a disabled one"
    assert deliver(store, now=later(days=2))["claimed"] == 0


# Concurrency and crashes -------------------------------------------------------------------------


def many_deliveries(client, db, store, receiver, n: int) -> None:
    """`n` pending deliveries: one alert, `n` events recorded for it in one statement."""
    register(client, receiver, events=["alert.escalated"])
    silent_lead(store, db)
    db.execute(
        "insert into alert_events (tenant_id, alert_id, lead_id, type, event, severity, actor)"
        " select tenant_id, id, lead_id, type, 'escalated', severity, 'system' from max_alerts,"
        " generate_series(1, %s)",
        [n],
    )


def test_two_deliverers_racing_over_1000_deliveries_send_each_exactly_once(client, postgres_store, db, receiver):
    many_deliveries(client, db, postgres_store, receiver, 1000)
    results: list[dict] = []
    now = later(minutes=1)

    def run() -> None:  # no time budget: what is checked is exactly once, not how fast (a loaded machine)
        results.append(deliver(postgres_store, now=now, batch=25, workers=4, budget_seconds=3600))

    racers = [threading.Thread(target=run) for _ in range(2)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert sum(r["claimed"] for r in results) == 1000
    assert all(r["claimed"] > 0 for r in results), "both deliverers took part"
    assert len(receiver.received) == 1000 and len(set(receiver.ids())) == 1000
    assert all(r["valid"] for r in receiver.received)
    assert db.execute("select count(*) from webhook_deliveries where status = 'delivered'").fetchone()[0] == 1000


def test_a_deliverer_stopped_mid_batch_loses_nothing(client, store, db, receiver):
    many_deliveries(client, db, store, receiver, 10)
    now = later(minutes=1)
    claimed = store.claim_webhook_deliveries(now, 4, 120)  # a deliverer claims 4, sends one, and is killed
    assert len(claimed) == 4
    assert deliver(store, now=now)["claimed"] == 6, "the killed deliverer's rows are leased"
    assert deliver(store, now=now + timedelta(seconds=121))["delivered"] == 4, "due again after the lease"
    assert len(set(receiver.ids())) == 10
    late = store.record_webhook_attempts(
        [{"tenant_id": claimed[0]["tenant_id"], "id": claimed[0]["id"], "attempt": 1, "status": 500, "error": None}],
        now,
    )
    assert late["retrying"] == 0, "the dead deliverer's late outcome is ignored"
    assert db.execute("select count(*) from webhook_deliveries where status = 'delivered'").fetchone()[0] == 10


# The admins' routes ------------------------------------------------------------------------------


def test_the_secret_is_shown_once_and_rotation_signs_with_the_new_one(client, store, db, receiver):
    webhook = register(client, receiver, events=["alert.created", "alert.resolved"])
    assert webhook["secret"].startswith("whsec_") and webhook["enabled"] is True
    assert webhook["events"] == ["alert.created", "alert.resolved"]
    [listed] = client.get("/api/webhooks", headers=ACME).get_json()["webhooks"]
    assert "secret" not in listed and listed["url"] == receiver.url
    alert_id = silent_lead(store, db)
    deliver(store)

    rotated = client.post(f"/api/webhooks/{webhook['id']}/rotate", headers=ACME)
    assert rotated.status_code == 200
    new_secret = rotated.get_json()["webhook"]["secret"]
    assert new_secret.startswith("whsec_") and new_secret != webhook["secret"]
    receiver.secret = new_secret
    client.post(f"/api/alerts/{alert_id}/resolve", headers=ACME)
    deliver(store)
    assert [r["valid"] for r in receiver.received] == [True, True]
    body, headers = receiver.received[-1]["raw"]
    with pytest.raises(WebhookVerificationError):
        Webhook(webhook["secret"]).verify(body, headers)  # no longer signed with the old secret


def test_delete_removes_the_endpoint_and_stops_its_deliveries(client, store, db, receiver):
    webhook = register(client, receiver, events=["alert.created"])
    assert client.delete(f"/api/webhooks/{webhook['id']}", headers=ACME).get_json() == {
        "success": True,
        "deleted": webhook["id"],
    }
    assert client.delete(f"/api/webhooks/{webhook['id']}", headers=ACME).status_code == 404
    assert client.get("/api/webhooks", headers=ACME).get_json()["webhooks"] == []
    silent_lead(store, db)
    assert deliver(store)["claimed"] == 0 and receiver.received == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://example.com/x", "events": ["alert.created"]}, "url"),
        ({"url": "http://example.com/hooks", "events": ["alert.created"]}, "url"),  # http outside loopback
        ({"url": "https://example.com/hooks", "events": ["alert.deleted"]}, "events.0"),
        ({"url": "https://example.com/hooks", "events": []}, "events"),
        ({"url": "https://example.com/hooks", "events": ["alert.created", "alert.created"]}, "events"),
        ({"url": "https://example.com/hooks", "events": ["alert.created"], "secret": "whsec_x"}, "secret"),
    ],
    ids=["not-http", "plain-http", "unknown-event", "no-event", "repeated-event", "secret-not-settable"],
)
def test_an_invalid_endpoint_is_refused_naming_the_field_and_nothing_is_written(client, db, body, field):
    response = client.post("/api/webhooks", headers=ACME, json=body)
    assert response.status_code == 422
    assert field in [d["field"] for d in response.get_json()["error"]["details"]]
    assert db.execute("select count(*) from webhook_endpoints").fetchone()[0] == 0


def test_delivery_log_shows_attempts_and_next_retry_and_redeliver_resends_with_the_same_id(client, store, db, receiver):
    webhook = register(client, receiver, events=["alert.created"])
    receiver.answers = [503]
    silent_lead(store, db)
    t0 = later(minutes=1)
    deliver(store, now=t0)
    log_url = f"/api/webhooks/{webhook['id']}/deliveries"
    [entry] = client.get(log_url, headers=ACME).get_json()["deliveries"]
    assert entry["status"] == "pending" and entry["attempts"] == 1 and entry["last_status"] == 503
    assert entry["event_type"] == "alert.created" and entry["next_attempt_at"] is not None
    assert [a["status"] for a in entry["attempt_log"]] == [503]
    deliver(store, now=t0 + timedelta(seconds=5))
    [entry] = client.get(log_url, headers=ACME).get_json()["deliveries"]
    assert entry["status"] == "delivered" and entry["next_attempt_at"] is None and entry["attempts"] == 2

    again = client.post(f"{log_url}/{entry['id']}/redeliver", headers=ACME)
    assert again.status_code == 200 and again.get_json()["delivery"]["status"] == "pending"
    assert deliver(store)["delivered"] == 1
    assert receiver.ids() == [entry["id"]] * 3
    missing = client.post(f"{log_url}/00000000-0000-0000-0000-000000000000/redeliver", headers=ACME)
    assert missing.status_code == 404
    assert client.get("/api/webhooks/not-a-uuid/deliveries", headers=ACME).status_code == 404


def test_the_deliver_route_sends_what_is_due(client, store, db, receiver):
    register(client, receiver, events=["alert.created"])
    silent_lead(store, db)
    response = client.post("/api/notifications/deliver?batch=10")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["claimed"] == 1 and body["delivered"] == 1 and "duration_ms" in body
    assert len(receiver.received) == 1


# Who may do what ---------------------------------------------------------------------------------


@pytest.fixture
def verified(store):
    return create_app(Api(store, VerifiedAccess(SETTINGS))).test_client()


def test_only_admins_manage_webhooks_and_only_the_scheduler_or_service_delivers(verified, store, db):
    admin, agent = bearer(token(role="admin")), bearer(token(role="agent", sub=AGENT))
    manager = bearer(token(role="manager"))
    body = {"url": "https://hooks.example.com/leadwatch", "events": ["alert.created"]}
    assert verified.post("/api/webhooks", headers=agent, json=body).status_code == 403
    assert verified.post("/api/webhooks", headers=manager, json=body).status_code == 403
    assert verified.get("/api/webhooks", headers=agent).status_code == 403
    created = verified.post("/api/webhooks", headers=admin, json=body)
    assert created.status_code == 201, created.get_json()
    webhook_id = created.get_json()["webhook"]["id"]
    other_admin = bearer(token(role="admin", tenant="other"))
    assert verified.get("/api/webhooks", headers=other_admin).get_json()["webhooks"] == []
    assert verified.delete(f"/api/webhooks/{webhook_id}", headers=other_admin).status_code == 404
    assert verified.post("/api/notifications/deliver", headers=admin).status_code == 403
    loopback = {"url": "http://127.0.0.1:9/hooks", "events": ["alert.created"]}
    assert verified.post("/api/webhooks", headers=admin, json=loopback).status_code == 422, "http only in dev"


def test_signed_in_users_can_never_read_a_secret(client, store, db, receiver):
    register(client, receiver, events=["alert.created"])
    with db.transaction():
        db.execute("set local role authenticated")
        db.execute(
            "select set_config('request.jwt.claims', %s, true)",
            [json.dumps({"role": "authenticated", "sub": "x", "app_metadata": {"tenant_id": "acme", "role": "admin"}})],
        )
        assert db.execute("select count(*) from webhook_endpoints").fetchone()[0] == 1
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            db.execute("select secret from webhook_endpoints")


def test_leadwatch_deliver_sends_what_is_due_from_the_command_line(client, postgres_store, db, receiver, database_url):
    import os
    import subprocess
    import sys

    register(client, receiver, events=["alert.created"])
    silent_lead(postgres_store, db)
    env = {k: v for k, v in os.environ.items() if k not in ("SUPABASE_URL", "SUPABASE_SERVICE_KEY")}
    ran = subprocess.run(
        [sys.executable, "-m", "leadwatch.cli", "deliver", "--batch", "10"],
        capture_output=True,
        text=True,
        env={**env, "DATABASE_URL": database_url, **LOOPBACK_ALLOWED},
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["delivered"] == 1
    assert len(receiver.received) == 1 and receiver.received[0]["valid"]


# Enabling an endpoint again ----------------------------------------------------------------------


def test_an_endpoint_disabled_by_410_is_enabled_again_and_receives_the_next_events(client, store, db, receiver):
    webhook = register(client, receiver, events=["alert.created", "alert.resolved"])
    receiver.always = 410
    alert_id = silent_lead(store, db)
    assert deliver(store)["disabled"] == 1
    receiver.always = None  # the receiver is back

    enabled = client.patch(f"/api/webhooks/{webhook['id']}", headers=ACME, json={"enabled": True})
    assert enabled.status_code == 200, enabled.get_json()
    shown = enabled.get_json()["webhook"]
    assert shown["enabled"] is True and shown["disabled_reason"] is None and "secret" not in shown
    client.post(f"/api/alerts/{alert_id}/resolve", headers=ACME)
    assert deliver(store, now=later(minutes=1)) == {
        "claimed": 1,
        "delivered": 1,
        "retrying": 0,
        "failed": 0,
        "disabled": 0,
    }
    assert [r["type"] for r in receiver.received] == ["alert.created", "alert.resolved"]
    assert delivery_statuses(db) == ["delivered", "failed"], "the 410'd delivery stays failed"

    disabled = client.patch(f"/api/webhooks/{webhook['id']}", headers=ACME, json={"enabled": False})
    assert disabled.get_json()["webhook"]["disabled_reason"] == "disabled by an admin"
    silent_lead(store, db, lead="L2")
    assert deliver(store, now=later(minutes=2))["claimed"] == 0


def delivery_statuses(db) -> list[str]:
    return [r[0] for r in db.execute("select status from webhook_deliveries order by status")]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [({}, 422, "enabled"), ({"enabled": None}, 422, "enabled"), ({"enabled": True, "url": "x"}, 422, "url")],
    ids=["no-enabled", "null-enabled", "url-not-patchable"],
)
def test_patching_an_endpoint_takes_only_enabled(client, db, receiver, body, status, field):
    webhook = register(client, receiver, events=["alert.created"])
    response = client.patch(f"/api/webhooks/{webhook['id']}", headers=ACME, json=body)
    assert response.status_code == status
    assert field in [d["field"] for d in response.get_json()["error"]["details"]]
    assert (
        client.patch(
            "/api/webhooks/00000000-0000-0000-0000-000000000000", headers=ACME, json={"enabled": True}
        ).status_code
        == 404
    )


def test_only_admins_enable_an_endpoint(verified, store, db):
    admin, manager = bearer(token(role="admin")), bearer(token(role="manager"))
    body = {"url": "https://hooks.example.com/leadwatch", "events": ["alert.created"]}
    webhook_id = verified.post("/api/webhooks", headers=admin, json=body).get_json()["webhook"]["id"]
    assert verified.patch(f"/api/webhooks/{webhook_id}", headers=manager, json={"enabled": False}).status_code == 403
    other_admin = bearer(token(role="admin", tenant="other"))
    assert (
        verified.patch(f"/api/webhooks/{webhook_id}", headers=other_admin, json={"enabled": False}).status_code == 404
    )
    assert db.execute("select enabled from webhook_endpoints").fetchone()[0] is True


# Pruning the outbox ------------------------------------------------------------------------------


def test_retention_prunes_what_was_delivered_sent_or_digested_over_30_days_ago_and_keeps_the_rest(
    client, store, db, receiver
):
    many_deliveries(client, db, store, receiver, 4)
    db.execute(
        "update webhook_deliveries d set status = x.status, delivered_at = x.at"
        " from (select id, row_number() over (order by id) as n from webhook_deliveries) r,"
        " (values (1, 'delivered', %s::timestamptz), (2, 'delivered', %s), (3, 'failed', %s), (4, 'pending', %s))"
        " x (n, status, at)"
        " where d.id = r.id and r.n = x.n",
        [ago(days=31), ago(days=29), ago(days=60), ago(days=40)],
    )
    db.execute(
        "insert into member_pushes (tenant_id, user_id, kind, phone, text, status, next_attempt_at, sent_at)"
        " values ('acme', 'u1', 'digest', '+33611111111', 'old', 'sent', now(), now() - interval '31 days'),"
        "        ('acme', 'u1', 'digest', '+33611111111', 'recent', 'sent', now(), now() - interval '1 day'),"
        "        ('acme', 'u1', 'digest', '+33611111111', 'held', 'pending', now() - interval '40 days', null)"
    )
    db.execute(
        "insert into member_digests (tenant_id, user_id, day, digest, created_at)"
        " values ('acme', 'u1', current_date - 31, null, now() - interval '31 days'),"
        "        ('acme', 'u1', current_date, null, now())"
    )
    first = client.post("/api/retention/run?batch=1").get_json()
    assert first["notifications"] == {"deliveries": 1, "pushes": 1, "digests": 1} and first["more"] is True
    second = client.post("/api/retention/run").get_json()
    assert second["notifications"] == {"deliveries": 0, "pushes": 0, "digests": 0} and second["more"] is False
    assert delivery_statuses(db) == ["delivered", "failed", "pending"], "only the one delivered 31 days ago went"
    assert [r[0] for r in db.execute("select text from member_pushes order by text")] == ["held", "recent"]
    assert db.execute("select count(*) from member_digests").fetchone()[0] == 1, "today's digest is kept"
