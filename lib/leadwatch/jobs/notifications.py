"""The notifications' deliverer: outgoing webhooks, the members' WhatsApp pushes, the morning digests.

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

import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..egress import DestinationRefused, Egress

if TYPE_CHECKING:
    import httpx

    from ..integrations.greenapi import GreenApi
    from ..stores.store import Store

LEASE_SECONDS = 120  # a claimed delivery is due again this long after a deliverer took it and vanished
SEND_TIMEOUT = 10.0  # seconds a receiver has to answer
BUDGET_SECONDS = 50.0  # one scheduled run (every minute) stops claiming after this long
USER_AGENT = "leadwatch-webhooks/1"


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

    from ..egress_http import guarded_client

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
    from ..integrations.greenapi import WhatsAppError

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
