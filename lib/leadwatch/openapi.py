"""The OpenAPI 3.1 description of leadwatch, generated, never hand-kept.

Paths and methods come from the routing table (`leadwatch.api.GROUPS`); what each endpoint takes
and answers comes from the pydantic models named in `OPERATIONS` (one row per endpoint name). A
route added to GROUPS without its row here fails the test suite. Served at `GET /openapi.json`
by every deployment (the `health` function): it names routes and shapes, never data or secrets.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, Field, RootModel
from pydantic.json_schema import models_json_schema

from .analytics import AnalyticsQuery
from .desk_models import BulkIn, LeadAlertsQuery, RetentionQuery, RuleIn, SnoozeIn
from .erasure import ErasuresQuery
from .exports import ActivityExportQuery, AlertExportQuery
from .models import ActivityIn, AlertQuery, LeadIn, LeadsIn, RejectedQuery, SendIn, TimelineQuery
from .notify_models import DeliveriesQuery, DeliverQuery, DigestSettingsIn, MemberIn, WebhookIn, WebhookPatch
from .responses import (
    ActivitiesLogged,
    ActivityLogged,
    AlertHistory,
    AlertList,
    Analytics,
    BulkDone,
    Deliveries,
    DeliverResult,
    DigestSettingsOne,
    Erasures,
    Error,
    Health,
    LeadAlerts,
    LeadErased,
    LeadExport,
    LeadsUpserted,
    MemberOne,
    Members,
    OpenApiDocument,
    Redelivered,
    RejectedList,
    Resolved,
    RetentionRun,
    Rules,
    RuleSet,
    Snoozed,
    SweepResult,
    Timeline,
    WebhookAck,
    WebhookDeleted,
    WebhookOne,
    Webhooks,
    WhatsAppSent,
)

if TYPE_CHECKING:
    from flask import Request

    from .api import Api

Security = Literal["user", "scheduler", "webhook", "public"]
_USER_ERRORS = (400, 401, 403, 422, 503)
_BODY_ERRORS = (400, 401, 403, 413, 422, 503)
_SEND_ERRORS = (*_BODY_ERRORS, 404, 409, 502, 504)


class LeadsBody(RootModel[LeadIn | list[LeadIn] | LeadsIn]):
    """One lead, a list of leads, or {"leads": [...]} (at most 1000)."""


class ActivitiesBody(RootModel[ActivityIn | Annotated[list[ActivityIn], Field(min_length=1, max_length=1000)]]):
    """One activity, or a list of 1 to 1,000 logged in one transaction."""


class ActivitiesAnswer(RootModel[ActivityLogged | ActivitiesLogged]):
    """For one activity, its answer; for a list, {success, results}: one answer per activity, in order."""


class GreenApiNotification(BaseModel):
    """A Green-API webhook notification (incomingMessageReceived, outgoingMessageStatus, ...), as Green-API sends it."""

    typeWebhook: str
    instanceData: dict[str, Any] | None = None
    timestamp: int | None = None


@dataclass(frozen=True)
class Operation:
    summary: str
    tag: str
    response: type[BaseModel] | None  # the 200 body (None: a CSV file)
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    errors: tuple[int, ...] = _USER_ERRORS
    security: Security = "user"
    description: str = ""
    status: int = 200  # the success status (201 where the route creates)


OPERATIONS: dict[str, Operation] = {
    "log_activity": Operation(
        "Log an activity of a lead and apply the rules it triggers",
        "activities",
        ActivitiesAnswer,
        body=ActivitiesBody,
        errors=_BODY_ERRORS,
        description="Idempotent on externalId: a replay answers the stored activity with duplicate: true. "
        "A list of up to 1,000 activities (body up to 1 MiB; one activity: 64 KiB) is logged in one transaction, "
        "in order, each answered as if logged alone; one invalid activity (named by its place, e.g. `[3].leadId`) "
        "refuses the whole list and nothing is stored; more than 1,000 is a 422.",
    ),
    "export_activities_csv": Operation(
        "Export activities as CSV (streamed)",
        "activities",
        None,
        query=ActivityExportQuery,
    ),
    "list_alerts": Operation(
        "List active alerts, high to low then newest, with the stats",
        "alerts",
        AlertList,
        query=AlertQuery,
    ),
    "alert_analytics": Operation(
        "Alert analytics over a range of days",
        "alerts",
        Analytics,
        query=AnalyticsQuery,
        description="Per day created/resolved/escalated (days in `tz`), resolution within 24 h, time to resolve "
        "(median, p90) by type and by owner, open alerts by age. An agent gets the figures of their own leads.",
    ),
    "export_alerts_csv": Operation(
        "Export alerts as CSV (streamed)",
        "alerts",
        None,
        query=AlertExportQuery,
    ),
    "resolve_alert": Operation(
        "Resolve an alert by hand (idempotent)",
        "alerts",
        Resolved,
        errors=(*_USER_ERRORS, 404),
    ),
    "run_action": Operation(
        "Run the alert's suggested action (send its WhatsApp message)",
        "alerts",
        WhatsAppSent,
        errors=_SEND_ERRORS,
    ),
    "sweep": Operation(
        "Run the time-based rules for the leads that fell due",
        "sweep",
        SweepResult,
        security="scheduler",
        errors=(400, 401, 403, 503),
    ),
    "upsert_leads": Operation(
        "Create or update leads",
        "leads",
        LeadsUpserted,
        body=LeadsBody,
        errors=_BODY_ERRORS,
    ),
    "lead_activities": Operation(
        "A lead's timeline, newest first",
        "leads",
        Timeline,
        query=TimelineQuery,
        errors=(*_USER_ERRORS, 404),
    ),
    "send_whatsapp": Operation(
        "Send a WhatsApp message to a lead and log it",
        "whatsapp",
        WhatsAppSent,
        body=SendIn,
        errors=_SEND_ERRORS,
    ),
    "greenapi_webhook": Operation(
        "Green-API webhook (incoming messages and delivery statuses)",
        "whatsapp",
        WebhookAck,
        body=GreenApiNotification,
        security="webhook",
        errors=(400, 401, 413, 503),
    ),
    "snooze_alert": Operation(
        "Snooze an alert until a time (`until`) or for a while (`for`: 90m, 4h, 2d; at most 30 days)",
        "alerts",
        Snoozed,
        body=SnoozeIn,
        errors=(*_BODY_ERRORS, 404, 409),
        description="A snoozed alert leaves the active list; the sweep brings it back at `until` if its condition "
        "still holds (else resolves it). An activity that answers it resolves it meanwhile.",
    ),
    "unsnooze_alert": Operation("Bring a snoozed alert back now", "alerts", Snoozed, errors=(*_USER_ERRORS, 404, 409)),
    "bulk_alerts": Operation(
        "Resolve or snooze up to 500 alerts in one transaction, one answer per id",
        "alerts",
        BulkDone,
        body=BulkIn,
        errors=_BODY_ERRORS,
    ),
    "alert_history": Operation(
        "An alert and its history (created, escalated, snoozed, reopened, overdue, resolved)",
        "alerts",
        AlertHistory,
        errors=(*_USER_ERRORS, 404),
    ),
    "lead_alerts": Operation(
        "Every alert of a lead, active and past, newest first",
        "leads",
        LeadAlerts,
        query=LeadAlertsQuery,
        errors=(*_USER_ERRORS, 404),
    ),
    "erase_lead": Operation(
        "Erase a lead and everything held about it (admins, platform staff, the service)",
        "leads",
        LeadErased,
        errors=(*_USER_ERRORS, 404),
        description="GDPR article 17, in one transaction: the directory row, state, activities, alerts and their "
        "history, the lead's place in the counts and analytics, the webhook deliveries and WhatsApp pushes naming "
        "it, its lines in the morning digests and the Green-API dead letters from its phone. Answers the rows removed "
        "per table and keeps only a proof (GET /api/erasures); a `lead.erased` event carrying the lead's hash is "
        "queued to every webhook endpoint of the tenant. A lead the tenant holds nothing about (never known, another "
        "tenant's, or already erased) is a 404: repeating the call changes nothing more. Agents and managers: 403.",
    ),
    "export_lead": Operation(
        "Everything held about a lead, as one JSON document (admins, platform staff, the service)",
        "leads",
        LeadExport,
        errors=(*_USER_ERRORS, 404),
        description="GDPR articles 15 and 20: the directory row, state, activities, alerts with their history, "
        "and the Green-API dead letters from the lead's number.",
    ),
    "list_erasures": Operation(
        "The tenant's lead erasures, newest first (admins): proofs without personal data",
        "leads",
        Erasures,
        query=ErasuresQuery,
    ),
    "list_rules": Operation("The rules in force for the tenant (defaults merged)", "rules", Rules),
    "put_rule": Operation(
        "Change a rule for the tenant (admins and platform staff); due times are recomputed at once",
        "rules",
        RuleSet,
        body=RuleIn,
        errors=(*_BODY_ERRORS, 404),
    ),
    "run_retention": Operation(
        "Remove one bounded batch of what is past its tenant's retention",
        "retention",
        RetentionRun,
        query=RetentionQuery,
        security="scheduler",
        errors=(400, 401, 403, 422, 503),
    ),
    "list_greenapi_rejected": Operation(
        "Green-API notifications that could not be read (dead letters), newest first",
        "whatsapp",
        RejectedList,
        query=RejectedQuery,
    ),
    "create_webhook": Operation(
        "Register a webhook endpoint (admins); its whsec_ secret is shown this once",
        "webhooks",
        WebhookOne,
        body=WebhookIn,
        errors=_BODY_ERRORS,
        status=201,
    ),
    "list_webhooks": Operation("The tenant's webhook endpoints, without secrets (admins)", "webhooks", Webhooks),
    "delete_webhook": Operation(
        "Remove a webhook endpoint and its pending deliveries", "webhooks", WebhookDeleted, errors=(*_USER_ERRORS, 404)
    ),
    "patch_webhook": Operation(
        "Enable an endpoint again (after a 410 Gone disabled it), or disable it (admins)",
        "webhooks",
        WebhookOne,
        body=WebhookPatch,
        errors=(*_BODY_ERRORS, 404),
    ),
    "rotate_webhook": Operation(
        "A new signing secret for an endpoint, shown this once", "webhooks", WebhookOne, errors=(*_USER_ERRORS, 404)
    ),
    "list_webhook_deliveries": Operation(
        "An endpoint's newest deliveries: attempts, status codes, next retry",
        "webhooks",
        Deliveries,
        query=DeliveriesQuery,
        errors=(*_USER_ERRORS, 404),
    ),
    "redeliver_webhook": Operation(
        "Send a delivery again (same webhook-id)", "webhooks", Redelivered, errors=(*_USER_ERRORS, 404, 409)
    ),
    "deliver_notifications": Operation(
        "Write the morning digests come due, then send the webhook deliveries and WhatsApp pushes that are due",
        "notifications",
        DeliverResult,
        query=DeliverQuery,
        security="scheduler",
        errors=(400, 401, 403, 422, 503),
    ),
    "list_members": Operation("The team directory (admins)", "members", Members),
    "upsert_member": Operation(
        "Add or replace a member of the team directory (admins)",
        "members",
        MemberOne,
        body=MemberIn,
        errors=_BODY_ERRORS,
    ),
    "get_digest_settings": Operation(
        "When the tenant's morning digest is written: local hour and time zone (admins)", "members", DigestSettingsOne
    ),
    "put_digest_settings": Operation(
        "Set the morning digest's local hour (0-23) and IANA time zone (admins)",
        "members",
        DigestSettingsOne,
        body=DigestSettingsIn,
        errors=_BODY_ERRORS,
    ),
    "health": Operation("Is the service up and its database reachable?", "health", Health, security="public"),
    "openapi": Operation("This description", "health", OpenApiDocument, security="public", errors=()),
}

_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "user": [{"bearer": []}, {"bearer": [], "tenant": []}, {"tenant": []}],
    "scheduler": [{"bearer": []}, {"schedulerToken": []}, {"tenant": []}],
    "webhook": [{"bearer": []}],
    "public": [],
}
_STATUS_TEXT = {
    400: "Bad request (malformed JSON, X-Tenant missing or malformed)",
    401: "Not signed in, or the credentials are invalid",
    403: "Not allowed for this caller or tenant",
    404: "Not found (or not visible to the caller)",
    409: "Conflict (e.g. no Green-API instance for this tenant)",
    413: "Body over 64 KiB",
    422: "Invalid field(s): details lists {field, message}",
    502: "Green-API refused or failed the send",
    503: "The database (or Green-API) is unavailable; retry after Retry-After",
    504: "Green-API did not answer in time",
}
_REF = "#/components/schemas/{model}"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("leadwatch")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree without installing
        return "0"


def openapi_path(rule: str) -> tuple[str, list[str]]:
    """A werkzeug rule (`/api/alerts/<alert_id>/resolve`) as an OpenAPI path, and its parameters."""
    names = re.findall(r"<(?:[^:<>]+:)?([^<>]+)>", rule)
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule), names


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(by_alias=True, ref_template=_REF)
    required = set(schema.get("required", ()))
    defaulted = {name for name, prop in schema["properties"].items() if "default" in prop}
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required and name not in defaulted and not _has_default_days(model, name),
            "schema": {k: v for k, v in prop.items() if k not in ("title", "description")},
            **({"description": prop["description"]} if "description" in prop else {}),
        }
        for name, prop in schema["properties"].items()
    ]


def _has_default_days(model: type[BaseModel], name: str) -> bool:
    """AnalyticsQuery's from/to are required by the model but defaulted from the query before it."""
    return model is AnalyticsQuery and name in ("from", "to")


def _responses(name: str, operation: Operation) -> dict[str, Any]:
    if operation.response is None:
        ok = {
            "description": "A CSV file (RFC 4180, UTF-8), sent as an attachment",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    else:
        ok = {
            "description": "OK",
            "content": {"application/json": {"schema": {"$ref": _REF.format(model=operation.response.__name__)}}},
        }
    responses: dict[str, Any] = {str(operation.status): ok}
    if name == "health":
        responses["503"] = {
            "description": "The database is unreachable",
            "content": {"application/json": {"schema": {"$ref": _REF.format(model="Health")}}},
        }
    for status in operation.errors:
        responses[str(status)] = {"$ref": f"#/components/responses/E{status}"}
    return responses


@functools.cache
def openapi_spec() -> dict[str, Any]:
    """The OpenAPI 3.1 document: every route of GROUPS, described by its row of OPERATIONS."""
    from .api import GROUPS

    models: set[type[BaseModel]] = {Error}
    for operation in OPERATIONS.values():
        models.update(m for m in (operation.response, operation.body) if m is not None)
    _, top = models_json_schema(
        [
            (m, "validation" if m in {op.body for op in OPERATIONS.values()} else "serialization")
            for m in sorted(models, key=lambda m: m.__name__)
        ],
        ref_template=_REF,
    )
    paths: dict[str, dict[str, Any]] = {}
    for group, rules in GROUPS.items():
        for rule in rules:
            endpoint = str(rule.endpoint)
            operation = OPERATIONS[endpoint]
            path, names = openapi_path(rule.rule)
            parameters = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names]
            if operation.query is not None:
                parameters += _query_parameters(operation.query)
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                entry: dict[str, Any] = {
                    "operationId": endpoint,
                    "summary": operation.summary,
                    "tags": [operation.tag],
                    "security": _SECURITY[operation.security],
                    "responses": _responses(endpoint, operation),
                    "x-leadwatch-function": group,
                }
                if operation.description:
                    entry["description"] = operation.description
                if parameters:
                    entry["parameters"] = parameters
                if operation.body is not None:
                    entry["requestBody"] = {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": _REF.format(model=operation.body.__name__)}}
                        },
                    }
                paths.setdefault(path, {})[method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "leadwatch",
            "version": _version(),
            "description": "Living alerts for sales leads. Each group of paths is one deployed function "
            "(x-leadwatch-function); `leadwatch dev` serves them all on one port, trusting X-Tenant.",
        },
        "paths": paths,
        "components": {
            "schemas": top.get("$defs", {}),
            "responses": {
                f"E{status}": {
                    "description": text,
                    "content": {"application/json": {"schema": {"$ref": _REF.format(model="Error")}}},
                }
                for status, text in _STATUS_TEXT.items()
            },
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A Supabase Auth access token (users), or the service key (servers, "
                    "naming the tenant with X-Tenant)",
                },
                "tenant": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Tenant",
                    "description": "The tenant acted in: servers name it; `leadwatch dev` trusts it alone",
                },
                "schedulerToken": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Scheduler-Token",
                    "description": "LEADWATCH_SCHEDULER_TOKEN: the scheduler may run the sweep only",
                },
            },
        },
    }


def serve_openapi(request: Request, caller: None, api: Api) -> tuple[int, dict]:
    return 200, openapi_spec()
