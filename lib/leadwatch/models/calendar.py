"""What callers send to PUT /api/calendar: the tenant's working calendar, which rules on the business
clock count.

A week of local opening ranges in an IANA time zone, and holidays (whole local dates). A tenant that
never set one works Monday to Friday, 09:00-18:00, Europe/Paris. The arithmetic is in SQL
(`clock_add`, `working_seconds_between`); setting a calendar recomputes the due times of the
tenant's business-clock rules in the same transaction (`set_calendar`).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from .requests import InputModel

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Start = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", description="HH:MM")]
End = Annotated[str, Field(pattern=r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$", description="HH:MM (24:00: end of day)")]


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


class CalendarIn(InputModel):
    """Body of PUT /api/calendar: `{"timeZone": "Europe/Paris", "week": {"mon": [["09:00", "18:00"]], ...,
    "sun": []}, "holidays": ["2026-12-25"]}`. Several ranges a day; a day left out has none."""

    timeZone: str = Field(max_length=64, description="an IANA time zone, e.g. Europe/Paris")
    week: dict[Day, list[tuple[Start, End]]] = Field(description="per day, its working ranges [start, end)")
    holidays: list[date] = Field(default_factory=list, max_length=1000, description="local dates without work")

    @field_validator("timeZone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("is not a known time zone (an IANA name such as Europe/Paris)") from None
        return value

    @field_validator("week")
    @classmethod
    def _ranges_rise_and_do_not_overlap(
        cls, week: dict[str, list[tuple[str, str]]]
    ) -> dict[str, list[tuple[str, str]]]:
        for day, ranges in week.items():
            previous_end = None
            for index, (start, end) in sorted(enumerate(ranges), key=lambda item: item[1][0]):
                if _minutes(end) <= _minutes(start):
                    raise ValueError(f"{day}[{index}]: a range must end after it starts")
                if previous_end is not None and _minutes(start) < previous_end:
                    raise ValueError(f"{day}[{index}]: ranges of one day must not overlap")
                previous_end = _minutes(end)
        if not any(week.values()):
            raise ValueError("the week needs at least one working range")
        return week

    def to_body(self) -> dict[str, Any]:
        """The calendar as `set_calendar` reads it (the API's own shape, every day present)."""
        week: dict[str, list[tuple[str, str]]] = {day: list(ranges) for day, ranges in self.week.items()}
        return {
            "timeZone": self.timeZone,
            "week": {day: [list(r) for r in week.get(day, [])] for day in DAYS},
            "holidays": sorted({h.isoformat() for h in self.holidays}),
        }
