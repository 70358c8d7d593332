"""The `retention` function: one bounded batch of the nightly retention (the scheduler)."""

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
    "/api/retention/run",
    "Remove one bounded batch of what is past its tenant's retention",
    "RetentionRun",
    query="RetentionQuery",
    security="scheduler",
    errors=SCHEDULED_ERRORS,
)
def run_retention(request: Request, caller: Caller, services: Services) -> tuple[int, dict[str, Any]]:
    """One bounded batch of retention (`more: true` when another call has work left)."""
    from ..jobs.retention import retain_once
    from ..models.desk import RetentionQuery
    from ..models.requests import parse

    query = parse(RetentionQuery, request.args.to_dict())
    started = time.perf_counter()
    result = retain_once(services.store, caller.tenant, query.batch)
    return 200, {"success": True, **result, "duration_ms": round((time.perf_counter() - started) * 1000, 1)}
