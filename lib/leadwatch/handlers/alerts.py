"""The `alerts` function: the active list and its analytics and export, and what is done to one alert
(resolve, run its action, snooze, history) or to many at once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Request

from ..http.attachments import ALERT_COLUMNS, attachment, csv_chunks, export_filename
from ..http.inputs import check_alert_id, json_object
from ..http.routes import BODY_ERRORS, SEND_ERRORS, USER_ERRORS, endpoint
from .actions import describe_alerts
from .actions import run_action as run

if TYPE_CHECKING:
    from flask import Response

    from ..http.identity import Caller
    from ..http.routes import Services

# Request models (pydantic) are imported at first use, not at the cold start of every function.


@endpoint(
    "GET",
    "/api/alerts/active",
    "List active alerts, high to low then newest, with the stats",
    "AlertList",
    query="AlertQuery",
)
def list_alerts(request: Request, caller: Caller, services: Services) -> tuple[int, dict[str, Any]]:
    from ..models.requests import AlertQuery, parse

    tenant = caller.require_tenant()
    query = parse(AlertQuery, request.args.to_dict())
    result = services.store.list_active_alerts(tenant, query, caller.viewer)
    return 200, {"success": True, **result, "alerts": describe_alerts(result["alerts"], services, tenant)}


@endpoint(
    "GET",
    "/api/alerts/analytics",
    "Alert analytics over a range of days",
    "Analytics",
    query="AnalyticsQuery",
    description="Per day created/resolved/escalated (days in `tz`), resolution within 24 h, time to resolve "
    "(median, p90) by type and by owner, open alerts by age. An agent gets the figures of their own leads.",
)
def alert_analytics(request: Request, caller: Caller, services: Services) -> tuple[int, dict[str, Any]]:
    """Per day created/resolved/escalated, resolution within 24 h, time to resolve by type and owner,
    open alerts by age: what row-level security lets the caller see."""
    from ..models.analytics import AnalyticsQuery
    from ..models.requests import parse

    tenant = caller.require_tenant()
    query = parse(AnalyticsQuery, request.args.to_dict())
    return 200, {"success": True, **services.store.alert_analytics(tenant, query, caller.viewer)}


@endpoint("GET", "/api/alerts/export.csv", "Export alerts as CSV (streamed)", None, query="AlertExportQuery")
def export_alerts_csv(request: Request, caller: Caller, services: Services) -> Response:
    """The alerts the list would show (or all of them, `state=all`), as CSV."""
    from ..models.exports import AlertExportQuery
    from ..models.requests import parse

    tenant = caller.require_tenant()
    query = parse(AlertExportQuery, request.args.to_dict())
    store, viewer = services.store, caller.viewer
    first = store.export_alerts(tenant, query, None, viewer)  # errors answer as JSON, before streaming
    chunks = csv_chunks(
        ALERT_COLUMNS,
        lambda cursor: store.export_alerts(tenant, query, cursor, viewer),
        first,
        semicolon=query.sep == "semicolon",
        bom=query.bom,
    )
    return attachment(chunks, export_filename("alerts", tenant))


@endpoint(
    "POST",
    "/api/alerts/<alert_id>/resolve",
    "Resolve an alert by hand (idempotent)",
    "Resolved",
    errors=(*USER_ERRORS, 404),
)
def resolve_alert(request: Request, caller: Caller, services: Services, alert_id: str) -> tuple[int, dict[str, Any]]:
    tenant = caller.require_tenant()
    result = services.store.resolve_alert(tenant, check_alert_id(alert_id), caller.actor, caller.viewer)
    return 200, {"success": True, "message": "Alerte résolue", **result}


@endpoint(
    "POST",
    "/api/alerts/<alert_id>/action",
    "Run the alert's suggested action (send its follow-up on its channel, and log it)",
    "ActionSent",
    errors=SEND_ERRORS,
    description="Sends the rule's follow-up on the action's channel (WhatsApp, email; switch_channel: the "
    "lead's preferred one) and logs it as an outbound activity. 409 when the action cannot run, the error's "
    "code saying why (the `reason` the active alerts list gives before any click): no_phone, no_email, "
    "whatsapp_not_configured, email_not_configured, no_preferred_channel, unknown_action, no_message, and "
    "action_is_a_call (a call is made by a person, then logged with POST /api/activities/log). An alert already "
    "resolved answers 409, and a request retried with the same `Idempotency-Key` header answers the first run's "
    "answer (`replayed: true`) and sends nothing more.",
)
def run_action(request: Request, caller: Caller, services: Services, alert_id: str) -> tuple[int, dict[str, Any]]:
    """Run the alert's suggested action on its channel (see `actions`): a send, logged."""
    tenant = caller.require_tenant()
    return 200, run(request, services, tenant, caller, check_alert_id(alert_id))


@endpoint(
    "POST",
    "/api/alerts/<alert_id>/snooze",
    "Snooze an alert until a time (`until`) or for a while (`for`: 90m, 4h, 2d; at most 30 days)",
    "Snoozed",
    body="SnoozeIn",
    errors=(*BODY_ERRORS, 404, 409),
    description="A snoozed alert leaves the active list; the sweep brings it back at `until` if its condition "
    "still holds (else resolves it). An activity that answers it resolves it meanwhile.",
)
def snooze_alert(request: Request, caller: Caller, services: Services, alert_id: str) -> tuple[int, dict[str, Any]]:
    from ..models.desk import SnoozeIn
    from ..models.requests import parse

    tenant = caller.require_tenant()
    body = parse(SnoozeIn, json_object(request))
    until = body.snooze_until()
    result = services.store.snooze_alert(tenant, check_alert_id(alert_id), until, caller.actor, caller.viewer)
    return 200, {"success": True, **result}


@endpoint(
    "POST",
    "/api/alerts/<alert_id>/unsnooze",
    "Bring a snoozed alert back now",
    "Snoozed",
    errors=(*USER_ERRORS, 404, 409),
)
def unsnooze_alert(request: Request, caller: Caller, services: Services, alert_id: str) -> tuple[int, dict[str, Any]]:
    tenant = caller.require_tenant()
    result = services.store.unsnooze_alert(tenant, check_alert_id(alert_id), caller.actor, caller.viewer)
    return 200, {"success": True, **result}


@endpoint(
    "POST",
    "/api/alerts/bulk",
    "Resolve or snooze up to 500 alerts in one transaction, one answer per id",
    "BulkDone",
    body="BulkIn",
    errors=BODY_ERRORS,
)
def bulk_alerts(request: Request, caller: Caller, services: Services) -> tuple[int, dict[str, Any]]:
    from ..models.desk import BulkIn
    from ..models.requests import parse

    tenant = caller.require_tenant()
    body = parse(BulkIn, json_object(request))
    ids = [str(one) for one in body.ids]
    result = services.store.act_on_alerts(tenant, body.action, ids, caller.actor, body.snooze_until(), caller.viewer)
    return 200, {"success": True, **result}


@endpoint(
    "GET",
    "/api/alerts/<alert_id>/history",
    "An alert and its history (created, escalated, snoozed, reopened, overdue, resolved)",
    "AlertHistory",
    errors=(*USER_ERRORS, 404),
)
def alert_history(request: Request, caller: Caller, services: Services, alert_id: str) -> tuple[int, dict[str, Any]]:
    tenant = caller.require_tenant()
    return 200, {"success": True, **services.store.alert_history(tenant, check_alert_id(alert_id), caller.viewer)}
