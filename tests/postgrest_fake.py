"""A stand-in for Supabase's REST API (PostgREST) that runs RPC calls on the real test database.

respx routes supabase-py's `POST {SUPABASE_URL}/rest/v1/rpc/<function>` here: the function runs
as PostgREST would run it for the service key (role `service_role`, the key's claims in
`request.jwt.claims`, and on a Citus cluster its `db-pre-request` function, `claims_to_workers()`),
and errors come back the way PostgREST maps them (status from the SQLSTATE, body {code, message,
details, hint}).
"""

from __future__ import annotations

import json

import httpx
import jwt
import psycopg
from helpers import postgrest_claims
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

SUPABASE_URL = "https://leadwatch-test.supabase.co"
SERVICE_KEY = "sb_secret_test_service_key"
JWT_SECRET = "test-jwt-secret-with-at-least-32-characters"
PUBLIC_KEYS: dict[str, object] = {}  # kid -> public key of the project's asymmetric signing keys (its JWKS)


def postgrest_status(sqlstate: str) -> int:
    """PostgREST's SQLSTATE → HTTP status table (the parts our functions can reach)."""
    if sqlstate.startswith("08") or (sqlstate.startswith("53") and sqlstate != "53400"):
        return 503
    if sqlstate in ("23503", "23505"):
        return 409
    if sqlstate == "42501":
        return 403
    if sqlstate in ("42883", "42P01"):
        return 404
    if sqlstate.startswith(("25", "40", "57")) and sqlstate != "25006":
        return 500
    return 400  # P0001, 22*, 23* and custom codes such as LW404


class PostgrestFake:
    def __init__(self, database_url: str) -> None:
        self.pool = ConnectionPool(database_url, min_size=1, max_size=8, kwargs={"autocommit": True}, open=True)
        self.calls: list[str] = []

    def close(self) -> None:
        self.pool.close()

    def __call__(self, request: httpx.Request, function: str) -> httpx.Response:
        if request.headers.get("apikey") != SERVICE_KEY:
            return _unauthorized("Invalid API key")
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if bearer == SERVICE_KEY:
            claims = {"role": "service_role"}
        else:  # a user's JWT: PostgREST verifies it and runs the call as its role, with its claims
            try:
                header = jwt.get_unverified_header(bearer)
                key = JWT_SECRET if header.get("alg") == "HS256" else PUBLIC_KEYS.get(header.get("kid"))
                claims = jwt.decode(bearer, key, algorithms=["HS256", "RS256"], audience="authenticated")
            except jwt.PyJWTError as exc:
                return _unauthorized(str(exc))
        self.calls.append(function)
        params = json.loads(request.content or b"{}")
        statement = sql.SQL("select public.{}({})").format(
            sql.Identifier(function),
            sql.SQL(", ").join(sql.SQL("{} => {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in params),
        )
        values = {k: Jsonb(v) if isinstance(v, (dict, list)) else v for k, v in params.items()}
        try:
            with self.pool.connection() as conn, conn.transaction():
                conn.execute(sql.SQL("set local role {}").format(sql.Identifier(claims["role"])))
                postgrest_claims(conn, claims)
                result = conn.execute(statement, values).fetchone()[0]
        except psycopg.Error as exc:
            return httpx.Response(
                postgrest_status(exc.sqlstate or "XX000"),
                json={
                    "code": exc.sqlstate,
                    "message": exc.diag.message_primary,
                    "details": exc.diag.message_detail,
                    "hint": exc.diag.message_hint,
                },
            )
        return httpx.Response(200, json=result)


def _unauthorized(message: str) -> httpx.Response:
    return httpx.Response(401, json={"code": "PGRST301", "message": message, "details": None, "hint": None})
