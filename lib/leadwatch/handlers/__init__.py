"""The handlers: one module per deployed function group (functions/main.py), each endpoint declared once
above its handler with `@endpoint` (http/routes.py)."""

from ..http.routes import Endpoint, declared_in
from . import (
    activities,
    alerts,
    email,
    email_webhook,
    greenapi_webhook,
    health,
    leads,
    members,
    notifications,
    retention,
    rules,
    sweep,
    webhooks,
    whatsapp,
)

# In the order the functions are listed (and described in the OpenAPI document).
ENDPOINTS: tuple[Endpoint, ...] = declared_in(
    [
        activities,
        alerts,
        sweep,
        leads,
        rules,
        retention,
        whatsapp,
        greenapi_webhook,
        email,
        email_webhook,
        health,
        webhooks,
        notifications,
        members,
    ]
)
FUNCTION_GROUPS: tuple[str, ...] = tuple(dict.fromkeys(endpoint.group for endpoint in ENDPOINTS))
