"""The `rules` function: the rules in force for the tenant, and changing one (admins)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Request

from ..errors import Forbidden, NotFound, ValidationFailed
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
    from ..models.desk import RuleIn, RuleType, rule_body
    from ..models.requests import parse

    tenant = caller.require_tenant()
    try:
        parse(RuleType, {"type": rule_type})
    except ValidationFailed:
        raise NotFound(f"no rule of type {rule_type!r}", {"field": "type"}) from None
    body = json_object(request)
    in_force = next(r for r in services.store.list_rules(tenant, caller.viewer)["rules"] if r["type"] == rule_type)
    changes = rule_body(body, in_force)  # a rule as GET gives it is accepted
    if body and not changes:
        return _unchanged_rule(caller, in_force)
    rule = parse(RuleIn, changes)
    if rule.changes_nothing(in_force):
        return _unchanged_rule(caller, in_force)
    return 200, {"success": True, **services.store.set_rule(tenant, rule_type, rule, caller.viewer)}


def _unchanged_rule(caller: Caller, rule: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """A PUT that changes nothing writes nothing (a default rule stays the default), but answers
    only those who may change rules, as set_rule would (admins and platform staff)."""
    if not (
        caller.kind in ("open", "service") or (caller.kind == "user" and caller.role in ("admin", "platform_admin"))
    ):
        raise Forbidden("not allowed in this tenant")
    return 200, {"success": True, "rule": rule}
