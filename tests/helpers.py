"""Small helpers shared by the tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
from leadwatch.models.requests import ActivityIn, LeadIn
from psycopg import sql


def allow_history_rewrite(db) -> None:
    """In the transaction `db` is in: the history tables accept deletes and truncates (maintenance), on a
    Citus cluster's shards too (set_config() stays on the coordinator; SET LOCAL reaches the workers)."""
    db.execute("select set_config('leadwatch.history_maintenance', 'on', true)")
    if os.environ.get("LEADWATCH_TEST_CITUS"):
        db.execute("set local citus.propagate_set_commands = 'local'")
        db.execute("set local leadwatch.history_maintenance = 'on'")


def act_as(db, claims: dict) -> None:
    """In the transaction `db` is in: the caller is the user of `claims` (role `authenticated`), on a Citus
    cluster's workers too, where a delegated call runs (SET LOCAL reaches them; set_config() does not)."""
    if os.environ.get("LEADWATCH_TEST_CITUS"):
        db.execute("set local citus.propagate_set_commands = 'local'")
    db.execute("set local role authenticated")
    db.execute(sql.SQL("set local request.jwt.claims = {}").format(sql.Literal(json.dumps(claims))))


def postgrest_claims(db, claims: dict) -> None:
    """In the transaction `db` is in: the claims as PostgREST sets them (set_config()), then, on a Citus
    cluster, its `db-pre-request` function there (claims_to_workers(), supabase/citus/distribute.sql), which
    sets them again as SET LOCAL so that they reach the workers."""
    db.execute("select set_config('request.jwt.claims', %s, true)", [json.dumps(claims)])
    if os.environ.get("LEADWATCH_TEST_CITUS"):
        db.execute("select public.claims_to_workers()")


def ago(**delta) -> datetime:
    return datetime.now(UTC) - timedelta(**delta)


def later(**delta) -> datetime:
    return datetime.now(UTC) + timedelta(**delta)


def log(store, tenant="acme", lead="L1", channel="whatsapp", direction="out", **fields):
    return store.log_activity(tenant, ActivityIn(leadId=lead, channel=channel, direction=direction, **fields))


def add_leads(store, tenant="acme", **leads):
    """add_leads(store, L1={"name": ...}, L2={...})"""
    return store.upsert_leads(tenant, [LeadIn(leadId=lead_id, **fields) for lead_id, fields in leads.items()])


def active(db, tenant="acme"):
    """{(lead, type): severity} of the tenant's active alerts, straight from the table."""
    rows = db.execute(
        "select lead_id, type, severity from max_alerts where tenant_id = %s and resolved_at is null", [tenant]
    ).fetchall()
    return {(lead, kind): severity for lead, kind, severity in rows}


def assert_counts_exact(db):
    """The maintained alert_counts equal a fresh count of the active alerts."""
    maintained = {
        tuple(r[:3]): r[3]
        for r in db.execute("select tenant_id, severity, type, active from alert_counts where active <> 0")
    }
    counted = {
        tuple(r[:3]): r[3]
        for r in db.execute(
            "select tenant_id, severity, type, count(*) from max_alerts where resolved_at is null group by 1, 2, 3"
        )
    }
    assert maintained == counted


def row_counts(db) -> dict[str, int]:
    """The number of rows of every table of the public schema (to show a request changed nothing)."""
    tables = [r[0] for r in db.execute("select tablename from pg_tables where schemaname = 'public' order by 1")]
    return {t: db.execute(f'select count(*) from public."{t}"').fetchone()[0] for t in tables}


LEADWATCH = [sys.executable, "-m", "leadwatch.cli"]


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports on the loopback address: each socket stays bound until all are
    chosen, so no port is handed out twice (two servers on one port answer each other's requests)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


def leadwatch_env(**extra) -> dict:
    """This process's environment without the backend settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SUPABASE_URL", "SUPABASE_SERVICE_KEY")}
    return {**env, **extra}


def start_dev(*args: str, env: dict | None = None, cwd=None, wait: float = 90) -> tuple[subprocess.Popen, str]:
    """`leadwatch dev <args>` on a free port, once it answers /health: (process, base URL)."""
    port = free_port()
    process = subprocess.Popen(
        [*LEADWATCH, "dev", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env if env is not None else leadwatch_env(),
        cwd=cwd,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return process, base
        except httpx.TransportError:
            if process.poll() is not None:
                raise RuntimeError(f"leadwatch dev exited: {process.stdout.read() if process.stdout else ''}") from None
            time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"leadwatch dev did not answer /health within {wait} s")
