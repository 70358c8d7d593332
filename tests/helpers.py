"""Small helpers shared by the tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from leadwatch.models import ActivityIn, LeadIn


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
