"""Suggested actions: the channel each one uses, whether it can run for a lead, and running it.

- `send_whatsapp`: sends the rule's follow-up on WhatsApp and logs it (channel whatsapp).
- `send_email`: sends the rule's follow-up by email and logs it (channel email).
- `switch_channel`: the follow-up on the lead's preferred channel: PreferredChannel's `params.channel`,
  else the directory's `preferred_channel` (a call there is as `call_lead`).
- `call_lead`: a person dials the lead; the widget logs the outcome (POST /api/activities/log).

Whether an action can run is decided here, once, both for the list (`suggested_action.available`
and `reason`, before any click) and for `POST /api/alerts/{id}/action` (the same reason as the
error's code). A channel is configured when a provider is (Green-API for the tenant, the SMTP
sender of LEADWATCH_SMTP_URL), or, under `leadwatch dev`, when the dev outbox stands in for it.

Every send an action runs, on any channel, goes through the Idempotency-Key guard of the email
function (handlers/email.py: claim, settle, release): a request retried with the same key answers the
first run's answer and sends nothing more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import LeadwatchError
from . import email as mail
from . import whatsapp

if TYPE_CHECKING:
    from flask import Request

    from ..http.identity import Caller
    from ..http.routes import Services


CHANNEL_OF_ACTION = {"send_whatsapp": "whatsapp", "send_email": "email", "call_lead": "call"}
SWITCH_CHANNEL = "switch_channel"

# Why an action cannot run (the `reason` of an unavailable action, the `code` of the error).
REASONS = {
    "unknown_action": "leadwatch does not run this action",
    "no_preferred_channel": "the lead's preferred channel is not known",
    "no_phone": "the lead has no phone number",
    "no_email": "the lead has no email address",
    "no_message": "the rule of this alert has no message to send",
    "whatsapp_not_configured": "WhatsApp is not configured for this tenant",
    "email_not_configured": "email sending is not configured",
    "action_is_a_call": "a call is made by a person: dial the lead, then log the outcome with POST /api/activities/log",
}


class ActionUnavailable(LeadwatchError):
    """409: the alert's action cannot run for this lead; `code` says why (one of REASONS)."""

    status = 409

    def __init__(self, reason: str, details: Any = None) -> None:
        super().__init__(REASONS[reason], details)
        self.code = reason


def action_channel(action: dict[str, Any] | None, preferred_channel: str | None = None) -> str | None:
    """The channel `action` uses: its own, or for switch_channel the lead's (the alert's
    `params.channel`, else `preferred_channel`); None when leadwatch runs no such action or the
    lead's channel is not known."""
    name = (action or {}).get("action")
    if name == SWITCH_CHANNEL:
        params = (action or {}).get("params") or {}
        channel = params.get("channel") or preferred_channel
        return channel if channel in ("whatsapp", "email", "call") else None
    return CHANNEL_OF_ACTION.get(str(name))


def unavailable_reason(
    api: Services, tenant: str, action: dict[str, Any] | None, channel: str | None, phone: str | None, email: str | None
) -> str | None:
    """Why `action` cannot run on `channel` for a lead with this phone and email, or None when it can."""
    name = (action or {}).get("action")
    if channel is None:
        return "no_preferred_channel" if name == SWITCH_CHANNEL else "unknown_action"
    if channel in ("whatsapp", "call") and not phone:
        return "no_phone"
    if channel == "email" and not email:
        return "no_email"
    if channel == "whatsapp" and not whatsapp_configured(api, tenant):
        return "whatsapp_not_configured"
    if channel == "email" and mail.email_sender(api) is None:
        return "email_not_configured"
    return None


def whatsapp_configured(api: Services, tenant: str) -> bool:
    return api.outbox is not None or any(i.tenant == tenant for i in api.greenapi.instances)


def describe_alerts(alerts: list[dict[str, Any]], api: Services, tenant: str) -> list[dict[str, Any]]:
    """The listed alerts, each `suggested_action` saying its `channel`, whether it is `available`
    and, when not, the `reason`; with `lead_url`, the lead's page in EspoCRM, when ESPO_URL is set."""
    described = []
    for alert in alerts:
        action = alert.get("suggested_action")
        extra: dict[str, Any] = {}
        if api.espo_url:
            extra["lead_url"] = espo_lead_url(api.espo_url, alert["lead_id"])
        if isinstance(action, dict) and action.get("action"):
            channel = action_channel(action, alert.get("lead_preferred_channel"))
            reason = unavailable_reason(api, tenant, action, channel, alert.get("lead_phone"), alert.get("lead_email"))
            extra["suggested_action"] = {**action, "channel": channel, "available": reason is None, "reason": reason}
        described.append({**alert, **extra})
    return described


def espo_lead_url(espo_url: str, lead_id: str) -> str:
    """The lead's page in EspoCRM (its single-page app's route: `#Lead/view/<id>`)."""
    from urllib.parse import quote

    return f"{espo_url.rstrip('/')}/#Lead/view/{quote(lead_id, safe='')}"


def run_action(request: Request, api: Services, tenant: str, caller: Caller, alert_id: str) -> dict[str, Any]:
    """Run the alert's suggested action on its channel and log it; ActionUnavailable says why not.
    With an Idempotency-Key, claimed before the alert is read, a retry after the send (which resolved
    the alert) answers the first run's answer."""
    key = mail.idempotency_key(request)
    replayed = mail.claim(api, tenant, key, ["action", caller.actor, alert_id])
    if replayed is not None:
        return replayed
    try:
        prepared = api.store.prepare_action(tenant, alert_id, caller.viewer)
        lead, action = prepared["lead"], prepared["suggested_action"]
        channel = action_channel(action, lead.get("preferred_channel"))
        reason = unavailable_reason(api, tenant, action, channel, lead.get("phone"), lead.get("email"))
        if reason is None and channel == "call":
            reason = "action_is_a_call"
        if reason is None and not prepared.get("text"):
            reason = "no_message"
        if reason is not None:
            raise ActionUnavailable(reason, {"action": (action or {}).get("action"), "channel": channel})
    except Exception:
        mail.release(api, tenant, key)
        raise
    if channel == "email":  # settles or releases the key itself
        return mail.send_and_log(api, caller, prepared, prepared["subject"], prepared["text"], key)
    try:
        result = whatsapp.send_and_log(api, tenant, caller, lead, prepared["text"], alert_type=prepared["alert_type"])
    except Exception:
        mail.release(api, tenant, key)  # nothing was sent: a retry may send
        raise
    answer = {**result, "sent": {"channel": "whatsapp", "to": lead["phone"], **result["sent"]}}
    mail.settle(api, tenant, key, answer)
    return answer
