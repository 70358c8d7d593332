"""The `activities` function: log activities (one, or a list in one transaction), export them as CSV."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Request

from ..errors import ValidationFailed
from ..http.attachments import ACTIVITY_COLUMNS, attachment, csv_chunks, export_filename
from ..http.inputs import activities_body
from ..http.routes import BODY_ERRORS, endpoint

if TYPE_CHECKING:
    from flask import Response

    from ..http.identity import Caller
    from ..http.routes import Services

# Request models (pydantic) are imported at first use, not at the cold start of every function.


@endpoint(
    "POST",
    "/api/activities/log",
    "Log an activity of a lead and apply the rules it triggers",
    "ActivitiesAnswer",
    body="ActivitiesBody",
    errors=BODY_ERRORS,
    description="Idempotent on externalId: a replay answers the stored activity with duplicate: true. "
    "A list of up to 1,000 activities (body up to 1 MiB; one activity: 64 KiB) is logged in one transaction, "
    "in order, each answered as if logged alone; one invalid activity (named by its place, e.g. `[3].leadId`) "
    "refuses the whole list and nothing is stored; more than 1,000 is a 422.",
)
def log_activity(request: Request, caller: Caller, services: Services) -> tuple[int, dict[str, Any]]:
    """One activity (an object), or a list of up to 1,000 logged in one transaction (see `ingest`)."""
    from ..models.requests import ActivityIn, parse

    tenant = caller.require_tenant()
    body = activities_body(request)
    if isinstance(body, list):
        from ..models.ingest import parse_activities

        activities = parse_activities(body)
        return 200, {"success": True, **services.store.log_activities(tenant, activities, caller.viewer)}
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a JSON object", [{"field": "body", "message": "must be an object"}])
    activity = parse(ActivityIn, body)
    return 200, {"success": True, **services.store.log_activity(tenant, activity, caller.viewer)}


@endpoint("GET", "/api/activities/export.csv", "Export activities as CSV (streamed)", None, query="ActivityExportQuery")
def export_activities_csv(request: Request, caller: Caller, services: Services) -> Response:
    """The activities (of one lead, `lead=`) the caller may see, as CSV."""
    from ..models.exports import ActivityExportQuery
    from ..models.requests import parse

    tenant = caller.require_tenant()
    query = parse(ActivityExportQuery, request.args.to_dict())
    store, viewer = services.store, caller.viewer
    first = store.export_activities(tenant, query, None, viewer)
    chunks = csv_chunks(
        ACTIVITY_COLUMNS,
        lambda cursor: store.export_activities(tenant, query, cursor, viewer),
        first,
        semicolon=query.sep == "semicolon",
        bom=query.bom,
    )
    return attachment(chunks, export_filename("activities", tenant))
