"""The `leads` function: create or update leads, and a lead's timeline and alerts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Request

from ..http.inputs import json_body
from ..http.routes import BODY_ERRORS, USER_ERRORS, endpoint

if TYPE_CHECKING:
    from ..http.identity import Caller
    from ..http.routes import Services

# Request models (pydantic) are imported at first use, not at the cold start of every function.


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
