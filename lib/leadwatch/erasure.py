"""A lead's personal data on request (GDPR): erase it everywhere, export it whole, and list the erasures.

Admins of the tenant, platform staff and the service only (the database checks the role first). Each
handler reads like the others: route → caller → parse → one store call → JSON.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Request

from .errors import ValidationFailed
from .identity import Caller
from .models import _Query

if TYPE_CHECKING:
    from .api import Api

LEAD_ID_MAX = 200


class ErasuresQuery(_Query):
    """Query of GET /api/erasures (its cursor, as the timeline's, is a time and an id)."""

    cursor_kind = "timeline"


def erase_lead(request: Request, caller: Caller, api: Api, lead_id: str) -> tuple[int, dict]:
    """Erase everything the tenant holds about the lead, in one transaction; answers the erasure's proof."""
    tenant = caller.require_tenant()
    result = api.store.erase_lead(tenant, checked_lead_id(lead_id), caller.actor, caller.viewer)
    return 200, {"success": True, **result}


def export_lead(request: Request, caller: Caller, api: Api, lead_id: str) -> tuple[int, dict]:
    """Everything the tenant holds about the lead, as one JSON document."""
    tenant = caller.require_tenant()
    document = api.store.export_lead(tenant, checked_lead_id(lead_id), caller.viewer)
    return 200, {"success": True, "export": document}


def list_erasures(request: Request, caller: Caller, api: Api) -> tuple[int, dict]:
    from .models import parse

    tenant = caller.require_tenant()
    query = parse(ErasuresQuery, request.args.to_dict())
    return 200, {"success": True, **api.store.list_lead_erasures(tenant, query, caller.viewer)}


def checked_lead_id(value: str) -> str:
    """A lead id from the path: 1 to 200 characters, as the directory holds them (422 naming leadId)."""
    if not 1 <= len(value) <= LEAD_ID_MAX:
        raise ValidationFailed(
            "the request has invalid fields", [{"field": "leadId", "message": f"must be 1 to {LEAD_ID_MAX} characters"}]
        )
    return value
