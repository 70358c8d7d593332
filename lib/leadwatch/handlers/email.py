"""The `email` function: send an email to a lead and log it (the chat assistant's POST /api/email/send,
and an alert's email follow-up, run by `actions`), and the inbound emails that could not be read.

A send is logged in two steps, as a WhatsApp send is: handed to the mail server, then logged as a
`sent` outbound whose external id is its Message-ID; when the server refuses it, it is logged as
`failed` (not contact) and the error names the cause (502 and a code). A request carrying an
`Idempotency-Key` sends at most once: a retry answers the first send's answer.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, Any

from flask import Request

from ..errors import Conflict, ValidationFailed
from ..http.inputs import json_object
from ..http.routes import SEND_ERRORS, endpoint
from ..integrations.email_out import EmailError, compose, make_msgid_for, message_id_for

if TYPE_CHECKING:
    from ..http.identity import Caller
    from ..http.routes import Services
    from ..integrations.email_out import EmailSender

_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")

# Request models (pydantic) are imported at first use, not at the cold start of every function.


@endpoint(
    "POST",
    "/api/email/send",
    "Send an email to a lead and log it (subject defaults to the message's first words)",
    "EmailSent",
    body="EmailSendIn",
    errors=SEND_ERRORS,
    description="Logged as an outbound `email` activity whose externalId is the Message-ID; a send the mail "
    "server refuses is logged as failed (not contact) and answers 502 (504 on a timeout) with a code naming "
    "the cause. With an `Idempotency-Key` header, a retry answers the first send's answer (`replayed: true`).",
)
def send_email(request: Request, caller: Caller, services: Services) -> tuple[int, dict[str, Any]]:
    """POST /api/email/send {leadId, subject?, message}: the chat assistant's path, as /api/whatsapp/send."""
    from ..models.email import EmailSendIn
    from ..models.requests import parse

    tenant = caller.require_tenant()
    body = parse(EmailSendIn, json_object(request))
    key = idempotency_key(request)
    prepared = services.store.prepare_email(tenant, lead_id=body.leadId, viewer=caller.viewer)
    subject = body.subject or _default_subject(body.message)
    replayed = claim(services, tenant, key, ["send", caller.actor, body.leadId, subject, body.message])
    if replayed is not None:
        return 200, replayed
    return 200, send_and_log(services, caller, prepared, subject, body.message, key)


@endpoint(
    "GET",
    "/api/email/rejected",
    "Inbound emails that could not be read (dead letters), newest first",
    "RejectedEmails",
    query="RejectedQuery",
)
def list_email_rejected(request: Request, caller: Caller, services: Services) -> tuple[int, dict[str, Any]]:
    """The tenant's inbound emails that could not be read (admins, managers, the service)."""
    from ..models.requests import RejectedQuery, parse

    tenant = caller.require_tenant()
    query = parse(RejectedQuery, request.args.to_dict())
    return 200, {"success": True, **services.store.list_email_rejected(tenant, query, caller.viewer)}


# Sending, once ----------------------------------------------------------------------------------


def send_and_log(
    services: Services, caller: Caller, prepared: dict[str, Any], subject: str, text: str, key: str | None = None
) -> dict[str, Any]:
    """Send `text` to the prepared lead and log it, under the Idempotency-Key `key` (claimed already):
    settled with the answer once sent, released when nothing was sent."""
    from ..models.requests import ActivityIn

    tenant = caller.require_tenant()
    lead = prepared["lead"]
    try:  # nothing is sent, nor logged, when there is no way to send or no address to write to
        sender, from_address = _sending(services, prepared)
        message_id = message_id_for(tenant, key, from_address) if key is not None else make_msgid_for(from_address)
        message = compose(
            sender=from_address, to=lead["email"], to_name=lead.get("name"), subject=subject, text=text,
            message_id=message_id,
        )  # fmt: skip
    except EmailError:
        release(services, tenant, key)
        raise
    provider = "dev-outbox" if sender is services.outbox else "smtp"
    meta = {"provider": provider, "subject": subject, "messageId": message_id, "alertType": prepared.get("alert_type")}
    outbound = {"leadId": lead["lead_id"], "channel": "email", "direction": "out", "messageSnippet": text}
    try:
        sender.send(message)
    except EmailError as exc:
        try:
            failed = ActivityIn(**outbound, status="failed", meta={**meta, "error": exc.code})
            services.store.log_activity(tenant, failed, caller.viewer)
        finally:
            release(services, tenant, key)  # nothing was sent: a retry may send
        raise
    # Sent: from here on the key stays claimed (a retry meanwhile answers 409, never sends again).
    sent = ActivityIn(**outbound, status="sent", externalId=message_id, meta=meta)
    logged = services.store.log_activity(tenant, sent, caller.viewer)
    answer = {
        "success": True,
        "sent": {"channel": "email", "to": lead["email"], "subject": subject, "messageId": message_id, "message": text},
        "activity": logged["activity"],
        "alerts": logged["alerts"],
    }
    settle(services, tenant, key, answer)
    return answer


def email_sender(services: Services) -> EmailSender | None:
    """The configured email sender (SMTP); under `leadwatch dev` without one, the dev outbox."""
    return services.email.sender if services.email.sender is not None else services.outbox


def claim(services: Services, tenant: str, key: str | None, asked: list[Any]) -> dict[str, Any] | None:
    """Claim `key` for the request `asked` (who asks, and what): None when this request may send, else the
    answer to replay (409 while the first send is under way; 422 when the key came with another request,
    or from another caller, who is never answered someone else's send)."""
    if key is None:
        return None
    digest = hashlib.sha256(json.dumps(asked, ensure_ascii=False).encode()).hexdigest()
    claimed = services.store.claim_email_send(tenant, key, digest)
    if claimed["claimed"]:
        return None
    if claimed.get("answer") is None:
        raise Conflict("a send with this Idempotency-Key is under way", {"field": "Idempotency-Key"})
    return {**claimed["answer"], "replayed": True}


def settle(services: Services, tenant: str, key: str | None, answer: dict[str, Any]) -> None:
    """Keep `answer` for the retries of the send made under `key`."""
    if key is not None:
        services.store.settle_email_send(tenant, key, answer)


def release(services: Services, tenant: str, key: str | None) -> None:
    """Nothing was sent under `key`: a retry may send."""
    if key is not None:
        services.store.settle_email_send(tenant, key, None)


def idempotency_key(request: Request) -> str | None:
    """The request's Idempotency-Key header (1 to 255 visible ASCII characters), or None."""
    value = request.headers.get("Idempotency-Key")
    if value is None:
        return None
    if not _KEY.match(value.strip()):
        raise ValidationFailed(
            "the request has invalid fields",
            [{"field": "Idempotency-Key", "message": "must be 1 to 255 visible ASCII characters"}],
        )
    return value.strip()


def _sending(services: Services, prepared: dict[str, Any]) -> tuple[EmailSender, str]:
    sender = email_sender(services)
    outbox = services.outbox
    from_address = prepared.get("from") or services.email.default_from
    if sender is not None and sender is outbox and outbox is not None and not from_address:
        from_address = outbox.email_from
    if sender is None or not from_address:
        raise EmailError(
            "email_not_configured",
            "sending email is not configured (LEADWATCH_SMTP_URL and LEADWATCH_EMAIL_FROM)",
            status=409,
        )
    return sender, from_address


def _default_subject(text: str) -> str:
    first = " ".join(text.split())
    return first if len(first) <= 78 else first[:77].rstrip() + "…"
