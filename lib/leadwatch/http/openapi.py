"""The OpenAPI 3.1 description of leadwatch, generated, never hand-kept.

Read from the endpoints' declarations (`@endpoint` above each handler of `leadwatch.handlers`): path,
method, function group, summary, who may call it, and the pydantic models it takes and answers, named
there and resolved here. Served at `GET /openapi.json` by every deployment (the `health` function):
it names routes and shapes, never data or secrets.
"""

from __future__ import annotations

import functools
import re
from typing import Annotated, Any

from pydantic import BaseModel, Field, RootModel
from pydantic.json_schema import models_json_schema

from ..models import analytics, desk, email, exports, notify, requests, responses
from ..models.analytics import AnalyticsQuery
from ..models.requests import ActivityIn, LeadIn, LeadsIn
from ..models.responses import ActivitiesLogged, ActivityLogged, Error
from .routes import Endpoint


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


def model(name: str) -> type[BaseModel]:
    """The request or response model an endpoint names (declared by name: handlers import pydantic lazily)."""
    for module in (requests, desk, notify, analytics, exports, email, responses):
        found = getattr(module, name, None)
        if isinstance(found, type) and issubclass(found, BaseModel):
            return found
    found = globals().get(name)  # the bodies and answers described here: one or a list
    if isinstance(found, type) and issubclass(found, BaseModel):
        return found
    raise LookupError(f"no model named {name!r}")


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


def _responses(endpoint: Endpoint) -> dict[str, Any]:
    if endpoint.response is None:
        ok = {
            "description": "A CSV file (RFC 4180, UTF-8), sent as an attachment",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    else:
        ok = {
            "description": "OK",
            "content": {"application/json": {"schema": {"$ref": _REF.format(model=endpoint.response)}}},
        }
    responses: dict[str, Any] = {str(endpoint.status): ok}
    if endpoint.name == "health":
        responses["503"] = {
            "description": "The database is unreachable",
            "content": {"application/json": {"schema": {"$ref": _REF.format(model="Health")}}},
        }
    for status in endpoint.errors:
        responses[str(status)] = {"$ref": f"#/components/responses/E{status}"}
    return responses


@functools.cache
def openapi_spec(endpoints: tuple[Endpoint, ...]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `endpoints` (leadwatch.handlers.ENDPOINTS), each described by its declaration."""
    bodies = {model(e.body) for e in endpoints if e.body is not None}
    models: set[type[BaseModel]] = {Error, *bodies, *(model(e.response) for e in endpoints if e.response is not None)}
    _, top = models_json_schema(
        [(m, "validation" if m in bodies else "serialization") for m in sorted(models, key=lambda m: m.__name__)],
        ref_template=_REF,
    )
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        path, names = openapi_path(endpoint.path)
        parameters = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names]
        if endpoint.query is not None:
            parameters += _query_parameters(model(endpoint.query))
        entry: dict[str, Any] = {
            "operationId": endpoint.name,
            "summary": endpoint.summary,
            "tags": [endpoint.tag],
            "security": _SECURITY[endpoint.security],
            "responses": _responses(endpoint),
            "x-leadwatch-function": endpoint.group,
        }
        if endpoint.description:
            entry["description"] = endpoint.description
        if parameters:
            entry["parameters"] = parameters
        if endpoint.raw_body is not None:
            entry["requestBody"] = {"required": True, "content": {endpoint.raw_body: {"schema": {"type": "string"}}}}
        if endpoint.body is not None:
            entry["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": _REF.format(model=model(endpoint.body).__name__)}}},
            }
        paths.setdefault(path, {})[endpoint.method.lower()] = entry
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
