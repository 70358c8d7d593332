"""Email out: whatever sends an email goes through an `EmailSender` (one method, `send`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from email.message import EmailMessage


class EmailSender(Protocol):
    """What sends an email (an email provider, or the dev outbox): one RFC 5322 message at a time."""

    def send(self, message: EmailMessage) -> None: ...
