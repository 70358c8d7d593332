"""The `leads` function: create or update leads, a lead's timeline and alerts, and a lead's personal data
on request (GDPR): erase it everywhere, export it whole, and list the erasures."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Request

from ..errors import ValidationFailed
from ..http.inputs import json_body
from ..http.routes import BODY_ERRORS, USER_ERRORS, endpoint

if TYPE_CHECKING:
    from ..http.identity import Caller
    from ..http.routes import Services

# Request models (pydantic) are imported at first use, not at the cold start of every function.

LEAD_ID_MAX = 200


@endpoint("POST", "/api/leads", "Create or update leads", "LeadsUpserted", body="LeadsBody", errors=BODY_ERRORS)
def upsert_leads(request: Request, caller: Caller, services: Services) -> tuple[int, dict[str, Any]]:
    from ..models.requests import LeadsIn, parse

    tenant = caller.require_tenant()
    body = json_body(request)
    if isinstance(body, dict) and isinstance(body.get("leads"), list) and len(body) == 1:
        body = body["leads"]
    leads = parse(LeadsIn, {"leads": body if isinstance(body, list) else [body]})
    return 200, {"success": True, **services.store.upsert_leads(tenant, leads.leads, caller.viewer)}


@endpoint(
    "GET",
    "/api/leads/<lead_id>/activities",
    "A lead's timeline, newest first",
    "Timeline",
    query="TimelineQuery",
    errors=(*USER_ERRORS, 404),
)
def lead_activities(request: Request, caller: Caller, services: Services, lead_id: str) -> tuple[int, dict[str, Any]]:
    from ..models.requests import TimelineQuery, parse

    tenant = caller.require_tenant()
    query = parse(TimelineQuery, request.args.to_dict())
    return 200, {"success": True, **services.store.list_lead_activities(tenant, lead_id, query, caller.viewer)}


@endpoint(
    "GET",
    "/api/leads/<lead_id>/alerts",
    "Every alert of a lead, active and past, newest first",
    "LeadAlerts",
    query="LeadAlertsQuery",
    errors=(*USER_ERRORS, 404),
)
def lead_alerts(request: Request, caller: Caller, services: Services, lead_id: str) -> tuple[int, dict[str, Any]]:
    from ..models.desk import LeadAlertsQuery
    from ..models.requests import parse

    tenant = caller.require_tenant()
    query = parse(LeadAlertsQuery, request.args.to_dict())
    return 200, {"success": True, **services.store.list_lead_alerts(tenant, lead_id, query, caller.viewer)}


# A lead's personal data: admins of the tenant, platform staff and the service only (the database checks
# the role first).


@endpoint(
    "DELETE",
    "/api/leads/<lead_id>",
    "Erase a lead and everything held about it (admins, platform staff, the service)",
    "LeadErased",
    errors=(*USER_ERRORS, 404),
    description="GDPR article 17, in one transaction: the directory row, state, activities, alerts and their "
    "history, the lead's place in the counts and analytics, the webhook deliveries and WhatsApp pushes naming "
    "it, its lines in the morning digests and the Green-API dead letters from its phone. Answers the rows removed "
    "per table and keeps only a proof (GET /api/erasures); a `lead.erased` event carrying the lead's hash is "
    "queued to every webhook endpoint of the tenant. A lead the tenant holds nothing about (never known, another "
    "tenant's, or already erased) is a 404: repeating the call changes nothing more. Agents and managers: 403.",
)
def erase_lead(request: Request, caller: Caller, services: Services, lead_id: str) -> tuple[int, dict[str, Any]]:
    """Erase everything the tenant holds about the lead, in one transaction; answers the erasure's proof."""
    tenant = caller.require_tenant()
    result = services.store.erase_lead(tenant, checked_lead_id(lead_id), caller.actor, caller.viewer)
    return 200, {"success": True, **result}


@endpoint(
    "GET",
    "/api/leads/<lead_id>/export",
    "Everything held about a lead, as one JSON document (admins, platform staff, the service)",
    "LeadExport",
    errors=(*USER_ERRORS, 404),
    description="GDPR articles 15 and 20: the directory row, state, activities, alerts with their history, "
    "and the Green-API dead letters from the lead's number.",
)
def export_lead(request: Request, caller: Caller, services: Services, lead_id: str) -> tuple[int, dict[str, Any]]:
    """Everything the tenant holds about the lead, as one JSON document."""
    tenant = caller.require_tenant()
    document = services.store.export_lead(tenant, checked_lead_id(lead_id), caller.viewer)
    return 200, {"success": True, "export": document}


@endpoint(
    "GET",
    "/api/erasures",
    "The tenant's lead erasures, newest first (admins): proofs without personal data",
    "Erasures",
    query="ErasuresQuery",
)
def list_erasures(request: Request, caller: Caller, services: Services) -> tuple[int, dict[str, Any]]:
    from ..models.requests import ErasuresQuery, parse

    tenant = caller.require_tenant()
    query = parse(ErasuresQuery, request.args.to_dict())
    return 200, {"success": True, **services.store.list_lead_erasures(tenant, query, caller.viewer)}


def checked_lead_id(value: str) -> str:
    """A lead id from the path: 1 to 200 characters, as the directory holds them (422 naming leadId)."""
    if not 1 <= len(value) <= LEAD_ID_MAX:
        raise ValidationFailed(
            "the request has invalid fields", [{"field": "leadId", "message": f"must be 1 to {LEAD_ID_MAX} characters"}]
        )
    return value
