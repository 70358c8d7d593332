"""Batch ingest: `POST /api/activities/log` with a list of activities, logged in one transaction.

The list is checked whole before anything is written: every invalid activity is named by its
place (`[3].leadId`), and one invalid activity refuses the list (422, nothing stored). The
database then logs them in order (`log_activities`): each answer is what `log_activity` would
have answered, and an activity already stored (same channel and externalId, earlier in the list
or in an earlier call) answers `duplicate: true`, so a retried list stores each activity once.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ..errors import ValidationFailed
from .requests import ActivityIn, field_errors

MAX_ACTIVITIES = 1000


def parse_activities(items: list[Any]) -> list[ActivityIn]:
    """Validate a list body into activities, or raise ValidationFailed naming each bad field by its place."""
    if not items:
        raise ValidationFailed(
            "the list holds no activity", [{"field": "body", "message": "must hold at least one activity"}]
        )
    if len(items) > MAX_ACTIVITIES:
        message = f"holds {len(items):,} activities; at most {MAX_ACTIVITIES:,} per call"
        raise ValidationFailed(f"the list {message}", [{"field": "body", "message": message}])
    errors: list[dict[str, str]] = []
    if any(not isinstance(item, dict) for item in items):
        errors.append({"field": "body", "message": "must be an object, or a list of objects"})
    activities = []
    for place, item in enumerate(items):
        if not isinstance(item, dict):
            errors.append({"field": f"[{place}]", "message": "must be an object"})
            continue
        try:
            activities.append(ActivityIn.model_validate(item))
        except ValidationError as exc:
            errors += [{**error, "field": f"[{place}].{error['field']}"} for error in field_errors(exc)]
    if errors:
        raise ValidationFailed("the request has invalid fields", errors)
    return activities
