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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Response

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


def neutralise(value: Any) -> str:
    """The cell's text, with a leading `'` where a spreadsheet would otherwise run it as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def csv_chunks(
    columns: tuple[str, ...],
    fetch: Callable[[dict[str, Any] | None], dict[str, Any]],
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


def attachment(chunks: Iterator[bytes], filename: str) -> Response:
    from flask import Response

    response = Response(chunks, status=200, content_type="text/csv; charset=utf-8")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def export_filename(kind: str, tenant: str) -> str:
    return f"{kind}-{tenant}-{datetime.now(UTC):%Y%m%d-%H%M%S}.csv"  # tenant: letters, digits, '.', '_', '-'
