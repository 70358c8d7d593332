"""A synthetic CRM loaded set-based: leads, their activities and state, and a tenant full of alerts.

Lead i belongs to tenant `t{i % tenants}`. Its activities are spaced two days apart ending at its
last activity; 80 % of leads were active within the last 20 hours (nothing due, not even a day
later), 20 % went silent 7 to 9 days ago (due now: NoContact7d, plus NoReply3d when we wrote
last, plus HighValueRisk for the 5 % of leads worth ≥ 10 000 EUR). The state rows are what
`log_activity` would have left, computed from the same formulas instead of replaying 10M calls.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime

import psycopg

CHUNK = 200_000


def _progress(label: str, done: int, total: int, started: float) -> None:
    rate = done / max(time.perf_counter() - started, 1e-9)
    sys.stderr.write(f"\r  {label}: {done:>11,} / {total:,}  ({rate:,.0f}/s)   ")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _chunks(conn, label: str, total: int, statement: str, params: dict) -> None:
    started = time.perf_counter()
    for low in range(1, total + 1, CHUNK):
        high = min(low + CHUNK - 1, total)
        conn.execute(statement, {**params, "low": low, "high": high})
        _progress(label, high, total, started)


# Per lead i: silent for `offset` (hours), last direction `d` (0: we wrote last), high value when i % 20 = 0.
_LEAD = """
  'L' || i as lead_id, 't' || (i %% %(tenants)s) as tenant_id,
  %(now)s::timestamptz - make_interval(hours => case when i %% 5 = 0 then 168 + (i::bigint * 7919) %% 48
                                                   else (i::bigint * 104729) %% 20 end::int) as last_at,
  (i / 5) %% 2 as d
"""


def load(
    conn: psycopg.Connection,
    *,
    leads: int,
    activities: int,
    tenants: int,
    now: datetime,
    listing_alerts: int,
    lead: str = _LEAD,
) -> None:
    """`lead`: the per-lead columns (SQL over `i`), `_LEAD` unless a scenario spreads them differently."""
    per_lead = max(1, activities // leads)
    params = {"tenants": tenants, "now": now, "per_lead": per_lead}
    conn.execute("alter table lead_activities set (autovacuum_enabled = off)")
    _chunks(
        conn,
        "leads",
        leads,
        f"""
        insert into leads (tenant_id, lead_id, name, email, phone, owner_id, value, created_at)
        select tenant_id, lead_id, 'Lead ' || i, 'lead' || i || '@example.com',
               '+336' || lpad(i::text, 8, '0'), 'owner-' || (i %% 50),
               case when i %% 20 = 0 then 25000 else 900 + i %% 5000 end, last_at - interval '90 days'
        from (select i, {lead} from generate_series(%(low)s::int, %(high)s::int) i) l""",
        params,
    )
    _chunks(
        conn,
        "activities",
        leads,
        f"""
        insert into lead_activities (tenant_id, lead_id, channel, direction, status, message_snippet,
                                     occurred_at, created_at, external_id)
        select tenant_id, lead_id, (array['whatsapp', 'email', 'call'])[1 + (i + k) %% 3],
               case when (k + d) %% 2 = 1 then 'out' else 'in' end, 'sent', 'Message ' || k,
               last_at - make_interval(days => 2 * (k - 1)), last_at - make_interval(days => 2 * (k - 1)),
               'wamid.' || i || '.' || k
        from (select i, {lead} from generate_series(%(low)s::int, %(high)s::int) i) l,
             generate_series(1, %(per_lead)s) k""",
        params,
    )
    _chunks(
        conn,
        "lead state",
        leads,
        f"""
        insert into lead_state (tenant_id, lead_id, entered_at, last_activity_at, last_inbound_at, last_outbound_at,
                                high_value, no_contact_due_at, no_reply_due_at, stale_due_at, high_value_due_at)
        select tenant_id, lead_id, last_at - interval '90 days', last_at,
               case when d = 1 then last_at else last_at - interval '2 days' end,
               case when d = 0 then last_at else last_at - interval '2 days' end,
               i %% 20 = 0, last_at + interval '7 days',
               case when d = 0 then last_at + interval '3 days' end,
               last_at + interval '30 days',
               case when i %% 20 = 0 then last_at + interval '3 days' end
        from (select i, {lead} from generate_series(%(low)s::int, %(high)s::int) i) l""",
        params,
    )
    if listing_alerts:
        load_listing(conn, listing_alerts, now, analyse=False)
    sys.stderr.write("  vacuum analyze ...\n")
    conn.execute("alter table lead_activities reset (autovacuum_enabled)")
    conn.execute("vacuum analyze")


def load_listing(conn: psycopg.Connection, alerts: int, now: datetime, *, analyse: bool = True) -> None:
    """The tenant `listing`: `alerts` leads, each with one active NoContact7d alert."""
    params = {"now": now}
    _chunks(
        conn,
        "listing tenant",
        alerts,
        """
        with l as (
          insert into leads (tenant_id, lead_id, name, email)
          select 'listing', 'P' || i, 'Prospect ' || i, 'p' || i || '@example.com'
          from generate_series(%(low)s::int, %(high)s::int) i
          returning lead_id)
        insert into max_alerts (tenant_id, lead_id, type, severity, message, suggested_action, created_at)
        select 'listing', lead_id, 'NoContact7d', (array['high', 'med', 'low'])[1 + abs(hashtext(lead_id)) %% 3],
               'Aucun contact depuis 8 jours. Lead à risque de perte.',
               '{"label": "Relancer par WhatsApp", "action": "send_whatsapp"}',
               %(now)s::timestamptz - make_interval(secs => abs(hashtext(lead_id)) %% 86400)
        from l""",
        params,
    )
    if analyse:
        conn.execute("vacuum analyze leads, max_alerts")


def load_first_day(conn: psycopg.Connection, *, leads: int, per_lead: int, now: datetime) -> None:
    """The tenant `firstday`, just imported from its old CRM with its history: `leads` leads silent for
    8 to 40 days (all due), `per_lead` activities each, the state upsert_leads and log_activity leave,
    no alert yet, and no ANALYZE since (as after a real import)."""
    params = {"now": now, "per_lead": per_lead}
    lead = """
      'F' || i as lead_id,
      %(now)s::timestamptz - make_interval(hours => (192 + (i::bigint * 7919) %% 768)::int) as last_at,
      (i / 5) %% 2 as d"""
    _chunks(
        conn,
        "first-day leads",
        leads,
        f"""
        with l as (select i, {lead} from generate_series(%(low)s::int, %(high)s::int) i),
        directory as (
          insert into leads (tenant_id, lead_id, name, email, value, created_at)
          select 'firstday', lead_id, 'Imported ' || i, 'imported' || i || '@example.com',
                 case when i %% 20 = 0 then 25000 else 900 + i %% 5000 end, last_at - interval '90 days'
          from l),
        history as (
          insert into lead_activities (tenant_id, lead_id, channel, direction, status, message_snippet,
                                       occurred_at, created_at, external_id)
          select 'firstday', lead_id, 'email', case when (k + d) %% 2 = 1 then 'out' else 'in' end, 'sent',
                 'Imported ' || k, last_at - make_interval(days => 2 * (k - 1)), %(now)s, 'import.' || i || '.' || k
          from l, generate_series(1, %(per_lead)s) k)
        insert into lead_state (tenant_id, lead_id, entered_at, last_activity_at, last_inbound_at, last_outbound_at,
                                high_value, no_contact_due_at, no_reply_due_at, stale_due_at, high_value_due_at)
        select 'firstday', lead_id, last_at - interval '90 days', last_at,
               case when d = 1 then last_at else last_at - interval '2 days' end,
               case when d = 0 then last_at else last_at - interval '2 days' end,
               i %% 20 = 0, last_at + interval '7 days',
               case when d = 0 then last_at + interval '3 days' end,
               last_at + interval '30 days',
               case when i %% 20 = 0 then last_at + interval '3 days' end
        from l""",
        params,
    )
