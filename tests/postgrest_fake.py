"""A stand-in for Supabase's REST API (PostgREST) that runs RPC calls on the real test database.

respx routes supabase-py's `POST {SUPABASE_URL}/rest/v1/rpc/<function>` here: the function runs
as PostgREST would run it for the service key (role `service_role`, the key's claims in
`request.jwt.claims`, and on a Citus cluster its `db-pre-request` function, `claims_to_workers()`),
in the statement PostgREST sends (its arguments read from the request's JSON body with
`json_to_record`, the call in a `LATERAL` subquery of a CTE: on Citus such a call is not delegated,
see docs/citus.md), and errors come back the way PostgREST maps them (status from the SQLSTATE, body
{code, message, details, hint}; a function it does not know, PGRST202).
"""

from __future__ import annotations

import json

import httpx
import jwt
import psycopg
from helpers import postgrest_claims
from psycopg import sql
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
        self._arguments: dict[str, dict[str, str] | None] = {}

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
        arguments = self._argument_types(function)
        if arguments is None or not set(params) <= set(arguments):
            signature = f"public.{function}({', '.join(sorted(params))})"
            return httpx.Response(
                404,
                json={
                    "code": "PGRST202",
                    "message": f"Could not find the function {signature} in the schema cache",
                    "details": None,
                    "hint": None,
                },
            )
        statement = postgrest_call(function, {name: arguments[name] for name in params})
        try:
            with self.pool.connection() as conn, conn.transaction():
                conn.execute(sql.SQL("set local role {}").format(sql.Identifier(claims["role"])))
                postgrest_claims(conn, claims)
                body = conn.execute(statement, [json.dumps(params)] if params else []).fetchone()[0]
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
        return httpx.Response(200, content=body, headers={"Content-Type": "application/json"})

    def _argument_types(self, function: str) -> dict[str, str] | None:
        """The function's arguments and their types (PostgREST's schema cache), None when there is no such function."""
        if function not in self._arguments:
            with self.pool.connection() as conn:
                row = conn.execute(
                    "select array(select format_type(t, null) from unnest(p.proargtypes) t), p.proargnames"
                    " from pg_proc p where p.pronamespace = 'public'::regnamespace and p.proname = %s",
                    [function],
                ).fetchone()
            self._arguments[function] = None if row is None else dict(zip(row[1] or [], row[0], strict=True))
        return self._arguments[function]


def postgrest_call(function: str, arguments: dict[str, str]) -> sql.Composed:
    """The statement PostgREST 12 sends for an RPC call of a function answering one value (QueryBuilder's
    callPlanToQuery inside Statements' prepareCall): the arguments given, read from the JSON body ($1) as their
    types; the others take their defaults. The answer is the body PostgREST returns, as text."""
    if arguments:
        names = [sql.Identifier(name) for name in arguments]
        source = sql.SQL(
            "FROM (SELECT %s::json AS json_data) pgrst_payload, "
            "LATERAL (SELECT {columns} FROM json_to_record(pgrst_payload.json_data) AS _({typed}) LIMIT 1) pgrst_body, "
            "LATERAL (SELECT public.{function}({named}) pgrst_scalar) pgrst_call"
        ).format(
            columns=sql.SQL(", ").join(names),
            typed=sql.SQL(", ").join(
                sql.SQL("{} {}").format(n, sql.SQL(t)) for n, t in zip(names, arguments.values(), strict=True)
            ),
            function=sql.Identifier(function),
            named=sql.SQL(", ").join(sql.SQL("{0} := pgrst_body.{0}").format(n) for n in names),
        )
    else:
        source = sql.SQL("FROM (SELECT public.{}() pgrst_scalar) pgrst_call").format(sql.Identifier(function))
    return sql.SQL(
        "WITH pgrst_source AS (SELECT pgrst_call.pgrst_scalar {source}) "
        "SELECT coalesce((json_agg(_postgrest_t.pgrst_scalar) -> 0)::text, 'null') AS body "
        "FROM (SELECT pgrst_source.* FROM pgrst_source) _postgrest_t"
    ).format(source=source)


def _unauthorized(message: str) -> httpx.Response:
    return httpx.Response(401, json={"code": "PGRST301", "message": message, "details": None, "hint": None})
