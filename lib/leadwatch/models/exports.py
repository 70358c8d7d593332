"""The queries of the CSV exports (GET /api/alerts/export.csv and /api/activities/export.csv): the list's
filters, a range of time, one lead, and how the file is written (`sep`, `bom`)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from .requests import AlertType, Severity, StorableModel

PAGE_SIZE = 1000  # rows read per SQL call


class _ExportQuery(StorableModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    start: datetime | None = Field(default=None, alias="from", description="from this time on (ISO 8601)")
    end: datetime | None = Field(default=None, alias="to", description="before this time (ISO 8601, excluded)")
    lead: str | None = Field(default=None, min_length=1, max_length=200, description="only this lead")
    sep: Literal["comma", "semicolon"] = Field(default="comma", description="semicolon: `sep=;` line and `;`")
    bom: bool = Field(default=False, description="start with a UTF-8 byte-order mark")

    @field_validator("end")
    @classmethod
    def _after_start(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        start = info.data.get("start")
        if value is not None and start is not None and value <= start:
            raise ValueError("must be after from")
        return value

    @property
    def page_size(self) -> int:
        return PAGE_SIZE


class AlertExportQuery(_ExportQuery):
    """Query of GET /api/alerts/export.csv: the list's filters, active or all alerts, created in [from, to)."""

    state: Literal["active", "all"] = "active"
    severity: Severity | None = None
    type: AlertType | None = None


class ActivityExportQuery(_ExportQuery):
    """Query of GET /api/activities/export.csv: activities that occurred in [from, to), of one lead or all."""
