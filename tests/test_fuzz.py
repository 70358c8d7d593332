"""The suite fuzzes itself: generated paths, query strings, cursors, headers and bodies against every
route of `leadwatch.handlers.ENDPOINTS` (so routes added later are fuzzed too), on both stores.

For every request: no 5xx, every error is our JSON with `success: false`, and a refused request
changed nothing (the row count of every table is unchanged). Derandomised and bounded in
`make test`; a longer run on demand: LEADWATCH_FUZZ_EXAMPLES=2000 make test ARGS=tests/test_fuzz.py
(examples per route and store).
"""

from __future__ import annotations

import base64
import json
import os
import re
from urllib.parse import quote, urlencode

import httpx
import pytest
from helpers import add_leads, ago, log, row_counts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from leadwatch import Api
from leadwatch.devtools.dev import create_app
from leadwatch.handlers import ENDPOINTS
from leadwatch.http.identity import OpenAccess
from leadwatch.integrations.greenapi import GreenApi
from test_greenapi import ACME, HOOK, SOPHIE, message, status

EXAMPLES = int(os.environ.get("LEADWATCH_FUZZ_EXAMPLES", "150"))
TENANT = ACME.tenant
_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")

ROUTES = [(endpoint.path, endpoint.method) for endpoint in ENDPOINTS]

# Values ---------------------------------------------------------------------------------------------

# Any character, NUL and lone surrogates (which PostgreSQL cannot store) more often than by chance.
text = st.text(st.characters(codec=None, exclude_categories=()) | st.sampled_from("\x00\ud800\udfff"), max_size=30)
json_scalar = st.none() | st.booleans() | st.integers() | st.floats() | text
json_value = st.recursive(
    json_scalar, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4), max_leaves=12
)
uuid_like = st.uuids().map(str) | st.uuids().map(lambda u: f"urn:uuid:{u}") | st.uuids().map(lambda u: u.hex)
times = st.datetimes(timezones=st.timezones() | st.none()).map(lambda d: d.isoformat()) | text


def cursor_of(position) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


cursors = st.one_of(
    st.fixed_dictionaries({"r": json_scalar, "c": times | json_scalar, "i": uuid_like | json_scalar}).map(cursor_of),
    st.fixed_dictionaries({"o": times | json_scalar, "i": uuid_like | json_scalar}).map(cursor_of),
    json_value.map(cursor_of),
    text,
)
numbers_as_text = st.integers().map(str) | st.sampled_from(["NaN", "1e3", "-0", "", " 5", "0x10", "9" * 5000])
query_value = cursors | numbers_as_text | text | st.sampled_from(["high", "med", "low", "NoReply3d", "active"])
query_keys = st.sampled_from(["limit", "cursor", "severity", "type", "lead", "state", "from", "to", "tz"]) | text
queries = st.dictionaries(query_keys, query_value, max_size=4)

body_keys = [
    "leadId", "channel", "direction", "status", "messageSnippet", "meta", "occurredAt", "externalId", "name", "email",
    "phone", "ownerId", "value", "currency", "preferredChannel", "message", "leads", "ids", "action", "until", "for",
]  # fmt: skip
field_value = json_value | times | uuid_like | st.sampled_from(["whatsapp", "email", "in", "out", SOPHIE, "L1"])
json_objects = st.dictionaries(st.sampled_from(body_keys) | text, field_value, max_size=8)


def encoded(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


# Bodies the routes accept (those of routes added later too, when known), to be broken one or two fields
# at a time: so that generated requests get past the first checks and reach the deeper ones, and SQL.
VALID_BODIES = [
    {"leadId": "L1", "channel": "whatsapp", "direction": "out", "status": "sent", "messageSnippet": "Bonjour",
     "meta": {"provider": "x"}, "occurredAt": "2026-01-01T00:00:00+00:00", "externalId": "e1"},
    {"leadId": "L3", "name": "Nina", "email": "n@example.com", "phone": "+33611111111", "value": 10, "currency": "EUR"},
    {"leadId": "L1", "message": "Bonjour"},
    {"for": "4h"},
    {"until": "2030-01-01T00:00:00+00:00"},
    {"action": "resolve", "ids": ["018f0000-0000-7000-8000-000000000000"]},
    {"action": "snooze", "ids": ["018f0000-0000-7000-8000-000000000000"], "for": "2d"},
]  # fmt: skip


@st.composite
def broken_bodies(draw) -> bytes:
    body = dict(draw(st.sampled_from(VALID_BODIES)))
    for _ in range(draw(st.integers(1, 2))):
        key = draw(st.sampled_from(sorted(body)) | st.sampled_from(body_keys))
        body[key] = draw(json_value | st.dictionaries(text, json_value, max_size=3) | field_value)
    return encoded([body] if draw(st.integers(0, 5)) == 0 else body)


bodies = st.one_of(
    *[broken_bodies()] * 6,
    json_objects.map(encoded),
    st.lists(json_objects, max_size=3).map(encoded),
    json_value.map(encoded),
    st.binary(max_size=200),
    st.integers(1, 5000).map(lambda n: b"[" * n),
    st.integers(1, 200).map(lambda n: b'{"meta":' * n + b"1" + b"}" * n),
    st.just(b""),
)


@st.composite
def notifications(draw) -> bytes:
    """A Green-API notification, one of its fields (or a nested one) replaced by anything."""
    payload = draw(st.sampled_from([message(), message("outgoingMessageReceived"), status("read", "X1")]))
    payload = json.loads(json.dumps(payload))
    target = payload
    key = draw(st.sampled_from(sorted(payload)))
    if isinstance(payload[key], dict) and draw(st.booleans()):
        target, key = payload[key], draw(st.sampled_from(sorted(payload[key]) or ["x"]))
    target[key] = draw(json_value)
    return encoded(payload)


def segment(known: list[str]):
    """A path segment: a known id, or anything, percent-encoded (UTF-8, lone surrogates as they are)."""
    raw = st.sampled_from(known) | uuid_like | text.filter(lambda s: s not in ("", ".", ".."))
    return raw.map(lambda s: quote(s.encode("utf-8", "surrogatepass"), safe=""))


# The app under fuzz -----------------------------------------------------------------------------------


@pytest.fixture
def fuzzed(store, db, http_mock):
    """The dev app over `store`, Green-API faked, a tenant with leads, activities and open alerts."""
    http_mock.post(url__regex=rf"^{ACME.api_url}/.*").mock(return_value=httpx.Response(200, json={"idMessage": "M1"}))
    add_leads(store, tenant=TENANT, L1={"name": "Sophie", "phone": SOPHIE, "value": 50000}, L2={"name": "Paul"})
    log(store, tenant=TENANT, lead="L1", direction="out", occurredAt=ago(days=4))
    log(store, tenant=TENANT, lead="L2", channel="email", direction="out", occurredAt=ago(days=9))
    store.sweep()
    alert_ids = [str(r[0]) for r in db.execute("select id from max_alerts")]
    client = create_app(Api(store, OpenAccess(), greenapi=GreenApi((ACME,), attempts=1))).test_client()
    return client, db, ["L1", "L2", "missing", *alert_ids, *[t for (t,) in db.execute("select type from max_alerts")]]


@pytest.mark.parametrize(("rule", "method"), ROUTES, ids=[f"{m} {r}" for r, m in ROUTES])
def test_no_request_makes_leadwatch_fail_or_write_when_it_refuses(fuzzed, rule, method):
    client, db, known = fuzzed
    webhook = rule == "/webhooks/greenapi"
    requests = st.fixed_dictionaries(
        {
            "path": st.just(rule) if "<" not in rule else st.just(None),
            "segments": st.lists(segment(known), min_size=rule.count("<"), max_size=rule.count("<")),
            "query": queries,
            "body": (notifications() | bodies) if webhook else bodies,
            "headers": st.sampled_from(
                [
                    HOOK if webhook else {"X-Tenant": TENANT},
                    {},
                    {"X-Tenant": "t\u00e9"},
                    {"Authorization": "Bearer x"},
                    {"Origin": "https://elsewhere.example", "Access-Control-Request-Method": method},
                ]
            ),
            "method": st.sampled_from([method, method, method, "PUT", "DELETE", "OPTIONS"]),
        }
    )

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(requests)
    def one_request(request):
        segments = iter(request["segments"])
        path = _CONVERTER.sub(lambda _: next(segments), rule)
        query = urlencode([(k.encode("utf-8", "surrogatepass"), v.encode("utf-8", "surrogatepass"))
                           for k, v in request["query"].items()])  # fmt: skip
        before = row_counts(db)
        response = client.open(
            f"{path}?{query}" if query else path,
            method=request["method"],
            headers=request["headers"],
            data=request["body"],
            content_type="application/json",
        )
        assert response.status_code < 500, (path, response.get_data(as_text=True)[:500])
        if rule.endswith(".csv") and response.status_code == 200:  # an export answers its file; errors are JSON
            assert response.mimetype == "text/csv", response.get_data(as_text=True)[:200]
            return
        assert response.is_json, response.get_data(as_text=True)[:200]
        document = response.get_json()
        if response.status_code >= 400:
            assert document["success"] is False and document["error"]["code"] and document["error"]["message"]
            assert row_counts(db) == before, (path, response.status_code, document)

    one_request()
