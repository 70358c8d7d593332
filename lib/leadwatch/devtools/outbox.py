"""The dev server's outbox: what leadwatch would have sent, kept in memory instead of sent.

Under `leadwatch dev`, a channel with no provider configured sends here: a `DevOutbox` stands in for
Green-API's `send_message` (WhatsApp) and for an email sender's `send` (email), so that every
suggested action of the demo runs on a fresh laptop, and `GET /dev/outbox` shows what went out.
The deployed functions never have one: `Api.from_settings` cannot create it, only `leadwatch dev`
hands one to its `Api`.
"""

from __future__ import annotations

import threading
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

from ..config import GreenApiInstance

# The WhatsApp "instance" of the outbox, named in the meta of what it sends.
OUTBOX_INSTANCE = GreenApiInstance(id="dev-outbox")
PROVIDER = "dev-outbox"


@dataclass(frozen=True)
class OutboxMessage:
    """One message kept instead of sent: `external_id` is the id a provider would have given it
    (WhatsApp's idMessage, the email's Message-ID), the one its activity is logged with."""

    id: str
    channel: str  # whatsapp | email
    to: str  # a WhatsApp chat id (33612345678@c.us) or an email address
    subject: str | None
    text: str
    at: datetime
    external_id: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "channel": self.channel,
            "to": self.to,
            "subject": self.subject,
            "text": self.text,
            "at": self.at.isoformat(),
            "externalId": self.external_id,
        }


class DevOutbox:
    """Messages kept in memory, newest first, at most `limit` of them (the oldest go first)."""

    instance = OUTBOX_INSTANCE
    email_from = "leadwatch dev <outbox@leadwatch.dev>"  # the From of its emails when none is configured

    def __init__(self, limit: int = 500) -> None:
        self._messages: deque[OutboxMessage] = deque(maxlen=limit)
        self._lock = threading.Lock()

    def send_message(self, instance: GreenApiInstance, chat_id: str, message: str) -> str:
        """What Green-API's `send_message` does, kept here: returns the idMessage it assigned."""
        id_message = "DEV" + uuid.uuid4().hex[:17].upper()
        self._keep("whatsapp", chat_id, None, message, id_message)
        return id_message

    def send(self, message: EmailMessage) -> None:
        """What an email sender's `send` does, kept here. A message without a Message-ID gets one."""
        if message["Message-ID"] is None:
            message["Message-ID"] = make_msgid(domain="leadwatch.dev")
        body = message.get_body(preferencelist=("plain",))
        text = body.get_content() if isinstance(body, EmailMessage) else ""
        subject = message["Subject"]
        self._keep(
            "email",
            str(message["To"] or ""),
            None if subject is None else str(subject),
            text.rstrip("\n"),
            str(message["Message-ID"]),
        )

    def messages(self) -> list[OutboxMessage]:
        """What was kept, newest first."""
        with self._lock:
            return list(reversed(self._messages))

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()

    def _keep(self, channel: str, to: str, subject: str | None, text: str, external_id: str) -> None:
        kept = OutboxMessage(uuid.uuid4().hex, channel, to, subject, text, datetime.now(UTC), external_id)
        with self._lock:
            self._messages.append(kept)
