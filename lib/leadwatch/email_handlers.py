"""The email routes: sending a follow-up (an alert's `send_email` action, or the chat assistant's
POST /api/email/send) and the inbound webhook (POST /webhooks/email, one raw message per call).

A send is logged in two steps, as a WhatsApp send is: handed to the mail server, then logged as a
`sent` outbound whose external id is its Message-ID; when the server refuses it, it is logged as
`failed` (not contact) and the error names the cause (502 and a code). A request carrying an
`Idempotency-Key` sends at most once: a retry answers the first send's answer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from typing import TYPE_CHECKING, Any

from .email_in import SNIPPET_CHARS, Bounce, InboundEmail, NotABounce, read_email
from .email_out import EmailError, compose, make_msgid_for, message_id_for
from .errors import BadRequest, Conflict, LeadwatchError, RequestTimeout, Unauthorized, Unavailable, ValidationFailed

if TYPE_CHECKING:
    from flask import Request

    from .api import Api
    from .identity import Caller

log = logging.getLogger("leadwatch.email")

EMAIL_MAX_BYTES = 1024 * 1024  # as a Green-API notification: a longer message is kept aside, cut
_FORM_MAX_BYTES = 4 * EMAIL_MAX_BYTES  # a provider's form (the message plus its parsed copies)
_FORM_FIELDS = ("body-mime", "email")  # Mailgun's raw MIME field, SendGrid's ("POST the raw, full MIME message")
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


# Sending ------------------------------------------------------------------------------------------


def run_email_action(request: Request, caller: Caller, api: Api, alert_id: str) -> tuple[int, dict]:
    """The `send_email` action of an alert: its rule's subject and text, {name} filled in. The key is
    claimed before the alert is read, so a retry after the send (which resolved the alert) replays it."""
    tenant = caller.require_tenant()
    key = _idempotency_key(request)
    replayed = _claim(api, tenant, key, ["action", caller.actor, alert_id])
    if replayed is not None:
        return 200, replayed
    try:
        prepared = api.store.prepare_email(tenant, alert_id=alert_id, viewer=caller.viewer)
    except Exception:
        _release(api, tenant, key)
        raise
    return send(api, caller, prepared, prepared["subject"], prepared["text"], key)


def send_email(request: Request, caller: Caller, api: Api) -> tuple[int, dict]:
    """POST /api/email/send {leadId, subject?, message}: the chat assistant's path, as /api/whatsapp/send."""
    from .api import _json_object
    from .email_models import EmailSendIn
    from .models import parse

    tenant = caller.require_tenant()
    body = parse(EmailSendIn, _json_object(request))
    key = _idempotency_key(request)
    prepared = api.store.prepare_email(tenant, lead_id=body.leadId, viewer=caller.viewer)
    subject = body.subject or _default_subject(body.message)
    replayed = _claim(api, tenant, key, ["send", caller.actor, body.leadId, subject, body.message])
    if replayed is not None:
        return 200, replayed
    return send(api, caller, prepared, subject, body.message, key)


def send(
    api: Api, caller: Caller, prepared: dict[str, Any], subject: str, text: str, key: str | None = None
) -> tuple[int, dict]:
    """Send `text` to the prepared lead and log it, under the Idempotency-Key `key` (claimed already)."""
    from .models import ActivityIn

    tenant = caller.require_tenant()
    lead = prepared["lead"]
    try:  # nothing is sent, nor logged, when there is no way to send or no address to write to
        sender, from_address = _sending(api, prepared)
        message_id = message_id_for(tenant, key, from_address) if key is not None else make_msgid_for(from_address)
        message = compose(
            sender=from_address, to=lead["email"], to_name=lead.get("name"), subject=subject, text=text,
            message_id=message_id,
        )  # fmt: skip
    except EmailError:
        _release(api, tenant, key)
        raise
    meta = {"provider": "smtp", "subject": subject, "messageId": message_id, "alertType": prepared.get("alert_type")}
    outbound = {"leadId": lead["lead_id"], "channel": "email", "direction": "out", "messageSnippet": text}
    try:
        sender.send(message)
    except EmailError as exc:
        try:
            failed = ActivityIn(**outbound, status="failed", meta={**meta, "error": exc.code})
            api.store.log_activity(tenant, failed, caller.viewer)
        finally:
            _release(api, tenant, key)  # nothing was sent: a retry may send
        raise
    # Sent: from here on the key stays claimed (a retry meanwhile answers 409, never sends again).
    sent = ActivityIn(**outbound, status="sent", externalId=message_id, meta=meta)
    logged = api.store.log_activity(tenant, sent, caller.viewer)
    answer = {
        "success": True,
        "sent": {"to": lead["email"], "subject": subject, "messageId": message_id, "message": text},
        "activity": logged["activity"],
        "alerts": logged["alerts"],
    }
    if key is not None:
        api.store.settle_email_send(tenant, key, answer)
    return 200, answer


def _claim(api: Api, tenant: str, key: str | None, asked: list[Any]) -> dict[str, Any] | None:
    """Claim `key` for the request `asked` (who asks, and what): None when this request may send, else the
    answer to replay (409 while the first send is under way; 422 when the key came with another request,
    or from another caller, who is never answered someone else's send)."""
    if key is None:
        return None
    digest = hashlib.sha256(json.dumps(asked, ensure_ascii=False).encode()).hexdigest()
    claim = api.store.claim_email_send(tenant, key, digest)
    if claim["claimed"]:
        return None
    if claim.get("answer") is None:
        raise Conflict("a send with this Idempotency-Key is under way", {"field": "Idempotency-Key"})
    return {**claim["answer"], "replayed": True}


def _release(api: Api, tenant: str, key: str | None) -> None:
    if key is not None:
        api.store.settle_email_send(tenant, key, None)


def _sending(api: Api, prepared: dict[str, Any]) -> tuple[Any, str]:
    channel = api.email
    from_address = prepared.get("from") or channel.default_from
    if channel.sender is None or not from_address:
        raise EmailError(
            "email_not_configured",
            "sending email is not configured (LEADWATCH_SMTP_URL and LEADWATCH_EMAIL_FROM)",
            status=409,
        )
    return channel.sender, from_address


def _idempotency_key(request: Request) -> str | None:
    value = request.headers.get("Idempotency-Key")
    if value is None:
        return None
    if not _KEY.match(value.strip()):
        raise ValidationFailed(
            "the request has invalid fields",
            [{"field": "Idempotency-Key", "message": "must be 1 to 255 visible ASCII characters"}],
        )
    return value.strip()


def _default_subject(text: str) -> str:
    first = " ".join(text.split())
    return first if len(first) <= 78 else first[:77].rstrip() + "…"


# The inbound webhook ------------------------------------------------------------------------------


def email_webhook(request: Request, caller: None, api: Api) -> tuple[int, dict]:
    """One raw message: 200 once stored, applied (a bounce), ignored, or kept aside as unreadable (a
    dead letter), so the forwarder never resends it for what it says; 5xx only when storing failed."""
    tenant = verify_webhook_tenant(request, api)
    raw, cut = _message_bytes(request)
    if cut:
        return _reject(api, tenant, f"the message is over {EMAIL_MAX_BYTES // 1024} KiB; kept cut", raw)
    try:
        event = read_email(raw)
        return _store(api, tenant, event)
    except Unavailable:
        raise
    except LeadwatchError as exc:
        if exc.status >= 500:
            raise
        reason = exc.message
    except Exception:  # a defect: logged with its traceback, and the message kept, not lost
        log.exception("unhandled error reading an inbound email", extra={"tenant": tenant})
        reason = "internal error"
    return _reject(api, tenant, reason, raw)


def verify_webhook_tenant(request: Request, api: Api) -> str:
    """The tenant whose webhook token the request carries (`Authorization: Bearer`, or `?token=` for
    forwarders that cannot set a header), compared in constant time; in open (dev) mode without a
    token, the X-Tenant header. Else 401."""
    header = request.headers.get("Authorization") or ""
    scheme, _, bearer = header.partition(" ")
    token = bearer.strip() if scheme.lower() == "bearer" else request.args.get("token", "")
    if not token and api.open_access:
        tenant = (request.headers.get("X-Tenant") or "").strip()
        if not _TENANT.match(tenant):
            raise BadRequest("the X-Tenant header is required", {"header": "X-Tenant"})
        return tenant
    found = None
    for tenant, expected in api.email.webhook_tokens:  # every comparison runs, so timing tells nothing
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


def _store(api: Api, tenant: str, event: InboundEmail | Bounce | NotABounce) -> tuple[int, dict]:
    if isinstance(event, NotABounce):
        log.info(json.dumps({"email": "ignored", "reason": f"delivery report: {event.action}", "tenant": tenant}))
        return 200, {"success": True, "ignored": f"delivery report: {event.action}"}
    if isinstance(event, Bounce):
        result = api.store.set_activity_status(tenant, "email", event.external_id, "failed")
        bounce = {"messageId": event.external_id, "recipient": event.recipient, "status": event.status}
        return 200, {"success": True, "bounce": bounce, **result}
    espo = api.espo
    result = api.store.log_email(tenant, event, create_lead=espo is None)
    if result.get("unknown_email") and espo is not None:
        lead = espo.find_lead_by_email(event.sender)
        if lead is not None:
            api.store.upsert_leads(tenant, [lead])
        result = api.store.log_email(tenant, event)
    return 200, {"success": True, **result}


def _reject(api: Api, tenant: str, reason: str, raw: bytes) -> tuple[int, dict]:
    """Keep an unreadable message as received and answer 200."""
    result = api.store.reject_email(tenant, reason, raw)
    log.warning(json.dumps({"email": "rejected", "reason": reason, "tenant": tenant}))
    return 200, {"success": True, "rejected": {**result, "reason": reason}}


def list_email_rejected(request: Request, caller: Caller, api: Api) -> tuple[int, dict]:
    """The tenant's inbound emails that could not be read (admins, managers, the service)."""
    from .models import RejectedQuery, parse

    tenant = caller.require_tenant()
    query = parse(RejectedQuery, request.args.to_dict())
    return 200, {"success": True, **api.store.list_email_rejected(tenant, query, caller.viewer)}


assert SNIPPET_CHARS <= 100  # the database keeps 100 characters of a snippet
