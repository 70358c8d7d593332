"""The HTTP functions: route → identify the caller → parse → one call into the domain → JSON.

`Api.handle(request, group)` is what both `functions/main.py` (one deployed function per group)
and the dev server (every group on one port) call, so both serve the very same handlers: those
declared with `@endpoint` in `leadwatch.handlers` (http/routes.py).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Request, Response
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import MethodNotAllowed as _MethodNotAllowed
from werkzeug.routing import Map, Rule

from ..egress import Egress
from ..errors import Forbidden, LeadwatchError, MethodNotAllowed, NotFound, Unauthorized
from ..handlers import ENDPOINTS
from ..integrations.email_out import EmailChannel, SmtpSender, parse_smtp_url
from ..integrations.espo import EspoCrm
from ..integrations.greenapi import GreenApi
from ..stores.store import Store
from .cors import CorsPolicy
from .identity import OpenAccess, VerifiedAccess
from .inputs import body_finished, check_text

if TYPE_CHECKING:
    from ..config import Settings
    from ..devtools.outbox import DevOutbox
    from .routes import Services

log = logging.getLogger("leadwatch.http")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@functools.cache
def url_map(group: str | None) -> Map:
    """The routes of function `group` (every group's when None), compiled at the group's first request:
    werkzeug compiles each rule, so a deployed function compiles its own few, not all of them at cold start."""
    endpoints = [e for e in ENDPOINTS if group is None or e.group == group]
    if not endpoints:
        raise KeyError(f"no function group {group!r}")
    return Map([Rule(e.path, methods=[e.method], endpoint=e.name) for e in endpoints])


def _respond(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
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
    `access` identifies, to browsers of the `cors_origins`, sending WhatsApp through `greenapi` and
    email through `email`. `outbox` (a DevOutbox) is set by `leadwatch dev` only: it stands in for a
    channel with no provider. `espo_url` (ESPO_URL) links each listed alert to its lead in EspoCRM.
    Tenants' webhooks go where `egress` allows."""

    def __init__(
        self,
        store: Store | Callable[[], Store],
        access: OpenAccess | VerifiedAccess,
        cors_origins: tuple[str, ...] = (),
        greenapi: GreenApi | None = None,
        espo: EspoCrm | None = None,
        egress: Egress | None = None,
        *,
        espo_url: str | None = None,
        email: EmailChannel | None = None,
    ) -> None:
        self._access = access
        self._egress = egress or Egress()  # the operator's rule (LEADWATCH_WEBHOOK_ALLOWED_NETWORKS)
        self._cors = CorsPolicy(cors_origins)
        self._store = store if isinstance(store, Store) else None
        self._make_store = store if not isinstance(store, Store) else None
        self.greenapi = greenapi or GreenApi(())
        self.espo = espo
        self.espo_url = espo_url
        self.email = email or EmailChannel()
        self.outbox: DevOutbox | None = None
        self.endpoints = ENDPOINTS
        self._by_name = {e.name: e for e in ENDPOINTS}

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        store: Store | Callable[[], Store],
        access: OpenAccess | VerifiedAccess,
        cors_origins: tuple[str, ...] | None = None,
    ) -> Api:
        """The Api a deployment's settings describe (Green-API instances, EspoCRM, CORS, email: an SMTP
        sender when LEADWATCH_SMTP_URL is set, webhook egress)."""
        espo = (
            EspoCrm(settings.espo_url, settings.espo_api_key) if settings.espo_url and settings.espo_api_key else None
        )
        return cls(
            store,
            access,
            settings.cors_origins if cors_origins is None else cors_origins,
            GreenApi(settings.greenapi_instances),
            espo,
            Egress.from_settings(settings),
            espo_url=settings.espo_url,
            email=EmailChannel(
                SmtpSender(parse_smtp_url(settings.smtp_url)) if settings.smtp_url else None,
                settings.email_from,
                settings.email_webhook_tokens,
            ),
        )

    @property
    def store(self) -> Store:
        if self._store is None:
            assert self._make_store is not None
            self._store = self._make_store()
        return self._store

    @property
    def open(self) -> bool:
        """Does the API run in the dev server's open mode (where http to a loopback receiver is allowed)?"""
        return bool(getattr(self._access, "open", False))

    @property
    def egress(self) -> Egress:
        """Where tenants' webhooks may go: the operator's rule, and loopback too in the dev server's open mode."""
        return self._egress.with_loopback() if self.open else self._egress

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
            try:
                endpoint, args = url_map(group).bind_to_environ(request.environ).match()
            except _MethodNotAllowed as exc:
                raise MethodNotAllowed(
                    f"{request.method} is not allowed here", {"allowed": sorted(exc.valid_methods or [])}
                ) from None
            except HTTPException:
                raise NotFound(f"no route for {request.path}") from None
            check_text(request, args)
            declared = self._by_name[endpoint]
            caller = None  # health, the API description and the webhook (which checks its own) identify none
            if declared.callers is not None:
                caller = self._access.identify(request)
                tenant = caller.tenant
                if caller.kind not in declared.callers:
                    raise Forbidden(f"a {caller.kind} caller may not call {endpoint}")
            services: Services = self  # what handlers get (and mypy checks the Api offers it)
            result = declared.handler(request, caller, services, **args)
            response = result if isinstance(result, Response) else _respond(*result)  # a Response streams
        except LeadwatchError as exc:
            response = _error(exc)
        except Exception:  # a defect: one log record, its traceback inside, and the request id to find it
            log.exception("unhandled error", extra={"request_id": request_id, "route": endpoint})
            response = _error(LeadwatchError("internal error", {"request_id": request_id}))
        if not body_finished(request):
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
