"""The `whatsapp` function: send a WhatsApp message to a lead (and log it), and the Green-API
notifications that could not be read."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Request

from ..http.inputs import json_object
from ..http.routes import SEND_ERRORS, endpoint
from ..integrations.greenapi import WhatsAppError, external_id

if TYPE_CHECKING:
    from ..config import GreenApiInstance
    from ..devtools.outbox import DevOutbox
    from ..http.identity import Caller
    from ..http.routes import Services
    from ..integrations.greenapi import GreenApi

# Request models (pydantic) are imported at first use, not at the cold start of every function.


@endpoint(
    "POST",
    "/api/whatsapp/send",
    "Send a WhatsApp message to a lead and log it",
    "WhatsAppSent",
    body="SendIn",
    errors=SEND_ERRORS,
)
def send_whatsapp(request: Request, caller: Caller, services: Services) -> tuple[int, dict[str, Any]]:
    from ..models.requests import SendIn, parse

    tenant = caller.require_tenant()
    body = parse(SendIn, json_object(request))
    prepared = services.store.prepare_whatsapp(tenant, lead_id=body.leadId, viewer=caller.viewer)
    return 200, send_and_log(services, tenant, caller, prepared["lead"], body.message)


@endpoint(
    "GET",
    "/api/greenapi/rejected",
    "Green-API notifications that could not be read (dead letters), newest first",
    "RejectedList",
    query="RejectedQuery",
)
def list_greenapi_rejected(request: Request, caller: Caller, services: Services) -> tuple[int, dict[str, Any]]:
    """The tenant's Green-API notifications that could not be read (admins, managers, the service)."""
    from ..models.requests import RejectedQuery, parse

    tenant = caller.require_tenant()
    query = parse(RejectedQuery, request.args.to_dict())
    return 200, {"success": True, **services.store.list_greenapi_rejected(tenant, query, caller.viewer)}


def send_and_log(
    services: Services, tenant: str, caller: Caller, lead: dict[str, Any], text: str, alert_type: str | None = None
) -> dict[str, Any]:
    """Send `text` to the lead on WhatsApp and log it: as sent (answering what it answers), or
    as a failed outbound that answers nothing, before reporting Green-API's refusal."""
    from ..models.requests import ActivityIn

    store = services.store
    sender, instance = whatsapp_sender(services, tenant)
    chat_id = lead["phone"].lstrip("+") + "@c.us"
    provider = "green-api" if sender is services.greenapi else "dev-outbox"
    meta = {"provider": provider, "instanceId": instance.id, "alertType": alert_type}
    outbound = {"leadId": lead["lead_id"], "channel": "whatsapp", "direction": "out", "messageSnippet": text}
    try:
        id_message = sender.send_message(instance, chat_id, text)
    except WhatsAppError as exc:
        failed = ActivityIn(**outbound, status="failed", meta={**meta, "error": exc.code})
        store.log_activity(tenant, failed, caller.viewer)
        raise
    sent = ActivityIn(**outbound, status="sent", externalId=external_id(chat_id, id_message), meta=meta)
    logged = store.log_activity(tenant, sent, caller.viewer)
    return {
        "success": True,
        "sent": {"chatId": chat_id, "idMessage": id_message, "message": text},
        "activity": logged["activity"],
        "alerts": logged["alerts"],
    }


def whatsapp_sender(services: Services, tenant: str) -> tuple[GreenApi | DevOutbox, GreenApiInstance]:
    """Green-API and the tenant's instance; without one, the dev outbox when there is one (`leadwatch dev`)."""
    try:
        return services.greenapi, services.greenapi.instance_for(tenant)
    except WhatsAppError:
        if services.outbox is None:
            raise
        return services.outbox, services.outbox.instance
