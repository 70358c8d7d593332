"""leadwatch on a Citus cluster (tests/citus_cluster.py): distributed by tenant, one worker per call.

Skipped without a Citus build (the message says how to get one); CI builds it and sets
LEADWATCH_REQUIRE_CITUS, so there these tests run or fail, never skip.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from helpers import add_leads, log
from leadwatch.errors import Forbidden
from leadwatch.http.identity import Viewer
from leadwatch.migrate import migrate
from leadwatch.models.requests import AlertQuery
from leadwatch.stores.store import PostgresStore, SupabaseStore
from postgrest.exceptions import APIError
from postgrest_fake import SERVICE_KEY, SUPABASE_URL, PostgrestFake

TENANTS = [f"tenant-{n}" for n in range(8)]


@pytest.fixture(scope="module")
def cluster_url(citus_cluster):
    """A database of its own on the cluster, migrated: `leadwatch migrate` distributes it."""
    name = f"leadwatch_citus_{uuid.uuid4().hex[:8]}"
    url = citus_cluster.create_database(name)
    migrate(url)
    yield url
    citus_cluster.drop_database(name)


@pytest.fixture(scope="module")
def cluster_store(cluster_url):
    """Two leads in each tenant, each with an alert, written straight into the tables (the seed, not
    what is tested; the tables' own triggers stay quiet, on the workers too)."""
    with psycopg.connect(cluster_url) as conn, conn.transaction():
        conn.execute("set local citus.propagate_set_commands = 'local'")
        conn.execute("set local session_replication_role = replica")
        for tenant in TENANTS:
            for lead, owner in (("L1", "agent-1"), ("L2", None)):
                conn.execute(
                    "insert into leads (tenant_id, lead_id, name, owner_id) values (%s, %s, %s, %s)",
                    [tenant, lead, f"{lead} of {tenant}", owner],
                )
                conn.execute(
                    "insert into max_alerts (tenant_id, lead_id, type, severity, message)"
                    " values (%s, %s, 'NoContact7d', 'med', 'silent')",
                    [tenant, lead],
                )
    store = PostgresStore(cluster_url)
    yield store
    store.close()


def worker_of(conn: psycopg.Connection, tenant: str) -> int:
    """The port of the worker that holds the tenant's shard of `leads`."""
    row = conn.execute(
        "select n.nodeport from pg_dist_placement p join pg_dist_node n using (groupid)"
        " where p.shardid = get_shard_id_for_distribution_column('public.leads', %s::text)",
        [tenant],
    ).fetchone()
    assert row is not None
    return int(row[0])


def statements(citus_cluster, port: int, cluster_url: str, word: str) -> int:
    """How many calls of statements naming `word` a node ran since its statistics were reset."""
    url = citus_cluster.url(port, psycopg.conninfo.conninfo_to_dict(cluster_url)["dbname"])
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "select coalesce(sum(calls), 0) from pg_stat_statements where query ilike %s", [f"%{word}%"]
        ).fetchone()
    return int(row[0]) if row else 0


def reset_statements(citus_cluster, cluster_url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(cluster_url)["dbname"]
    for port in citus_cluster.worker_ports:
        with psycopg.connect(citus_cluster.url(port, name), autocommit=True) as conn:
            conn.execute("select pg_stat_statements_reset()")


def test_migrate_distributes_every_tenant_table_colocated_and_the_defaults_as_reference_tables(cluster_url):
    with psycopg.connect(cluster_url) as conn:
        kinds = dict(conn.execute("select table_name::text, citus_table_type from citus_tables").fetchall())
        colocations = conn.execute(
            "select count(distinct colocation_id) from citus_tables where citus_table_type = 'distributed'"
        ).fetchone()
        tables = {
            row[0]
            for row in conn.execute(
                "select c.relname from pg_class c join pg_attribute a on a.attrelid = c.oid"
                " where c.relnamespace = 'public'::regnamespace and c.relkind = 'r' and a.attname = 'tenant_id'"
            ).fetchall()
        }
        delegated = conn.execute(
            "select count(*) from pg_dist_object where distribution_argument_index = 0"
            " and objid = 'public.log_activity'::regproc"
        ).fetchone()
    reference = {"alert_rules", "retention_policies", "business_calendars"}
    assert {table for table, kind in kinds.items() if kind == "reference"} == reference
    assert {table for table, kind in kinds.items() if kind == "distributed"} == tables - reference
    assert colocations == (1,)
    assert delegated == (1,)


STATE = (
    "select (select count(*) from pg_dist_shard),"
    " (select md5(string_agg(p.oid::regprocedure::text || p.prosrc, '' order by p.oid)) from pg_proc p"
    "  where p.pronamespace = 'public'::regnamespace)"
)  # the shards, and every function's body (the Citus forms are applied once)


def test_migrate_again_changes_nothing(cluster_url):
    with psycopg.connect(cluster_url) as conn:
        before = conn.execute(STATE).fetchone()
    assert migrate(cluster_url) == []
    with psycopg.connect(cluster_url) as conn:
        assert conn.execute(STATE).fetchone() == before


def test_both_workers_hold_tenants(citus_cluster, cluster_url, cluster_store):
    with psycopg.connect(cluster_url) as conn:
        holders = {tenant: worker_of(conn, tenant) for tenant in TENANTS}
        counts = dict(
            conn.execute(
                "select tenant_id, count(*) from leads where tenant_id = any(%s) group by 1", [TENANTS]
            ).fetchall()
        )
    assert set(holders.values()) == set(citus_cluster.worker_ports)
    assert counts == dict.fromkeys(TENANTS, 2)


def test_a_call_runs_on_the_one_worker_holding_its_tenant(citus_cluster, cluster_url, cluster_store):
    tenant = TENANTS[0]
    with psycopg.connect(cluster_url) as conn:
        home = worker_of(conn, tenant)
    (other,) = set(citus_cluster.worker_ports) - {home}
    reset_statements(citus_cluster, cluster_url)
    assert cluster_store.get_calendar(tenant)["calendar"]["source"] == "default"
    assert statements(citus_cluster, home, cluster_url, "get_calendar") == 1  # the call, delegated whole
    assert statements(citus_cluster, other, cluster_url, "get_calendar") == 0
    assert statements(citus_cluster, other, cluster_url, "calendar") == 0  # not one statement there


def test_a_users_list_and_a_tenants_sweep_stay_on_the_worker_holding_it(citus_cluster, cluster_url, cluster_store):
    """Under row-level security too: an agent's active list runs whole on the tenant's worker and
    shows their lead's alert only; one tenant's sweep with nothing due reads no other worker's shard."""
    tenant = TENANTS[3]
    with psycopg.connect(cluster_url) as conn:
        home = worker_of(conn, tenant)
    (other,) = set(citus_cluster.worker_ports) - {home}
    agent = Viewer(
        {"role": "authenticated", "sub": "agent-1", "app_metadata": {"tenant_id": tenant, "role": "agent"}}, ""
    )
    reset_statements(citus_cluster, cluster_url)

    listed = cluster_store.list_active_alerts(tenant, AlertQuery.model_validate({}), agent)
    cluster_store.sweep(tenant)

    assert [alert["lead_id"] for alert in listed["alerts"]] == ["L1"] and listed["stats"]["total"] == 1
    assert statements(citus_cluster, home, cluster_url, "list_active_alerts") == 1
    assert statements(citus_cluster, home, cluster_url, "sweep_alerts") == 1
    for word in ("list_active_alerts", "sweep_alerts", "leads", "lead_state", "max_alerts"):
        assert statements(citus_cluster, other, cluster_url, word) == 0, word


def test_a_users_claims_reach_the_worker(cluster_store):
    """The caller's role is checked on the worker the call runs on: only an admin changes the calendar."""
    tenant = TENANTS[1]
    calendar = cluster_store.get_calendar(tenant)["calendar"]
    office = {key: calendar[key] for key in ("timeZone", "week", "holidays")}

    def as_user(role: str) -> Viewer:
        return Viewer(
            {"role": "authenticated", "sub": f"{role}-1", "app_metadata": {"tenant_id": tenant, "role": role}}, ""
        )

    with pytest.raises(Forbidden):
        cluster_store.set_calendar(tenant, office, as_user("agent"))
    with pytest.raises(Forbidden):
        cluster_store.set_calendar(TENANTS[2], office, as_user("admin"))  # another tenant's
    assert cluster_store.set_calendar(tenant, office, as_user("admin"))["calendar"]["source"] == "tenant"


def test_claims_set_as_postgrest_does_reach_the_worker(cluster_url, cluster_store):
    """PostgREST sets the claims with set_config(), which stays on the coordinator; its `db-pre-request`
    function on Citus, claims_to_workers(), sets them again as SET LOCAL, which reaches the worker."""
    tenant = TENANTS[3]
    agent = {"role": "authenticated", "sub": "agent-1", "app_metadata": {"tenant_id": tenant, "role": "agent"}}

    def as_agent(conn: psycopg.Connection, statement: str) -> list[tuple]:
        with conn.transaction():
            conn.execute("select set_config('role', 'authenticated', true)")
            conn.execute("select set_config('request.jwt.claims', %s, true)", [json.dumps(agent)])
            conn.execute("select public.claims_to_workers()")  # PostgREST's db-pre-request on Citus
            return conn.execute(statement, [tenant]).fetchall()

    with psycopg.connect(cluster_url) as conn:
        # the agent's own lead only, by row-level security on the shard
        assert as_agent(conn, "select lead_id from leads where tenant_id = %s") == [("L1",)]
        with pytest.raises(psycopg.DatabaseError, match="not allowed") as refused:
            as_agent(conn, """select public.upsert_leads(%s, '[{"lead_id": "MINE"}]')""")  # by assert_acts_in there
    assert refused.value.sqlstate == "LW403"


def test_the_workers_grant_each_function_as_the_coordinator_does(citus_cluster, cluster_url):
    """Citus copies grants but not a revoke from PUBLIC, and delegates a call without checking EXECUTE."""
    acl = (
        "select p.oid::regprocedure::text, p.proacl::text from pg_proc p"
        " where p.pronamespace = 'public'::regnamespace and p.prokind = 'f'"
    )
    name = psycopg.conninfo.conninfo_to_dict(cluster_url)["dbname"]
    with psycopg.connect(cluster_url) as conn:
        coordinator = dict(conn.execute(acl).fetchall())
    assert any(f.startswith("log_activity(") and "service_role" in a for f, a in coordinator.items())
    for port in citus_cluster.worker_ports:
        with psycopg.connect(citus_cluster.url(port, name)) as conn:
            worker = dict(conn.execute(acl).fetchall())
        assert {f: a for f, a in worker.items() if f in coordinator} == coordinator


def test_the_deliverers_and_the_nightly_jobs_take_every_tenant_on_both_workers(cluster_url, cluster_store):
    """The cross-tenant jobs on the cluster: a claim takes due deliveries of tenants on both workers
    (tenant by tenant, to its batch's size), and the nightly jobs called without a tenant (run on the
    coordinator, never delegated with a null tenant, which would crash it) reach every shard, the
    retention's leave to delete history included."""
    with psycopg.connect(cluster_url) as conn, conn.transaction():
        conn.execute("set local citus.propagate_set_commands = 'local'")
        conn.execute("set local session_replication_role = replica")
        for tenant in TENANTS:
            endpoint = conn.execute(
                "insert into webhook_endpoints (tenant_id, url, events, secret, created_by)"
                " values (%s, 'https://hooks.example.com/in', '{alert.created}', %s, 'seed') returning id",
                [tenant, "whsec_" + "A" * 32],
            ).fetchone()[0]
            conn.execute(
                "insert into webhook_deliveries (tenant_id, endpoint_id, event_type, payload, next_attempt_at)"
                " values (%s, %s, 'alert.created', '{}', now() - interval '1 minute')",
                [tenant, endpoint],
            )
            conn.execute(
                "insert into retention_policies (tenant_id, resolved_alerts_after) values (%s, '30 days')", [tenant]
            )
            resolved = conn.execute(
                "insert into max_alerts (tenant_id, lead_id, type, severity, message, created_at, resolved_at,"
                " resolved_by, resolution) values (%s, 'L2', 'NoReply3d', 'med', 'old', now() - interval '400 days',"
                " now() - interval '399 days', 'agent-1', 'manual') returning id",
                [tenant],
            ).fetchone()[0]
            conn.execute(
                "insert into alert_events (tenant_id, alert_id, lead_id, type, event, severity, actor)"
                " values (%s, %s, 'L2', 'NoReply3d', 'resolved', 'med', 'agent-1')",
                [tenant, resolved],
            )
    first = cluster_store.claim_webhook_deliveries(limit=5)
    rest = cluster_store.claim_webhook_deliveries(limit=100)
    assert len(first) == 5 and len(rest) == len(TENANTS) - 5
    assert sorted(d["tenant_id"] for d in first + rest) == sorted(TENANTS)  # each once
    outcomes = [
        {"tenant_id": d["tenant_id"], "id": d["id"], "attempt": d["attempt"], "status": 200} for d in first + rest
    ]
    assert cluster_store.record_webhook_attempts(outcomes)["delivered"] == len(TENANTS)

    later = cluster_store.prune_notifications(None, now=datetime.now(UTC) + timedelta(days=31))
    assert later["deliveries"] == len(TENANTS) and later["more"] is False
    everyone = len(TENANTS)  # the old resolved alert of each tenant goes, with its history
    assert cluster_store.apply_retention(None) == {
        "activities": 0,
        "alerts": everyone,
        "events": everyone,
        "more": False,
    }
    assert cluster_store.summarise_recent_alert_days(None) == 0  # no tenant has summaries yet: none to extend


def test_the_supabase_stores_sweep_of_every_tenant_goes_tenant_by_tenant(cluster_url, http_mock):
    """Through PostgREST's own statement (tests/postgrest_fake.py), which Citus does not delegate, the
    Supabase store learns it is on Citus from sweep_tenants() and sweeps every tenant one tenant a
    call, adding the counts up; a null tenant sent as PostgREST sends it reaches the sweep's body on
    the coordinator, which refuses it, and the coordinator keeps answering."""
    fake = PostgrestFake(cluster_url)
    http_mock.post(url__regex=rf"^{SUPABASE_URL}/rest/v1/rpc/(?P<function>\w+)$").mock(side_effect=fake)
    store = SupabaseStore(SUPABASE_URL, SERVICE_KEY)
    try:
        for tenant in ("sweep-a", "sweep-b"):
            add_leads(store, tenant, S1={"name": "Silent"})
            log(store, tenant, lead="S1", direction="out", occurredAt=datetime.now(UTC) - timedelta(days=3, minutes=5))
        with psycopg.connect(cluster_url) as conn:
            tenants = conn.execute("select public.sweep_tenants()").fetchone()[0]
        assert {"sweep-a", "sweep-b"} <= set(tenants)
        fake.calls.clear()
        swept = store.sweep()
        # sweep_tenants() asked first whether this is Citus (once per store), then for the tenants;
        # one call per tenant, none without a tenant
        assert fake.calls == ["sweep_tenants"] * 2 + ["sweep_alerts"] * len(tenants)
        assert swept["created"]["NoReply3d"] == 2 and swept["leads_checked"] >= 2
        assert set(swept) == set(store.sweep("sweep-a"))  # the same answer's shape as one call
        with pytest.raises(APIError) as refused:
            store._call("sweep_alerts", None)
        assert refused.value.code == "0A000"
        store.ping()
    finally:
        store.close()
        fake.close()
