"""What a handler reads from a request: its body within the size limits (413 over them, 408 when it does
not arrive), its JSON (400 when not JSON, 422 naming the field that cannot be stored), path ids, and
path and query text without NUL or lone surrogates."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Request
from werkzeug.exceptions import HTTPException

from ..errors import BadRequest, LeadwatchError, NotFound, PayloadTooLarge, RequestTimeout, ValidationFailed
from ..stores.cursor import is_uuid

MAX_BODY_BYTES = 64 * 1024
ACTIVITIES_MAX_BODY_BYTES = 1024 * 1024  # a list of up to 1,000 activities (POST /api/activities/log)
GREENAPI_MAX_BODY_BYTES = 1024 * 1024  # a notification is never refused for its size: a longer one is kept cut
# After an early answer, what is left of an unread body is read and discarded up to this many bytes,
# so the connection can serve the next request; a longer rest is not read: the answer closes it.
DRAIN_BYTES = 1024 * 1024


def check_alert_id(value: str) -> str:
    """An alert id is a UUID in canonical form (8-4-4-4-12 hex); anything else names no alert."""
    if not is_uuid(value):
        raise NotFound("alert not found", {"field": "id"})
    return value


def raw_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request's body, at most `limit` bytes: 413 over it (checked before reading when the length
    is announced), 408 when the client stops sending it or leaves before the end."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the body is over {limit // 1024} KiB")
    try:
        raw = request.stream.read(limit + 1)
    except (OSError, HTTPException):  # a read timeout (dev server) or a client gone mid-body
        request.environ["leadwatch.close"] = True
        raise RequestTimeout("the body did not arrive in time") from None
    if len(raw) > limit:
        raise PayloadTooLarge(f"the body is over {limit // 1024} KiB")
    return raw


def json_body(request: Request, raw: bytes | None = None) -> Any:
    """The request's JSON body (or `raw`, already read): 413 over the limit, 400 when not JSON, 422
    naming the field when it holds what cannot be stored (NUL, lone surrogates, NaN, nesting, too
    many members); in a list body, the field is named by its place (`[3].meta`)."""
    from ..safejson import JsonProblem, load_json

    raw = raw_body(request) if raw is None else raw
    try:
        return load_json(raw)
    except JsonProblem as exc:
        field = exc.field.removeprefix("body") if exc.field.startswith("body[") else exc.field
        raise ValidationFailed("the request has invalid fields", [{"field": field, "message": exc.message}]) from None
    except ValueError as exc:
        raise BadRequest("the body is not valid JSON", {"reason": str(exc)[:200]}) from None


def activities_body(request: Request) -> Any:
    """The body of POST /api/activities/log: a list of activities may take up to
    ACTIVITIES_MAX_BODY_BYTES, anything else MAX_BODY_BYTES (413 over it)."""
    raw = raw_body(request, ACTIVITIES_MAX_BODY_BYTES)
    if len(raw) > MAX_BODY_BYTES and not raw.lstrip()[:1] == b"[":
        raise PayloadTooLarge(
            f"the body is over {MAX_BODY_BYTES // 1024} KiB (a list of activities may take "
            f"{ACTIVITIES_MAX_BODY_BYTES // 1024} KiB)"
        )
    return json_body(request, raw)


def greenapi_body(request: Request) -> tuple[bytes, bool]:
    """A Green-API notification's body (at most GREENAPI_MAX_BODY_BYTES), and whether it was cut there."""
    try:
        raw = request.stream.read(GREENAPI_MAX_BODY_BYTES + 1)
    except (OSError, HTTPException):
        request.environ["leadwatch.close"] = True
        raise RequestTimeout("the body did not arrive in time") from None
    return raw[:GREENAPI_MAX_BODY_BYTES], len(raw) > GREENAPI_MAX_BODY_BYTES


def json_object(request: Request, invalid: type[LeadwatchError] = ValidationFailed) -> dict[str, Any]:
    """The request's JSON body, which must be an object (else `invalid`, naming the body)."""
    body = json_body(request)
    if not isinstance(body, dict):
        raise invalid("the body must be a JSON object", [{"field": "body", "message": "must be an object"}])
    return body


def check_text(request: Request, args: Mapping[str, Any]) -> None:
    """Path and query parameters hold no NUL or lone surrogate (422 naming the parameter)."""
    from ..safejson import bad_text

    named = [(_camel(name), value) for name, value in args.items() if isinstance(value, str)]
    named += [(name, value) for name, values in request.args.lists() for value in [name, *values]]
    for name, value in named:
        reason = bad_text(value)
        if reason:
            field = name if bad_text(name) is None else "query"
            raise ValidationFailed("the request has invalid fields", [{"field": field, "message": reason}])


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def body_finished(request: Request) -> bool:
    """Read and discard what the handler left of the body, up to DRAIN_BYTES: True when nothing is left,
    so the connection can carry the next request; False when it must close."""
    if request.environ.get("leadwatch.close"):
        return False
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES + DRAIN_BYTES:
        return False
    try:
        stream = request.stream
        for _ in range(DRAIN_BYTES // 65536 + 1):
            if not stream.read(65536):
                return True
    except (OSError, HTTPException):
        return False
    return False
