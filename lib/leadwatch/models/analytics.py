"""The query of GET /api/alerts/analytics: the alerts' KPIs over a range of days, computed in SQL
(`alert_analytics`)."""

from __future__ import annotations

import contextlib
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from .requests import StorableModel

DEFAULT_DAYS = 30
MAX_DAYS = 366


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


class AnalyticsQuery(StorableModel):
    """Query of GET /api/alerts/analytics: days `from` to `to` (inclusive, default the last 30 days
    ending today in `tz`), bucketed in time zone `tz` (an IANA name, default UTC)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    tz: str = Field(default="UTC", min_length=1, max_length=64, description="IANA time zone, e.g. Europe/Paris")
    start: date = Field(alias="from", description="first day (YYYY-MM-DD); default: 29 days before `to`")
    end: date = Field(alias="to", description="last day, included (YYYY-MM-DD); default: today in `tz`")

    @model_validator(mode="before")
    @classmethod
    def _default_days(cls, data: Any) -> Any:
        """The last 30 days ending today in `tz` where the range is not given."""
        if not isinstance(data, dict):
            return data
        zone = _zone(str(data.get("tz") or "UTC")) or ZoneInfo("UTC")
        data = dict(data)
        if not data.get("to"):
            data["to"] = datetime.now(zone).date()
        if not data.get("from"):
            with contextlib.suppress(ValueError):  # `to` is invalid: reported as such, and `from` as missing
                data["from"] = date.fromisoformat(str(data["to"])) - timedelta(days=DEFAULT_DAYS - 1)
        return data

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if _zone(value) is None:
            raise ValueError("is not a known time zone (an IANA name such as Europe/Paris)")
        return value

    @field_validator("end")
    @classmethod
    def _bounded_range(cls, value: date, info: ValidationInfo) -> date:
        start = info.data.get("start")
        if isinstance(start, date):
            if value < start:
                raise ValueError("must be on or after from")
            if (value - start).days >= MAX_DAYS:
                raise ValueError(f"the range spans at most {MAX_DAYS} days")
        return value
