"""Endpoints are declared once, above their handler: route, method, who may call it, and what the
OpenAPI description says of it.

    @endpoint("POST", "/api/activities/log", "Log an activity ...", "ActivitiesAnswer", body="ActivitiesBody")
    def log_activity(request, caller, services): ...

The function group is the handler's module (`leadwatch.handlers.<group>`, one per deployed function).
`Api` (http/app.py) routes each group's declarations and the OpenAPI generator (http/openapi.py) reads
the same ones. Models are named, not imported: handlers load pydantic at first use, not at cold start.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

if TYPE_CHECKING:
    from ..devtools.outbox import DevOutbox
    from ..egress import Egress
    from ..integrations.email_out import EmailChannel
    from ..integrations.espo import EspoCrm
    from ..integrations.greenapi import GreenApi
    from ..stores.store import Store

Security = Literal["user", "scheduler", "webhook", "public"]

USER_ERRORS = (400, 401, 403, 422, 503)
BODY_ERRORS = (400, 401, 403, 413, 422, 503)
SEND_ERRORS = (*BODY_ERRORS, 404, 409, 502, 504)
SCHEDULED_ERRORS = (400, 401, 403, 422, 503)

# Who may call what: scheduled work is for the scheduler and the service; the rest for users and servers.
# Webhooks and public routes identify no caller (the webhook checks its own credentials).
CALLERS: dict[Security, frozenset[str] | None] = {
    "user": frozenset({"user", "service", "open"}),
    "scheduler": frozenset({"scheduler", "service", "open"}),
    "webhook": None,
    "public": None,
}


class Services(Protocol):
    """What a handler may use beside the request and its caller."""

    @property
    def store(self) -> Store: ...

    @property
    def greenapi(self) -> GreenApi: ...

    @property
    def espo(self) -> EspoCrm | None: ...

    @property
    def egress(self) -> Egress:
        """Where tenants' webhooks may go (the operator's rule; loopback too in the dev server's open mode)."""
        ...

    @property
    def espo_url(self) -> str | None:
        """EspoCRM's address (ESPO_URL): each listed alert links to its lead there."""
        ...

    @property
    def email(self) -> EmailChannel:
        """The email sender (None: not configured), the default From, the inbound webhook's tokens."""
        ...

    @property
    def outbox(self) -> DevOutbox | None:
        """Under `leadwatch dev` only: stands in for a channel with no provider (GET /dev/outbox)."""
        ...

    @property
    def open(self) -> bool:
        """Does the API run in the dev server's open mode (no credentials, X-Tenant trusted)?"""
        ...

    @property
    def endpoints(self) -> tuple[Endpoint, ...]: ...


@dataclass(frozen=True)
class Endpoint:
    """One route: `method path` of function `group`, answered by `handler`, described by the rest."""

    method: str
    path: str  # a werkzeug rule: /api/alerts/<alert_id>/resolve
    handler: Callable[..., Any]
    group: str
    summary: str
    response: str | None  # the name of the 200 body's model (None: a CSV file)
    tag: str
    query: str | None = None  # names of request models
    body: str | None = None
    errors: tuple[int, ...] = USER_ERRORS
    security: Security = "user"
    description: str = ""
    status: int = 200  # the success status (201 where the route creates)
    raw_body: str | None = None  # a body that is not JSON: its media type (the email webhook's message/rfc822)

    @property
    def name(self) -> str:
        """The endpoint's name: its handler's (the OpenAPI operationId, the `route` of the logs)."""
        return self.handler.__name__

    @property
    def callers(self) -> frozenset[str] | None:
        """The kinds of caller allowed; None when the route identifies no caller."""
        return CALLERS[self.security]


F = TypeVar("F", bound=Callable[..., Any])


def endpoint(
    method: str,
    path: str,
    summary: str,
    response: str | None,
    *,
    query: str | None = None,
    body: str | None = None,
    errors: tuple[int, ...] = USER_ERRORS,
    security: Security = "user",
    description: str = "",
    status: int = 200,
    tag: str | None = None,
    raw_body: str | None = None,
) -> Callable[[F], F]:
    """Declare the decorated handler as the endpoint `method path` of its module's function group."""

    def declare(handler: F) -> F:
        group = handler.__module__.rpartition(".")[2]
        declared = Endpoint(
            method=method,
            path=path,
            handler=handler,
            group=group,
            summary=summary,
            response=response,
            tag=tag or group,
            query=query,
            body=body,
            errors=errors,
            security=security,
            description=description,
            status=status,
            raw_body=raw_body,
        )
        handler.__dict__["endpoint"] = declared
        return handler

    return declare


def declared_in(modules: Iterable[ModuleType]) -> tuple[Endpoint, ...]:
    """The endpoints declared in `modules`, in the order of the modules and of their definitions."""
    return tuple(
        value.__dict__["endpoint"]
        for module in modules
        for value in vars(module).values()
        if callable(value) and getattr(value, "__module__", None) == module.__name__ and "endpoint" in value.__dict__
    )
