"""The HTTP functions: route → identify the caller → parse → one call into the domain → JSON.

`Api.handle(request, group)` is what both `functions/main.py` (one deployed function per group)
and the dev server (every group on one port) call, so both serve the very same handlers.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Request, Response
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import MethodNotAllowed as _MethodNotAllowed
from werkzeug.routing import Map, Rule

from . import desk, members, notify
from .cors import CorsPolicy
from .errors import (
    BadRequest,
    Forbidden,
    LeadwatchError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from .espo import EspoCrm
from .greenapi import DeliveryStatus, GreenApi, Ignored, WhatsAppError, external_id, read_notification
from .identity import Caller, OpenAccess, VerifiedAccess
from .store import Store

if TYPE_CHECKING:
    from .config import Settings

log = logging.getLogger("leadwatch.http")

MAX_BODY_BYTES = 64 * 1024

# One deployed function per group; the dev server serves them all.
GROUPS: dict[str, list[Rule]] = {
    "activities": [Rule("/api/activities/log", methods=["POST"], endpoint="log_activity")],
    "alerts": [
        Rule("/api/alerts/active", methods=["GET"], endpoint="list_alerts"),
        Rule("/api/alerts/<alert_id>/resolve", methods=["POST"], endpoint="resolve_alert"),
        Rule("/api/alerts/<alert_id>/action", methods=["POST"], endpoint="run_action"),
        Rule("/api/alerts/<alert_id>/snooze", methods=["POST"], endpoint="snooze_alert"),
        Rule("/api/alerts/<alert_id>/unsnooze", methods=["POST"], endpoint="unsnooze_alert"),
        Rule("/api/alerts/bulk", methods=["POST"], endpoint="bulk_alerts"),
        Rule("/api/alerts/<alert_id>/history", methods=["GET"], endpoint="alert_history"),
    ],
    "sweep": [Rule("/api/alerts/sweep", methods=["POST"], endpoint="sweep")],
    "leads": [
        Rule("/api/leads", methods=["POST"], endpoint="upsert_leads"),
        Rule("/api/leads/<lead_id>/activities", methods=["GET"], endpoint="lead_activities"),
        Rule("/api/leads/<lead_id>/alerts", methods=["GET"], endpoint="lead_alerts"),
    ],
    "rules": [
        Rule("/api/rules", methods=["GET"], endpoint="list_rules"),
        Rule("/api/rules/<rule_type>", methods=["PUT"], endpoint="put_rule"),
    ],
    "retention": [Rule("/api/retention/run", methods=["POST"], endpoint="run_retention")],
    "whatsapp": [Rule("/api/whatsapp/send", methods=["POST"], endpoint="send_whatsapp")],
    "greenapi_webhook": [Rule("/webhooks/greenapi", methods=["POST"], endpoint="greenapi_webhook")],
    "health": [Rule("/health", methods=["GET"], endpoint="health")],
    "webhooks": [
        Rule("/api/webhooks", methods=["GET"], endpoint="list_webhooks"),
        Rule("/api/webhooks", methods=["POST"], endpoint="create_webhook"),
        Rule("/api/webhooks/<webhook_id>", methods=["DELETE"], endpoint="delete_webhook"),
        Rule("/api/webhooks/<webhook_id>/rotate", methods=["POST"], endpoint="rotate_webhook"),
        Rule("/api/webhooks/<webhook_id>/deliveries", methods=["GET"], endpoint="list_webhook_deliveries"),
        Rule(
            "/api/webhooks/<webhook_id>/deliveries/<delivery_id>/redeliver",
            methods=["POST"],
            endpoint="redeliver_webhook",
        ),
    ],
    "notifications": [Rule("/api/notifications/deliver", methods=["POST"], endpoint="deliver_notifications")],
    "members": [
        Rule("/api/members", methods=["GET"], endpoint="list_members"),
        Rule("/api/members", methods=["POST"], endpoint="upsert_member"),
    ],
}


# Handlers ---------------------------------------------------------------------------------------
# Request models (pydantic) are imported at first use, not at the cold start of every function.


def log_activity(request: Request, caller: Caller, api: Api) -> tuple[int, dict]:
    from .models import ActivityIn, parse

    tenant = caller.require_tenant()
    activity = parse(ActivityIn, _json_object(request))
    return 200, {"success": True, **api.store.log_activity(tenant, activity, caller.viewer)}


def list_alerts(request: Request, caller: Caller, api: Api) -> tuple[int, dict]:
    from .models import AlertQuery, parse

    tenant = caller.require_tenant()
    query = parse(AlertQuery, request.args.to_dict())
    return 200, {"success": True, **api.store.list_active_alerts(tenant, query, caller.viewer)}


def resolve_alert(request: Request, caller: Caller, api: Api, alert_id: str) -> tuple[int, dict]:
    tenant = caller.require_tenant()
    result = api.store.resolve_alert(tenant, _alert_id(alert_id), caller.actor, caller.viewer)
    return 200, {"success": True, "message": "Alerte résolue", **result}


def run_action(request: Request, caller: Caller, api: Api, alert_id: str) -> tuple[int, dict]:
    """Run the alert's suggested action: today, `send_whatsapp` sends its rule's message."""
    tenant = caller.require_tenant()
    prepared = api.store.prepare_whatsapp(tenant, alert_id=_alert_id(alert_id), viewer=caller.viewer)
    return 200, api.send(tenant, caller, prepared["lead"], prepared["text"], alert_type=prepared["alert_type"])


def send_whatsapp(request: Request, caller: Caller, api: Api) -> tuple[int, dict]:
    from .models import SendIn, parse

    tenant = caller.require_tenant()
    body = parse(SendIn, _json_object(request))
    prepared = api.store.prepare_whatsapp(tenant, lead_id=body.leadId, viewer=caller.viewer)
    return 200, api.send(tenant, caller, prepared["lead"], body.message)


def sweep(request: Request, caller: Caller, api: Api) -> tuple[int, dict]:
    started = time.perf_counter()
    result = api.store.sweep(caller.tenant)
    return 200, {"success": True, **result, "duration_ms": round((time.perf_counter() - started) * 1000, 1)}


def upsert_leads(request: Request, caller: Caller, api: Api) -> tuple[int, dict]:
    from .models import LeadsIn, parse

    tenant = caller.require_tenant()
    body = _json_body(request)
    if isinstance(body, dict) and isinstance(body.get("leads"), list) and len(body) == 1:
        body = body["leads"]
    leads = parse(LeadsIn, {"leads": body if isinstance(body, list) else [body]})
    return 200, {"success": True, **api.store.upsert_leads(tenant, leads.leads, caller.viewer)}


def lead_activities(request: Request, caller: Caller, api: Api, lead_id: str) -> tuple[int, dict]:
    from .models import TimelineQuery, parse

    tenant = caller.require_tenant()
    query = parse(TimelineQuery, request.args.to_dict())
    return 200, {"success": True, **api.store.list_lead_activities(tenant, lead_id, query, caller.viewer)}


def greenapi_webhook(request: Request, caller: None, api: Api) -> tuple[int, dict]:
    """A Green-API notification: 200 once stored or deliberately ignored, so Green-API stops resending;
    any failure to store answers 5xx, so it resends."""
    instance = api.greenapi.verify_webhook(request)
    event = read_notification(_json_object(request, invalid=BadRequest), instance)
    if isinstance(event, Ignored):
        log.info(json.dumps({"greenapi": "ignored", "reason": event.reason, "instance": instance.id}))
        return 200, {"success": True, "ignored": event.reason}
    if isinstance(event, DeliveryStatus):
        result = api.store.set_activity_status(instance.tenant, "whatsapp", event.external_id, event.status)
        return 200, {"success": True, "status": event.status, **result}
    result = api.store.log_whatsapp(instance.tenant, event, create_lead=api.espo is None or event.phone is None)
    if result.get("unknown_phone") and api.espo is not None and event.phone is not None:
        lead = api.espo.find_lead(event.phone)
        if lead is not None:
            api.store.upsert_leads(instance.tenant, [lead])
        result = api.store.log_whatsapp(instance.tenant, event)
    return 200, {"success": True, **result}


def health(request: Request, caller: None, api: Api) -> tuple[int, dict]:
    try:
        api.store.ping()
    except Unavailable:
        return 503, {"status": "degraded", "database": "unreachable"}
    return 200, {"status": "ok", "database": "ok"}


# Who may call what: the sweep is for the scheduler and the service; the rest for users and servers.
_CALLERS = {
    "sweep": {"scheduler", "service", "open"},
    "run_retention": {"scheduler", "service", "open"},
    "deliver_notifications": {"scheduler", "service", "open"},
}
_DEFAULT_CALLERS = {"user", "service", "open"}
_SELF_AUTHENTICATED = {"health", "greenapi_webhook"}  # health needs no credentials; the webhook checks its own

_HANDLERS: dict[str, Callable[..., tuple[int, dict]]] = {
    "log_activity": log_activity,
    "list_alerts": list_alerts,
    "resolve_alert": resolve_alert,
    "run_action": run_action,
    "send_whatsapp": send_whatsapp,
    "sweep": sweep,
    "upsert_leads": upsert_leads,
    "lead_activities": lead_activities,
    "greenapi_webhook": greenapi_webhook,
    "health": health,
    "snooze_alert": desk.snooze_alert,
    "unsnooze_alert": desk.unsnooze_alert,
    "bulk_alerts": desk.bulk_alerts,
    "alert_history": desk.alert_history,
    "lead_alerts": desk.lead_alerts,
    "list_rules": desk.list_rules,
    "put_rule": desk.put_rule,
    "run_retention": desk.run_retention,
    "create_webhook": notify.create_webhook,
    "list_webhooks": notify.list_webhooks,
    "delete_webhook": notify.delete_webhook,
    "rotate_webhook": notify.rotate_webhook,
    "list_webhook_deliveries": notify.list_webhook_deliveries,
    "redeliver_webhook": notify.redeliver_webhook,
    "deliver_notifications": notify.deliver_notifications,
    "list_members": members.list_members,
    "upsert_member": members.upsert_member,
}


# Plumbing ---------------------------------------------------------------------------------------


def _alert_id(value: str) -> str:
    try:
        uuid.UUID(value)
    except ValueError:
        raise NotFound("alert not found", {"field": "id"}) from None
    return value


def _json_body(request: Request) -> Any:
    """The request's JSON body: 413 over the limit (checked before reading it), 400 when not JSON."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the body is over {MAX_BODY_BYTES // 1024} KiB")
    raw = request.stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the body is over {MAX_BODY_BYTES // 1024} KiB")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("the body is not valid JSON", {"reason": str(exc)}) from None


def _json_object(request: Request, invalid: type[LeadwatchError] = ValidationFailed) -> dict[str, Any]:
    body = _json_body(request)
    if not isinstance(body, dict):
        raise invalid("the body must be a JSON object", [{"field": "body", "message": "must be an object"}])
    return body


def _respond(status: int, body: dict, headers: dict[str, str] | None = None) -> Response:
    response = Response(json.dumps(body, ensure_ascii=False), status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _error(exc: LeadwatchError) -> Response:
    headers = {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after:
        headers["Retry-After"] = str(retry_after)
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="leadwatch"'
    if isinstance(exc, MethodNotAllowed) and exc.details:
        headers["Allow"] = ", ".join(exc.details["allowed"])
    body = {"success": False, "error": {"code": exc.code, "message": exc.message, "details": exc.details}}
    return _respond(exc.status, body, headers)


class Api:
    """Serves the handlers over one store (created lazily, once per instance), for callers that
    `access` identifies, to browsers of the `cors_origins`, sending WhatsApp through `greenapi`."""

    def __init__(
        self,
        store: Store | Callable[[], Store],
        access: OpenAccess | VerifiedAccess,
        cors_origins: tuple[str, ...] = (),
        greenapi: GreenApi | None = None,
        espo: EspoCrm | None = None,
    ) -> None:
        self._access = access
        self._cors = CorsPolicy(cors_origins)
        self._store = store if isinstance(store, Store) else None
        self._make_store = store if not isinstance(store, Store) else None
        self.greenapi = greenapi or GreenApi(())
        self.espo = espo
        self._maps = {group: Map([rule.empty() for rule in rules]) for group, rules in GROUPS.items()}
        self._all = Map([rule.empty() for rules in GROUPS.values() for rule in rules])

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        store: Store | Callable[[], Store],
        access: OpenAccess | VerifiedAccess,
        cors_origins: tuple[str, ...] | None = None,
    ) -> Api:
        """The Api a deployment's settings describe (Green-API instances, EspoCRM, CORS)."""
        espo = (
            EspoCrm(settings.espo_url, settings.espo_api_key) if settings.espo_url and settings.espo_api_key else None
        )
        return cls(
            store,
            access,
            settings.cors_origins if cors_origins is None else cors_origins,
            GreenApi(settings.greenapi_instances),
            espo,
        )

    @property
    def store(self) -> Store:
        if self._store is None:
            assert self._make_store is not None
            self._store = self._make_store()
        return self._store

    def send(self, tenant: str, caller: Caller, lead: dict, text: str, alert_type: str | None = None) -> dict:
        """Send `text` to the lead on WhatsApp and log it: as sent (answering what it answers), or
        as a failed outbound that answers nothing, before reporting Green-API's refusal."""
        from .models import ActivityIn

        instance = self.greenapi.instance_for(tenant)
        chat_id = lead["phone"].lstrip("+") + "@c.us"
        meta = {"provider": "green-api", "instanceId": instance.id, "alertType": alert_type}
        outbound = {"leadId": lead["lead_id"], "channel": "whatsapp", "direction": "out", "messageSnippet": text}
        try:
            id_message = self.greenapi.send_message(instance, chat_id, text)
        except WhatsAppError as exc:
            failed = ActivityIn(**outbound, status="failed", meta={**meta, "error": exc.code})
            self.store.log_activity(tenant, failed, caller.viewer)
            raise
        sent = ActivityIn(**outbound, status="sent", externalId=external_id(chat_id, id_message), meta=meta)
        logged = self.store.log_activity(tenant, sent, caller.viewer)
        return {
            "success": True,
            "sent": {"chatId": chat_id, "idMessage": id_message, "message": text},
            "activity": logged["activity"],
            "alerts": logged["alerts"],
        }

    def handle(self, request: Request, group: str | None = None) -> Response:
        """Answer `request` with the handlers of `group` (all of them when None)."""
        started = time.perf_counter()
        request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
        endpoint, tenant = None, None
        if self._cors.is_preflight(request):
            return self._cors.preflight(request)
        try:
            url_map = self._all if group is None else self._maps[group]
            try:
                endpoint, args = url_map.bind_to_environ(request.environ).match()
            except _MethodNotAllowed as exc:
                raise MethodNotAllowed(
                    f"{request.method} is not allowed here", {"allowed": sorted(exc.valid_methods or [])}
                ) from None
            except HTTPException:
                raise NotFound(f"no route for {request.path}") from None
            caller = None if endpoint in _SELF_AUTHENTICATED else self._access.identify(request)
            if caller is not None:
                tenant = caller.tenant
                if caller.kind not in _CALLERS.get(endpoint, _DEFAULT_CALLERS):
                    raise Forbidden(f"a {caller.kind} caller may not call {endpoint}")
            status, body = _HANDLERS[endpoint](request, caller, self, **args)
            response = _respond(status, body)
        except LeadwatchError as exc:
            response = _error(exc)
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            response = _error(LeadwatchError("internal error", {"request_id": request_id}))
        response.headers["X-Request-Id"] = request_id
        self._cors.decorate(request, response)
        log.info(
            json.dumps(
                {
                    "request_id": request_id,
                    "tenant": tenant,
                    "route": endpoint,
                    "method": request.method,
                    "status": response.status_code,
                    "latency_ms": round((time.perf_counter() - started) * 1000, 1),
                }
            )
        )
        return response
