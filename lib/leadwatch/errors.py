"""The small family of errors that the HTTP layer maps to status codes in one place."""

from __future__ import annotations

from typing import Any


class LeadwatchError(Exception):
    """Base of every error leadwatch reports to a caller."""

    status = 500
    code = "internal_error"
    retry_after: int | None = None  # seconds, sent as Retry-After

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class BadRequest(LeadwatchError):
    status, code = 400, "bad_request"


class Unauthorized(LeadwatchError):
    status, code = 401, "unauthorized"


class Forbidden(LeadwatchError):
    status, code = 403, "forbidden"


class NotFound(LeadwatchError):
    status, code = 404, "not_found"


class MethodNotAllowed(LeadwatchError):
    status, code = 405, "method_not_allowed"


class RequestTimeout(LeadwatchError):
    """408: the client stopped sending its body."""

    status, code = 408, "request_timeout"


class Conflict(LeadwatchError):
    status, code = 409, "conflict"


class PayloadTooLarge(LeadwatchError):
    status, code = 413, "payload_too_large"


class ValidationFailed(LeadwatchError):
    """422: `details` is a list of {field, message}, one per offending field."""

    status, code = 422, "validation_failed"


class Unavailable(LeadwatchError):
    """503: the database (or Supabase) cannot be reached; the caller should retry."""

    status, code = 503, "database_unavailable"
    retry_after = 5


class ConfigError(Exception):
    """A setting is missing or malformed; raised at start, naming the variable."""
