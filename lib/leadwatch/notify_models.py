"""What callers send to the webhook routes and the deliverer, parsed and validated.

Frozen pydantic models on `models._Input` / `models._Query`, the API's camelCase names, so that the
OpenAPI description can be generated from them like the others.
"""

from __future__ import annotations

import ipaddress
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .models import _Input

EventType = Literal[
    "alert.created",
    "alert.escalated",
    "alert.overdue",
    "alert.snoozed",
    "alert.reopened",
    "alert.resolved",
    "digest.daily",
]


class WebhookIn(_Input):
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
        from .errors import ValidationFailed

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


class DeliveriesQuery(BaseModel):
    """Query of GET /api/webhooks/{id}/deliveries: the newest `limit` deliveries."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    limit: int = Field(default=50, ge=1, le=200)


class DeliverQuery(BaseModel):
    """Query of POST /api/notifications/deliver: deliveries claimed per batch."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    batch: int = Field(default=100, ge=1, le=1000)
