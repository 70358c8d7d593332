"""Outgoing webhooks: the admins' routes for endpoints and their delivery log, and the deliverer.

The database writes a delivery row (the outbox) in the transaction that records each alert event
(supabase/migrations/20261123000600_webhooks.sql). `deliver` drains it: it claims due deliveries
in batches under a lease, posts each one signed with the Standard Webhooks scheme (the
`standardwebhooks` library: `webhook-id` — the same on every attempt —, `webhook-timestamp`,
`webhook-signature`), and records the outcomes, which the database turns into delivered, retried
later, failed, or (410 Gone) a disabled endpoint. It connects only where the egress rule allows
(egress.py: public addresses and the operator's networks, checked at each connection); a refused
destination fails its delivery at once, without retries.
"""

from __future__ import annotations

import base64
import json
import math
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from flask import Request

from .cursor import is_uuid
from .egress import DestinationRefused, Egress
from .errors import NotFound
from .identity import Caller

if TYPE_CHECKING:
    import httpx

    from .api import Api
    from .greenapi import GreenApi
    from .store import Store

LEASE_SECONDS = 120  # a claimed delivery is due again this long after a deliverer took it and vanished
SEND_TIMEOUT = 10.0  # seconds a receiver has to answer
BUDGET_SECONDS = 50.0  # one scheduled run (every minute) stops claiming after this long
USER_AGENT = "leadwatch-webhooks/1"


def new_secret() -> str:
    """A fresh signing secret: 'whsec_' and 24 random bytes in base64, as Standard Webhooks has them."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


# Handlers ---------------------------------------------------------------------------------------


def create_webhook(request: Request, caller: Caller, api: Api) -> tuple[int, dict]:
    from .models import parse
    from .notify_models import WebhookIn

    tenant = caller.require_tenant()
    body = parse(WebhookIn, _json_object(request))
    body.check_scheme(allow_loopback_http=_dev_server(api))
    _egress(api).check_url(body.url)
    result = api.store.create_webhook(
        tenant, body.url, list(body.events), new_secret(), body.enabled, caller.actor, caller.viewer
    )
    return 201, {"success": True, **result}


def list_webhooks(request: Request, caller: Caller, api: Api) -> tuple[int, dict]:
    tenant = caller.require_tenant()
    return 200, {"success": True, **api.store.list_webhooks(tenant, caller.viewer)}


def delete_webhook(request: Request, caller: Caller, api: Api, webhook_id: str) -> tuple[int, dict]:
    tenant = caller.require_tenant()
    return 200, {"success": True, **api.store.delete_webhook(tenant, _uuid(webhook_id, "id"), caller.viewer)}


def rotate_webhook(request: Request, caller: Caller, api: Api, webhook_id: str) -> tuple[int, dict]:
    tenant = caller.require_tenant()
    result = api.store.rotate_webhook_secret(tenant, _uuid(webhook_id, "id"), new_secret(), caller.viewer)
    return 200, {"success": True, **result}


def patch_webhook(request: Request, caller: Caller, api: Api, webhook_id: str) -> tuple[int, dict]:
    from .models import parse
    from .notify_models import WebhookPatch

    tenant = caller.require_tenant()
    body = parse(WebhookPatch, _json_object(request))
    result = api.store.set_webhook_enabled(tenant, _uuid(webhook_id, "id"), body.enabled, caller.viewer)
    return 200, {"success": True, **result}


def list_webhook_deliveries(request: Request, caller: Caller, api: Api, webhook_id: str) -> tuple[int, dict]:
    from .models import parse
    from .notify_models import DeliveriesQuery

    tenant = caller.require_tenant()
    query = parse(DeliveriesQuery, request.args.to_dict())
    result = api.store.list_webhook_deliveries(tenant, _uuid(webhook_id, "id"), query.limit, caller.viewer)
    return 200, {"success": True, **result}


def redeliver_webhook(
    request: Request, caller: Caller, api: Api, webhook_id: str, delivery_id: str
) -> tuple[int, dict]:
    tenant = caller.require_tenant()
    result = api.store.redeliver_webhook(
        tenant, _uuid(webhook_id, "id"), _uuid(delivery_id, "deliveryId"), caller.viewer
    )
    return 200, {"success": True, **result}


def deliver_notifications(request: Request, caller: Caller, api: Api) -> tuple[int, dict]:
    """Write the morning digests come due, then send what is due (scheduler or service): one run,
    within BUDGET_SECONDS."""
    from .models import parse
    from .notify_models import DeliverQuery

    query = parse(DeliverQuery, request.args.to_dict())
    started = time.perf_counter()
    result = run_notifications(api.store, api.greenapi, batch=query.batch, egress=_egress(api))
    return 200, {"success": True, **result, "duration_ms": round((time.perf_counter() - started) * 1000, 1)}


# The deliverer ----------------------------------------------------------------------------------


def run_notifications(
    store: Store,
    greenapi: GreenApi,
    *,
    batch: int = 100,
    budget_seconds: float = BUDGET_SECONDS,
    egress: Egress | None = None,
) -> dict[str, Any]:
    """One run of the every-minute deliverer, as the scheduled route and `leadwatch deliver` both do
    it: write the morning digests come due, send the webhook deliveries that are due (within the
    budget), then the WhatsApp pushes. {claimed, ..., pushes: {...}, digests: {...}}."""
    digests = store.write_daily_digests()
    result = deliver(store, batch=batch, budget_seconds=budget_seconds, egress=egress)
    return {**result, "pushes": push_whatsapp(store, greenapi), "digests": digests}


def deliver(
    store: Store,
    *,
    now: datetime | None = None,
    batch: int = 100,
    lease_seconds: int = LEASE_SECONDS,
    timeout: float = SEND_TIMEOUT,
    workers: int = 8,
    max_batches: int | None = None,
    budget_seconds: float = BUDGET_SECONDS,
    egress: Egress | None = None,
) -> dict[str, int]:
    """Claim due deliveries batch after batch (due by `now`, default the database's now), send them
    where `egress` allows (default: public addresses only), record the outcomes; stop when nothing is
    due, after `max_batches`, or past the time budget. Answers {claimed, delivered, retrying, failed, disabled}."""
    import httpx

    from .egress_http import guarded_client

    totals = {"claimed": 0, "delivered": 0, "retrying": 0, "failed": 0, "disabled": 0}
    # The lease must outlast the slowest batch (every receiver timing out), or another deliverer
    # could take a row this one is still sending.
    lease_seconds = max(lease_seconds, math.ceil(batch / workers) * math.ceil(timeout) + 30)
    started = time.monotonic()
    batches = 0
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    with (
        guarded_client(egress or Egress(), timeout=timeout, limits=limits) as http,
        ThreadPoolExecutor(max_workers=workers) as pool,
    ):
        while True:
            claimed = store.claim_webhook_deliveries(now, batch, lease_seconds)
            if not claimed:
                break
            outcomes = list(pool.map(lambda delivery: send_delivery(http, delivery), claimed))
            recorded = store.record_webhook_attempts(outcomes, now)
            totals["claimed"] += len(claimed)
            for key in ("delivered", "retrying", "failed", "disabled"):
                totals[key] += recorded[key]
            batches += 1
            if len(claimed) < batch or batches == max_batches or time.monotonic() - started > budget_seconds:
                break
    return totals


def push_whatsapp(
    store: Store,
    greenapi: GreenApi,
    *,
    now: datetime | None = None,
    batch: int = 10,
    max_batches: int = 10,
    lease_seconds: int = 900,
) -> dict[str, int]:
    """Send the members' due WhatsApp pushes (owner and overdue pushes, held through quiet hours)
    through their tenant's Green-API instance; failures are retried on the webhooks' schedule.
    Sent one after another, each with Green-API's own bounded retries: small batches under a long
    lease (10 pushes × ~80 s at worst < 15 min). Answers {claimed, sent, retrying, failed}."""
    from .greenapi import WhatsAppError

    totals = {"claimed": 0, "sent": 0, "retrying": 0, "failed": 0}
    for _ in range(max_batches):
        claimed = store.claim_member_pushes(now, batch, lease_seconds)
        if not claimed:
            break
        outcomes = []
        for push in claimed:
            error = None
            try:
                instance = greenapi.instance_for(push["tenant_id"])
                greenapi.send_message(instance, push["phone"].lstrip("+") + "@c.us", push["text"])
            except WhatsAppError as exc:
                error = exc.code
            outcomes.append(
                {"tenant_id": push["tenant_id"], "id": push["id"], "attempt": push["attempt"], "error": error}
            )
        recorded = store.record_member_pushes(outcomes, now)
        totals["claimed"] += len(claimed)
        for key in ("sent", "retrying", "failed"):
            totals[key] += recorded[key]
        if len(claimed) < batch:
            break
    return totals


def send_delivery(http: httpx.Client, delivery: dict[str, Any]) -> dict[str, Any]:
    """POST one claimed delivery, signed; its outcome {tenant_id, id, attempt, status, error} (never raises),
    with `final` when the destination is refused (the database fails it without retrying). A redirect
    is not followed: its status is recorded, retried like any other."""
    import httpx
    from standardwebhooks.webhooks import Webhook

    body = json.dumps(delivery["payload"], ensure_ascii=False, separators=(",", ":"))
    sent_at = datetime.now(UTC)  # the receiver checks this against its clock: always the real time
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": delivery["id"],
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": Webhook(delivery["secret"]).sign(delivery["id"], sent_at, body),
    }
    outcome: dict[str, Any] = {
        "tenant_id": delivery["tenant_id"],
        "id": delivery["id"],
        "attempt": delivery["attempt"],
        "status": None,
        "error": None,
    }
    try:
        response = http.post(delivery["url"], content=body.encode(), headers=headers)
        outcome["status"] = response.status_code
        if response.is_redirect:
            outcome["error"] = "redirect not followed"
    except DestinationRefused as exc:
        outcome["error"] = f"destination refused: {exc}"
        outcome["final"] = True
    except httpx.TimeoutException:
        outcome["error"] = "timeout"
    except httpx.ConnectError:
        outcome["error"] = "refused"
    except httpx.HTTPError as exc:
        outcome["error"] = type(exc).__name__
    return outcome


# Plumbing ---------------------------------------------------------------------------------------


def _dev_server(api: Api) -> bool:
    """Does the API run in the dev server's open mode (where http to a loopback receiver is allowed)?"""
    return bool(getattr(api._access, "open", False))


def _egress(api: Api) -> Egress:
    """Where this API's webhooks may go: the operator's rule, plus loopback in the dev server's open mode."""
    return api.egress.with_loopback() if _dev_server(api) else api.egress


def _uuid(value: str, field: str) -> str:
    """A path id: a UUID in canonical form (as the API issues them), else not found."""
    if not is_uuid(value):
        raise NotFound(f"{'delivery' if field == 'deliveryId' else 'webhook'} not found", {"field": field})
    return value


def _json_object(request: Request) -> dict[str, Any]:
    from .api import _json_object

    return _json_object(request)
