"""The `greenapi_webhook` function: Green-API's notifications (incoming messages, delivery statuses)."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from flask import Request

from ..errors import LeadwatchError, Unavailable
from ..http.inputs import GREENAPI_MAX_BODY_BYTES, greenapi_body
from ..http.routes import endpoint
from ..integrations.greenapi import DeliveryStatus, Ignored, Unreadable, read_notification

if TYPE_CHECKING:
    from ..http.routes import Services

log = logging.getLogger("leadwatch.http")


@endpoint(
    "POST",
    "/webhooks/greenapi",
    "Green-API webhook (incoming messages and delivery statuses)",
    "WebhookAck",
    body="GreenApiNotification",
    security="webhook",
    errors=(400, 401, 413, 503),
    tag="whatsapp",
)
def greenapi_webhook(request: Request, caller: None, services: Services) -> tuple[int, dict[str, Any]]:
    """A Green-API notification: 200 once stored, deliberately ignored, or kept as unreadable (a dead
    letter), so Green-API stops resending and sends the next ones; 5xx only when it could not be
    stored, so that Green-API resends it."""
    from ..safejson import clean, problem

    instance = services.greenapi.verify_webhook(request)
    raw, cut = greenapi_body(request)
    if cut:
        return _reject_notification(
            services, instance, f"the body is over {GREENAPI_MAX_BODY_BYTES // 1024} KiB; kept cut", raw
        )
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError):
        return _reject_notification(services, instance, "the body is not valid JSON", raw)
    # a payload that is not an object, or not a sound one, is kept as the bytes received
    storable = None if not isinstance(payload, dict) or problem(payload) else payload
    try:
        if not isinstance(payload, dict):
            raise Unreadable("the body must be a JSON object")
        return _store_notification(services, instance, read_notification(clean(payload), instance))
    except Unavailable:
        raise
    except LeadwatchError as exc:
        if exc.status >= 500:
            raise
        reason = exc.message
    except Exception:  # a defect: logged with its traceback, and the notification kept, not lost
        log.exception("unhandled error reading a Green-API notification", extra={"instance": instance.id})
        reason = "internal error"
    return _reject_notification(services, instance, reason, raw, storable)


def _store_notification(services: Services, instance: Any, event: Any) -> tuple[int, dict[str, Any]]:
    store, espo = services.store, services.espo
    if isinstance(event, Ignored):
        log.info(json.dumps({"greenapi": "ignored", "reason": event.reason, "instance": instance.id}))
        return 200, {"success": True, "ignored": event.reason}
    if isinstance(event, DeliveryStatus):
        result = store.set_activity_status(instance.tenant, "whatsapp", event.external_id, event.status)
        return 200, {"success": True, "status": event.status, **result}
    result = store.log_whatsapp(instance.tenant, event, create_lead=espo is None or event.phone is None)
    if result.get("unknown_phone") and espo is not None and event.phone is not None:
        lead = espo.find_lead(event.phone)
        if lead is not None:
            store.upsert_leads(instance.tenant, [lead])
        result = store.log_whatsapp(instance.tenant, event)
    return 200, {"success": True, **result}


def _reject_notification(
    services: Services, instance: Any, reason: str, raw: bytes, payload: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    """Keep an unreadable notification whole (its JSON, else its bytes) and answer 200."""
    result = services.store.reject_greenapi(
        instance.tenant, instance.id, reason, payload=payload, raw=None if payload is not None else raw
    )
    log.warning(
        json.dumps({"greenapi": "rejected", "reason": reason, "instance": instance.id, "tenant": instance.tenant})
    )
    return 200, {"success": True, "rejected": {**result, "reason": reason}}
