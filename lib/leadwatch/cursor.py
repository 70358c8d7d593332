"""The opaque pagination cursors handed to callers (`next_cursor`)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from .errors import ValidationFailed


def encode_cursor(position: dict[str, Any] | None) -> str | None:
    """The opaque `next_cursor` handed to callers."""
    if position is None:
        return None
    return base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    if not cursor:
        return None
    try:
        position = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        position = None
    if not isinstance(position, dict):
        raise ValidationFailed("invalid cursor", [{"field": "cursor", "message": "is not a cursor this API issued"}])
    return position
