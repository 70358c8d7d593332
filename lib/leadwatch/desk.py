"""The alert desk's HTTP handlers: snooze, bulk actions, history, a lead's alerts, the rules, retention.

Each reads like the others in api.py: route → caller → parse → one store call → JSON. Request
models (desk_models) are imported at first use, not at the cold start of every function.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from flask import Request

from .errors import Forbidden, NotFound
from .identity import Caller

if TYPE_CHECKING:
    from .api import Api
    from .store import Store


def snooze_alert(request: Request, caller: Caller, api: Api, alert_id: str) -> tuple[int, dict]:
    from .desk_models import SnoozeIn
    from .models import parse

    tenant = caller.require_tenant()
    body = parse(SnoozeIn, _json_object(request))
    until = body.snooze_until()
    result = api.store.snooze_alert(tenant, _alert_id(alert_id), until, caller.actor, caller.viewer)
    return 200, {"success": True, **result}


def unsnooze_alert(request: Request, caller: Caller, api: Api, alert_id: str) -> tuple[int, dict]:
    tenant = caller.require_tenant()
    return 200, {"success": True, **api.store.unsnooze_alert(tenant, _alert_id(alert_id), caller.actor, caller.viewer)}


def bulk_alerts(request: Request, caller: Caller, api: Api) -> tuple[int, dict]:
    from .desk_models import BulkIn
    from .models import parse

    tenant = caller.require_tenant()
    body = parse(BulkIn, _json_object(request))
    ids = [str(alert_id) for alert_id in body.ids]
    result = api.store.act_on_alerts(tenant, body.action, ids, caller.actor, body.snooze_until(), caller.viewer)
    return 200, {"success": True, **result}


def alert_history(request: Request, caller: Caller, api: Api, alert_id: str) -> tuple[int, dict]:
    tenant = caller.require_tenant()
    return 200, {"success": True, **api.store.alert_history(tenant, _alert_id(alert_id), caller.viewer)}


def lead_alerts(request: Request, caller: Caller, api: Api, lead_id: str) -> tuple[int, dict]:
    from .desk_models import LeadAlertsQuery
    from .models import parse

    tenant = caller.require_tenant()
    query = parse(LeadAlertsQuery, request.args.to_dict())
    return 200, {"success": True, **api.store.list_lead_alerts(tenant, lead_id, query, caller.viewer)}


def list_rules(request: Request, caller: Caller, api: Api) -> tuple[int, dict]:
    tenant = caller.require_tenant()
    return 200, {"success": True, **api.store.list_rules(tenant, caller.viewer)}


def put_rule(request: Request, caller: Caller, api: Api, rule_type: str) -> tuple[int, dict]:
    from .desk_models import RuleIn, RuleType, rule_body
    from .errors import ValidationFailed
    from .models import parse

    tenant = caller.require_tenant()
    try:
        parse(RuleType, {"type": rule_type})
    except ValidationFailed:
        raise NotFound(f"no rule of type {rule_type!r}", {"field": "type"}) from None
    body = _json_object(request)
    in_force = next(r for r in api.store.list_rules(tenant, caller.viewer)["rules"] if r["type"] == rule_type)
    changes = rule_body(body, in_force)  # a rule as GET gives it is accepted
    if body and not changes:
        return _unchanged_rule(caller, in_force)
    rule = parse(RuleIn, changes)
    if rule.changes_nothing(in_force):
        return _unchanged_rule(caller, in_force)
    return 200, {"success": True, **api.store.set_rule(tenant, rule_type, rule, caller.viewer)}


def _unchanged_rule(caller: Caller, rule: dict[str, Any]) -> tuple[int, dict]:
    """A PUT that changes nothing writes nothing (a default rule stays the default), but answers
    only those who may change rules, as set_rule would (admins and platform staff)."""
    if not (
        caller.kind in ("open", "service") or (caller.kind == "user" and caller.role in ("admin", "platform_admin"))
    ):
        raise Forbidden("not allowed in this tenant")
    return 200, {"success": True, "rule": rule}


def run_retention(request: Request, caller: Caller, api: Api) -> tuple[int, dict]:
    """One bounded batch of retention (`more: true` when another call has work left)."""
    from .desk_models import RetentionQuery
    from .models import parse

    query = parse(RetentionQuery, request.args.to_dict())
    started = time.perf_counter()
    result = retain_once(api.store, caller.tenant, query.batch)
    return 200, {"success": True, **result, "duration_ms": round((time.perf_counter() - started) * 1000, 1)}


def retain_once(store: Store, tenant: str | None, batch: int | None) -> dict[str, Any]:
    """One bounded batch of the nightly retention run, as the scheduled route and `leadwatch retain`
    both do it: what is past its tenant's retention, then the notifications' outbox (30 days on);
    on the last batch, the analytics' summaries of the days closed since.
    {activities, alerts, events, notifications: {deliveries, pushes, digests}, more}."""
    result = store.apply_retention(tenant, batch)
    pruned = store.prune_notifications(tenant, batch)
    more = pruned.pop("more") or result["more"]
    if not more:
        store.summarise_recent_alert_days(tenant)
    return {**result, "more": more, "notifications": pruned}


def _json_object(request: Request) -> dict[str, Any]:
    from .api import _json_object

    return _json_object(request)


def _alert_id(value: str) -> str:
    from .api import _alert_id

    return _alert_id(value)
