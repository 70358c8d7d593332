"""CORS for the configured origins only, so a browser frontend can call the function URLs."""

from __future__ import annotations

from flask import Request, Response

ALLOWED_HEADERS = "Authorization, Content-Type, X-Tenant, X-Request-Id, Idempotency-Key"
ALLOWED_METHODS = "GET, POST, OPTIONS"


class CorsPolicy:
    def __init__(self, origins: tuple[str, ...]) -> None:
        self._origins = frozenset(origins)

    def allows(self, origin: str | None) -> bool:
        return bool(origin) and (origin in self._origins or "*" in self._origins)

    @staticmethod
    def is_preflight(request: Request) -> bool:
        return request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers

    def preflight(self, request: Request) -> Response:
        """204 with the allowed methods and headers for a configured origin; 403 for any other."""
        origin = request.headers.get("Origin")
        if origin is None or not self.allows(origin):
            return Response(status=403, headers={"Vary": "Origin"})
        return Response(
            status=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": ALLOWED_METHODS,
                "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                "Access-Control-Max-Age": "600",
                "Vary": "Origin",
            },
        )

    def decorate(self, request: Request, response: Response) -> None:
        origin = request.headers.get("Origin")
        response.headers.add("Vary", "Origin")
        if self.allows(origin):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = "X-Request-Id, Retry-After"
