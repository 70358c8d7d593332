"""The `health` function: is the service up and its database reachable, and the OpenAPI description."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Request

from ..errors import Unavailable
from ..http.routes import endpoint

if TYPE_CHECKING:
    from ..http.routes import Services


@endpoint("GET", "/health", "Is the service up and its database reachable?", "Health", security="public")
def health(request: Request, caller: None, services: Services) -> tuple[int, dict[str, Any]]:
    try:
        services.store.ping()
    except Unavailable:
        return 503, {"status": "degraded", "database": "unreachable"}
    return 200, {"status": "ok", "database": "ok"}


@endpoint("GET", "/openapi.json", "This description", "OpenApiDocument", security="public", errors=())
def openapi(request: Request, caller: None, services: Services) -> tuple[int, dict[str, Any]]:
    """The OpenAPI description of every endpoint (pydantic is imported here, at the first call)."""
    from ..http.openapi import openapi_spec

    return 200, openapi_spec(services.endpoints)
