"""The analytics bench row, on its own: 30 days of alert history for one tenant with 1M alert events,
`alert_analytics` (GET /api/alerts/analytics at the store level) against the naive way in the same run.

    python -m bench.analytics [--events 1000000] [--days 30] [--calls 50] [--quick]

The naive baseline fetches the range's events and resolved alerts, the owners and the open alerts,
and aggregates them in Python (what a frontend or a script over the REST API would do).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
from leadwatch.devtools.embedded import start_embedded
from leadwatch.http.identity import Viewer
from leadwatch.migrate import migrate
from leadwatch.models.analytics import AnalyticsQuery
from leadwatch.stores.store import PostgresStore

from .run import percentile, timed

TENANT = "analytics"
TZ = "Europe/Paris"
LEADS = 100_000
OWNERS = 50
EVENTS_PER_ALERT = 2.2  # created, escalated for ~40 %, resolved for ~85 % (the last days are still open)

# Alert i: lead L(i mod LEADS), type by i div LEADS (so (lead, type) never repeats among open alerts),
# created evenly over the days, resolved 0-100 h later (unless that is still ahead, or i mod 10 = 0),
# escalated halfway for 40 % of them.
_ALERTS = """
insert into max_alerts (tenant_id, lead_id, type, severity, message, created_at, escalated_at, resolved_at,
                        resolved_by, resolution)
select %(tenant)s, 'L' || (i %% %(leads)s),
       (array['NoContact7d', 'NoReply3d', 'StaleLead30d', 'HighValueRisk', 'HotLead24h', 'PreferredChannel'])
         [1 + (i / %(leads)s) %% 6],
       case when i %% 5 < 2 then 'high' else 'med' end, 'bench', c,
       case when i %% 5 < 2 and c + h / 2 < %(now)s then c + h / 2 end,
       case when i %% 10 <> 0 and c + h < %(now)s then c + h end,
       case when i %% 10 <> 0 and c + h < %(now)s then 'system' end,
       case when i %% 10 <> 0 and c + h < %(now)s then 'rule' end
from (select i, %(start)s::timestamptz + (%(now)s::timestamptz - %(start)s::timestamptz) * i / %(alerts)s as c,
             make_interval(mins => ((i::bigint * 7919) %% 6000)::int) as h
      from generate_series(0, %(alerts)s - 1) i) a
"""
_EVENTS = """
insert into alert_events (tenant_id, alert_id, lead_id, type, event, severity, actor, at)
select a.tenant_id, a.id, a.lead_id, a.type, e.event, a.severity, 'system', e.at
from max_alerts a
cross join lateral (values ('created', a.created_at), ('escalated', a.escalated_at), ('resolved', a.resolved_at))
  e(event, at)
where a.tenant_id = %(tenant)s and e.at is not null
"""


def load(conn: psycopg.Connection, events: int, days: int, now: datetime) -> int:
    """The tenant's leads, alerts and their history (written directly: the recording triggers off)."""
    alerts = math.ceil(events / EVENTS_PER_ALERT)
    params = {"tenant": TENANT, "leads": LEADS, "alerts": alerts, "now": now, "start": now - timedelta(days=days)}
    conn.execute(
        "insert into leads (tenant_id, lead_id, name, owner_id) select %(tenant)s, 'L' || i, 'Lead ' || i,"
        " 'owner-' || (i %% %(owners)s) from generate_series(0, %(leads)s - 1) i",
        {**params, "owners": OWNERS},
    )
    conn.execute("set session_replication_role = replica")
    conn.execute(_ALERTS, params)
    conn.execute(_EVENTS, params)
    conn.execute("set session_replication_role = origin")
    conn.execute("vacuum analyze leads, max_alerts, alert_events")
    return conn.execute("select count(*) from alert_events where tenant_id = %s", [TENANT]).fetchone()[0]


def naive(conn: psycopg.Connection, first: datetime, last: datetime, tz: str) -> dict:
    """Fetch everything the figures need and aggregate in Python."""
    zone = ZoneInfo(tz)
    start = datetime.combine(first, datetime.min.time(), zone)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), zone)
    per_day: dict = defaultdict(Counter)
    for event, at in conn.execute(
        "select event, at from alert_events where tenant_id = %s and at >= %s and at < %s", [TENANT, start, end]
    ):
        if event in ("created", "escalated", "resolved"):
            per_day[at.astimezone(zone).date()][event] += 1
    owners = dict(conn.execute("select lead_id, owner_id from leads where tenant_id = %s", [TENANT]).fetchall())
    by_type, by_owner = defaultdict(list), defaultdict(list)
    for kind, lead, created, resolved in conn.execute(
        "select type, lead_id, created_at, resolved_at from max_alerts"
        " where tenant_id = %s and resolved_at >= %s and resolved_at < %s",
        [TENANT, start, end],
    ):
        hours = (resolved - created).total_seconds() / 3600
        by_type[kind].append(hours)
        by_owner[owners.get(lead)].append(hours)
    now = datetime.now(UTC)
    ages = Counter(
        _bucket(now - created)
        for (created,) in conn.execute(
            "select created_at from max_alerts where tenant_id = %s and resolved_at is null", [TENANT]
        )
    )
    return {
        "per_day": per_day,
        "by_type": {k: (statistics.median(v), statistics.quantiles(v, n=10)[-1]) for k, v in by_type.items()},
        "by_owner": {k: (statistics.median(v), statistics.quantiles(v, n=10)[-1]) for k, v in by_owner.items()},
        "open_by_age": ages,
    }


def _bucket(age: timedelta) -> str:
    for limit, name in ((1, "<1d"), (3, "1-3d"), (7, "3-7d"), (30, "7-30d")):
        if age < timedelta(days=limit):
            return name
    return ">30d"


def late_zone(now: datetime) -> str:
    """A fixed-offset zone where it is now 23:xx: the longest open day, the most history computed live."""
    offset = (23 - now.hour) % 24
    if offset > 14:
        offset -= 24
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"  # Etc/GMT-2 is UTC+2


def _comparable(figures: dict) -> dict:
    """The answer without open_by_age (it reads now(), which moves between two calls)."""
    return {k: v for k, v in figures.items() if k != "open_by_age"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.analytics", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--calls", type=int, default=50, help="timed calls (after 5 warm-up calls)")
    parser.add_argument("--naive-runs", type=int, default=3)
    parser.add_argument("--data-dir", default=".bench-analytics", help="the benchmark's own database (recreated)")
    parser.add_argument("--service-only", action="store_true", help="skip the calls as a signed-in user")
    parser.add_argument("--quick", action="store_true", help="a tiny run that only proves the bench works")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.calls, args.naive_runs = 20_000, 10, 1
    cold_calls = max(3, args.calls // 3)

    data = Path(args.data_dir).resolve()
    shutil.rmtree(data, ignore_errors=True)
    url = start_embedded(data / "pg", database="bench")
    migrate(url)
    now = datetime.now(UTC)
    print(f"dataset: {args.events:,} alert events over {args.days} days, tenant {TENANT!r}", file=sys.stderr)
    with psycopg.connect(url, autocommit=True) as conn:
        load_s, events = timed(load, conn, args.events, args.days, now)
        print(f"  {events:,} events loaded in {load_s:.0f} s", file=sys.stderr)

        def range_in(tz: str) -> AnalyticsQuery:
            today = now.astimezone(ZoneInfo(tz)).date()
            return AnalyticsQuery.model_validate({"from": today - timedelta(days=args.days - 1), "to": today, "tz": tz})

        query = range_in(TZ)
        store = PostgresStore(url, pool_size=1)
        manager = Viewer(
            claims={
                "role": "authenticated",
                "sub": "manager-1",
                "app_metadata": {"tenant_id": TENANT, "role": "manager"},
            },
            token="",
        )
        agent = Viewer(
            claims={"role": "authenticated", "sub": "owner-7", "app_metadata": {"tenant_id": TENANT, "role": "agent"}},
            token="",
        )

        def live(q: AnalyticsQuery, viewer: Viewer | None) -> dict:
            """The same figures computed live from the whole history: the query before the summaries."""
            return store._call("alert_analytics_live", viewer, p_tenant=TENANT, p_from=q.start, p_to=q.end, p_tz=q.tz)

        def series(call, calls: int) -> list[float]:
            for _ in range(5):
                call()
            return [timed(call)[0] * 1000 for _ in range(calls)]

        # First call ever for this tenant and zone: every closed day of the range is summarised on it.
        first_ms, _ = timed(store.alert_analytics, TENANT, query, None)
        first_ms *= 1000
        callers = (("service", None), ("manager", manager), ("agent", agent))[: 1 if args.service_only else 3]
        results, baselines = {}, {}
        for name, viewer in callers:
            assert _comparable(store.alert_analytics(TENANT, query, viewer)) == _comparable(live(query, viewer)), name
            results[name] = series(lambda v=viewer: store.alert_analytics(TENANT, query, v), args.calls)
            baselines[name] = series(lambda v=viewer: live(query, v), max(5, args.calls // 3))
        # The first call after a day closes: that day (yesterday) is summarised on the call.
        yesterday = query.end - timedelta(days=1)
        after_midnight = []
        for _ in range(cold_calls):
            conn.execute("delete from alert_day_rollups where tenant_id = %s and day = %s", [TENANT, yesterday])
            after_midnight.append(timed(store.alert_analytics, TENANT, query, None)[0] * 1000)
        # The end of a local day: ~23 h of today's history, summarised on the call (the first call of
        # the day for this zone, or after a rewrite dropped it), then warm.
        late = range_in(late_zone(datetime.now(UTC)))
        store.alert_analytics(TENANT, late)
        assert _comparable(store.alert_analytics(TENANT, late)) == _comparable(live(late, None))
        today_cold = []
        for _ in range(cold_calls):
            conn.execute(
                "delete from alert_day_rollups where tenant_id = %s and tz = %s and day = %s",
                [TENANT, late.tz, late.end],
            )
            today_cold.append(timed(store.alert_analytics, TENANT, late, None)[0] * 1000)
        late_ms = series(lambda: store.alert_analytics(TENANT, late), args.calls)
        rollup_rows = conn.execute("select count(*) from alert_day_rollups where tenant_id = %s", [TENANT]).fetchone()
        figures = store.alert_analytics(TENANT, query)
        store.close()
        naive_ms = [timed(naive, conn, query.start, query.end, TZ)[0] * 1000 for _ in range(args.naive_runs)]

    def p(values: list[float], q: int) -> str:
        return f"{percentile(values, q):.0f}"

    def holds(values: list[float]) -> str:
        return "yes" if percentile(values, 99) <= 200 else "NO"

    ours = results["service"]
    resolved = figures["resolved_within_24h"]["resolved"]
    print(
        f"\nleadwatch analytics bench — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
        f"PostgreSQL (embedded); {events:,} events, {resolved:,} alerts resolved in range, {args.calls} calls; "
        f"{rollup_rows[0]:,} summary rows\n"
    )
    print("| measure | leadwatch | baseline (same run) | ratio | target | holds |")
    print("|---|---|---|---|---|---|")
    labels = {
        "service": f"analytics, {args.days} days, tenant with {events:,} alert events "
        "(service key: no row-level security)",
        "manager": "analytics, same tenant, as its manager (signed in: row-level security, whole tenant)",
        "agent": f"analytics, same tenant, as one agent (1/{OWNERS} of the leads, row-level security)",
    }
    for name, values in results.items():
        base = baselines[name]
        print(
            f"| {labels[name]} | p50 {p(values, 50)} ms, p99 {p(values, 99)} ms "
            f"| live query p50 {p(base, 50)} ms, p99 {p(base, 99)} ms "
            f"| {percentile(base, 50) / percentile(values, 50):.1f}x faster | p99 <= 200 ms | {holds(values)} |"
        )
    print(
        f"| analytics, first call after a day closes (that day summarised on the call), service "
        f"| p50 {p(after_midnight, 50)} ms, p99 {p(after_midnight, 99)} ms ({cold_calls} calls) "
        f"| warm p50 {p(ours, 50)} ms | - | p99 <= 200 ms | {holds(after_midnight)} |"
    )
    print(
        f"| analytics at the end of a local day ({late.tz}, today summarised so far), service "
        f"| p50 {p(late_ms, 50)} ms, p99 {p(late_ms, 99)} ms | Europe/Paris p50 {p(ours, 50)} ms "
        f"| - | p99 <= 200 ms | {holds(late_ms)} |"
    )
    print(
        f"| analytics at the end of a local day, today's ~23 h summarised on the call (its first call) "
        f"| p50 {p(today_cold, 50)} ms, p99 {p(today_cold, 99)} ms ({cold_calls} calls) "
        f"| warm p50 {p(late_ms, 50)} ms | - | p99 <= 200 ms | {holds(today_cold)} |"
    )
    print(
        f"| analytics, first call ever for the tenant and zone ({args.days - 1} closed days summarised on it) "
        f"| {first_ms:.0f} ms (once) | live query p50 {p(baselines['service'], 50)} ms | - | - | - |"
    )
    print(
        f"| analytics, fetch-all + Python (what a script over the REST API would do), service "
        f"| p50 {statistics.median(naive_ms):.0f} ms | leadwatch p50 {p(ours, 50)} ms "
        f"| {statistics.median(naive_ms) / percentile(ours, 50):.0f}x slower | - | - |"
    )
    shutil.rmtree(data, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
