"""The `sweep` function: run the time-based rules for the leads that fell due (the scheduler, daily)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from flask import Request

from ..http.routes import endpoint

if TYPE_CHECKING:
    from ..http.identity import Caller
    from ..http.routes import Services


@endpoint(
    "POST",
    "/api/alerts/sweep",
    "Run the time-based rules for the leads that fell due",
    "SweepResult",
    security="scheduler",
    errors=(400, 401, 403, 503),
)
def sweep(request: Request, caller: Caller, services: Services) -> tuple[int, dict[str, Any]]:
    started = time.perf_counter()
    result = services.store.sweep(caller.tenant)
    return 200, {"success": True, **result, "duration_ms": round((time.perf_counter() - started) * 1000, 1)}
