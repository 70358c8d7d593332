"""What callers send, parsed and validated (frozen pydantic models, the API's camelCase names)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import ValidationFailed
from ..safejson import problem
from ..stores.cursor import MAX_CURSOR_LENGTH, decode_cursor

Channel = Literal["whatsapp", "email", "call", "other"]
Direction = Literal["in", "out"]
Severity = Literal["high", "med", "low"]
AlertType = Literal["NoContact7d", "NoReply3d", "StaleLead30d", "HighValueRisk", "HotLead24h", "PreferredChannel"]

SNIPPET_LIMIT = 100
FUTURE_TOLERANCE = timedelta(minutes=5)
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


class StorableModel(BaseModel):
    """Every field of every input model, whatever its type, is refused (422 naming it) when it holds
    what PostgreSQL cannot store or JSON cannot say: NUL, lone surrogates, NaN, Infinity, deep nesting."""

    @field_validator("*", mode="before")
    @classmethod
    def _storable(cls, value: Any, info: Any) -> Any:
        found = problem(value, info.field_name or "body")
        if found:
            raise ValueError(found.message if found.field == info.field_name else f"{found.field} {found.message}")
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _utc(cls, value: Any) -> Any:
        """Times in UTC (a time without an offset is taken as UTC): PostgreSQL refuses the UTC offsets
        past ±15:59 that ISO 8601 allows."""
        if isinstance(value, datetime):
            try:
                return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
            except OverflowError:
                raise ValueError("is out of range") from None
        return value


class InputModel(StorableModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class ActivityIn(InputModel):
    """Body of POST /api/activities/log (the reference's fields plus occurredAt and externalId)."""

    leadId: str = Field(min_length=1, max_length=200)
    channel: Channel
    direction: Direction
    status: str = Field(default="sent", min_length=1, max_length=40)
    messageSnippet: str | None = None
    meta: dict[str, Any] | None = None
    occurredAt: datetime | None = None
    externalId: str | None = Field(default=None, min_length=1, max_length=200)

    @field_validator("messageSnippet")
    @classmethod
    def _cut_snippet(cls, value: str | None) -> str | None:
        """A long message is stored cut, never refused: the sender must not fail for it."""
        return value[:SNIPPET_LIMIT] if value is not None else None

    @field_validator("occurredAt")
    @classmethod
    def _not_in_future(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        if value > datetime.now(UTC) + FUTURE_TOLERANCE:
            raise ValueError("must not be more than 5 minutes in the future")
        return value

    def to_row(self) -> dict[str, Any]:
        """The activity as `log_activities` takes it (snake case, JSON-ready)."""
        return {
            "lead_id": self.leadId,
            "channel": self.channel,
            "direction": self.direction,
            "status": self.status,
            "message_snippet": self.messageSnippet,
            "meta": self.meta,
            "occurred_at": None if self.occurredAt is None else self.occurredAt.isoformat(),
            "external_id": self.externalId,
        }


class LeadIn(InputModel):
    """One lead of POST /api/leads."""

    leadId: str = Field(min_length=1, max_length=200)
    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    phone: str | None = None
    ownerId: str | None = Field(default=None, max_length=200)
    value: float | None = Field(default=None, ge=0, le=999_999_999_999.99)  # numeric(14, 2)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    preferredChannel: Channel | None = None

    @field_validator("phone")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        if value is None:
            return None
        compact = re.sub(r"[\s().-]", "", value)
        if compact.startswith("00"):
            compact = "+" + compact[2:]
        if not _E164.match(compact):
            raise ValueError("must be an international number in E.164 form, like +33612345678")
        return compact

    def to_row(self) -> dict[str, Any]:
        return {
            "lead_id": self.leadId,
            "name": self.name,
            "email": self.email,
            "phone": self.phone,
            "owner_id": self.ownerId,
            "value": self.value,
            "currency": self.currency,
            "preferred_channel": self.preferredChannel,
        }


class SendIn(InputModel):
    """Body of POST /api/whatsapp/send."""

    leadId: str = Field(min_length=1, max_length=200)
    message: str = Field(min_length=1, max_length=4096)


class LeadsIn(BaseModel):
    """POST /api/leads accepts one lead or a list of them."""

    model_config = ConfigDict(frozen=True)
    leads: list[LeadIn] = Field(min_length=1, max_length=1000)

    @field_validator("leads")
    @classmethod
    def _distinct_ids(cls, leads: list[LeadIn]) -> list[LeadIn]:
        seen: set[str] = set()
        for lead in leads:
            if lead.leadId in seen:
                raise ValueError(f"leadId {lead.leadId!r} appears twice")
            seen.add(lead.leadId)
        return leads


class QueryModel(StorableModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    cursor_kind: ClassVar[str | None] = None  # the kind of cursor (cursor.KINDS) this listing issues
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(default=None, max_length=MAX_CURSOR_LENGTH)

    @field_validator("cursor")
    @classmethod
    def _issued_cursor(cls, value: str | None) -> str | None:
        """A cursor that is not one this API issued (for this listing) is refused before any SQL."""
        decode_cursor(value, cls.cursor_kind)
        return value

    def decoded_cursor(self) -> dict[str, Any] | None:
        return decode_cursor(self.cursor, self.cursor_kind)


class AlertQuery(QueryModel):
    """Query of GET /api/alerts/active."""

    cursor_kind = "alerts"

    state: Literal["active", "snoozed"] = "active"
    severity: Severity | None = None
    type: AlertType | None = None
    lead: str | None = Field(default=None, min_length=1, max_length=200)


class RejectedQuery(QueryModel):
    """Query of GET /api/greenapi/rejected (its cursor, as the timeline's, is a time and an id)."""

    cursor_kind = "timeline"


class TimelineQuery(QueryModel):
    """Query of GET /api/leads/{leadId}/activities."""

    cursor_kind = "timeline"


class ErasuresQuery(QueryModel):
    """Query of GET /api/erasures (its cursor, as the timeline's, is a time and an id)."""

    cursor_kind = "timeline"


def parse(model: type[BaseModel], data: Any) -> Any:
    """Validate `data` into `model`, or raise ValidationFailed naming every offending field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed("the request has invalid fields", field_errors(exc)) from None


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    errors = []
    for error in exc.errors():
        location = [str(part) for part in error["loc"]]
        if location and location[0] == "leads" and len(location) > 1:  # leads.0.phone -> leads[0].phone
            location = [f"leads[{location[1]}]", *location[2:]]
        field = ".".join(location) or "body"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "is not a known field"
        elif error["type"] == "missing":
            message = "is required"
        errors.append({"field": field, "message": message})
    return errors
