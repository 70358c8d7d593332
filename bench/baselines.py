"""The naive approaches leadwatch is measured against, written the way the reference sketches them.

- Sweep: the reference's "FOR EACH lead ... CREATE alert IF NOT EXISTS", driven from Python one
  query at a time: read the lead's last activity, last inbound and outbound, its active alerts,
  then insert what is missing.
- Ingest: separate round trips for the insert, the state lookup, the state update and the
  resolution, with the rules in Python.
- Listing: the whole active set fetched, the page and the stats computed in Python.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import psycopg
from leadwatch.models.requests import ActivityIn
from psycopg.types.json import Jsonb


def naive_sweep(conn: psycopg.Connection, leads: list[tuple[str, str]], now: datetime) -> int:
    """Judge each lead with its own queries; return the alerts it would create (written to naive_alerts)."""
    created = 0
    for tenant, lead in leads:
        last, last_in, last_out = conn.execute(
            """select max(occurred_at), max(occurred_at) filter (where direction = 'in'),
                      max(occurred_at) filter (where direction = 'out')
               from lead_activities where tenant_id = %s and lead_id = %s""",
            (tenant, lead),
        ).fetchone()
        existing = {
            row[0]
            for row in conn.execute(
                "select type from naive_alerts where tenant_id = %s and lead_id = %s and resolved_at is null",
                (tenant, lead),
            )
        }
        wanted = []
        if last and now - last >= timedelta(days=7):
            wanted.append(("NoContact7d", "high" if now - last >= timedelta(days=14) else "med"))
        if last_out and (last_in is None or last_in < last_out) and now - last_out >= timedelta(days=3):
            wanted.append(("NoReply3d", "high" if now - last_out >= timedelta(days=7) else "med"))
        for kind, severity in wanted:
            if kind not in existing:
                conn.execute(
                    "insert into naive_alerts (tenant_id, lead_id, type, severity, message) "
                    "values (%s, %s, %s, %s, 'naive')",
                    (tenant, lead, kind, severity),
                )
                created += 1
    return created


class NaiveIngest:
    """log_activity as separate round trips from Python (same effect on the tables, no SQL function)."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def log_activity(self, tenant: str, activity: ActivityIn, viewer=None) -> dict:
        conn, at = self.conn, activity.occurredAt
        with conn.transaction():
            activity_id = conn.execute(
                """insert into lead_activities (tenant_id, lead_id, channel, direction, status, message_snippet, meta,
                                                occurred_at, external_id)
                   values (%s, %s, %s, %s, %s, %s, %s, coalesce(%s, now()), %s) returning id, occurred_at""",
                (
                    tenant,
                    activity.leadId,
                    activity.channel,
                    activity.direction,
                    activity.status,
                    activity.messageSnippet,
                    Jsonb(activity.meta) if activity.meta else None,
                    at,
                    activity.externalId,
                ),
            ).fetchone()
            at = activity_id[1]
            state = conn.execute(
                "select last_activity_at, last_outbound_at from lead_state "
                "where tenant_id = %s and lead_id = %s for update",
                (tenant, activity.leadId),
            ).fetchone()
            last, last_out = state or (None, None)
            column = "last_inbound_at" if activity.direction == "in" else "last_outbound_at"
            conn.execute(
                f"""insert into lead_state (tenant_id, lead_id, entered_at, last_activity_at, {column},
                                                     no_contact_due_at)
                             values (%s, %s, %s, %s, %s, %s + interval '7 days')
                             on conflict (tenant_id, lead_id) do update set
                               last_activity_at = greatest(lead_state.last_activity_at, excluded.last_activity_at),
                               {column} = greatest(lead_state.{column}, excluded.{column}),
                               no_contact_due_at = excluded.no_contact_due_at""",
                (tenant, activity.leadId, at, at, at, at),
            )
            types = []
            if last is None or at > last:
                types += ["NoContact7d", "StaleLead30d", "HighValueRisk"]
            if last_out is None or at > last_out:
                types.append("NoReply3d")
            resolved = [
                row[0]
                for row in conn.execute(
                    """update max_alerts set resolved_at = now(), resolved_by = 'system', resolution = 'activity'
                   where tenant_id = %s and lead_id = %s and resolved_at is null and type = any(%s) returning type""",
                    (tenant, activity.leadId, types),
                )
            ]
        return {"activity": {"id": str(activity_id[0])}, "alerts": {"created": [], "resolved": resolved}}


def naive_listing(conn: psycopg.Connection, tenant: str, limit: int = 50) -> dict:
    """The whole active set, then the page and the stats in Python."""
    rows = conn.execute(
        "select id, lead_id, type, severity, message, suggested_action, created_at, lead_name, "
        "lead_email from active_alerts where tenant_id = %s",
        (tenant,),
    ).fetchall()
    rank = {"high": 1, "med": 2, "low": 3}
    rows.sort(key=lambda r: (rank[r[3]], -r[6].timestamp()))
    return {
        "stats": {
            "total": len(rows),
            "by_severity": Counter(r[3] for r in rows),
            "by_type": Counter(r[2] for r in rows),
        },
        "alerts": rows[:limit],
    }
