"""The `notifications` function: one run of the every-minute deliverer (the scheduler), see jobs/notifications.py."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from flask import Request

from ..http.routes import SCHEDULED_ERRORS, endpoint

if TYPE_CHECKING:
    from ..http.identity import Caller
    from ..http.routes import Services


@endpoint(
    "POST",
    "/api/notifications/deliver",
    "Write the morning digests come due, then send the webhook deliveries and WhatsApp pushes that are due",
    "DeliverResult",
    query="DeliverQuery",
    security="scheduler",
    errors=SCHEDULED_ERRORS,
)
def deliver_notifications(request: Request, caller: Caller, services: Services) -> tuple[int, dict[str, Any]]:
    """Write the morning digests come due, then send what is due (scheduler or service): one run,
    within the deliverer's time budget."""
    from ..jobs.notifications import run_notifications
    from ..models.notify import DeliverQuery
    from ..models.requests import parse

    query = parse(DeliverQuery, request.args.to_dict())
    started = time.perf_counter()
    result = run_notifications(services.store, services.greenapi, batch=query.batch, egress=services.egress)
    return 200, {"success": True, **result, "duration_ms": round((time.perf_counter() - started) * 1000, 1)}
