"""Fixtures: a real PostgreSQL (embedded, or LEADWATCH_TEST_DATABASE_URL), both stores, the HTTP app."""

from __future__ import annotations

import os
import uuid

import citus_cluster as citus_cluster_module
import psycopg
import pytest
import respx
import stamina
from helpers import allow_history_rewrite
from leadwatch.devtools.dev import create_app
from leadwatch.devtools.embedded import start_embedded
from leadwatch.http.app import Api
from leadwatch.http.identity import OpenAccess
from leadwatch.migrate import migrate
from leadwatch.stores.store import PostgresStore, SupabaseStore
from postgrest_fake import SERVICE_KEY, SUPABASE_URL, PostgrestFake

TABLES = (
    "lead_activities, max_alerts, alert_events, alert_counts, leads, lead_state, greenapi_rejected, retention_policies,"
    " webhook_endpoints, webhook_deliveries, team_members, member_pushes, digest_settings, member_digests,"
    " alert_day_rollups, alert_rollup_marks, email_senders, email_rejected, email_sends, lead_erasures"
)


@pytest.fixture(scope="session")
def server_url(tmp_path_factory) -> str:
    """A Postgres server URL: LEADWATCH_TEST_DATABASE_URL if set, else a fresh embedded server."""
    url = os.environ.get("LEADWATCH_TEST_DATABASE_URL")
    if url:
        return url
    return start_embedded(tmp_path_factory.mktemp("pg") / "data", database="postgres")


@pytest.fixture(scope="session")
def citus_cluster():
    """A local Citus cluster (tests/citus_cluster.py); skips without Citus unless LEADWATCH_REQUIRE_CITUS is set."""
    tree = citus_cluster_module.server_tree()
    if tree is None:
        why = f"no Citus build: {citus_cluster_module.HOW_TO_GET_IT}"
        if os.environ.get("LEADWATCH_REQUIRE_CITUS"):
            pytest.fail(f"LEADWATCH_REQUIRE_CITUS is set but there is {why}")
        pytest.skip(why)
    cluster = citus_cluster_module.Cluster(tree).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def database_url(request) -> str:
    """A new database on that server, migrated, dropped at the end.

    With LEADWATCH_TEST_CITUS set, on a local Citus cluster instead: `leadwatch migrate` distributes it.
    """
    name = f"leadwatch_test_{uuid.uuid4().hex[:8]}"
    if os.environ.get("LEADWATCH_TEST_CITUS"):
        cluster = request.getfixturevalue("citus_cluster")
        url = cluster.create_database(name)
        migrate(url)
        yield url
        cluster.drop_database(name)
        return
    server_url = request.getfixturevalue("server_url")
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = psycopg.conninfo.make_conninfo(server_url, dbname=name)
    migrate(url)
    yield url
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'drop database "{name}" with (force)')


def _empty_on_citus(conn) -> None:
    """TABLES emptied on a Citus cluster: only those holding a row (found in one statement), and by `delete` with no
    trigger firing (the replica role, sent to the shards as SET LOCAL). A truncate there costs for each shard of
    each table named (new files on both workers, a two-phase commit), ~0.65 s a test; this, ~0.1 s."""
    names = [name.strip() for name in TABLES.split(",")]
    probes = ", ".join(f"case when exists (select 1 from public.{name}) then '{name}' end" for name in names)
    holding = conn.execute(f"select array_remove(array[{probes}], null)").fetchone()[0]
    if holding:
        with conn.transaction():
            conn.execute("set local citus.propagate_set_commands = 'local'")
            conn.execute("set local session_replication_role = replica")
            for name in holding:
                conn.execute(f"delete from public.{name}")


@pytest.fixture
def db(database_url):
    """A connection to the test database, emptied before each test (rules keep their defaults)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        if os.environ.get("LEADWATCH_TEST_CITUS"):
            _empty_on_citus(conn)
        else:
            with conn.transaction():  # alert_events refuses TRUNCATE outside history maintenance
                allow_history_rewrite(conn)
                conn.execute(f"truncate {TABLES}")
        conn.execute("delete from alert_rules where tenant_id <> '*'")
        yield conn


@pytest.fixture
def postgres_store(db, database_url):
    store = PostgresStore(database_url)
    yield store
    store.close()


@pytest.fixture(autouse=True, scope="session")
def _no_retry_waits():
    """Retries keep their number of attempts but do not sleep between them."""
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


@pytest.fixture
def http_mock():
    """respx in front of every outside HTTP service (Supabase, Green-API, EspoCRM): tests add the routes."""
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture
def supabase_store(db, database_url, http_mock):
    fake = PostgrestFake(database_url)
    http_mock.post(url__regex=rf"^{SUPABASE_URL}/rest/v1/rpc/(?P<function>\w+)$").mock(side_effect=fake)
    store = SupabaseStore(SUPABASE_URL, SERVICE_KEY)
    store.fake = fake
    yield store
    fake.close()


@pytest.fixture(params=["postgres", "supabase"])
def store(request):
    """Each behavioural test runs once per store: the same SQL reached two ways."""
    return request.getfixturevalue(f"{request.param}_store")


@pytest.fixture
def client(store):
    """The dev server's app (the handlers the cloud functions run) over the store under test."""
    return create_app(Api(store, OpenAccess())).test_client()
