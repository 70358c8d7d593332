"""What callers send to the webhook routes and the deliverer, parsed and validated.

Frozen pydantic models on `requests.InputModel` / `requests.QueryModel`, the API's camelCase names, so that the
OpenAPI description can be generated from them like the others.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, field_validator, model_validator

from .requests import InputModel, StorableModel

EventType = Literal[
    "alert.created",
    "alert.escalated",
    "alert.overdue",
    "alert.snoozed",
    "alert.reopened",
    "alert.resolved",
    "digest.daily",
]


class WebhookIn(InputModel):
    """Body of POST /api/webhooks: where to send which events (https; http only to loopback in dev)."""

    url: str = Field(min_length=8, max_length=2000)
    events: list[EventType] = Field(min_length=1, max_length=7)
    enabled: bool = True

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname or any(c.isspace() for c in value):
            raise ValueError("must be an absolute https:// URL")
        return value

    @field_validator("events")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("must not repeat an event type")
        return value

    def check_scheme(self, allow_loopback_http: bool) -> None:
        """https only; plain http to a loopback address when the dev server allows it."""
        from ..errors import ValidationFailed

        parts = urlsplit(self.url)
        if parts.scheme == "https":
            return
        if allow_loopback_http and _is_loopback(parts.hostname or ""):
            return
        raise ValidationFailed(
            "the request has invalid fields",
            [{"field": "url", "message": "must be an https:// URL (http only to a loopback address in dev)"}],
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DeliveriesQuery(StorableModel):
    """Query of GET /api/webhooks/{id}/deliveries: the newest `limit` deliveries."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    limit: int = Field(default=50, ge=1, le=200)


class DeliverQuery(StorableModel):
    """Query of POST /api/notifications/deliver: deliveries claimed per batch."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    batch: int = Field(default=100, ge=1, le=1000)


Notification = Literal["high_alert", "overdue", "digest"]
_CLOCK = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class QuietHours(InputModel):
    """No push from `start` until `end`, local time ("20:00" → "08:00")."""

    start: str = Field(pattern=_CLOCK)
    end: str = Field(pattern=_CLOCK)


class MemberIn(InputModel):
    """Body of POST /api/members: one member of the team directory (added, or replaced whole)."""

    userId: str = Field(min_length=1, max_length=200, description="the member's JWT `sub`")
    name: str = Field(min_length=1, max_length=200)
    role: Literal["admin", "manager", "agent"]
    phone: str | None = Field(default=None, pattern=r"^\+[1-9][0-9]{6,14}$", description="WhatsApp number, E.164")
    locale: Literal["fr", "en"] = "fr"
    timeZone: str = Field(default="Europe/Paris", max_length=64)
    quietHours: QuietHours | None = QuietHours(start="20:00", end="08:00")
    notifications: list[Notification] = Field(default=["high_alert", "overdue", "digest"], max_length=3)
    whatsapp: bool = False

    @field_validator("timeZone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return _iana_zone(value)

    @field_validator("notifications")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("must not repeat a notification")
        return value

    @model_validator(mode="after")
    def _whatsapp_needs_phone(self) -> MemberIn:
        if self.whatsapp and self.phone is None:
            raise ValueError("whatsapp needs a phone")
        return self

    def to_row(self) -> dict[str, Any]:
        return {
            "user_id": self.userId,
            "name": self.name,
            "role": self.role,
            "phone": self.phone,
            "locale": self.locale,
            "time_zone": self.timeZone,
            "quiet_start": self.quietHours.start if self.quietHours else None,
            "quiet_end": self.quietHours.end if self.quietHours else None,
            "notifications": list(self.notifications),
            "whatsapp": self.whatsapp,
        }


def _iana_zone(value: str) -> str:
    """`value`, if it names a known IANA time zone."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("is not a known IANA time zone") from None
    return value


class DigestSettingsIn(InputModel):
    """Body of PUT /api/digest: when the tenant's morning digest is written (its local hour and zone)."""

    hour: int = Field(ge=0, le=23, description="the local hour, 0-23 (default 8)")
    timeZone: str = Field(max_length=64, description="an IANA time zone (default Europe/Paris)")

    @field_validator("timeZone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return _iana_zone(value)


class WebhookPatch(InputModel):
    """Body of PATCH /api/webhooks/{id}: enable an endpoint (again, after a 410 Gone disabled it) or disable it."""

    enabled: bool
