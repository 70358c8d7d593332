"""The HTTP functions: route → identify the caller → parse → one call into the domain → JSON.

`Api.handle(request, group)` is what both `functions/main.py` (one deployed function per group)
and the dev server (every group on one port) call, so both serve the very same handlers.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from flask import Request, Response
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import MethodNotAllowed as _MethodNotAllowed
from werkzeug.routing import Map, Rule

from .cors import CorsPolicy
from .cursor import is_uuid
from .errors import (
    BadRequest,
    Forbidden,
    LeadwatchError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from .espo import EspoCrm
from .greenapi import (
    DeliveryStatus,
    GreenApi,
    Ignored,
    Unreadable,
    WhatsAppError,
    external_id,
    read_notification,
)
from .identity import Caller, OpenAccess, VerifiedAccess
from .store import Store

if TYPE_CHECKING:
    from .config import Settings

log = logging.getLogger("leadwatch.http")

MAX_BODY_BYTES = 64 * 1024
ACTIVITIES_MAX_BODY_BYTES = 1024 * 1024  # a list of up to 1,000 activities (POST /api/activities/log)
GREENAPI_MAX_BODY_BYTES = 1024 * 1024  # a notification is never refused for its size: a longer one is kept cut
# After an early answer, what is left of an unread body is read and discarded up to this many bytes,
# so the connection can serve the next request; a longer rest is not read: the answer closes it.
DRAIN_BYTES = 1024 * 1024
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

# One deployed function per group; the dev server serves them all.
GROUPS: dict[str, list[Rule]] = {
    "activities": [
        Rule("/api/activities/log", methods=["POST"], endpoint="log_activity"),
        Rule("/api/activities/export.csv", methods=["GET"], endpoint="export_activities_csv"),
    ],
    "alerts": [
        Rule("/api/alerts/active", methods=["GET"], endpoint="list_alerts"),
        Rule("/api/alerts/analytics", methods=["GET"], endpoint="alert_analytics"),
        Rule("/api/alerts/export.csv", methods=["GET"], endpoint="export_alerts_csv"),
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
        Rule("/api/leads/<lead_id>", methods=["DELETE"], endpoint="erase_lead"),
        Rule("/api/leads/<lead_id>/export", methods=["GET"], endpoint="export_lead"),
        Rule("/api/erasures", methods=["GET"], endpoint="list_erasures"),
    ],
    "rules": [
        Rule("/api/rules", methods=["GET"], endpoint="list_rules"),
        Rule("/api/rules/<rule_type>", methods=["PUT"], endpoint="put_rule"),
    ],
    "retention": [Rule("/api/retention/run", methods=["POST"], endpoint="run_retention")],
    "whatsapp": [
        Rule("/api/whatsapp/send", methods=["POST"], endpoint="send_whatsapp"),
        Rule("/api/greenapi/rejected", methods=["GET"], endpoint="list_greenapi_rejected"),
    ],
    "greenapi_webhook": [Rule("/webhooks/greenapi", methods=["POST"], endpoint="greenapi_webhook")],
    "health": [
        Rule("/health", methods=["GET"], endpoint="health"),
        Rule("/openapi.json", methods=["GET"], endpoint="openapi"),
    ],
    "webhooks": [
        Rule("/api/webhooks", methods=["GET"], endpoint="list_webhooks"),
        Rule("/api/webhooks", methods=["POST"], endpoint="create_webhook"),
        Rule("/api/webhooks/<webhook_id>", methods=["DELETE"], endpoint="delete_webhook"),
        Rule("/api/webhooks/<webhook_id>", methods=["PATCH"], endpoint="patch_webhook"),
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
        Rule("/api/digest", methods=["GET"], endpoint="get_digest_settings"),
        Rule("/api/digest", methods=["PUT"], endpoint="put_digest_settings"),
    ],
}


# Handlers ---------------------------------------------------------------------------------------
# Request models (pydantic) are imported at first use, not at the cold start of every function.


def log_activity(request: Request, caller: Caller, api: Api) -> tuple[int, dict]:
    """One activity (an object), or a list of up to 1,000 logged in one transaction (see `ingest`)."""
    from .models import ActivityIn, parse

    tenant = caller.require_tenant()
    body = _activities_body(request)
    if isinstance(body, list):
        from .ingest import parse_activities

        activities = parse_activities(body)
        return 200, {"success": True, **api.store.log_activities(tenant, activities, caller.viewer)}
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a JSON object", [{"field": "body", "message": "must be an object"}])
    activity = parse(ActivityIn, body)
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
    """A Green-API notification: 200 once stored, deliberately ignored, or kept as unreadable (a dead
    letter), so Green-API stops resending and sends the next ones; 5xx only when it could not be
    stored, so that Green-API resends it."""
    from .safejson import clean, problem

    instance = api.greenapi.verify_webhook(request)
    raw, cut = _greenapi_body(request)
    if cut:
        return _reject_notification(
            api, instance, f"the body is over {GREENAPI_MAX_BODY_BYTES // 1024} KiB; kept cut", raw
        )
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError):
        return _reject_notification(api, instance, "the body is not valid JSON", raw)
    if not isinstance(payload, dict) or problem(payload):
        storable = None  # kept as the bytes received
    else:
        storable = payload
    try:
        if not isinstance(payload, dict):
            raise Unreadable("the body must be a JSON object")
        return _store_notification(api, instance, read_notification(clean(payload), instance))
    except Unavailable:
        raise
    except LeadwatchError as exc:
        if exc.status >= 500:
            raise
        reason = exc.message
    except Exception:  # a defect: logged with its traceback, and the notification kept, not lost
        log.exception("unhandled error reading a Green-API notification", extra={"instance": instance.id})
        reason = "internal error"
    return _reject_notification(api, instance, reason, raw, storable)


def _store_notification(api: Api, instance: Any, event: Any) -> tuple[int, dict]:
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


def _greenapi_body(request: Request) -> tuple[bytes, bool]:
    """The notification's body (at most GREENAPI_MAX_BODY_BYTES), and whether it was cut there."""
    try:
        raw = request.stream.read(GREENAPI_MAX_BODY_BYTES + 1)
    except (OSError, HTTPException):
        request.environ["leadwatch.close"] = True
        raise RequestTimeout("the body did not arrive in time") from None
    return raw[:GREENAPI_MAX_BODY_BYTES], len(raw) > GREENAPI_MAX_BODY_BYTES


def _reject_notification(
    api: Api, instance: Any, reason: str, raw: bytes, payload: dict | None = None
) -> tuple[int, dict]:
    """Keep an unreadable notification whole (its JSON, else its bytes) and answer 200."""
    result = api.store.reject_greenapi(
        instance.tenant, instance.id, reason, payload=payload, raw=None if payload is not None else raw
    )
    log.warning(
        json.dumps({"greenapi": "rejected", "reason": reason, "instance": instance.id, "tenant": instance.tenant})
    )
    return 200, {"success": True, "rejected": {**result, "reason": reason}}


def list_greenapi_rejected(request: Request, caller: Caller, api: Api) -> tuple[int, dict]:
    """The tenant's Green-API notifications that could not be read (admins, managers, the service)."""
    from .models import RejectedQuery, parse

    tenant = caller.require_tenant()
    query = parse(RejectedQuery, request.args.to_dict())
    return 200, {"success": True, **api.store.list_greenapi_rejected(tenant, query, caller.viewer)}


def health(request: Request, caller: None, api: Api) -> tuple[int, dict]:
    try:
        api.store.ping()
    except Unavailable:
        return 503, {"status": "degraded", "database": "unreachable"}
    return 200, {"status": "ok", "database": "ok"}


def _lazy(module: str, name: str) -> Callable[..., Any]:
    """The handler `name` of `module`, imported at its first call rather than at every cold start."""

    def handler(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module, __package__), name)(*args, **kwargs)

    handler.__name__ = name
    return handler


# Who may call what: the sweep is for the scheduler and the service; the rest for users and servers.
_CALLERS = {
    "sweep": {"scheduler", "service", "open"},
    "run_retention": {"scheduler", "service", "open"},
    "deliver_notifications": {"scheduler", "service", "open"},
}
_DEFAULT_CALLERS = {"user", "service", "open"}
# health and the API description need no credentials; the webhook checks its own
_SELF_AUTHENTICATED = {"health", "greenapi_webhook", "openapi"}

_HANDLERS: dict[str, Callable[..., tuple[int, dict] | Response]] = {
    "log_activity": log_activity,
    "list_alerts": list_alerts,
    "resolve_alert": resolve_alert,
    "run_action": run_action,
    "send_whatsapp": send_whatsapp,
    "sweep": sweep,
    "upsert_leads": upsert_leads,
    "lead_activities": lead_activities,
    "greenapi_webhook": greenapi_webhook,
    "list_greenapi_rejected": list_greenapi_rejected,
    "health": health,
    "snooze_alert": _lazy(".desk", "snooze_alert"),
    "unsnooze_alert": _lazy(".desk", "unsnooze_alert"),
    "bulk_alerts": _lazy(".desk", "bulk_alerts"),
    "alert_history": _lazy(".desk", "alert_history"),
    "lead_alerts": _lazy(".desk", "lead_alerts"),
    "list_rules": _lazy(".desk", "list_rules"),
    "put_rule": _lazy(".desk", "put_rule"),
    "run_retention": _lazy(".desk", "run_retention"),
    "alert_analytics": _lazy(".analytics", "alert_analytics"),
    "export_alerts_csv": _lazy(".exports", "export_alerts_csv"),
    "export_activities_csv": _lazy(".exports", "export_activities_csv"),
    "openapi": _lazy(".openapi", "serve_openapi"),
    "create_webhook": _lazy(".notify", "create_webhook"),
    "list_webhooks": _lazy(".notify", "list_webhooks"),
    "delete_webhook": _lazy(".notify", "delete_webhook"),
    "rotate_webhook": _lazy(".notify", "rotate_webhook"),
    "list_webhook_deliveries": _lazy(".notify", "list_webhook_deliveries"),
    "redeliver_webhook": _lazy(".notify", "redeliver_webhook"),
    "deliver_notifications": _lazy(".notify", "deliver_notifications"),
    "list_members": _lazy(".members", "list_members"),
    "upsert_member": _lazy(".members", "upsert_member"),
    "get_digest_settings": _lazy(".members", "get_digest_settings"),
    "put_digest_settings": _lazy(".members", "put_digest_settings"),
    "patch_webhook": _lazy(".notify", "patch_webhook"),
    "erase_lead": _lazy(".erasure", "erase_lead"),
    "export_lead": _lazy(".erasure", "export_lead"),
    "list_erasures": _lazy(".erasure", "list_erasures"),
}


# Plumbing ---------------------------------------------------------------------------------------


def _alert_id(value: str) -> str:
    """An alert id is a UUID in canonical form (8-4-4-4-12 hex); anything else names no alert."""
    if not is_uuid(value):
        raise NotFound("alert not found", {"field": "id"})
    return value


def _raw_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request's body, at most `limit` bytes: 413 over it (checked before reading when the length
    is announced), 408 when the client stops sending it or leaves before the end."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the body is over {limit // 1024} KiB")
    try:
        raw = request.stream.read(limit + 1)
    except (OSError, HTTPException):  # a read timeout (dev server) or a client gone mid-body
        request.environ["leadwatch.close"] = True
        raise RequestTimeout("the body did not arrive in time") from None
    if len(raw) > limit:
        raise PayloadTooLarge(f"the body is over {limit // 1024} KiB")
    return raw


def _json_body(request: Request, raw: bytes | None = None) -> Any:
    """The request's JSON body (or `raw`, already read): 413 over the limit, 400 when not JSON, 422
    naming the field when it holds what cannot be stored (NUL, lone surrogates, NaN, nesting, too
    many members); in a list body, the field is named by its place (`[3].meta`)."""
    from .safejson import JsonProblem, load_json

    raw = _raw_body(request) if raw is None else raw
    try:
        return load_json(raw)
    except JsonProblem as exc:
        field = exc.field.removeprefix("body") if exc.field.startswith("body[") else exc.field
        raise ValidationFailed("the request has invalid fields", [{"field": field, "message": exc.message}]) from None
    except ValueError as exc:
        raise BadRequest("the body is not valid JSON", {"reason": str(exc)[:200]}) from None


def _activities_body(request: Request) -> Any:
    """The body of POST /api/activities/log: a list of activities may take up to
    ACTIVITIES_MAX_BODY_BYTES, anything else MAX_BODY_BYTES (413 over it)."""
    raw = _raw_body(request, ACTIVITIES_MAX_BODY_BYTES)
    if len(raw) > MAX_BODY_BYTES and not raw.lstrip()[:1] == b"[":
        raise PayloadTooLarge(
            f"the body is over {MAX_BODY_BYTES // 1024} KiB (a list of activities may take "
            f"{ACTIVITIES_MAX_BODY_BYTES // 1024} KiB)"
        )
    return _json_body(request, raw)


def _check_text(request: Request, args: Mapping[str, Any]) -> None:
    """Path and query parameters hold no NUL or lone surrogate (422 naming the parameter)."""
    from .safejson import bad_text

    named = [(_camel(name), value) for name, value in args.items() if isinstance(value, str)]
    named += [(name, value) for name, values in request.args.lists() for value in [name, *values]]
    for name, value in named:
        reason = bad_text(value)
        if reason:
            field = name if bad_text(name) is None else "query"
            raise ValidationFailed("the request has invalid fields", [{"field": field, "message": reason}])


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _body_finished(request: Request) -> bool:
    """Read and discard what the handler left of the body, up to DRAIN_BYTES: True when nothing is left,
    so the connection can carry the next request; False when it must close."""
    if request.environ.get("leadwatch.close"):
        return False
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES + DRAIN_BYTES:
        return False
    try:
        stream = request.stream
        for _ in range(DRAIN_BYTES // 65536 + 1):
            if not stream.read(65536):
                return True
    except (OSError, HTTPException):
        return False
    return False


def _json_object(request: Request, invalid: type[LeadwatchError] = ValidationFailed) -> dict[str, Any]:
    body = _json_body(request)
    if not isinstance(body, dict):
        raise invalid("the body must be a JSON object", [{"field": "body", "message": "must be an object"}])
    return body


def _respond(status: int, body: dict, headers: dict[str, str] | None = None) -> Response:
    text = json.dumps(body, ensure_ascii=False).encode("utf-8", "replace")  # "replace": never fail to answer
    response = Response(text, status=status, mimetype="application/json")
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
        request_id = request.headers.get("X-Request-Id", "")
        if not _REQUEST_ID.match(request_id):
            request_id = uuid.uuid4().hex
        endpoint, tenant = None, None
        if self._cors.is_preflight(request):
            preflight = self._cors.preflight(request)
            if preflight.status_code < 400:
                return preflight
            refused = _error(Forbidden("this origin may not call leadwatch"))  # an error is our JSON, here too
            refused.headers["Vary"] = "Origin"
            return refused
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
            _check_text(request, args)
            caller = None if endpoint in _SELF_AUTHENTICATED else self._access.identify(request)
            if caller is not None:
                tenant = caller.tenant
                if caller.kind not in _CALLERS.get(endpoint, _DEFAULT_CALLERS):
                    raise Forbidden(f"a {caller.kind} caller may not call {endpoint}")
            result = _HANDLERS[endpoint](request, caller, self, **args)
            response = result if isinstance(result, Response) else _respond(*result)  # a Response streams
        except LeadwatchError as exc:
            response = _error(exc)
        except Exception:  # a defect: one log record, its traceback inside, and the request id to find it
            log.exception("unhandled error", extra={"request_id": request_id, "route": endpoint})
            response = _error(LeadwatchError("internal error", {"request_id": request_id}))
        if not _body_finished(request):
            response.headers["Connection"] = "close"  # the dev server closes; the cloud's front end buffers
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
