"""The `webhooks` function: the admins' routes for outgoing webhook endpoints and their delivery log.
The deliverer that sends them is jobs/notifications.py."""

from __future__ import annotations

import base64
import secrets
from typing import TYPE_CHECKING, Any

from flask import Request

from ..errors import NotFound
from ..http.inputs import json_object
from ..http.routes import BODY_ERRORS, USER_ERRORS, endpoint
from ..stores.cursor import is_uuid

if TYPE_CHECKING:
    from ..http.identity import Caller
    from ..http.routes import Services

# Request models (pydantic) are imported at first use, not at the cold start of every function.


def new_secret() -> str:
    """A fresh signing secret: 'whsec_' and 24 random bytes in base64, as Standard Webhooks has them."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@endpoint("GET", "/api/webhooks", "The tenant's webhook endpoints, without secrets (admins)", "Webhooks")
def list_webhooks(request: Request, caller: Caller, services: Services) -> tuple[int, dict[str, Any]]:
    tenant = caller.require_tenant()
    return 200, {"success": True, **services.store.list_webhooks(tenant, caller.viewer)}


@endpoint(
    "POST",
    "/api/webhooks",
    "Register a webhook endpoint (admins); its whsec_ secret is shown this once",
    "WebhookOne",
    body="WebhookIn",
    errors=BODY_ERRORS,
    status=201,
)
def create_webhook(request: Request, caller: Caller, services: Services) -> tuple[int, dict[str, Any]]:
    from ..models.notify import WebhookIn
    from ..models.requests import parse

    tenant = caller.require_tenant()
    body = parse(WebhookIn, json_object(request))
    body.check_scheme(allow_loopback_http=services.open)  # the dev server may post to a local receiver
    services.egress.check_url(body.url)  # a public address, or the operator's networks (422 naming url)
    result = services.store.create_webhook(
        tenant, body.url, list(body.events), new_secret(), body.enabled, caller.actor, caller.viewer
    )
    return 201, {"success": True, **result}


@endpoint(
    "DELETE",
    "/api/webhooks/<webhook_id>",
    "Remove a webhook endpoint and its pending deliveries",
    "WebhookDeleted",
    errors=(*USER_ERRORS, 404),
)
def delete_webhook(request: Request, caller: Caller, services: Services, webhook_id: str) -> tuple[int, dict[str, Any]]:
    tenant = caller.require_tenant()
    return 200, {"success": True, **services.store.delete_webhook(tenant, _uuid(webhook_id, "id"), caller.viewer)}


@endpoint(
    "PATCH",
    "/api/webhooks/<webhook_id>",
    "Enable an endpoint again (after a 410 Gone disabled it), or disable it (admins)",
    "WebhookOne",
    body="WebhookPatch",
    errors=(*BODY_ERRORS, 404),
)
def patch_webhook(request: Request, caller: Caller, services: Services, webhook_id: str) -> tuple[int, dict[str, Any]]:
    from ..models.notify import WebhookPatch
    from ..models.requests import parse

    tenant = caller.require_tenant()
    body = parse(WebhookPatch, json_object(request))
    result = services.store.set_webhook_enabled(tenant, _uuid(webhook_id, "id"), body.enabled, caller.viewer)
    return 200, {"success": True, **result}


@endpoint(
    "POST",
    "/api/webhooks/<webhook_id>/rotate",
    "A new signing secret for an endpoint, shown this once",
    "WebhookOne",
    errors=(*USER_ERRORS, 404),
)
def rotate_webhook(request: Request, caller: Caller, services: Services, webhook_id: str) -> tuple[int, dict[str, Any]]:
    tenant = caller.require_tenant()
    result = services.store.rotate_webhook_secret(tenant, _uuid(webhook_id, "id"), new_secret(), caller.viewer)
    return 200, {"success": True, **result}


@endpoint(
    "GET",
    "/api/webhooks/<webhook_id>/deliveries",
    "An endpoint's newest deliveries: attempts, status codes, next retry",
    "Deliveries",
    query="DeliveriesQuery",
    errors=(*USER_ERRORS, 404),
)
def list_webhook_deliveries(
    request: Request, caller: Caller, services: Services, webhook_id: str
) -> tuple[int, dict[str, Any]]:
    from ..models.notify import DeliveriesQuery
    from ..models.requests import parse

    tenant = caller.require_tenant()
    query = parse(DeliveriesQuery, request.args.to_dict())
    result = services.store.list_webhook_deliveries(tenant, _uuid(webhook_id, "id"), query.limit, caller.viewer)
    return 200, {"success": True, **result}


@endpoint(
    "POST",
    "/api/webhooks/<webhook_id>/deliveries/<delivery_id>/redeliver",
    "Send a delivery again (same webhook-id)",
    "Redelivered",
    errors=(*USER_ERRORS, 404, 409),
)
def redeliver_webhook(
    request: Request, caller: Caller, services: Services, webhook_id: str, delivery_id: str
) -> tuple[int, dict[str, Any]]:
    tenant = caller.require_tenant()
    result = services.store.redeliver_webhook(
        tenant, _uuid(webhook_id, "id"), _uuid(delivery_id, "deliveryId"), caller.viewer
    )
    return 200, {"success": True, **result}


def _uuid(value: str, field: str) -> str:
    """A path id: a UUID in canonical form (as the API issues them), else not found."""
    if not is_uuid(value):
        raise NotFound(f"{'delivery' if field == 'deliveryId' else 'webhook'} not found", {"field": field})
    return value
