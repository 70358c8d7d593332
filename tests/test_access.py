"""Verified callers, roles and tenant isolation — through the functions and in the database itself."""

from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager

import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from helpers import add_leads, ago, log, postgrest_claims
from leadwatch import Api, Settings
from leadwatch.devtools.dev import create_app
from leadwatch.http.identity import VerifiedAccess
from postgrest_fake import JWT_SECRET, PUBLIC_KEYS, SERVICE_KEY, SUPABASE_URL

SCHEDULER_TOKEN = "scheduler-token-for-tests"
AGENT, OTHER_AGENT, ADMIN = (
    "11111111-1111-1111-1111-111111111111",
    "22222222-2222-2222-2222-222222222222",
    "33333333-3333-3333-3333-333333333333",
)
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_KEYS["test-rsa"] = RSA_KEY.public_key()
SETTINGS = Settings(
    supabase_url=SUPABASE_URL,
    supabase_service_key=SERVICE_KEY,
    supabase_jwt_secret=JWT_SECRET,
    scheduler_token=SCHEDULER_TOKEN,
    cors_origins=("https://app.example.com",),
)


def token(
    role="admin",
    tenant="acme",
    sub=ADMIN,
    *,
    alg="HS256",
    key=JWT_SECRET,
    expires_in=3600,
    aud="authenticated",
    app_metadata=None,
    **extra,
) -> str:
    claims = {
        "sub": sub,
        "aud": aud,
        "role": "authenticated",
        "exp": int(time.time()) + expires_in,
        "app_metadata": app_metadata if app_metadata is not None else {"tenant_id": tenant, "role": role},
        **extra,
    }
    headers = {"kid": "test-rsa"} if alg == "RS256" else None
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


@contextmanager
def sqlstate(code: str):
    """Expect a database error with this SQLSTATE (leadwatch's own codes have no psycopg class)."""
    with pytest.raises(psycopg.Error) as caught:
        yield
    assert caught.value.sqlstate == code, caught.value


def bearer(value: str) -> dict:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture
def world(store, db, http_mock):
    """Tenant acme: lead OWNED (the agent's) and OTHER (another agent's), both with an alert; tenant other: one."""
    jwk = {**jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key(), as_dict=True), "kid": "test-rsa", "alg": "RS256"}
    http_mock.get(f"{SUPABASE_URL}/auth/v1/.well-known/jwks.json").respond(json={"keys": [jwk]})
    add_leads(store, OWNED={"name": "Owned", "ownerId": AGENT}, OTHER={"name": "Other", "ownerId": OTHER_AGENT})
    add_leads(store, tenant="other", FOREIGN={"name": "Foreign"})
    for tenant, lead in (("acme", "OWNED"), ("acme", "OTHER"), ("other", "FOREIGN")):
        log(store, tenant=tenant, lead=lead, direction="in", occurredAt=ago(days=8))
    store.sweep()
    ids = dict(db.execute("select lead_id, id::text from max_alerts").fetchall())
    client = create_app(Api(store, VerifiedAccess(SETTINGS), SETTINGS.cors_origins)).test_client()
    return client, ids


def _statuses(client, ids, headers) -> dict[str, int]:
    activity = {"leadId": "OWNED", "channel": "email", "direction": "out"}
    return {
        "list": client.get("/api/alerts/active", headers=headers).status_code,
        "log": client.post("/api/activities/log", headers=headers, json=activity).status_code,
        "leads": client.post("/api/leads", headers=headers, json={"leadId": "NEW"}).status_code,
        "sweep": client.post("/api/alerts/sweep", headers=headers).status_code,
        "timeline": client.get("/api/leads/OWNED/activities", headers=headers).status_code,
        "resolve": client.post(f"/api/alerts/{ids['OWNED']}/resolve", headers=headers).status_code,
    }


ALL = ("list", "log", "leads", "sweep", "timeline", "resolve")
USER = {"list": 200, "log": 200, "leads": 200, "sweep": 403, "timeline": 200, "resolve": 200}
CALLERS = {
    "anonymous": (dict, dict.fromkeys(ALL, 401)),
    "not-a-jwt": (lambda: bearer("hello"), dict.fromkeys(ALL, 401)),
    "forged-signature": (lambda: bearer(token(key="another-secret-another-secret-12345")), dict.fromkeys(ALL, 401)),
    "expired": (lambda: bearer(token(expires_in=-60)), dict.fromkeys(ALL, 401)),
    "alg-none": (
        lambda: bearer(
            jwt.encode(
                {
                    "sub": ADMIN,
                    "aud": "authenticated",
                    "exp": int(time.time()) + 60,
                    "app_metadata": {"tenant_id": "acme", "role": "admin"},
                },
                None,
                algorithm="none",
            )
        ),
        dict.fromkeys(ALL, 401),
    ),
    "wrong-audience": (lambda: bearer(token(aud="anon")), dict.fromkeys(ALL, 401)),
    "unknown-kid": (
        lambda: bearer(jwt.encode({"sub": ADMIN}, RSA_KEY, algorithm="RS256", headers={"kid": "nope"})),
        dict.fromkeys(ALL, 401),
    ),
    "missing-tenant-claim": (lambda: bearer(token(app_metadata={"role": "admin"})), dict.fromkeys(ALL, 403)),
    "unknown-role": (lambda: bearer(token(role="intern")), dict.fromkeys(ALL, 403)),
    "role-only-in-user-metadata": (
        lambda: bearer(token(app_metadata={}, user_metadata={"tenant_id": "acme", "role": "admin"})),
        dict.fromkeys(ALL, 403),
    ),
    "platform_admin": (lambda: {**bearer(token(role="platform_admin", tenant="staff")), "X-Tenant": "acme"}, USER),
    "admin": (lambda: bearer(token(role="admin")), USER),
    "manager": (lambda: bearer(token(role="manager")), USER),
    "agent": (lambda: bearer(token(role="agent", sub=AGENT)), {**USER, "leads": 403}),
    "agent-rs256-jwks": (
        lambda: bearer(token(role="agent", sub=AGENT, alg="RS256", key=RSA_KEY)),
        {**USER, "leads": 403},
    ),
    "admin-naming-another-tenant": (
        lambda: {**bearer(token(role="admin")), "X-Tenant": "other"},
        dict.fromkeys(ALL, 403),
    ),
    "service-key": (lambda: {**bearer(SERVICE_KEY), "X-Tenant": "acme"}, dict.fromkeys(ALL, 200)),
    "service-role-jwt": (
        lambda: {
            **bearer(jwt.encode({"role": "service_role", "iss": "supabase", "exp": int(time.time()) + 60}, JWT_SECRET)),
            "X-Tenant": "acme",
        },
        dict.fromkeys(ALL, 200),
    ),
    "scheduler-token": (lambda: bearer(SCHEDULER_TOKEN), {**dict.fromkeys(ALL, 403), "sweep": 200}),
    "scheduler-behind-iam": (
        lambda: {**bearer("google-oidc-token"), "X-Scheduler-Token": SCHEDULER_TOKEN},
        {**dict.fromkeys(ALL, 403), "sweep": 200},
    ),
}


@pytest.mark.parametrize("caller", CALLERS, ids=list(CALLERS))
def test_callers_by_endpoint(world, caller):
    client, ids = world
    headers, expected = CALLERS[caller]
    assert _statuses(client, ids, headers()) == expected


def test_unauthenticated_answers_401_with_www_authenticate(world):
    client, _ = world
    response = client.get("/api/alerts/active")
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.get_json()["error"]["code"] == "unauthorized"


def test_health_needs_no_credentials(world):
    client, _ = world
    assert client.get("/health").status_code == 200


def test_agent_sees_and_counts_only_their_leads_alerts(world):
    client, _ = world
    body = client.get("/api/alerts/active", headers=bearer(token(role="agent", sub=AGENT))).get_json()
    assert [a["lead_id"] for a in body["alerts"]] == ["OWNED"] and body["stats"]["total"] == 1
    admin = client.get("/api/alerts/active", headers=bearer(token(role="manager"))).get_json()
    assert {a["lead_id"] for a in admin["alerts"]} == {"OWNED", "OTHER"} and admin["stats"]["total"] == 2


def test_agent_cannot_touch_another_agents_lead(world, db):
    client, ids = world
    agent = bearer(token(role="agent", sub=AGENT))
    assert client.post(f"/api/alerts/{ids['OTHER']}/resolve", headers=agent).status_code == 404
    assert client.get("/api/leads/OTHER/activities", headers=agent).status_code == 404
    before = db.execute("select count(*) from lead_activities").fetchone()[0]
    logged = client.post(
        "/api/activities/log", headers=agent, json={"leadId": "OTHER", "channel": "call", "direction": "out"}
    )
    assert logged.status_code == 404
    assert db.execute("select count(*) from lead_activities").fetchone()[0] == before
    assert db.execute("select resolved_at from max_alerts where id = %s", [ids["OTHER"]]).fetchone()[0] is None


def test_other_tenants_alert_is_404_for_a_user(world, db):
    client, ids = world
    response = client.post(f"/api/alerts/{ids['FOREIGN']}/resolve", headers=bearer(token(role="admin")))
    assert response.status_code == 404
    assert db.execute("select resolved_at from max_alerts where id = %s", [ids["FOREIGN"]]).fetchone()[0] is None


def test_platform_admin_acts_in_the_tenant_named_by_x_tenant(world):
    client, _ids = world
    staff = bearer(token(role="platform_admin", tenant=None))
    listed = client.get("/api/alerts/active", headers={**staff, "X-Tenant": "other"}).get_json()
    assert [a["lead_id"] for a in listed["alerts"]] == ["FOREIGN"]
    assert client.get("/api/alerts/active", headers=staff).status_code == 400  # must name one


def test_resolved_by_records_the_users_id(world):
    client, ids = world
    body = client.post(f"/api/alerts/{ids['OWNED']}/resolve", headers=bearer(token(role="agent", sub=AGENT))).get_json()
    assert body["alert"]["resolved_by"] == AGENT


def test_cors_preflight_and_response_headers_for_configured_origins_only(world):
    client, _ = world
    preflight = client.options(
        "/api/alerts/active",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization, x-tenant",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    stranger = client.options(
        "/api/alerts/active", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    )
    assert stranger.status_code == 403 and "Access-Control-Allow-Origin" not in stranger.headers
    response = client.get("/api/alerts/active", headers={**bearer(token()), "Origin": "https://app.example.com"})
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert response.headers["X-Content-Type-Options"] == "nosniff" and response.headers["Cache-Control"] == "no-store"


def test_logs_carry_request_facts_but_never_tokens_keys_or_message_text(world, caplog):
    client, _ = world
    user_token = token()
    with caplog.at_level(logging.INFO, logger="leadwatch.http"):
        client.post(
            "/api/activities/log",
            headers=bearer(user_token),
            json={"leadId": "OWNED", "channel": "whatsapp", "direction": "in", "messageSnippet": "secret deal terms"},
        )
        client.get("/api/alerts/active", headers={**bearer(SERVICE_KEY), "X-Tenant": "acme"})
        client.post("/api/alerts/sweep", headers=bearer(SCHEDULER_TOKEN))
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "leadwatch.http"]
    assert [(line["route"], line["status"], line["tenant"]) for line in lines] == [
        ("log_activity", 200, "acme"),
        ("list_alerts", 200, "acme"),
        ("sweep", 200, None),
    ]
    assert all(line["request_id"] and line["latency_ms"] >= 0 for line in lines)
    text = caplog.text
    for secret in (user_token, SERVICE_KEY, SCHEDULER_TOKEN, "secret deal terms"):
        assert secret not in text


def test_jwks_is_fetched_once_and_cached(world, http_mock):
    client, _ = world
    agent = bearer(token(role="agent", sub=AGENT, alg="RS256", key=RSA_KEY))
    for _ in range(3):
        assert client.get("/api/alerts/active", headers=agent).status_code == 200
    assert http_mock.routes[-1].call_count == 1


def test_jwks_unreachable_is_503_not_a_silent_pass(store, db, http_mock):
    http_mock.get(f"{SUPABASE_URL}/auth/v1/.well-known/jwks.json").respond(status_code=502)
    client = create_app(Api(store, VerifiedAccess(SETTINGS))).test_client()
    response = client.get("/api/alerts/active", headers=bearer(token(alg="RS256", key=RSA_KEY)))
    assert response.status_code == 503


def test_verified_access_without_any_verifier_fails_at_start():
    from leadwatch import ConfigError

    with pytest.raises(ConfigError, match="SUPABASE_JWT_SECRET"):
        VerifiedAccess(Settings())


# The same rules inside the database: Supabase's REST API reaches tables, the view and RPC directly -----


def _claims(role: str | None, tenant: str | None = "acme", sub: str = ADMIN) -> dict:
    return {
        "sub": sub,
        "role": "authenticated",
        "aud": "authenticated",
        "app_metadata": {k: v for k, v in (("tenant_id", tenant), ("role", role)) if v},
    }


@pytest.fixture
def as_user(postgres_store, db):
    """Run SQL as Supabase's `authenticated` role with the given claims, as PostgREST would."""
    add_leads(postgres_store, OWNED={"ownerId": AGENT}, OTHER={"ownerId": OTHER_AGENT})
    add_leads(postgres_store, tenant="other", FOREIGN={})
    for tenant, lead in (("acme", "OWNED"), ("acme", "OTHER"), ("other", "FOREIGN")):
        log(postgres_store, tenant=tenant, lead=lead, direction="in", occurredAt=ago(days=8))
    postgres_store.sweep()

    def run(claims: dict | None, statement: str, params=(), role="authenticated"):
        with db.transaction():
            db.execute(f"set local role {role}")
            postgrest_claims(db, claims or {})
            return db.execute(statement, params).fetchall()

    return run


TABLES = ("leads", "lead_state", "lead_activities", "max_alerts", "active_alerts", "alert_events")


@pytest.mark.parametrize(
    ("who", "visible"),
    [
        (_claims("platform_admin", None), {"OWNED", "OTHER", "FOREIGN"}),
        (_claims("admin"), {"OWNED", "OTHER"}),
        (_claims("manager"), {"OWNED", "OTHER"}),
        (_claims("agent", sub=AGENT), {"OWNED"}),
        (_claims("intern"), set()),
        (_claims(None), set()),
        ({"sub": ADMIN, "role": "authenticated", "user_metadata": {"tenant_id": "acme", "role": "admin"}}, set()),
    ],
    ids=["platform_admin", "admin", "manager", "agent", "unknown-role", "no-role", "user-metadata-only"],
)
def test_rest_api_tables_and_view_show_what_the_functions_show(as_user, who, visible):
    for table in TABLES:
        seen = {row[0] for row in as_user(who, f"select lead_id from public.{table}")}
        assert seen == visible, table


def test_rest_api_rpc_applies_the_same_rules(as_user, db):
    agent = _claims("agent", sub=AGENT)
    listed = as_user(agent, "select public.list_active_alerts('acme')")[0][0]
    assert [a["lead_id"] for a in listed["alerts"]] == ["OWNED"] and listed["stats"]["total"] == 1
    assert as_user(_claims("admin"), "select public.list_active_alerts('other')")[0][0]["alerts"] == []

    other_alert = db.execute("select id from max_alerts where lead_id = 'OTHER'").fetchone()[0]
    with sqlstate("LW404"):
        as_user(agent, "select public.resolve_alert('acme', %s)", [other_alert])
    with sqlstate("LW403"):
        as_user(_claims("admin"), "select public.log_activity('other', 'X', 'email', 'in')")
    with sqlstate("LW403"):
        as_user(agent, """select public.upsert_leads('acme', '[{"lead_id": "MINE"}]')""")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_user(_claims("admin"), "select public.sweep_alerts()")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_user(
            _claims("admin"),
            "insert into public.max_alerts (tenant_id, lead_id, type, severity, message) "
            "values ('acme', 'X', 'NoContact7d', 'low', 'forged')",
        )
    own = db.execute("select id from max_alerts where lead_id = 'OWNED'").fetchone()[0]
    resolved = as_user(agent, "select public.resolve_alert('acme', %s, 'someone-else')", [own])[0][0]
    assert resolved["alert"]["resolved_by"] == AGENT


@pytest.mark.parametrize(
    "statement",
    [
        "select * from public.max_alerts",
        "select * from public.active_alerts",
        "select * from public.leads",
        "select public.list_active_alerts('acme')",
        "select public.log_activity('acme', 'X', 'email', 'in')",
    ],
)
def test_anon_gets_nothing(as_user, statement):
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_user({"role": "anon"}, statement, role="anon")


def test_user_calls_through_supabase_rest_run_as_the_user(world, store):
    """Through SupabaseStore the user's own token reaches PostgREST (the fake verifies it, then applies RLS)."""
    client, _ = world
    body = client.get("/api/alerts/active", headers=bearer(token(role="agent", sub=AGENT))).get_json()
    assert [a["lead_id"] for a in body["alerts"]] == ["OWNED"]
