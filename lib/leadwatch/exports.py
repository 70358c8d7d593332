"""CSV exports of the alerts and the activities, streamed in constant memory.

The rows are read page by page (keyset pagination in `export_alerts` / `export_activities`, the
same SQL through either store) by a generator that fetches the next page only when the client has
taken the previous one, and written as RFC 4180 CSV with the standard library: UTF-8, CRLF line ends,
quotes where needed. `sep=semicolon` writes a first line `sep=;` and separates with `;`, as
Excel set to French expects; `bom=true` adds a byte-order mark. A cell that a spreadsheet would
read as a formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage return) is neutralised
with a leading `'`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from .models import AlertType, Severity, _Storable

if TYPE_CHECKING:
    from flask import Request, Response

    from .api import Api
    from .identity import Caller

PAGE_SIZE = 1000  # rows read per SQL call
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

ALERT_COLUMNS = (
    "id",
    "lead_id",
    "lead_name",
    "lead_email",
    "owner_id",
    "type",
    "severity",
    "message",
    "action",
    "created_at",
    "escalated_at",
    "resolved_at",
    "resolved_by",
    "resolution",
)
ACTIVITY_COLUMNS = (
    "id",
    "lead_id",
    "channel",
    "direction",
    "status",
    "message_snippet",
    "occurred_at",
    "created_at",
    "external_id",
)


class _ExportQuery(_Storable):
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


def neutralise(value: Any) -> str:
    """The cell's text, with a leading `'` where a spreadsheet would otherwise run it as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def csv_chunks(
    columns: tuple[str, ...],
    fetch: Callable[[dict | None], dict[str, Any]],
    first: dict[str, Any],
    *,
    semicolon: bool = False,
    bom: bool = False,
) -> Iterator[bytes]:
    """The CSV, one encoded chunk per page: `first` is the first page, `fetch(cursor)` reads the next
    one only when the consumer asks for more, so memory holds one page whatever the export's size."""
    delimiter = ";" if semicolon else ","
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
    if semicolon:
        buffer.write("sep=;\r\n")
    writer.writerow(columns)
    page = first
    while True:
        writer.writerows([neutralise(row.get(column)) for column in columns] for row in page["rows"])
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        yield (("\ufeff" if bom else "") + text).encode()
        bom = False
        if page["next_cursor"] is None:
            return
        page = fetch(page["next_cursor"])


def _attachment(chunks: Iterator[bytes], filename: str) -> Response:
    from flask import Response

    response = Response(chunks, status=200, content_type="text/csv; charset=utf-8")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _filename(kind: str, tenant: str) -> str:
    return f"{kind}-{tenant}-{datetime.now(UTC):%Y%m%d-%H%M%S}.csv"  # tenant: letters, digits, '.', '_', '-'


def export_alerts_csv(request: Request, caller: Caller, api: Api) -> Response:
    """The alerts the list would show (or all of them, `state=all`), as CSV."""
    from .models import parse

    tenant = caller.require_tenant()
    query = parse(AlertExportQuery, request.args.to_dict())
    store, viewer = api.store, caller.viewer
    first = store.export_alerts(tenant, query, None, viewer)  # errors answer as JSON, before streaming
    chunks = csv_chunks(
        ALERT_COLUMNS,
        lambda cursor: store.export_alerts(tenant, query, cursor, viewer),
        first,
        semicolon=query.sep == "semicolon",
        bom=query.bom,
    )
    return _attachment(chunks, _filename("alerts", tenant))


def export_activities_csv(request: Request, caller: Caller, api: Api) -> Response:
    """The activities (of one lead, `lead=`) the caller may see, as CSV."""
    from .models import parse

    tenant = caller.require_tenant()
    query = parse(ActivityExportQuery, request.args.to_dict())
    store, viewer = api.store, caller.viewer
    first = store.export_activities(tenant, query, None, viewer)
    chunks = csv_chunks(
        ACTIVITY_COLUMNS,
        lambda cursor: store.export_activities(tenant, query, cursor, viewer),
        first,
        semicolon=query.sep == "semicolon",
        bom=query.bom,
    )
    return _attachment(chunks, _filename("activities", tenant))
