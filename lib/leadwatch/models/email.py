"""What the email routes take and answer, as pydantic models (the OpenAPI description's source too)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from .requests import InputModel
from .responses import Activity, AlertChanges


class EmailSendIn(InputModel):
    """Body of POST /api/email/send (the chat assistant's path): the subject defaults to the message's first words."""

    leadId: str = Field(min_length=1, max_length=200)
    subject: str | None = Field(default=None, min_length=1, max_length=200)
    message: str = Field(min_length=1, max_length=20000)

    @field_validator("subject")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and ("\n" in value or "\r" in value):
            raise ValueError("must be one line")
        return value


class EmailMessageSent(BaseModel):
    to: str
    subject: str
    messageId: str
    message: str


class EmailSent(BaseModel):
    """The email sent and logged (or, for a retry under the same Idempotency-Key, the first send's answer)."""

    success: Literal[True]
    sent: EmailMessageSent
    activity: Activity
    alerts: AlertChanges
    replayed: bool = Field(default=False, description="true when this answer is the one a former send made")


class EmailWebhookAck(BaseModel):
    """An inbound email stored (`duplicate` when already stored), a bounce applied, ignored, or kept aside."""

    success: Literal[True]
    duplicate: bool | None = None
    bounce: dict[str, Any] | None = None
    ignored: str | None = None
    rejected: dict[str, Any] | None = None


class RejectedEmail(BaseModel):
    id: str
    reason: str
    received_at: str
    raw_base64: str


class RejectedEmails(BaseModel):
    success: Literal[True]
    rejected: list[RejectedEmail]
    next_cursor: str | None
