"""The OpenAPI description: generated from GROUPS and the models, complete, valid, and true of the dev app
(schemathesis sends generated requests to every operation and checks each answer against it)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from leadwatch.api import _HANDLERS, GROUPS, Api
from leadwatch.dev import create_app
from leadwatch.identity import OpenAccess
from leadwatch.openapi import OPERATIONS, openapi_path, openapi_spec
from openapi_spec_validator import validate
from schemathesis.checks import ignored_auth, negative_data_rejection, positive_data_acceptance

EXAMPLES_PER_OPERATION = 25


def test_every_endpoint_is_described_and_every_description_is_routed():
    routed = {str(rule.endpoint) for rules in GROUPS.values() for rule in rules}

    assert set(_HANDLERS) == routed
    assert set(OPERATIONS) == set(_HANDLERS)
    operation_ids = {op["operationId"] for path in openapi_spec()["paths"].values() for op in path.values()}
    assert operation_ids == set(_HANDLERS)


def test_paths_and_methods_come_from_the_routing_table():
    paths = openapi_spec()["paths"]

    routed: dict[str, set[str]] = {}  # one path may be routed once per method (GET and POST /api/webhooks)
    for rules in GROUPS.values():
        for rule in rules:
            path, names = openapi_path(rule.rule)
            methods = {m.lower() for m in rule.methods or ()} - {"head", "options"}
            routed.setdefault(path, set()).update(methods)
            for method in methods:
                in_path = [p["name"] for p in paths[path][method].get("parameters", []) if p["in"] == "path"]
                assert in_path == names
    assert {path: set(methods) for path, methods in paths.items()} == routed
    assert openapi_path("/api/alerts/<alert_id>/resolve") == ("/api/alerts/{alert_id}/resolve", ["alert_id"])


def test_the_description_is_valid_openapi_3_1():
    spec = openapi_spec()

    assert spec["openapi"].startswith("3.1")
    validate(spec)  # raises on any violation of the OpenAPI 3.1 schema


def test_the_description_is_served_without_credentials(client):
    response = client.get("/openapi.json")

    assert response.status_code == 200
    assert response.json == openapi_spec()
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
schema = schemathesis.openapi.from_dict(openapi_spec())
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
