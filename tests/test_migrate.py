"""The migrations: the reference's names, row-level security, and a runner that is safe to repeat."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from helpers import ago, log
from leadwatch.migrate import MIGRATIONS_DIR, migrate, pending_files


def test_reference_tables_view_and_indexes_exist(db):
    tables = {r[0] for r in db.execute("select tablename from pg_tables where schemaname = 'public'")}
    assert {"lead_activities", "max_alerts", "leads", "lead_state", "alert_rules", "alert_events"} <= tables
    assert db.execute("select to_regclass('public.active_alerts')").fetchone()[0] == "active_alerts"
    indexes = {
        r[0]
        for r in db.execute("select indexname from pg_indexes where tablename in ('lead_activities', 'max_alerts')")
    }
    assert {
        "idx_lead_activities_tenant_lead",
        "idx_lead_activities_created",
        "idx_max_alerts_unique_active",
        "idx_max_alerts_tenant_lead",
    } <= indexes


def test_every_table_has_row_level_security(db):
    without = db.execute("""select relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
                            where n.nspname = 'public' and c.relkind = 'r' and not c.relrowsecurity""").fetchall()
    assert without == []


def test_one_active_alert_per_tenant_lead_and_type_is_a_constraint(db):
    insert = (
        "insert into max_alerts (tenant_id, lead_id, type, severity, message) "
        "values ('acme', 'L1', 'NoContact7d', 'med', 'x')"
    )
    db.execute(insert)
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(insert)


def test_migrations_are_recorded_and_a_second_run_applies_nothing(database_url):
    assert migrate(database_url) == []
    with psycopg.connect(database_url) as conn:
        versions = [r[0] for r in conn.execute("select version from supabase_migrations.schema_migrations order by 1")]
    assert versions == sorted(p.name.split("_", 1)[0] for p in MIGRATIONS_DIR.glob("*.sql"))
    assert pending_files(set(versions)) == []


@pytest.fixture
def empty_database(server_url):
    """A URL to a new, empty database (a plain Postgres: no Supabase roles yet)."""
    name = f"leadwatch_mig_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    yield psycopg.conninfo.make_conninfo(server_url, dbname=name)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'drop database "{name}" with (force)')


def test_migrate_applies_new_files_in_order_once(empty_database, tmp_path):
    (tmp_path / "20990101000002_second.sql").write_text("insert into t values (2);")
    (tmp_path / "20990101000001_first.sql").write_text("create table t (n int); insert into t values (1);")
    assert migrate(empty_database, tmp_path) == ["20990101000001_first.sql", "20990101000002_second.sql"]
    assert migrate(empty_database, tmp_path) == []
    with psycopg.connect(empty_database) as conn:
        assert [r[0] for r in conn.execute("select n from t")] == [1, 2]
        assert conn.execute("select to_regprocedure('auth.jwt()') is not null").fetchone()[0]


def test_failed_migration_is_rolled_back_and_not_recorded(empty_database, tmp_path):
    (tmp_path / "20990101000001_broken.sql").write_text("create table half (n int); select no_such_function();")
    with pytest.raises(psycopg.errors.UndefinedFunction):
        migrate(empty_database, tmp_path)
    with psycopg.connect(empty_database) as conn:
        assert conn.execute("select to_regclass('public.half')").fetchone()[0] is None
        assert conn.execute("select count(*) from supabase_migrations.schema_migrations").fetchone()[0] == 0


def _as(db, role: str, claims: dict | None):
    db.execute(f"set role {role}")
    db.execute("select set_config('request.jwt.claims', %s, false)", [json.dumps(claims or {})])


def test_signed_in_user_reads_only_their_tenants_rows(postgres_store, db):
    log(postgres_store, tenant="acme", lead="A1", direction="in", occurredAt=ago(days=8))
    log(postgres_store, tenant="other", lead="O1", direction="in", occurredAt=ago(days=8))
    postgres_store.sweep()
    try:
        _as(
            db,
            "authenticated",
            {"sub": str(uuid.uuid4()), "role": "authenticated", "app_metadata": {"tenant_id": "acme", "role": "admin"}},
        )
        for table in ("lead_activities", "max_alerts", "active_alerts", "lead_state", "alert_events"):
            tenants = {r[0] for r in db.execute(f"select tenant_id from {table}")}
            assert tenants == {"acme"}, table
    finally:
        db.execute("reset role")


def test_tenant_in_user_metadata_is_ignored(postgres_store, db):
    log(postgres_store, tenant="acme", direction="in")
    try:
        _as(db, "authenticated", {"role": "authenticated", "user_metadata": {"tenant_id": "acme"}})
        assert db.execute("select count(*) from lead_activities").fetchone()[0] == 0
    finally:
        db.execute("reset role")


def test_anon_reads_nothing(postgres_store, db):
    log(postgres_store, tenant="acme", direction="in")
    try:
        _as(db, "anon", {"role": "anon"})
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            db.execute("select * from lead_activities")
    finally:
        db.execute("reset role")


def test_activity_and_alert_ids_are_time_ordered_uuids(postgres_store, db):
    """Version-7 ids: successive inserts append to the key index instead of landing on random pages."""
    for n in range(3):
        log(postgres_store, lead=f"L{n}", direction="in", occurredAt=ago(days=8), externalId=f"v7-{n}")
    postgres_store.sweep()
    for table in ("lead_activities", "max_alerts"):
        ids = [row[0] for row in db.execute(f"select id from {table} order by created_at, id")]
        assert ids and all(i.version == 7 for i in ids), table
        assert ids == sorted(ids), table


def test_migrate_with_no_migration_files_names_the_folder(empty_database, tmp_path):
    from leadwatch.errors import ConfigError

    with pytest.raises(ConfigError, match=f"no migration files .* in {tmp_path}"):
        migrate(empty_database, tmp_path)
    with psycopg.connect(empty_database) as conn:
        assert conn.execute("select to_regclass('supabase_migrations.schema_migrations')").fetchone()[0] is None
