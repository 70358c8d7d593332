"""The big sweep with every rule on the business clock against the same sweep on calendar clocks.

Every tenant gets a working calendar open around the clock in UTC, so that working time and elapsed
time agree: the same leads fall due with the same due times on both clocks, and the difference is
what the business clock costs (its arithmetic in the sweep's judgement, the calendar's lookups).
Each sweep runs in a transaction rolled back afterwards, so both measure the very same work, and
starts from a vacuumed database: the rows a rolled-back sweep wrote stay in the tables and their
indexes until vacuumed, and would slow down whichever sweep comes next (each run's ~250,000 alerts
grew max_alerts by ~14,000 pages, and each sweep took longer than the one before). They alternate,
and the medians are compared.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime

import psycopg

ROUND_THE_CLOCK = {
    "timeZone": "UTC",
    "week": {day: [["00:00", "24:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
}


def _sweep_rolled_back(conn: psycopg.Connection, now: datetime, business: bool) -> tuple[float, int]:
    """One sweep of every tenant by `now`, on the clock asked for, undone afterwards: (seconds, leads checked)."""
    with conn.transaction(force_rollback=True):
        if business:
            conn.execute(
                """insert into business_calendars
                   select c.*
                   from (select distinct tenant_id from lead_state) t
                   cross join lateral public.parse_calendar(t.tenant_id, %s::jsonb) c""",
                [json.dumps(ROUND_THE_CLOCK)],
            )
            conn.execute(
                """insert into alert_rules
                   select (jsonb_populate_record(r, jsonb_build_object('tenant_id', t.tenant_id,
                                                                       'clock', 'business'))).*
                   from (select distinct tenant_id from lead_state) t
                   cross join alert_rules r
                   where r.tenant_id = '*'
                   on conflict (tenant_id, type) do update set clock = 'business'"""
            )
        started = time.perf_counter()
        result = conn.execute("select sweep_alerts(null, %s)", [now]).fetchone()[0]
        return time.perf_counter() - started, int(result["leads_checked"])


def bench_business_sweep(conn: psycopg.Connection, now: datetime, record: Callable[..., None], runs: int = 3) -> None:
    print("business-clock sweep", file=sys.stderr)
    calendar: list[float] = []
    business: list[float] = []
    checked = set()
    for _ in range(runs):
        conn.execute("vacuum")
        seconds, leads = _sweep_rolled_back(conn, now, business=False)
        calendar.append(seconds)
        checked.add(("calendar", leads))
        conn.execute("vacuum")
        seconds, leads = _sweep_rolled_back(conn, now, business=True)
        business.append(seconds)
        checked.add(("business", leads))
    due = dict(checked)
    assert len(checked) == 2 and due["calendar"] == due["business"], f"the clocks must find the same leads: {checked}"
    ratio = statistics.median(business) / statistics.median(calendar)
    record(
        f"sweep with every rule on the business clock (a round-the-clock UTC calendar: the same {due['business']:,} "
        "due leads) vs calendar clocks, each rolled back, median of "
        f"{runs}",
        f"{statistics.median(business):.2f} s",
        f"calendar clocks {statistics.median(calendar):.2f} s",
        f"{ratio:.2f}x",
        "<= 1.1x",
        ratio <= 1.1,
    )
