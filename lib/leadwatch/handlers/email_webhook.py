"""The `email_webhook` function: inbound email, one raw RFC 5322 message per call (POST /webhooks/email,
or /webhooks/email/mime for the forwarders that post raw MIME only to such URLs)."""

from __future__ import annotations

import hmac
import json
import logging
import re
from typing import TYPE_CHECKING, Any

from flask import Request

from ..errors import BadRequest, LeadwatchError, RequestTimeout, Unauthorized, Unavailable
from ..http.routes import endpoint
from ..integrations.email_in import SNIPPET_CHARS, Bounce, InboundEmail, NotABounce, read_email

if TYPE_CHECKING:
    from ..http.routes import Services

log = logging.getLogger("leadwatch.email")

EMAIL_MAX_BYTES = 1024 * 1024  # as a Green-API notification: a longer message is kept aside, cut
_FORM_MAX_BYTES = 4 * EMAIL_MAX_BYTES  # a provider's form (the message plus its parsed copies)
_FORM_FIELDS = ("body-mime", "email")  # Mailgun's raw MIME field, SendGrid's ("POST the raw, full MIME message")
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_DESCRIPTION = (
    "A reply is logged for the lead with the sender's address (once per Message-ID), an automatic reply is "
    "stored as `auto_reply` (not contact), a bounce marks the send it reports as failed; a message that cannot "
    "be read, or over 1 MiB, is answered 200 and kept aside (GET /api/email/rejected)."
)


@endpoint(
    "POST",
    "/webhooks/email",
    "Inbound email: one raw RFC 5322 message (message/rfc822, or a provider's raw-MIME form field)",
    "EmailWebhookAck",
    raw_body="message/rfc822",
    security="webhook",
    errors=(400, 401, 503),
    description=_DESCRIPTION,
    tag="email",
)
def email_webhook(request: Request, caller: None, services: Services) -> tuple[int, dict[str, Any]]:
    """One raw message: 200 once stored, applied (a bounce), ignored, or kept aside as unreadable (a
    dead letter), so the forwarder never resends it for what it says; 5xx only when storing failed."""
    tenant = verify_webhook_tenant(request, services)
    raw, cut = _message_bytes(request)
    if cut:
        return _reject(services, tenant, f"the message is over {EMAIL_MAX_BYTES // 1024} KiB; kept cut", raw)
    try:
        event = read_email(raw)
        return _store(services, tenant, event)
    except Unavailable:
        raise
    except LeadwatchError as exc:
        if exc.status >= 500:
            raise
        reason = exc.message
    except Exception:  # a defect: logged with its traceback, and the message kept, not lost
        log.exception("unhandled error reading an inbound email", extra={"tenant": tenant})
        reason = "internal error"
    return _reject(services, tenant, reason, raw)


@endpoint(
    "POST",
    "/webhooks/email/mime",
    "Inbound email, as POST /webhooks/email, at a path ending in `mime` (Mailgun posts raw MIME only to such URLs)",
    "EmailWebhookAck",
    raw_body="message/rfc822",
    security="webhook",
    errors=(400, 401, 503),
    description=_DESCRIPTION,
    tag="email",
)
def email_webhook_mime(request: Request, caller: None, services: Services) -> tuple[int, dict[str, Any]]:
    """POST /webhooks/email/mime: the same as POST /webhooks/email."""
    return email_webhook(request, caller, services)


def verify_webhook_tenant(request: Request, services: Services) -> str:
    """The tenant whose webhook token the request carries (`Authorization: Bearer`, or `?token=` for
    forwarders that cannot set a header), compared in constant time; in open (dev) mode without a
    token, the X-Tenant header. Else 401."""
    header = request.headers.get("Authorization") or ""
    scheme, _, bearer = header.partition(" ")
    token = bearer.strip() if scheme.lower() == "bearer" else request.args.get("token", "")
    if not token and services.open:
        tenant = (request.headers.get("X-Tenant") or "").strip()
        if not _TENANT.match(tenant):
            raise BadRequest("the X-Tenant header is required", {"header": "X-Tenant"})
        return tenant
    found = None
    for tenant, expected in services.email.webhook_tokens:  # every comparison runs, so timing tells nothing
        if hmac.compare_digest(token.encode(), expected.encode()):
            found = tenant
    if found is None:
        raise Unauthorized("unknown email webhook token")
    return found


def _message_bytes(request: Request) -> tuple[bytes, bool]:
    """The raw message (at most EMAIL_MAX_BYTES) and whether it was cut there: the body itself, or the
    raw-MIME field of a provider's form (Mailgun's `body-mime`, SendGrid's `email`)."""
    kind = (request.mimetype or "").lower()
    if kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
        if request.content_length is None or request.content_length > _FORM_MAX_BYTES:
            raw, _ = _read(request, EMAIL_MAX_BYTES)
            return raw, True
        value = next((request.form[name] for name in _FORM_FIELDS if name in request.form), None)
        if value is None:
            return b"", False  # unreadable: kept aside (empty) with the reason read_email gives
        raw = value.encode("utf-8", "surrogateescape")
        return raw[:EMAIL_MAX_BYTES], len(raw) > EMAIL_MAX_BYTES
    return _read(request, EMAIL_MAX_BYTES)


def _read(request: Request, limit: int) -> tuple[bytes, bool]:
    from werkzeug.exceptions import HTTPException

    try:
        raw = request.stream.read(limit + 1)
    except (OSError, HTTPException):
        request.environ["leadwatch.close"] = True
        raise RequestTimeout("the body did not arrive in time") from None
    return raw[:limit], len(raw) > limit


def _store(services: Services, tenant: str, event: InboundEmail | Bounce | NotABounce) -> tuple[int, dict[str, Any]]:
    if isinstance(event, NotABounce):
        log.info(json.dumps({"email": "ignored", "reason": f"delivery report: {event.action}", "tenant": tenant}))
        return 200, {"success": True, "ignored": f"delivery report: {event.action}"}
    if isinstance(event, Bounce):
        result = services.store.set_activity_status(tenant, "email", event.external_id, "failed")
        bounce = {"messageId": event.external_id, "recipient": event.recipient, "status": event.status}
        return 200, {"success": True, "bounce": bounce, **result}
    espo = services.espo
    result = services.store.log_email(tenant, event, create_lead=espo is None)
    if result.get("unknown_email") and espo is not None:
        lead = espo.find_lead_by_email(event.sender)
        if lead is not None:
            services.store.upsert_leads(tenant, [lead])
        result = services.store.log_email(tenant, event)
    return 200, {"success": True, **result}


def _reject(services: Services, tenant: str, reason: str, raw: bytes) -> tuple[int, dict[str, Any]]:
    """Keep an unreadable message as received and answer 200."""
    result = services.store.reject_email(tenant, reason, raw)
    log.warning(json.dumps({"email": "rejected", "reason": reason, "tenant": tenant}))
    return 200, {"success": True, "rejected": {**result, "reason": reason}}


assert SNIPPET_CHARS <= 100  # the database keeps 100 characters of a snippet
