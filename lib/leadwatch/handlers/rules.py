"""The `rules` function: the rules in force for the tenant, and changing one (admins)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Request

from ..errors import NotFound, ValidationFailed
from ..http.inputs import json_object
from ..http.routes import BODY_ERRORS, endpoint

if TYPE_CHECKING:
    from ..http.identity import Caller
    from ..http.routes import Services

# Request models (pydantic) are imported at first use, not at the cold start of every function.


@endpoint("GET", "/api/rules", "The rules in force for the tenant (defaults merged)", "Rules")
def list_rules(request: Request, caller: Caller, services: Services) -> tuple[int, dict[str, Any]]:
    tenant = caller.require_tenant()
    return 200, {"success": True, **services.store.list_rules(tenant, caller.viewer)}


@endpoint(
    "PUT",
    "/api/rules/<rule_type>",
    "Change a rule for the tenant (admins and platform staff); due times are recomputed at once",
    "RuleSet",
    body="RuleIn",
    errors=(*BODY_ERRORS, 404),
)
def put_rule(request: Request, caller: Caller, services: Services, rule_type: str) -> tuple[int, dict[str, Any]]:
    from ..models.desk import RuleIn, RuleType
    from ..models.requests import parse

    tenant = caller.require_tenant()
    try:
        parse(RuleType, {"type": rule_type})
    except ValidationFailed:
        raise NotFound(f"no rule of type {rule_type!r}", {"field": "type"}) from None
    rule = parse(RuleIn, json_object(request))
    return 200, {"success": True, **services.store.set_rule(tenant, rule_type, rule, caller.viewer)}
