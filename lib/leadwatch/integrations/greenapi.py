"""Green-API (WhatsApp): which instance is calling, what its notifications say, and sending.

Facts relied on are in shared/reference/GREENAPI.md: notifications carry `typeWebhook`,
`instanceData.idInstance`, `timestamp` (seconds), `idMessage` (unique within a chat only, so the
external id is chatId + idMessage), `senderData.chatId`; text lives in a field that depends on
`typeMessage`; placeholders such as {{SWE001}} are not the sender's words.

A notification is never refused for what it says: Green-API would resend it for a day and hold
every later one behind it. What `read_notification` cannot read raises `Unreadable`, and the
webhook keeps the notification whole in `greenapi_rejected` and answers 200.
"""

from __future__ import annotations

import hmac
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..config import GreenApiInstance
from ..errors import BadRequest, LeadwatchError, Unauthorized
from ..safejson import clean_text

if TYPE_CHECKING:  # httpx is imported at first send, not at cold start
    import httpx
    from flask import Request

MESSAGE_DIRECTIONS = {
    "incomingMessageReceived": "in",
    "outgoingMessageReceived": "out",  # sent from the phone
    "outgoingAPIMessageReceived": "out",  # sent through the API (our own sends come back this way)
}
# Where each message type keeps its text (captions for media).
_TEXT_PATHS = {
    "textMessage": ("textMessageData", "textMessage"),
    "extendedTextMessage": ("extendedTextMessageData", "text"),
    "quotedMessage": ("extendedTextMessageData", "text"),
    "reactionMessage": ("extendedTextMessageData", "text"),
    "imageMessage": ("fileMessageData", "caption"),
    "videoMessage": ("fileMessageData", "caption"),
    "documentMessage": ("fileMessageData", "caption"),
    "audioMessage": ("fileMessageData", "caption"),
    "stickerMessage": ("fileMessageData", "caption"),
    "editedMessage": ("editedMessageData", "textMessage"),
    "pollMessage": ("pollMessageData", "name"),
    "locationMessage": ("locationMessageData", "nameLocation"),
    "contactMessage": ("contactMessageData", "displayName"),
}
_PLACEHOLDER = re.compile(r"^\s*\{\{SWE\d{3}\}\}\s*$")
_DIGITS = re.compile(r"^[1-9][0-9]{6,14}$")
# Notification times leadwatch believes: from 2001 to the year 9999 (seconds since the epoch).
_EARLIEST, _LATEST = 1_000_000_000, 253_402_300_799


class Unreadable(BadRequest):
    """A notification leadwatch cannot read (unknown shape, absurd values): kept as a dead letter."""


@dataclass(frozen=True)
class WhatsAppActivity:
    """A message or call to log: the lead is whoever owns `phone` (or, without one, the chat)."""

    chat_id: str
    phone: str | None
    sender_name: str | None
    direction: str
    channel: str
    text: str | None
    occurred_at: datetime
    external_id: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DeliveryStatus:
    external_id: str
    status: str


@dataclass(frozen=True)
class Ignored:
    reason: str


def external_id(chat_id: str, id_message: str) -> str:
    """The global key of a WhatsApp message: idMessage is unique within its chat only."""
    return f"{chat_id}/{id_message}"


def phone_of(chat_id: str, sender_phone: Any = None) -> str | None:
    """E.164 phone of a person's chat id (`33612345678@c.us`, device suffix ignored); `@lid` chats
    use senderPhoneNumber when present."""
    user, _, server = chat_id.partition("@")
    digits = str(sender_phone) if server == "lid" and sender_phone else user.split(":")[0]
    digits = digits.lstrip("+")
    if server == "lid" and not sender_phone:
        return None
    return f"+{digits}" if _DIGITS.match(digits) else None


def read_notification(
    payload: dict[str, Any], instance: GreenApiInstance
) -> WhatsAppActivity | DeliveryStatus | Ignored:
    """What a notification means for leadwatch; Unreadable names what is malformed. Its text is
    read cleaned of what PostgreSQL cannot store (NUL, lone surrogates)."""
    kind = _required(payload, "typeWebhook", str)
    instance_data = _required(payload, "instanceData", dict)
    if str(instance_data.get("idInstance")) != instance.id:
        raise Unreadable("the notification is for another instance than the token's", {"field": "instanceData"})
    meta = {"provider": "green-api", "instanceId": instance.id, "typeWebhook": kind}

    if kind in MESSAGE_DIRECTIONS:
        sender = _required(payload, "senderData", dict)
        chat_id = _required(sender, "chatId", str, "senderData.chatId")
        if chat_id.endswith("@g.us"):
            return Ignored("group chat")
        message = _required(payload, "messageData", dict)
        type_message = _required(message, "typeMessage", str, "messageData.typeMessage")
        return WhatsAppActivity(
            chat_id=chat_id,
            phone=phone_of(chat_id, _optional(sender, "senderPhoneNumber", (str, int))),
            sender_name=_optional(sender, "senderName")
            or _optional(sender, "chatName")
            or _optional(sender, "senderContactName")
            or None,
            direction=MESSAGE_DIRECTIONS[kind],
            channel="whatsapp",
            text=_text(message, type_message),
            occurred_at=_time(payload),
            external_id=external_id(chat_id, _required(payload, "idMessage", str)),
            meta={**meta, "typeMessage": type_message},
        )
    if kind == "outgoingMessageStatus":
        chat_id = _required(payload, "chatId", str)
        if chat_id.endswith("@g.us"):
            return Ignored("group chat")
        return DeliveryStatus(
            external_id(chat_id, _required(payload, "idMessage", str)), _required(payload, "status", str)
        )
    if kind == "incomingCall":
        caller = _required(payload, "from", str)
        if caller.endswith("@g.us"):
            return Ignored("group call")
        return WhatsAppActivity(
            chat_id=caller,
            phone=phone_of(caller),
            sender_name=None,
            direction="in",
            channel="call",
            text=None,
            occurred_at=_time(payload),
            external_id=external_id(caller, _required(payload, "idMessage", str)),  # one per call, whatever its status
            meta={**meta, "callStatus": _optional(payload, "status")},
        )
    return Ignored(clean_text(kind)[:100])  # stateInstanceChanged, quotaExceeded, and types we do not know


def _required(data: dict[str, Any], key: str, kind: type, name: str | None = None) -> Any:
    value = data.get(key)
    if not isinstance(value, kind) or (isinstance(value, str) and not 0 < len(value) <= 500):
        raise Unreadable(f"{name or key} is missing or not a {kind.__name__}", {"field": name or key})
    return clean_text(value) if isinstance(value, str) else value


def _optional(data: dict[str, Any], key: str, kinds: type | tuple[type, ...] = str) -> Any:
    """A field that may be absent or null, else of `kinds` (a string of at most 500 characters)."""
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, kinds) or isinstance(value, bool) or (isinstance(value, str) and len(value) > 500):
        raise Unreadable(f"{key} is not a {getattr(kinds, '__name__', 'string or number')}", {"field": key})
    return clean_text(value) if isinstance(value, str) else value


def _time(payload: dict[str, Any]) -> datetime:
    seconds = payload.get("timestamp")
    if not isinstance(seconds, int) or isinstance(seconds, bool) or not _EARLIEST <= seconds <= _LATEST:
        raise Unreadable("timestamp is missing or not UNIX seconds", {"field": "timestamp"})
    return datetime.fromtimestamp(seconds, UTC)


def _text(message: dict[str, Any], type_message: str) -> str | None:
    section, key = _TEXT_PATHS.get(type_message, (None, None))
    data = message.get(section) if section else None
    text = data.get(key) if isinstance(data, dict) else None
    if not isinstance(text, str) or not text.strip() or _PLACEHOLDER.match(text):
        return None
    return clean_text(text)


# Sending -----------------------------------------------------------------------------------------


class WhatsAppError(LeadwatchError):
    """Green-API refused or failed a send; `code` names the cause."""

    def __init__(
        self, code: str, message: str, status: int = 502, details: Any = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message, details)
        self.code, self.status, self.retry_after = code, status, retry_after


class _Retryable(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class GreenApi:
    """The instances this deployment runs, and a client that sends through them."""

    def __init__(self, instances: tuple[GreenApiInstance, ...], *, attempts: int = 4, timeout: float = 20.0) -> None:
        self.instances = instances
        self._attempts, self._timeout = attempts, timeout
        self._http: httpx.Client | None = None
        self._lock = threading.Lock()

    def verify_webhook(self, request: Request) -> GreenApiInstance:
        """The instance whose webhookUrlToken the request carries (compared in constant time), else 401."""
        header = request.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        found = None
        for instance in self.instances:  # every comparison runs, so timing tells nothing
            if scheme.lower() == "bearer" and hmac.compare_digest(
                token.strip().encode(), instance.webhook_token.encode()
            ):
                found = instance
        if found is None:
            raise Unauthorized("unknown Green-API instance or wrong webhook token")
        return found

    def instance_for(self, tenant: str) -> GreenApiInstance:
        for instance in self.instances:
            if instance.tenant == tenant:
                return instance
        raise WhatsAppError(
            "whatsapp_not_configured",
            "no Green-API instance is configured for this tenant",
            status=409,
            details={"tenant": tenant},
        )

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            with self._lock:
                if self._http is None:
                    import httpx

                    self._http = httpx.Client(timeout=self._timeout)
        return self._http

    def send_message(self, instance: GreenApiInstance, chat_id: str, message: str) -> str:
        """Send a text; return Green-API's idMessage. 429 and 5xx are retried with backoff, a bounded
        number of times; anything else raises WhatsAppError naming the cause."""
        import httpx
        import stamina

        url = f"{instance.api_url}/waInstance{instance.id}/sendMessage/{instance.token}"
        try:
            for attempt in stamina.retry_context(
                on=(_Retryable, httpx.ConnectError),
                attempts=self._attempts,
                timeout=self._timeout * self._attempts,
                wait_initial=0.5,
                wait_max=8,
            ):
                with attempt:
                    response = self.http.post(url, json={"chatId": chat_id, "message": message})
                    if response.status_code == 429 or response.status_code >= 500:
                        raise _Retryable(response)
        except _Retryable as exc:
            response = exc.response
        except httpx.ConnectError:
            raise WhatsAppError("whatsapp_unreachable", "Green-API cannot be reached") from None
        except httpx.TimeoutException:
            raise WhatsAppError("whatsapp_timeout", "Green-API did not answer in time", status=504) from None
        return _sent_or_raise(response)


def _sent_or_raise(response: httpx.Response) -> str:
    status = response.status_code
    detail = _reason(response)
    if status == 200:
        id_message: str | None = (response.json() or {}).get("idMessage") if _is_json(response) else None
        if not id_message:
            raise WhatsAppError("whatsapp_bad_answer", "Green-API answered without an idMessage")
        return id_message
    causes = {
        400: ("whatsapp_rejected", "Green-API refused the message (instance not authorised or starting, or bad data)"),
        401: ("whatsapp_token_rejected", "Green-API rejected the instance token"),
        403: ("whatsapp_instance_rejected", "Green-API rejected the instance id"),
        466: ("whatsapp_quota_exceeded", "the Green-API quota of this instance is exhausted"),
    }
    if status in causes:
        code, message = causes[status]
        raise WhatsAppError(code, message, details={"greenapi_status": status, "reason": detail})
    if status == 429:
        raise WhatsAppError(
            "whatsapp_rate_limited",
            "Green-API is rate limiting this instance, retry later",
            status=503,
            details={"greenapi_status": status},
            retry_after=60,
        )
    if status >= 500:
        raise WhatsAppError(
            "whatsapp_unavailable", "Green-API is failing, retry later", status=502, details={"greenapi_status": status}
        )
    raise WhatsAppError(
        "whatsapp_error", f"Green-API answered {status}", details={"greenapi_status": status, "reason": detail}
    )


def _is_json(response: httpx.Response) -> bool:
    try:
        response.json()
    except ValueError:
        return False
    return True


def _reason(response: httpx.Response) -> str | None:
    if not _is_json(response):
        return (response.text or "")[:200] or None
    body = response.json()
    if isinstance(body, dict):
        return str(body.get("message") or body.get("description") or body)[:200]
    return str(body)[:200]
