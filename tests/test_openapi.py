"""The OpenAPI description: generated from the endpoints' declarations and the models, complete, valid, and
true of the dev app (schemathesis sends generated requests to every operation and checks each answer against it)."""

from __future__ import annotations

import importlib
import json
import logging
import re

import pytest
import schemathesis
from flask import Request
from hypothesis import HealthCheck, settings
from leadwatch.devtools.dev import create_app
from leadwatch.handlers import ENDPOINTS, FUNCTION_GROUPS
from leadwatch.http.app import Api, url_map
from leadwatch.http.identity import OpenAccess
from leadwatch.http.openapi import model, openapi_path, openapi_spec
from leadwatch.http.routes import Endpoint
from openapi_spec_validator import validate
from schemathesis.checks import ignored_auth, negative_data_rejection, positive_data_acceptance
from werkzeug.test import EnvironBuilder

EXAMPLES_PER_OPERATION = 25
_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def test_every_endpoint_is_declared_once_in_its_function_module():
    """The handler is a direct reference to a function of `leadwatch.handlers.<group>`, and no route is
    declared twice."""
    for endpoint in ENDPOINTS:
        assert endpoint.handler.__module__ == f"leadwatch.handlers.{endpoint.group}"
        assert getattr(importlib.import_module(endpoint.handler.__module__), endpoint.name) is endpoint.handler
    assert len({endpoint.name for endpoint in ENDPOINTS}) == len(ENDPOINTS)
    assert len({(endpoint.method, endpoint.path) for endpoint in ENDPOINTS}) == len(ENDPOINTS)


def test_every_declared_endpoint_is_described_and_every_description_is_declared():
    operation_ids = [op["operationId"] for path in openapi_spec(ENDPOINTS)["paths"].values() for op in path.values()]

    assert sorted(operation_ids) == sorted(endpoint.name for endpoint in ENDPOINTS)


def test_every_named_model_exists():
    named = {name for e in ENDPOINTS for name in (e.response, e.query, e.body) if name is not None}

    assert {name: model(name).__name__ for name in named} == {name: name for name in named}
    with pytest.raises(LookupError, match="no model named 'Nope'"):
        model("Nope")


def test_each_function_routes_its_declared_endpoints_and_no_others(postgres_store, caplog):
    """`Api.handle(request, group)`, as each deployed function calls it, dispatches a declared path and method
    to that endpoint in its own group only (the request log names the endpoint that answered)."""
    api = Api(postgres_store, OpenAccess())

    def routed(endpoint: Endpoint, group: str) -> tuple[int, str | None]:
        path = _CONVERTER.sub("00000000-0000-0000-0000-000000000000", endpoint.path)
        request = Request(EnvironBuilder(path=path, method=endpoint.method, headers={"X-Tenant": "acme"}).get_environ())
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="leadwatch.http"):
            status = api.handle(request, group).status_code
        lines = [json.loads(r.getMessage()) for r in caplog.records if r.getMessage().startswith('{"request_id"')]
        return status, lines[-1]["route"]

    for endpoint in ENDPOINTS:
        assert routed(endpoint, endpoint.group)[1] == endpoint.name
        other = next(group for group in FUNCTION_GROUPS if group != endpoint.group)
        assert routed(endpoint, other) == (404, None)


def test_a_function_compiles_only_its_own_routes_and_at_its_first_request(postgres_store):
    """Cold start: creating the Api compiles no route; the `health` function's first request compiles its two."""
    url_map.cache_clear()
    api = Api(postgres_store, OpenAccess())
    assert url_map.cache_info().currsize == 0

    request = Request(EnvironBuilder(path="/health").get_environ())
    assert api.handle(request, "health").status_code == 200
    assert url_map.cache_info().currsize == 1
    assert sorted(rule.rule for rule in url_map("health").iter_rules()) == ["/health", "/openapi.json"]


def test_paths_and_methods_come_from_the_declarations():
    paths = openapi_spec(ENDPOINTS)["paths"]

    routed: dict[str, set[str]] = {}  # one path may be routed once per method (GET and POST /api/webhooks)
    for endpoint in ENDPOINTS:
        path, names = openapi_path(endpoint.path)
        routed.setdefault(path, set()).add(endpoint.method.lower())
        in_path = [p["name"] for p in paths[path][endpoint.method.lower()].get("parameters", []) if p["in"] == "path"]
        assert in_path == names
        assert paths[path][endpoint.method.lower()]["x-leadwatch-function"] == endpoint.group
    assert {path: set(methods) for path, methods in paths.items()} == routed
    assert openapi_path("/api/alerts/<alert_id>/resolve") == ("/api/alerts/{alert_id}/resolve", ["alert_id"])


def test_the_description_is_valid_openapi_3_1():
    spec = openapi_spec(ENDPOINTS)

    assert spec["openapi"].startswith("3.1")
    validate(spec)  # raises on any violation of the OpenAPI 3.1 schema


def test_the_description_is_served_without_credentials(client):
    response = client.get("/openapi.json")

    assert response.status_code == 200
    assert response.json == openapi_spec(ENDPOINTS)
    analytics = response.json["paths"]["/api/alerts/analytics"]["get"]
    assert {p["name"] for p in analytics["parameters"]} == {"from", "to", "tz"}
    body = response.json["paths"]["/api/activities/log"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ActivitiesBody"}
    assert "text/csv" in response.json["paths"]["/api/alerts/export.csv"]["get"]["responses"]["200"]["content"]


class _CurrentDevApp:
    """The WSGI app schemathesis calls: the dev app of the running test, over that test's fresh database.
    (schemathesis.pytest.from_fixture would build the schema from a fixture, but fails under pytest 9.)"""

    app = None

    def __call__(self, environ, start_response):
        return self.app(environ, start_response)


_DEV_APP = _CurrentDevApp()
# The email webhook takes one raw message (message/rfc822): generated strings are sent as its bytes.
schemathesis.serializer.alias("message/rfc822", "text/plain")
schema = schemathesis.openapi.from_dict(openapi_spec(ENDPOINTS))
schema.app = _DEV_APP
# No NUL bytes: Postgres text cannot hold them (the hostile-input work answers those on its own).
schema.config.generation.update(allow_x00=False, with_security_parameters=False)


@pytest.fixture
def dev_app(postgres_store):
    """The dev app (open access, as `leadwatch dev` runs) over the postgres store."""
    _DEV_APP.app = create_app(Api(postgres_store, OpenAccess()))
    yield _DEV_APP.app
    _DEV_APP.app = None


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_dev_app_answers_as_described(case, dev_app):
    """No 5xx; status codes, content types, headers and bodies as the description says, for valid
    and invalid requests alike. Two checks do not apply to the dev app: `ignored_auth` (dev trusts
    X-Tenant alone by design; test_access checks authentication on VerifiedAccess), and
    `negative_data_rejection` (pydantic's lax parsing accepts more than the schema names, e.g. UNIX
    seconds for a time: a wider input, never a wrong answer). And `positive_data_acceptance` does not
    either: rules a JSON schema cannot state (a time at most 5 minutes ahead, `to` after `from`, a
    cursor this API issued) answer a documented 422 naming the field."""
    case.call_and_validate(
        headers={"X-Tenant": "acme"},
        excluded_checks=[ignored_auth, negative_data_rejection, positive_data_acceptance],
    )


def test_the_dev_server_shows_the_description_with_the_vendored_viewer(client):
    page = client.get("/docs")
    viewer = client.get("/docs/vendor/redoc/redoc.standalone.js")

    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert '<redoc spec-url="/openapi.json">' in html
    assert 'src="/docs/vendor/redoc/redoc.standalone.js"' in html and "https://" not in html  # no CDN
    assert viewer.status_code == 200 and viewer.mimetype == "text/javascript"
    assert b"RedocStandalone" in viewer.get_data()
