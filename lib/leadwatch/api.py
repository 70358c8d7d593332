"""The HTTP functions: route → identify the caller → parse → one store call → JSON.

`Api.handle(request, group)` is what both `functions/main.py` (one deployed function per group)
and the dev server (every group on one port) call, so both serve the very same handlers.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any, Callable

from flask import Request, Response
from werkzeug.exceptions import HTTPException, MethodNotAllowed as _MethodNotAllowed
from werkzeug.routing import Map, Rule

from .cors import CorsPolicy
from .errors import (BadRequest, Forbidden, LeadwatchError, MethodNotAllowed, NotFound, PayloadTooLarge, Unauthorized,
                     Unavailable, ValidationFailed)
from .identity import Caller, OpenAccess, VerifiedAccess
from .models import ActivityIn, AlertQuery, LeadsIn, TimelineQuery, parse
from .store import Store

log = logging.getLogger("leadwatch.http")

MAX_BODY_BYTES = 64 * 1024

# One deployed function per group; the dev server serves them all.
GROUPS: dict[str, list[Rule]] = {
    "activities": [Rule("/api/activities/log", methods=["POST"], endpoint="log_activity")],
    "alerts": [
        Rule("/api/alerts/active", methods=["GET"], endpoint="list_alerts"),
        Rule("/api/alerts/<alert_id>/resolve", methods=["POST"], endpoint="resolve_alert"),
    ],
    "sweep": [Rule("/api/alerts/sweep", methods=["POST"], endpoint="sweep")],
    "leads": [
        Rule("/api/leads", methods=["POST"], endpoint="upsert_leads"),
        Rule("/api/leads/<lead_id>/activities", methods=["GET"], endpoint="lead_activities"),
    ],
    "health": [Rule("/health", methods=["GET"], endpoint="health")],
}


# Handlers ---------------------------------------------------------------------------------------

def log_activity(request: Request, caller: Caller, store: Store) -> tuple[int, dict]:
    tenant = caller.require_tenant()
    activity = parse(ActivityIn, _json_object(request))
    return 200, {"success": True, **store.log_activity(tenant, activity, caller.viewer)}


def list_alerts(request: Request, caller: Caller, store: Store) -> tuple[int, dict]:
    tenant = caller.require_tenant()
    query = parse(AlertQuery, request.args.to_dict())
    return 200, {"success": True, **store.list_active_alerts(tenant, query, caller.viewer)}


def resolve_alert(request: Request, caller: Caller, store: Store, alert_id: str) -> tuple[int, dict]:
    tenant = caller.require_tenant()
    if not _is_uuid(alert_id):
        raise NotFound("alert not found", {"field": "id"})
    result = store.resolve_alert(tenant, alert_id, caller.actor, caller.viewer)
    return 200, {"success": True, "message": "Alerte résolue", **result}


def sweep(request: Request, caller: Caller, store: Store) -> tuple[int, dict]:
    started = time.perf_counter()
    result = store.sweep(caller.tenant)
    return 200, {"success": True, **result, "duration_ms": round((time.perf_counter() - started) * 1000, 1)}


def upsert_leads(request: Request, caller: Caller, store: Store) -> tuple[int, dict]:
    tenant = caller.require_tenant()
    body = _json_body(request)
    if isinstance(body, dict) and isinstance(body.get("leads"), list) and len(body) == 1:
        body = body["leads"]
    leads = parse(LeadsIn, {"leads": body if isinstance(body, list) else [body]})
    return 200, {"success": True, **store.upsert_leads(tenant, leads.leads, caller.viewer)}


def lead_activities(request: Request, caller: Caller, store: Store, lead_id: str) -> tuple[int, dict]:
    tenant = caller.require_tenant()
    query = parse(TimelineQuery, request.args.to_dict())
    return 200, {"success": True, **store.list_lead_activities(tenant, lead_id, query, caller.viewer)}


def health(request: Request, caller: Caller, store: Store) -> tuple[int, dict]:
    try:
        store.ping()
    except Unavailable:
        return 503, {"status": "degraded", "database": "unreachable"}
    return 200, {"status": "ok", "database": "ok"}


# Who may call what: the sweep is for the scheduler and the service; the rest for users and servers.
_CALLERS = {"sweep": {"scheduler", "service", "open"}}
_DEFAULT_CALLERS = {"user", "service", "open"}
_PUBLIC = {"health"}  # answered without credentials: it says only whether the database answers

_HANDLERS: dict[str, Callable[..., tuple[int, dict]]] = {
    "log_activity": log_activity,
    "list_alerts": list_alerts,
    "resolve_alert": resolve_alert,
    "sweep": sweep,
    "upsert_leads": upsert_leads,
    "lead_activities": lead_activities,
    "health": health,
}


# Plumbing ---------------------------------------------------------------------------------------

def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


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


def _json_object(request: Request) -> dict[str, Any]:
    body = _json_body(request)
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a JSON object", [{"field": "body", "message": "must be an object"}])
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
    if isinstance(exc, Unavailable):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="leadwatch"'
    if isinstance(exc, MethodNotAllowed) and exc.details:
        headers["Allow"] = ", ".join(exc.details["allowed"])
    body = {"success": False, "error": {"code": exc.code, "message": exc.message, "details": exc.details}}
    return _respond(exc.status, body, headers)


class Api:
    """Serves the handlers over one store (created lazily, once per instance), for callers that
    `access` identifies, to browsers of the `cors_origins`."""

    def __init__(self, store: Store | Callable[[], Store], access: OpenAccess | VerifiedAccess,
                 cors_origins: tuple[str, ...] = ()) -> None:
        self._access = access
        self._cors = CorsPolicy(cors_origins)
        self._store = store if isinstance(store, Store) else None
        self._make_store = store if not isinstance(store, Store) else None
        self._maps = {group: Map([rule.empty() for rule in rules]) for group, rules in GROUPS.items()}
        self._all = Map([rule.empty() for rules in GROUPS.values() for rule in rules])

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = self._make_store()
        return self._store

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
                raise MethodNotAllowed(f"{request.method} is not allowed here",
                                       {"allowed": sorted(exc.valid_methods or [])}) from None
            except HTTPException:
                raise NotFound(f"no route for {request.path}") from None
            caller = None if endpoint in _PUBLIC else self._access.identify(request)
            if caller is not None:
                tenant = caller.tenant
                if caller.kind not in _CALLERS.get(endpoint, _DEFAULT_CALLERS):
                    raise Forbidden(f"a {caller.kind} caller may not call {endpoint}")
            status, body = _HANDLERS[endpoint](request, caller, self.store, **args)
            response = _respond(status, body)
        except LeadwatchError as exc:
            response = _error(exc)
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            response = _error(LeadwatchError("internal error", {"request_id": request_id}))
        response.headers["X-Request-Id"] = request_id
        self._cors.decorate(request, response)
        log.info(json.dumps({
            "request_id": request_id, "tenant": tenant, "route": endpoint, "method": request.method,
            "status": response.status_code, "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        }))
        return response
