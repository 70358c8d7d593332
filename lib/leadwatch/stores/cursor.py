"""The opaque pagination cursors handed to callers (`next_cursor`), and the strict check of those
that come back: a cursor is exactly one of the KINDS, every value of the type and range it has
when leadwatch issues it, or it is refused (422 `cursor`) before it reaches any SQL."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeGuard

from ..errors import ValidationFailed

MAX_CURSOR_LENGTH = 200
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def is_uuid(value: Any) -> TypeGuard[str]:
    """Is `value` a UUID in its canonical 8-4-4-4-12 form (no braces, no `urn:uuid:`)?"""
    return isinstance(value, str) and _UUID.match(value) is not None


def _rank(value: Any) -> int:
    if type(value) is not int or not 1 <= value <= 3:
        raise ValueError
    return value


def _time(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 40:
        raise ValueError
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError
    return parsed.isoformat()


def _id(value: Any) -> str:
    if not is_uuid(value):
        raise ValueError
    return value.lower()


# Each kind of cursor: its keys and how each value is checked (and written canonically).
KINDS: dict[str, dict[str, Callable[[Any], Any]]] = {
    "alerts": {"r": _rank, "c": _time, "i": _id},  # severity rank, created_at, id
    "timeline": {"o": _time, "i": _id},  # occurred_at, id
    "lead_alerts": {"c": _time, "i": _id},  # created_at, id
}


def encode_cursor(position: dict[str, Any] | None) -> str | None:
    """The opaque `next_cursor` handed to callers."""
    if position is None:
        return None
    return base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, kind: str | None = None) -> dict[str, Any] | None:
    """The position a cursor of `kind` (any kind when None) holds; 422 `cursor` for anything else."""
    if not cursor:
        return None
    position = _position(cursor)
    for name, checks in KINDS.items():
        if kind in (None, name) and isinstance(position, dict) and position.keys() == checks.keys():
            try:
                return {key: check(position[key]) for key, check in checks.items()}
            except (ValueError, TypeError):
                break
    raise ValidationFailed("invalid cursor", [{"field": "cursor", "message": "is not a cursor this API issued"}])


def _position(cursor: str) -> Any:
    if len(cursor) > MAX_CURSOR_LENGTH:
        return None
    try:
        return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        return None
