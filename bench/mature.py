"""A mature deployment, right after its morning sweep: a year of history behind every lead, the
statistics the last VACUUM ANALYZE left (taken when no alert was active), then the sweep raising
the morning's alerts, and no ANALYZE before anything is measured. Every row is measured against its
floor, in the same run and on the same kind of connection.

    python -m bench.mature [--leads 200000] [--tenants 5] [--quick]

Per lead: about 7.5 resolved alerts and 17 alert_events spread over the past year (generated
set-based, as the history triggers would have written them), and the leads' activities and state of
`bench.dataset.load` (20 % of the leads due this morning).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
from leadwatch.devtools.embedded import start_embedded, stop_embedded
from leadwatch.migrate import migrate
from leadwatch.models.analytics import AnalyticsQuery
from leadwatch.models.requests import AlertQuery
from leadwatch.stores.store import PostgresStore

from . import run
from .dataset import _LEAD, _chunks, load, load_listing
from .run import percentile, record, timed

# The leads of bench.dataset, the due ones (20 %) spread over every tenant: lead i is due when (i div
# tenants) mod 5 = 0 rather than i mod 5 = 0 (with 5 tenants, all in one).
_SPREAD = _LEAD.replace("case when i %% 5 = 0", "case when (i / %(tenants)s) %% 5 = 0")
assert _SPREAD != _LEAD

# Lead i (of tenant t{i % tenants}): 7 resolved alerts, 8 for odd i, the k-th created 365 * k / 8.5
# days ago (types in turn), resolved 2 to 98 hours later; every 4th alert was escalated on the way.
# Each alert's history: created, escalated (every 4th), resolved: 2.25 events an alert, 17 a lead.
_HISTORY = """
with alerts as (
  insert into max_alerts (tenant_id, lead_id, type, severity, message, created_at, escalated_at, cycle_started_at,
                          resolved_at, resolved_by, resolution)
  select 't' || (i %% %(tenants)s), 'L' || i,
         (array['NoContact7d', 'NoReply3d', 'StaleLead30d', 'HighValueRisk', 'HotLead24h', 'PreferredChannel'])
           [1 + (i + k) %% 6]::alert_type,
         case when (i + k) %% 4 = 0 then 'high' else 'med' end, 'history', c,
         case when (i + k) %% 4 = 0 then c + h / 2 end, c - interval '7 days', c + h,
         'system', case when (i + k) %% 3 = 0 then 'rule' else 'activity' end
  from generate_series(%(low)s::int, %(high)s::int) i,
       generate_series(1, 7 + i %% 2) k,
       lateral (select %(now)s::timestamptz
                       - make_interval(days => 365 * k / 9, hours => ((i::bigint * 7919) %% 24)::int) as c,
                       make_interval(hours => (2 + (i::bigint * 104729 + k) %% 96)::int) as h) t
  returning id, tenant_id, lead_id, type, severity, created_at, escalated_at, resolved_at
)
insert into alert_events (tenant_id, alert_id, lead_id, type, event, severity, actor, at)
select a.tenant_id, a.id, a.lead_id, a.type, e.event, a.severity, 'system', e.at
from alerts a
cross join lateral (values ('created', a.created_at), ('escalated', a.escalated_at), ('resolved', a.resolved_at)) e
  (event, at)
where e.at is not null
"""


def load_history(conn: psycopg.Connection, *, leads: int, tenants: int, now: datetime) -> None:
    """A year of resolved alerts and their history for every lead, as the history triggers would have
    written them (the triggers are off while it loads: no webhook, no count of active alerts)."""
    with conn.transaction():
        conn.execute("set local session_replication_role = replica")
        _chunks(conn, "a year of alerts", leads, _HISTORY, {"tenants": tenants, "now": now})


def summarise_until_yesterday(conn: psycopg.Connection, *, tenants: int, today: date) -> None:
    """The analytics' daily summaries (UTC) of every tenant up to the day before yesterday, as a year of
    daily use leaves them: the first call of the morning summarises yesterday, the day that closed."""
    for tenant in range(tenants):
        conn.execute(
            "select summarise_alert_days(%s, %s, %s, 'UTC')",
            [f"t{tenant}", today - timedelta(days=29), today - timedelta(days=2)],
        )


def _stats(conn: psycopg.Connection) -> str:
    alerts, active, events = conn.execute(
        "select count(*), count(*) filter (where resolved_at is null), (select count(*) from alert_events)"
        " from max_alerts"
    ).fetchone()
    analysed = conn.execute(
        "select coalesce(greatest(last_analyze, last_autoanalyze)::text, 'never') from pg_stat_user_tables"
        " where relname = 'max_alerts'"
    ).fetchone()[0]
    return f"{alerts:,} alerts ({active:,} active), {events:,} alert_events; max_alerts last analysed {analysed}"


def bench_morning_sweep(conn: psycopg.Connection, now: datetime) -> None:
    """The morning's sweep over every tenant as Supabase Cron runs it (`call public.scheduled_sweep()`:
    the sweep, committed, then its prune), against the floor of the writes it must make: into copies
    holding the year's alerts and history, as the real tables do (the target), and into empty copies
    (as the fresh bench measures it, for information)."""
    print("morning sweep", file=sys.stderr)
    run._copy_state(conn, "true")
    conn.execute("checkpoint")
    before = conn.execute("select count(*) from max_alerts where resolved_at is null").fetchone()[0]
    started = conn.execute("select now()").fetchone()[0]
    sweep_s, _ = timed(conn.execute, "call public.scheduled_sweep()")
    created = conn.execute("select count(*) from max_alerts where resolved_at is null").fetchone()[0] - before
    due = conn.execute("select count(*) from floor_state where next_due_at <= %s", [now]).fetchone()[0]
    where = "resolved_at is null"
    floor_s = run._floor(conn, where)
    empty_s = run._floor_with_history(conn, where)
    writes_s = run._floor_with_history(conn, where, now=now, history_before=started)
    record(
        f"mature: the morning sweep as Supabase Cron runs it (the sweep, then its prune), {due:,} leads due, "
        f"{created:,} alerts created, vs the floor of every write it must make (its alerts, their history rows, "
        "its due leads' due times moved on: bare statements into copies holding the year's alerts and history, "
        "same indexes, one transaction)",
        f"{sweep_s:.2f} s",
        f"floor of its writes {writes_s:.2f} s (into empty copies, alerts and history only: {empty_s:.2f} s; "
        f"bare insert of its alerts into an empty copy {floor_s:.2f} s)",
        f"{sweep_s / writes_s:.2f}x the floor of its writes",
        "<= 1.3x",
        sweep_s / writes_s <= 1.3,
    )


def bench_nothing_due(url: str, now: datetime) -> None:
    """The sweep right after the morning's, nothing newly due: as Supabase Cron runs it (a connection
    of its own each time, so its first call also loads the backend's caches), then on a connection
    already used, then through the store (HTTP and CLI: the sweep, then its prune)."""
    print("nothing-due sweep", file=sys.stderr)
    later = now + timedelta(minutes=5)
    cold = []
    with psycopg.connect(url, autocommit=True) as conn:  # what else runs as the first call starts
        [autovacuum] = conn.execute(
            "select coalesce(string_agg(regexp_replace(query, '^autovacuum: ', ''), ', '), 'none')"
            " from pg_stat_activity where backend_type = 'autovacuum worker'"
        ).fetchone()
    for _ in range(3):
        with psycopg.connect(url, autocommit=True) as conn:
            cold.append(timed(conn.execute, "call public.scheduled_sweep()")[0] * 1000)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("call public.scheduled_sweep()")
        warm = [timed(conn.execute, "call public.scheduled_sweep()")[0] * 1000 for _ in range(5)]
        trip = timed(conn.execute, "select 1")[0] * 1000
    store = PostgresStore(url, pool_size=1)
    store.sweep(now=later)
    http = [timed(store.sweep, now=later)[0] * 1000 for _ in range(5)]
    store.close()
    record(
        "mature: the sweep right after the morning's, nothing due, as Supabase Cron runs it (call "
        "public.scheduled_sweep(), a new connection each: the first after the morning's, then two more)",
        f"{cold[0]:.1f} ms",
        f"next runs {cold[1]:.1f} / {cold[2]:.1f} ms (on a connection already used: median "
        f"{statistics.median(warm):.1f} ms; autovacuum as the first began: {autovacuum})",
        "-",
        "<= 20 ms",
        max(cold) <= 20,
    )
    record(
        "mature: the same through the store (HTTP, CLI: the sweep, then its prune), pooled connection",
        f"median {statistics.median(http):.1f} ms",
        f"slowest of 5 {max(http):.1f} ms (a bare round trip {trip:.2f} ms)",
        "-",
        "<= 20 ms",
        max(http) <= 20,
    )


def bench_ingest(url: str, leads: int, calls: int, rounds: int = 2) -> None:
    """Single calls, on a connection opened after the sweep (its plans made now), against bare durable
    one-row inserts into lead_activities (the target's floor) and against the floor of what a call
    must write (the same insert and its lead's state row moved on), interleaved; each side's best run counts."""
    print("ingest", file=sys.stderr)
    ours, rows, writes = [], [], []
    for round_ in range(rounds):
        store = PostgresStore(url, pool_size=1)
        ours.append(run._calls_per_second(store, run._activities(calls, leads, seed=41 + 10 * round_)))
        store.close()
        with psycopg.connect(url, autocommit=True) as conn:
            rows.append(run._activity_commits_per_second(conn, calls, leads, seed=45 + 10 * round_))
            writes.append(run._activity_commits_per_second(conn, calls, leads, seed=47 + 10 * round_, state=True))
    ours_best, rows_best, writes_best = max(ours), max(rows), max(writes)
    record(
        f"mature: ingest right after the morning sweep vs bare one-row durable INSERT commits into lead_activities "
        f"(store level, one connection, best of {rounds} each, interleaved)",
        f"{ours_best:,.0f} calls/s",
        f"bare activity inserts {rows_best:,.0f} commits/s",
        f"{ours_best / rows_best:.2f}x the floor",
        ">= 0.5x",
        ours_best / rows_best >= 0.5,
    )
    record(
        "mature: ingest vs the floor of what a call must write: the same bare insert and its lead's state row "
        f"moved on (one statement, one durable commit each; best of {rounds}, interleaved)",
        f"{ours_best:,.0f} calls/s",
        f"insert and state move {writes_best:,.0f} commits/s ({writes_best / rows_best:.2f}x the bare insert)",
        f"{ours_best / writes_best:.2f}x",
        "- (for information)",
        None,
    )


# What a call touches, counted from the server's own statistics: its WAL (bytes, full-page images) and
# the blocks it had to read into shared buffers (from the OS cache or the disk).
_TOUCHED = """
    select (select wal_fpi from pg_stat_wal),
           (select sum(heap_blks_read + coalesce(idx_blks_read, 0) + coalesce(toast_blks_read, 0))
            from pg_statio_user_tables)::bigint,
           pg_current_wal_insert_lsn()"""


def _server_cpu(pid: int) -> float | None:
    """Seconds of CPU the server process `pid` has used (utime + stime), when it runs on this machine."""
    try:
        if not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"postgres"):
            return None  # another machine's process of that number
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _per_call(url: str, statement: str, rows: list[tuple[str, ...]]) -> dict[str, float | None]:
    """`statement` once per row on a connection of its own (the first 200 warm up), each a durable commit:
    per call, the WAL bytes and full-page images written, the blocks read into shared buffers, the
    server process's CPU, and the wall time."""
    with psycopg.connect(url, autocommit=True) as monitor, psycopg.connect(url, autocommit=True) as conn:
        for row in rows[:200]:
            conn.execute(statement, row, prepare=True)
        conn.execute("select pg_stat_force_next_flush()")  # its statistics so far are in the views
        calls, pid = len(rows) - 200, conn.info.backend_pid
        fpi, read, lsn = monitor.execute(_TOUCHED).fetchone()
        cpu, started = _server_cpu(pid), time.perf_counter()
        for row in rows[200:]:
            conn.execute(statement, row, prepare=True).fetchall()
        wall = time.perf_counter() - started
        after = _server_cpu(pid)
        conn.execute("select pg_stat_force_next_flush()")  # flushed as the backend goes idle after it
        fpi2, read2, _ = monitor.execute(_TOUCHED).fetchone()
        wal = monitor.execute("select pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)", [lsn]).fetchone()[0]
        conn.execute("delete from lead_activities where external_id like 'cost-%'")
    return {
        "wal_kb": float(wal) / calls / 1024,
        "fpi": (fpi2 - fpi) / calls,
        "read": (read2 - read) / calls,
        "cpu_us": None if cpu is None or after is None else (after - cpu) / calls * 1e6,
        "wall_us": wall / calls * 1e6,
    }


def bench_call_costs(url: str, leads: int, calls: int) -> None:
    """For information, where a call's time goes beside its floor: the same random leads' calls of
    `log_activity` and bare one-row inserts into lead_activities (the ingest row's floor), each side
    on a connection of its own, durable commits: per call, WAL bytes and full-page images, blocks read
    into shared buffers, the server process's CPU (when the server runs on this machine)."""
    print("what a call costs", file=sys.stderr)

    def rows(seed: int) -> list[tuple[str, ...]]:  # each side its own leads: none finds the other's pages cached
        rng = random.Random(seed)
        picks = (rng.randint(1, leads) for _ in range(calls + 200))
        return [
            (f"t{i % run.TENANTS}", f"L{i}", rng.choice(["in", "out"]), f"cost-{seed}-{n}") for n, i in enumerate(picks)
        ]

    call = _per_call(
        url, "select public.log_activity(%s, %s, 'whatsapp', %s, 'sent', 'Bonjour', null, null, %s)", rows(53)
    )
    bare = _per_call(
        url,
        "insert into lead_activities (tenant_id, lead_id, channel, direction, status, message_snippet, external_id)"
        " values (%s, %s, 'whatsapp', %s, 'sent', 'Bonjour', %s) returning 1",
        rows(59),
    )

    def costs(side: dict[str, float | None]) -> str:
        cpu = "-" if side["cpu_us"] is None else f"{side['cpu_us']:.0f} µs"
        return (
            f"{side['wall_us']:.0f} µs a call: WAL {side['wal_kb']:.1f} kB, {side['fpi']:.2f} full-page images, "
            f"{side['read']:.2f} blocks read into shared buffers, server CPU {cpu}"
        )

    record(
        f"mature: what a call costs right after the morning sweep, log_activity vs the bare insert ({calls:,} "
        "calls each on random leads, each side its own, one connection, durable commits, per call)",
        f"log_activity {costs(call)}",
        f"bare insert {costs(bare)}",
        "-",
        "- (for information)",
        None,
    )


def bench_lists(url: str, leads: int, lists: int, size: int = 1000, rounds: int = 2) -> None:
    """Lists of `size` activities (one transaction each) against their floor of required writes (bare
    INSERTs and their leads' state rows moved on, one statement and one transaction a list)."""
    print("lists", file=sys.stderr)
    ours, floors = [], []
    for round_ in range(rounds):
        store = PostgresStore(url, pool_size=1)
        chunks = run._batches(lists + 1, size, leads, seed=410 + round_)
        store.log_activities(*chunks[0])  # warm-up: plans made
        elapsed, _ = timed(lambda store=store, chunks=chunks: [store.log_activities(t, c) for t, c in chunks[1:]])
        ours.append(sum(len(chunk) for _, chunk in chunks[1:]) / elapsed)
        store.close()
        with psycopg.connect(url, autocommit=True) as conn:
            floors.append(
                run._bare_lists_per_second(conn, run._batches(lists + 1, size, leads, seed=420 + round_), state=True)
            )
    best, floor = max(ours), max(floors)
    record(
        f"mature: lists of {size:,} activities right after the morning sweep vs their floor of required writes "
        f"(bare INSERTs and their leads' state rows moved on; best of {rounds} each, interleaved)",
        f"{best:,.0f} activities/s",
        f"floor {floor:,.0f} rows/s",
        f"{best / floor:.2f}x the floor",
        ">= 0.6x",
        best / floor >= 0.6,
    )


def bench_reads(url: str, tenants: int, now: datetime, calls: int, listing_alerts: int) -> None:
    """The active list's first page of a tenant whose `listing_alerts` alerts were raised after the
    morning sweep (no ANALYZE since), then of the tenant with the most alerts the sweep raised, and 30
    days of analytics, each on a connection opened after the sweep."""
    print("reads", file=sys.stderr)
    with psycopg.connect(url, autocommit=True) as conn:
        load_listing(conn, listing_alerts, now, analyse=False)
        tenant, active = conn.execute(
            "select tenant_id, count(*) from max_alerts where resolved_at is null and tenant_id <> 'listing'"
            " group by 1 order by 2 desc limit 1"
        ).fetchone()
    store = PostgresStore(url, pool_size=1)
    query = AlertQuery(limit=50)
    for name, count in (("listing", listing_alerts), (tenant, active)):
        for _ in range(10):
            store.list_active_alerts(name, query)
        listing = [timed(store.list_active_alerts, name, query)[0] * 1000 for _ in range(calls)]
        record(
            f"mature: first page + stats right after the morning sweep, tenant with {count:,} active alerts "
            f"({'raised after the sweep, no ANALYZE since' if name == 'listing' else 'raised by the sweep'})",
            f"p50 {percentile(listing, 50):.1f} ms, p99 {percentile(listing, 99):.1f} ms",
            "-",
            "-",
            "p99 <= 20 ms",
            percentile(listing, 99) <= 20,
        )
    days = _thirty_days(now.date(), "UTC")
    # The first call since yesterday closed: it summarises that day and folds today's so far.
    first_ms = timed(store.alert_analytics, tenant, days, None)[0] * 1000
    analytics = [first_ms]
    analytics += [timed(store.alert_analytics, tenant, days, None)[0] * 1000 for _ in range(max(10, calls // 4))]
    # For information: the first call ever in a zone, every closed day of the range summarised on the call.
    new_zone_ms = timed(store.alert_analytics, tenant, _thirty_days(now.date(), "Europe/Paris"), None)[0] * 1000
    store.close()
    record(
        f"mature: analytics, 30 days of tenant {tenant} right after the morning sweep (the first call since "
        "yesterday closed included: it summarises that day; p50 / p99)",
        f"p50 {percentile(analytics, 50):.1f} ms, p99 {percentile(analytics, 99):.1f} ms",
        f"first call {first_ms:.0f} ms (then the first ever in a zone, on the same connection, every closed day "
        f"summarised: {new_zone_ms:.0f} ms)",
        "-",
        "p99 <= 200 ms",
        percentile(analytics, 99) <= 200,
    )


def _thirty_days(today: date, tz: str) -> AnalyticsQuery:
    return AnalyticsQuery.model_validate({"from": today - timedelta(days=29), "to": today, "tz": tz})


def bench_statistics_refresh(conn: psycopg.Connection, loaded_at: datetime) -> None:
    """For information, once everything else is measured: what the sweep's refresh of max_alerts'
    statistics costs (the same ANALYZE again), and whether the morning sweep ran it."""
    refreshed = conn.execute(
        "select last_analyze > %s from pg_stat_user_tables where relname = 'max_alerts'", [loaded_at]
    ).fetchone()[0]
    conn.execute("set default_statistics_target = 30")
    seconds, _ = timed(conn.execute, "analyze max_alerts (resolved_at)")
    conn.execute("reset default_statistics_target")
    rows = conn.execute("select count(*) from max_alerts").fetchone()[0]
    record(
        f"mature: the sweep's refresh of max_alerts' statistics (ANALYZE of resolved_at, 9,000 sampled of "
        f"{rows:,} rows), run again",
        f"{seconds * 1000:.0f} ms",
        f"the morning sweep ran it: {'yes' if refreshed else 'NO'}",
        "-",
        "- (for information)",
        None,
    )


SERVER_DATABASE = "leadwatch_mature_bench"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mature", description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=200_000)
    parser.add_argument("--tenants", type=int, default=5)
    parser.add_argument("--activities-per-lead", type=int, default=10)
    parser.add_argument("--ingest-calls", type=int, default=3000)
    parser.add_argument("--lists", type=int, default=5, help="lists of 1,000 activities ingested in each round")
    parser.add_argument("--read-calls", type=int, default=200)
    parser.add_argument("--listing-alerts", type=int, default=100_000, help="active alerts of the listed tenant")
    parser.add_argument("--data-dir", default=".bench-mature", help="the benchmark's own database (recreated)")
    parser.add_argument(
        "--server-url",
        help="measure on this PostgreSQL server instead (e.g. the version in production): a database "
        f"{SERVER_DATABASE!r} is created there, and dropped at the end",
    )
    parser.add_argument("--quick", action="store_true", help="a tiny run that only proves the bench works")
    args = parser.parse_args(argv)
    if args.quick:
        args.leads, args.tenants, args.activities_per_lead = 4000, 2, 3
        args.ingest_calls, args.lists, args.read_calls, args.listing_alerts = 400, 2, 20, 2000
    run.TENANTS = args.tenants  # the ingest helpers of bench.run pick lead i in tenant t{i % TENANTS}

    data = Path(args.data_dir).resolve()
    started = time.perf_counter()
    if args.server_url:
        with psycopg.connect(args.server_url, autocommit=True) as conn:
            conn.execute(f"drop database if exists {SERVER_DATABASE} with (force)")
            conn.execute(f"create database {SERVER_DATABASE}")
        url = psycopg.conninfo.make_conninfo(args.server_url, dbname=SERVER_DATABASE)
    else:
        shutil.rmtree(data, ignore_errors=True)
        url = start_embedded(data / "pg", database="bench")
    migrate(url)
    now = datetime.now(UTC)
    print(f"mature dataset: {args.leads:,} leads over {args.tenants} tenants, a year of history", file=sys.stderr)
    with psycopg.connect(url, autocommit=True) as conn:
        load_s, _ = timed(
            _load,
            conn,
            leads=args.leads,
            tenants=args.tenants,
            activities=args.leads * args.activities_per_lead,
            now=now,
        )
        print(f"  loaded in {load_s:.0f} s: {_stats(conn)}", file=sys.stderr)
        loaded_at = conn.execute("select now()").fetchone()[0]
        bench_morning_sweep(conn, now)
        print(f"  after the sweep: {_stats(conn)}", file=sys.stderr)
    bench_nothing_due(url, now)
    bench_ingest(url, args.leads, args.ingest_calls)
    bench_call_costs(url, args.leads, args.ingest_calls)
    bench_lists(url, args.leads, args.lists)
    bench_reads(url, args.tenants, now, args.read_calls, args.listing_alerts)
    with psycopg.connect(url, autocommit=True) as conn:
        after = _stats(conn)
        version = "PostgreSQL " + conn.execute("show server_version").fetchone()[0].split()[0]
        bench_statistics_refresh(conn, loaded_at)

    header = ("measure", "leadwatch", "baseline (same run)", "ratio", "target", "holds")
    print(
        f"\nleadwatch bench, mature deployment — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
        f"{version}, {args.leads:,} leads over {args.tenants} tenants, load {load_s:.0f} s, "
        f"total {time.perf_counter() - started:.0f} s; at the end: {after}\n"
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in run.rows:
        print("| " + " | ".join(row) + " |")
    if args.server_url:
        with psycopg.connect(args.server_url, autocommit=True) as conn:
            conn.execute(f"drop database {SERVER_DATABASE} with (force)")
    else:
        stop_embedded(data / "pg")
        shutil.rmtree(data, ignore_errors=True)
    return 0


def _load(conn: psycopg.Connection, *, leads: int, tenants: int, activities: int, now: datetime) -> None:
    """The leads, their activities and state (`bench.dataset.load`), a year of alerts, then the
    VACUUM ANALYZE everything is planned with from then on (no alert active when it ran)."""
    load(conn, leads=leads, activities=activities, tenants=tenants, now=now, listing_alerts=0, lead=_SPREAD)
    load_history(conn, leads=leads, tenants=tenants, now=now)
    summarise_until_yesterday(conn, tenants=tenants, today=now.date())
    sys.stderr.write("  vacuum analyze max_alerts, alert_events ...\n")
    conn.execute("vacuum analyze max_alerts, alert_events")


if __name__ == "__main__":
    sys.exit(main())
