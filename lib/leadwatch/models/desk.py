"""What callers send to the alert desk (snooze, bulk, rules, retention), parsed and validated.

Frozen pydantic models on `models.requests.InputModel`, the API's camelCase names, so that the OpenAPI
description is generated from them like the others.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AliasChoices, Field, field_validator, model_validator

from ..errors import ValidationFailed
from .requests import AlertType, InputModel, QueryModel, Severity

MAX_SNOOZE = timedelta(days=30)
_UNITS = {"m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^([1-9][0-9]{0,4})([mhd])$")
Locale = Literal["fr", "en"]
# A positive duration: "90m", "4h", "2d".
Duration = Annotated[str, Field(pattern=_DURATION.pattern, description='a duration such as "90m", "4h" or "2d"')]


def duration(text: str) -> timedelta:
    """'4h' → 4 hours (the text has passed the Duration pattern)."""
    match = _DURATION.match(text)
    assert match is not None
    return timedelta(seconds=int(match[1]) * _UNITS[match[2]])


class _Until(InputModel):
    """A time to snooze until: `until` (ISO time) or `for` (a duration from now), at most 30 days ahead."""

    until: datetime | None = None
    for_: Duration | None = Field(default=None, alias="for")

    @field_validator("until")
    @classmethod
    def _ahead(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        now = datetime.now(UTC)
        if value <= now:
            raise ValueError("must be in the future")
        if value > now + MAX_SNOOZE:
            raise ValueError("must be at most 30 days ahead")
        return value

    @field_validator("for_")
    @classmethod
    def _at_most_30_days(cls, value: str | None) -> str | None:
        if value is not None and duration(value) > MAX_SNOOZE:
            raise ValueError("must be at most 30 days (30d)")
        return value

    def snooze_until(self) -> datetime | None:
        if self.for_ is not None:
            return datetime.now(UTC) + duration(self.for_)
        return self.until


class SnoozeIn(_Until):
    """Body of POST /api/alerts/{id}/snooze: `until` or `for`."""

    @model_validator(mode="after")
    def _one_of(self) -> SnoozeIn:
        if (self.until is None) == (self.for_ is None):
            raise ValueError('give either "until" (an ISO time) or "for" (like "4h", "2d", "90m")')
        return self


class BulkIn(_Until):
    """Body of POST /api/alerts/bulk: resolve or snooze up to 500 alerts at once."""

    action: Literal["resolve", "snooze"]
    ids: list[UUID] = Field(min_length=1, max_length=500)

    @field_validator("ids")
    @classmethod
    def _distinct(cls, ids: list[UUID]) -> list[UUID]:
        if len(set(ids)) != len(ids):
            raise ValueError("lists an id twice")
        return ids

    @model_validator(mode="after")
    def _time_for_snooze_only(self) -> BulkIn:
        timed = self.until is not None or self.for_ is not None
        if self.action == "snooze" and (self.until is None) == (self.for_ is None):
            raise ValueError('snooze needs either "until" (an ISO time) or "for" (like "4h", "2d", "90m")')
        if self.action == "resolve" and timed:
            raise ValueError('"until" and "for" belong to snooze, not resolve')
        return self


_NOT_NULL = ("enabled", "severity", "minCount", "minValue", "currency", "locale", "messages")


# GET /api/rules's names of RuleIn's fields, and what it gives that a PUT does not change.
_SNAKE = {
    "escalateAfter": "escalate_after",
    "escalatedSeverity": "escalated_severity",
    "minCount": "min_count",
    "minValue": "min_value",
    "actionText": "action_text",
    "actionLabel": "action_label",
    "actionSubject": "action_subject",
    "overdueAfter": "overdue_after",
}
# The parts of a rule's `action` (as GET gives it) that a PUT may change, and RuleIn's field for each.
_ACTION_PARTS = {"action": "action", "label": "actionLabel", "text": "actionText", "subject": "actionSubject"}
_DURATIONS = {"threshold": "threshold", "escalateAfter": "escalate_after", "overdueAfter": "overdue_after"}
_READ_ONLY = ("type", "source", "supersedes")


def _also(name: str) -> AliasChoices:
    """A field read under its camelCase name or the snake_case one GET /api/rules answers."""
    return AliasChoices(name, _SNAKE[name])


class RuleIn(InputModel):
    """Body of PUT /api/rules/{type}: the fields to change (the others keep the values in force).
    `escalateAfter` and `escalatedSeverity` null remove the ladder. Each field may also be named as
    GET /api/rules names it (`escalate_after`, ...), so that a rule read can be written back."""

    enabled: bool | None = None
    threshold: Duration | None = None
    severity: Severity | None = None
    escalateAfter: Duration | None = Field(default=None, validation_alias=_also("escalateAfter"))
    escalatedSeverity: Severity | None = Field(default=None, validation_alias=_also("escalatedSeverity"))
    minCount: int | None = Field(default=None, ge=1, le=100, validation_alias=_also("minCount"))
    minValue: float | None = Field(default=None, ge=0, le=1e12, validation_alias=_also("minValue"))
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    locale: Locale | None = None
    messages: dict[Locale, Annotated[str, Field(min_length=1, max_length=500)]] | None = None
    actionText: dict[Locale, Annotated[str, Field(min_length=1, max_length=1000)]] | None = None
    action: Literal["send_whatsapp", "send_email", "switch_channel", "call_lead"] | None = None
    actionLabel: dict[Locale, Annotated[str, Field(min_length=1, max_length=100)]] | None = None
    # An email's subject ({name} filled in): see docs/email.md.
    actionSubject: dict[Locale, Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\r\n]*$")]] | None = (
        None
    )
    overdueAfter: Duration | None = Field(default=None, validation_alias=_also("overdueAfter"))

    @field_validator(*_NOT_NULL, "actionText", "action", "actionLabel", "actionSubject", "overdueAfter")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must not be null")
        return value

    @model_validator(mode="after")
    def _something(self) -> RuleIn:
        if not self.model_fields_set:
            raise ValueError("give at least one field to change")
        return self

    def to_changes(self) -> dict[str, Any]:
        """The changes as set_rule reads them: snake_case keys, durations in seconds."""
        changes: dict[str, Any] = {}
        for field in self.model_fields_set:
            value = getattr(self, field)
            if field in _DURATIONS and value is not None:
                value = f"{int(duration(value).total_seconds())} seconds"
            changes[_SNAKE.get(field, field)] = value
        return changes

    def changes_nothing(self, rule: dict[str, Any]) -> bool:
        """Whether every field given holds the value of `rule` (a rule as GET /api/rules gives it)."""
        in_action = {_SNAKE.get(name, name): part for part, name in _ACTION_PARTS.items()}
        for key, value in self.to_changes().items():
            now = (rule.get("action") or {}).get(in_action[key]) if key in in_action else rule.get(key)
            if key in _DURATIONS.values() and now is not None:
                now = f"{int(duration(now).total_seconds())} seconds"
            if isinstance(value, dict):  # messages and action texts are merged: the locales given
                if not isinstance(now, dict) or any(now.get(locale) != text for locale, text in value.items()):
                    return False
            elif value != now:
                return False
        return True


def rule_body(body: dict[str, Any], rule: dict[str, Any]) -> dict[str, Any]:
    """A PUT body that may be a rule as GET /api/rules gives it, made into RuleIn's input: `type`,
    `source` and `supersedes` are read-only, accepted when they hold the values of `rule` (the rule in
    force) and left out; an `action` object (GET's form) gives its `action`, `label`, `text` and
    `subject` where they differ from the rule in force (its other parts are read-only), while a string
    `action` is RuleIn's own; a null where the rule in force has none either changes nothing and is
    left out."""
    errors: list[dict[str, str]] = []
    changes: dict[str, Any] = {}
    for key, value in body.items():
        if key in _READ_ONLY:
            if value != rule.get(key):
                errors.append({"field": key, "message": f"is read-only: give {rule.get(key)!r} or leave it out"})
        elif key == "action" and isinstance(value, dict):
            current = rule.get("action") or {}
            if {k: v for k, v in value.items() if k not in _ACTION_PARTS} != {
                k: v for k, v in current.items() if k not in _ACTION_PARTS
            }:
                errors.append({"field": "action", "message": "only its action, label, text and subject may change"})
            for part, name in _ACTION_PARTS.items():
                if part in value and name in body and name != "action":
                    errors.append({"field": f"action.{part}", "message": f"give {name} or action.{part}, not both"})
                elif part in value and value[part] != current.get(part):
                    changes[name] = value[part]
        elif value is None and rule.get(_SNAKE.get(key, key), ...) is None:
            continue  # null already
        else:
            changes[key] = value
    if errors:
        raise ValidationFailed("the request has invalid fields", errors)
    return changes


class RuleType(InputModel):
    """The `{type}` of /api/rules/{type}."""

    type: AlertType


class LeadAlertsQuery(QueryModel):
    """Query of GET /api/leads/{leadId}/alerts."""

    cursor_kind = "lead_alerts"


class RetentionQuery(InputModel):
    """Query of POST /api/retention/run: how many rows of each kind one call may remove."""

    batch: int = Field(default=5000, ge=1, le=50000)
